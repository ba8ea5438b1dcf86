"""pylgn.fpga's raw top (pylgn_raw_top: 8-bit values -> comparators -> circuit -> popcount ->
argmax) simulated under Icarus against `pylgn predict` and Circuit.predict_raw; its synthesis
reports the encoder's LUTs apart. Skips without iverilog/yosys unless PYLGN_REQUIRE_TOOLS=1."""
import numpy as np
import pytest

import pylgn
from pylgn import fpga
from pylgn.cli import main
from pylgn.encoders import QuantileEncoder, Thermometer
import tools
from test_predict import NAMES, image_kind, save

needs_icarus = tools.needs("iverilog", "vvp")
needs_yosys = tools.needs("yosys")


def small(rng):
    enc = Thermometer((1, 6, 6), 3, crop=4, max_value=255)
    layers, width = [], enc.in_dim
    for G, n in ((60, 2), (40, 6), (20, 3)):
        layers.append((rng.integers(0, width, size=(n, G)), rng.integers(0, 2, size=(G, 2 ** n))))
        width = G
    x = rng.integers(0, 256, size=(150, 1, 6, 6)).astype(np.uint8)
    x[:, 0, 1:5, 1:5] = rng.choice([63, 64, 127, 128, 191, 192], size=(150, 4, 4))  # at the cuts
    return pylgn.Circuit(enc.in_dim, layers, k=4), enc, x


@needs_icarus
@pytest.mark.parametrize("pipeline", [None, 2])
def test_raw_top_simulates_like_predict_raw(tmp_path, pipeline):
    c, enc, x = small(np.random.default_rng(0))
    path = tmp_path / "raw.v"
    path.write_text(fpga.to_raw_verilog(c, enc, pipeline, primitives=6))
    out = fpga.simulate([path, fpga._lut_models_file()], c, x,
                        latency=fpga.pipeline_latency(c, pipeline), encoder=enc)
    assert np.array_equal(out["scores"], c.scores_raw(x, enc))
    assert np.array_equal(out["cls"], c.predict_raw(x, enc))


@needs_icarus
def test_raw_top_of_a_learned_model_equals_pylgn_predict(tmp_path, capsys):
    model, enc, x, _ = image_kind("learned", np.random.default_rng(1))
    ckpt = save(tmp_path / "m.h5", model, enc)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert main(["predict", ckpt, str(tmp_path / "x.npy")]) == 0
    want = capsys.readouterr().out.split()
    c = model.to_circuit().simplify()
    path = tmp_path / "raw.v"
    path.write_text(fpga.to_raw_verilog(c, enc))
    out = fpga.simulate([path], c, x, encoder=enc)
    assert [NAMES[i] for i in out["cls"]] == want


@needs_yosys
@needs_icarus
def test_synthesis_reports_the_encoder_apart(tmp_path):
    c, enc, x = small(np.random.default_rng(2))
    r = fpga.synthesize(c, encoder=enc, simplify=False, workdir=tmp_path)
    assert r["luts_encoder"] > 0 and r["luts_gates"] > 0
    assert r["luts"] == r["luts_gates"] + r["luts_head"] + r["luts_encoder"]
    out = fpga.simulate([r["netlist"]] + fpga.simulation_models("generic"), c, x, encoder=enc)
    assert np.array_equal(out["cls"], c.predict_raw(x, enc))


def test_raw_top_refuses_what_it_cannot_read():
    c, enc, _ = small(np.random.default_rng(3))
    with pytest.raises(ValueError, match="encoder.*8-bit"):
        fpga.to_raw_verilog(c, QuantileEncoder(np.arange(c.in_dim) % 3, np.zeros(c.in_dim),
                                               ["a", "b", "c"]))
    with pytest.raises(ValueError, match="encoder.*encodes"):
        fpga.to_raw_verilog(c, Thermometer((1, 6, 6), 2, crop=4))
    with pytest.raises(TypeError, match="encoder"):
        fpga.to_raw_verilog(c, "thermometer")
    with pytest.raises(ValueError, match="x: expected raw uint8"):
        fpga.simulate([], c, np.zeros((2, 36)), encoder=enc)


@needs_yosys
def test_cli_export_synth_writes_the_raw_top(tmp_path, capsys):
    model, enc, x, _ = image_kind("dense", np.random.default_rng(4))
    ckpt = save(tmp_path / "m.h5", model, enc)
    out = tmp_path / "m.v"
    capsys.readouterr()
    assert main(["export", ckpt, "--format", "verilog", "--synth", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"module {fpga.RAW_TOP}" in out.read_text() and "encoder's comparators" in text
