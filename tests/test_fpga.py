"""pylgn.fpga: the LUT Verilog simulated with Icarus, Yosys synthesis (LUT counts, depth) and its
mapped netlist simulated against Circuit.predict. Circuits are tiny: each synthesis takes seconds.
"""
import subprocess
import sys

import numpy as np
import pytest

from pylgn import fpga
from pylgn.circuit import Circuit
from test_export import circuits
import tools
from test_packed import random_layers

needs_icarus = tools.needs("iverilog", "vvp")      # skip, or fail with PYLGN_REQUIRE_TOOLS=1
needs_yosys = tools.needs("yosys")


def bits(c, n, seed):
    return np.random.default_rng(seed).integers(0, 2, size=(n, c.in_dim)).astype(bool)


def check_against_circuit(c, out, x):
    if c.k is None:
        assert np.array_equal(out["y"], c.evaluate(x))
    else:
        assert np.array_equal(out["scores"], c.scores(x))
        assert np.array_equal(out["cls"], c.predict(x))


def lut6_circuit(k=None):
    """Two layers of random six-input gates (k=None: the outputs are the gates' bits)."""
    rng = np.random.default_rng(3)
    return Circuit(24, random_layers(rng, 24, [30, 20], [6, 6]), k=k)


@needs_icarus
@pytest.mark.parametrize("index", [0, 2])
@pytest.mark.parametrize("pipeline", [None, 1, 4])
def test_lut_verilog_matches_predict(tmp_path, index, pipeline):
    c = circuits()[index]
    x = bits(c, 70, index)
    (tmp_path / "d.v").write_text(fpga.to_lut_verilog(c, pipeline))
    latency = fpga.pipeline_latency(c, pipeline)
    assert latency == (0 if pipeline is None else -(-c.depth // pipeline))
    check_against_circuit(c, fpga.simulate([tmp_path / "d.v"], c, x, latency), x)


@needs_icarus
def test_lut_verilog_without_k_outputs_the_bits(tmp_path):
    c = lut6_circuit()
    x = bits(c, 40, 1)
    (tmp_path / "d.v").write_text(fpga.to_lut_verilog(c, 1))
    check_against_circuit(c, fpga.simulate([tmp_path / "d.v"], c, x, 2), x)


def test_lut_verilog_writes_truth_tables():
    c = Circuit(6, [(np.arange(6)[:, None], np.eye(64, dtype=np.uint8)[5:6])])   # row 5 only
    text = fpga.to_lut_verilog(c)
    # INIT bit r = row r: row 5 = inputs 000101 (first input the high bit)
    assert "wire g0 = 64'h0000000000000020 >> {x[0], x[1], x[2], x[3], x[4], x[5]};" in text
    assert "clk" not in text and "Latency: 0" in text
    piped = fpga.to_lut_verilog(c, pipeline_every=1)
    assert "input  wire clk" in piped and "Latency: 1 clock cycles" in piped


@needs_yosys
@needs_icarus
@pytest.mark.parametrize("pipeline", [None, 2])
def test_synthesized_netlist_matches_predict(tmp_path, pipeline):
    c = circuits()[0]
    rep = fpga.synthesize(c, lut=6, target="generic", pipeline=pipeline, workdir=tmp_path)
    assert rep["luts"] == sum(rep["luts_by_size"].values()) > 0
    assert set(rep["luts_by_size"]) <= set(range(1, 7))
    assert rep["gates_trained"] == c.num_gates and rep["gates"] == c.simplify().num_gates
    assert (rep["ffs"] > 0) == (pipeline is not None)
    assert 1 <= rep["logic_levels"] <= rep["luts"]
    x = bits(c, 60, 5)
    out = fpga.simulate([rep["netlist"]] + fpga.simulation_models("generic"), c, x,
                        rep["latency_cycles"])
    check_against_circuit(c, out, x)


@needs_yosys
@pytest.mark.parametrize("target", ["generic", "xilinx"])
def test_six_input_gates_map_one_to_one_onto_lut6(target):
    c = lut6_circuit()
    rep = fpga.synthesize(c, lut=6, target=target)
    assert rep["luts_by_size"] == rep["gates_by_arity"]
    assert rep["luts"] == rep["gates"] and rep["logic_levels"] == rep["depth"] == 2
    lut4 = fpga.synthesize(c, lut=4, target="generic")
    assert lut4["luts"] > rep["luts"] and max(lut4["luts_by_size"]) <= 4


def test_netlist_report_counts_luts_and_cuts_paths_at_registers():
    def lut(a, y):
        return dict(type="$lut", parameters=dict(WIDTH="10"),
                    port_directions=dict(A="input", Y="output"), connections=dict(A=a, Y=[y]))
    ff = dict(type="$_DFF_P_", port_directions=dict(C="input", D="input", Q="output"),
              connections=dict(C=[2], D=[12], Q=[13]))
    cells = dict(l1=lut([3, 4], 10), l2=lut([10, 4], 11), l3=lut([11, "0"], 12), r=ff,
                 l4=lut([13, 3], 14))
    rep = fpga.netlist_report(dict(cells=cells))
    assert rep["luts"] == 4 and rep["luts_by_size"] == {2: 4} and rep["ffs"] == 1
    assert rep["logic_levels"] == 3 and rep["cells"] == {"$_DFF_P_": 1, "$lut": 4}


def test_bad_arguments_name_them():
    c = circuits()[0]
    with pytest.raises(ValueError, match="lut"):
        fpga.synthesize(c, lut=5)
    with pytest.raises(ValueError, match="target"):
        fpga.synthesize(c, target="altera")
    with pytest.raises(ValueError, match="pipeline_every"):
        fpga.to_lut_verilog(c, pipeline_every=0)
    with pytest.raises(TypeError, match="circuit"):
        fpga.to_lut_verilog("c")
    with pytest.raises(ValueError, match="x"):
        fpga.simulate([], c, np.zeros((3, c.in_dim + 1), bool))


def test_import_pylgn_does_not_import_fpga():
    code = "import sys, pylgn; assert 'pylgn.fpga' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_yosys
def test_cli_export_synth(tmp_path, capsys):
    import pylgn
    from pylgn.cli import main
    model = pylgn.Sequential([pylgn.LogicLayer(16, 24, arity=6, init="uniform"),
                              pylgn.LogicLayer(24, 12, arity=6, init="uniform"),
                              pylgn.GroupSum(3, 1.0)], seed=1)
    pylgn.save(tmp_path / "m.h5", model)
    out = tmp_path / "m.v"
    argv = ["export", str(tmp_path / "m.h5"), "--format", "verilog", "-o", str(out)]
    assert main(argv + ["--synth", "--pipeline", "1"]) == 0
    text = capsys.readouterr().out
    assert f"module {fpga.TOP}" in out.read_text() and "input  wire clk" in out.read_text()
    n = int(text.split("yosys (generic, LUT6): ")[1].split(" LUTs")[0])
    assert n > 0 and "latency 2 cycles" in text and " 0 flip-flops" not in text
    assert main(argv + ["--lut", "4"]) == 2
    assert "--lut, --target and --pipeline: need --synth" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "m.h5"), "--format", "c", "-o", str(out), "--synth"]) == 2
    assert "--synth: needs --format verilog" in capsys.readouterr().err


@needs_icarus
def test_lut_primitives_simulate_like_the_circuit(tmp_path):
    c = lut6_circuit(k=2)
    x = bits(c, 50, 4)
    text = fpga.to_lut_verilog(c, 2, primitives=6)
    assert text.count("LUT6 #(.INIT(64'h") == c.num_gates and " >> {" not in text
    (tmp_path / "d.v").write_text(text)
    (tmp_path / "luts.v").write_text(fpga.lut_models())
    out = fpga.simulate([tmp_path / "d.v", tmp_path / "luts.v"], c, x,
                        fpga.pipeline_latency(c, 2))
    check_against_circuit(c, out, x)
    with pytest.raises(ValueError, match="primitives"):
        fpga.to_lut_verilog(c, primitives=7)


@needs_yosys
@needs_icarus
def test_synthesis_keeps_gate_primitives_and_splits_gates_from_head(tmp_path):
    c = lut6_circuit(k=2)
    rep = fpga.synthesize(c, lut=6, target="generic", workdir=tmp_path)
    s = c.simplify()                          # some gates shrink to fewer inputs (LUT3..LUT5)
    cells = ((s.arity >= 3) & fpga._live_gates(s)).sum()       # the live gates of 3+ inputs
    assert rep["luts_gates"] == cells == sum(rep["cells"].get(f"LUT{n}", 0) for n in (3, 4, 5, 6))
    assert rep["luts_head"] == rep["luts"] - rep["luts_gates"] > 0
    x = bits(c, 40, 6)
    out = fpga.simulate([rep["netlist"]] + fpga.simulation_models("generic"), c, x)
    check_against_circuit(c, out, x)
