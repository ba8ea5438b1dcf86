"""The FPGA path: LUT-friendly Verilog of a Circuit, Yosys synthesis reports, netlist simulation.

``to_lut_verilog(circuit, pipeline_every=None)`` writes one module, ``pylgn_lut_circuit``:

- a gate of 3..6 inputs is its truth table, ``wire g = INIT >> {a, b, ...}`` (``INIT`` bit r =
  table row r, the first input the high index bit: Xilinx's LUT INIT order), i.e. one LUT of that
  size; one- and two-input gates are plain expressions that the LUT mapper packs together;
- with ``k`` (GroupSum), the per-class popcounts as a balanced adder tree and the argmax as a
  tournament of comparisons (the lower class index wins ties, as ``Circuit.predict``): outputs
  ``scores`` (class c in ``scores[c*W +: W]``) and ``cls`` (the predicted class index); without
  ``k``, the output bits ``y``;
- with ``pipeline_every=K``, an input ``clk``: registers after gate levels K, 2K, ... (a signal
  that skips stages is carried through one register per stage) and on the outputs; the latency is
  ``ceil(depth / K)`` cycles (``pipeline_latency``); the popcount and argmax sit in the last stage.

``synthesize(circuit, lut=6, target="generic")`` runs Yosys on that Verilog (``synth -lut N`` or
``synth_xilinx``) and reports LUTs per size, flip-flops, logic levels (the longest register-to-
register path counted in LUTs, computed from the mapped netlist) and the gate counts before and
after ``Circuit.simplify()``. ``simulate`` runs a Verilog design under Icarus Verilog on bit
vectors and returns what the module outputs, so a netlist can be checked against
``Circuit.predict``.

Nothing here is imported by ``import pylgn``; Yosys and Icarus are external programs.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np

from . import gates
from ._checks import check_int

TOP = "pylgn_lut_circuit"
TARGETS = ("generic", "xilinx")


# -- Verilog -----------------------------------------------------------------------------------

def pipeline_latency(circuit, pipeline_every=None):
    """Clock cycles from ``x`` to the outputs of ``to_lut_verilog(circuit, pipeline_every)``: 0
    when combinational, else ceil(depth / pipeline_every) (at least 1: the output registers)."""
    if pipeline_every is None:
        return 0
    k = check_int("pipeline_every", pipeline_every, 1)
    levels = circuit.levels()[_live_gates(circuit)]
    return max(1, -(-int(levels.max()) // k)) if levels.size else 1


def _live_gates(c):
    """Mask of the gates some output depends on."""
    live = np.zeros(c.in_dim + c.num_gates, dtype=bool)
    live[c.outputs] = True
    for g in range(c.num_gates - 1, -1, -1):
        if live[c.in_dim + g]:
            live[c.sources(g)] = True
    return live[c.in_dim:]


def lut_models():
    """Verilog of the LUT primitives LUT1..LUT6 that ``to_lut_verilog(..., primitives=N)``
    instantiates, with Xilinx's ports and INIT order (O = INIT[{I(n-1), ..., I0}]). Yosys's
    generic flow reads them with ``-lib`` (blackboxes it keeps as they are); Icarus takes them
    beside a design or netlist that uses them."""
    out = []
    for n in range(1, 7):
        ins = ", ".join(f"I{i}" for i in range(n))
        idx = ", ".join(f"I{i}" for i in range(n - 1, -1, -1))
        out += [f"module LUT{n} (output O, input {ins});",
                f"    parameter [{2 ** n - 1}:0] INIT = {2 ** n}'h0;",
                f"    assign O = INIT[{{{idx}}}];", "endmodule"]
    return "\n".join(out) + "\n"


def _init(n, code):
    """INIT of a gate's table ``code`` (row 0 the most significant bit): bit r = row r."""
    rows = 1 << n
    return int("".join(str((code >> (rows - 1 - r)) & 1) for r in range(rows))[::-1], 2)


def _gate_cell(g, n, code, srcs):
    """A LUT``n`` primitive instance computing gate g: I(n-1) = the first input (the high bit of
    the table's row), I0 = the last."""
    pins = ", ".join(f".I{i}({s})" for i, s in enumerate(reversed(srcs)))
    return (f"    wire g{g};\n    LUT{n} #(.INIT({1 << n}'h{_init(n, code):0{max(1, (1 << n) // 4)}x}))"
            f" u_g{g} (.O(g{g}), {pins});")


def _gate_line(n, code, srcs):
    """Verilog expression of a gate with table ``code`` (row 0 the most significant bit)."""
    if n <= 2:
        gid = code if n == 2 else (0, 3, 12, 15)[code]
        expr = {"0": "1'b0", "~0": "1'b1"}.get(gates.GATE_EXPRS[gid], gates.GATE_EXPRS[gid])
        a, b = srcs[0], srcs[-1]
        return re.sub(r"\b[ab]\b", lambda m: a if m.group() == "a" else b, expr)
    rows = 1 << n
    return f"{rows}'h{_init(n, code):0{rows // 4}x} >> {{{', '.join(srcs)}}}"


class _Stages:
    """Signal names per pipeline stage: node v computed in stage ``stage[v]`` is read in a later
    stage s through the register chain v_p{stage+1} .. v_p{s}."""

    def __init__(self, c, live, every):
        self.c = c
        lv = np.concatenate([np.zeros(c.in_dim, np.int64), c.levels().astype(np.int64)])
        self.stage = np.zeros_like(lv) if every is None else np.maximum(lv - 1, 0) // every
        self.stage[:c.in_dim] = 0
        gate_stages = self.stage[c.in_dim:][live]
        self.last = int(gate_stages.max()) if gate_stages.size else 0
        self.need = self.stage.copy()

    def base(self, v):
        return f"x[{v}]" if v < self.c.in_dim else f"g{v - self.c.in_dim}"

    def read(self, v, s):
        """Name of node v as read in stage s (noting the registers it needs)."""
        self.need[v] = max(self.need[v], s)
        if s == self.stage[v]:
            return self.base(v)
        return (f"x{v}" if v < self.c.in_dim else f"g{v - self.c.in_dim}") + f"_p{s}"

    def registers(self):
        """(declarations, non-blocking assignments) of every register chain."""
        decl, assign = [], []
        for v in np.flatnonzero(self.need > self.stage):
            prev = self.base(int(v))
            for s in range(int(self.stage[v]) + 1, int(self.need[v]) + 1):
                name = self.read(int(v), s)
                decl.append(f"    reg {name};")
                assign.append(f"        {name} <= {prev};")
                prev = name
        return decl, assign


def _popcount(lines, bits, tag):
    """Balanced adder tree over 1-bit signals; returns (name, width) of the sum."""
    level = [(b, 1, 1) for b in bits]                      # (name, width, max value)
    i = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level) - 1, 2):
            (a, _, ma), (b, _, mb) = level[j], level[j + 1]
            w = (ma + mb).bit_length()
            name = f"{tag}_{i}"
            i += 1
            lines.append(f"    wire [{w - 1}:0] {name} = {a} + {b};")
            nxt.append((name, w, ma + mb))
        level = nxt + level[len(level) - len(level) % 2:]
    return level[0][0], level[0][1]


def _argmax(lines, scores, w, cw):
    """Tournament over (score, index) pairs; left operands hold lower indices, so ties keep the
    lower index. Returns the name of the winning index."""
    level = [(s, f"{cw}'d{c}") for c, s in enumerate(scores)]
    i = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level) - 1, 2):
            (sa, ia), (sb, ib) = level[j], level[j + 1]
            lines += [f"    wire am_t{i} = {sb} > {sa};",
                      f"    wire [{w - 1}:0] am_s{i} = am_t{i} ? {sb} : {sa};",
                      f"    wire [{cw - 1}:0] am_i{i} = am_t{i} ? {ib} : {ia};"]
            nxt.append((f"am_s{i}", f"am_i{i}"))
            i += 1
        level = nxt + level[len(level) - len(level) % 2:]
    return level[0][1]


def _output_ports(c):
    """[(name, width)] of the module's outputs."""
    if c.k is None:
        return [("y", c.num_outputs)]
    w = (c.num_outputs // c.k).bit_length()
    return [("scores", c.k * w), ("cls", max(1, (c.k - 1).bit_length()))]


def _output_logic(c, lines, outs):
    """Popcount + argmax (or the bits) over the output signal names; [(port, expression)]."""
    if c.k is None:
        return [("y", "{" + ", ".join(outs[::-1]) + "}")]
    m = c.num_outputs // c.k
    w = m.bit_length()
    cw = max(1, (c.k - 1).bit_length())
    scores = []
    for cl in range(c.k):
        name, width = _popcount(lines, outs[cl * m:(cl + 1) * m], f"pc{cl}")
        lines.append(f"    wire [{w - 1}:0] score{cl} = {name};")
        scores.append(f"score{cl}")
    best = _argmax(lines, scores, w, cw)
    return [("scores", "{" + ", ".join(scores[::-1]) + "}"), ("cls", best)]


def to_lut_verilog(circuit, pipeline_every=None, primitives=None):
    """Verilog module ``pylgn_lut_circuit`` of ``circuit`` (see the module doc): n-input gates
    as LUT truth tables, popcount and argmax in logic, optional pipeline registers every
    ``pipeline_every`` gate levels. ``primitives=N`` (3..6): the gates of 3..N inputs are
    instances of the primitives LUT3..LUTN with their INIT (``lut_models``), so that synthesis
    maps them one to one instead of re-deriving each table's logic."""
    from .circuit import Circuit
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit: expected a pylgn.Circuit, got {type(circuit).__name__}")
    c = circuit
    latency = pipeline_latency(c, pipeline_every)         # checks pipeline_every
    top = 2 if primitives is None else check_int("primitives", primitives, 3, 6)
    live = _live_gates(c)
    st = _Stages(c, live, pipeline_every)
    body = []
    for g in np.flatnonzero(live):
        s = int(st.stage[c.in_dim + g])
        srcs = [st.read(int(v), s) for v in c.sources(g)]
        n, code = int(c.arity[g]), int(c.codes[g])
        body.append(_gate_cell(g, n, code, srcs) if 3 <= n <= top else
                    f"    wire g{g} = {_gate_line(n, code, srcs)};")
    tail = []
    outs = [st.read(int(o), st.last) for o in c.outputs]
    results = _output_logic(c, tail, outs)
    decl, assign = st.registers()
    ports = _output_ports(c)
    kind = "output reg" if pipeline_every is not None else "output wire"
    head = [f"// Generated by pylgn.fpga: {c.in_dim} inputs, {int(live.sum())} gates "
            f"({c.num_gates} in the circuit), depth {c.depth}, k = {c.k}.",
            f"// Latency: {latency} clock cycles" + (f" (registers every {pipeline_every} gate "
                                                      "levels and on the outputs)."
                                                      if latency else " (combinational)."),
            f"module {TOP} ("]
    plist = (["    input  wire clk"] if latency else []) + [f"    input  wire [{c.in_dim - 1}:0] x"]
    plist += [f"    {kind} [{w - 1}:0] {p}" for p, w in ports]
    out = head + [",\n".join(plist), ");"] + decl + body + tail
    if latency:
        out += ["    always @(posedge clk) begin"] + assign + \
               [f"        {p} <= {e};" for p, e in results] + ["    end"]
    else:
        out += [f"    assign {p} = {e};" for p, e in results]
    return "\n".join(out + ["endmodule"]) + "\n"


RAW_TOP = "pylgn_raw_top"
ENCODER_TOP = "pylgn_raw_encoder"


def raw_cuts(circuit, encoder):
    """(src, cut8) per circuit input: input bit k = raw[src[k]] >= cut8[k] for raw 8-bit values
    (cut8 0: always 1; 256: always 0), from ``encoder.comparisons()``; -1 where no gate reads
    the input."""
    from .circuit import _read_inputs
    from .encoders import Encoder
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder: expected a pylgn.encoders.Encoder, got {type(encoder)}")
    if encoder.kind == "quantile" or encoder.max_value > 255:
        raise ValueError(f"encoder: the raw Verilog top reads 8-bit values; {encoder!r} does "
                         f"not (tables: use the C export)")
    if encoder.in_dim != circuit.in_dim:
        raise ValueError(f"encoder: encodes {encoder.in_dim} bits, the circuit reads "
                         f"{circuit.in_dim}")
    src, _ = encoder.comparisons()
    cut8 = np.full(circuit.in_dim, -1, dtype=np.int64)
    used = _read_inputs(circuit)
    cut8[used] = encoder.byte_cuts()[used]
    return src, cut8


def to_raw_verilog(circuit, encoder, pipeline_every=None, primitives=None):
    """``to_lut_verilog`` plus the encoder's comparators: module ``pylgn_raw_encoder`` (raw 8-bit
    values -> the circuit's input bits, one comparison with a constant per bit) and the top
    ``pylgn_raw_top``: input ``raw`` (value p in ``raw[8*p +: 8]``, RAW_DIM values), outputs
    ``scores`` and ``cls`` (the class: popcount and argmax, the lowest class on ties)."""
    if circuit.k is None:
        raise ValueError("circuit: the raw top needs a circuit with k (GroupSum)")
    src, cut8 = raw_cuts(circuit, encoder)
    D, n_in = encoder.raw_dim, circuit.in_dim
    core = to_lut_verilog(circuit, pipeline_every, primitives)
    bits = []
    for k in range(n_in):
        c = int(cut8[k])
        expr = "1'b0" if c < 0 or c > 255 else "1'b1" if c == 0 else \
            f"raw[{8 * int(src[k])} +: 8] >= 8'd{c}"
        bits.append(f"    assign x[{k}] = {expr};")
    enc = [f"// Generated by pylgn.fpga: {encoder!r} as {n_in} comparisons of 8-bit values.",
           f"module {ENCODER_TOP} (", f"    input  wire [{8 * D - 1}:0] raw,",
           f"    output wire [{n_in - 1}:0] x", ");", *bits, "endmodule"]
    ports = _output_ports(circuit)
    clk = pipeline_latency(circuit, pipeline_every) > 0
    plist = (["    input  wire clk"] if clk else []) + [f"    input  wire [{8 * D - 1}:0] raw"] + \
        [f"    output wire [{w - 1}:0] {p}" for p, w in ports]
    conns = ([".clk(clk)"] if clk else []) + [".x(x)"] + [f".{p}({p})" for p, _ in ports]
    top = [f"// raw samples in (value p in raw[8*p +: 8]), class out: comparators -> "
           f"{TOP} -> popcount, argmax", f"module {RAW_TOP} (", ",\n".join(plist), ");",
           f"    wire [{n_in - 1}:0] x;", f"    {ENCODER_TOP} enc (.raw(raw), .x(x));",
           f"    {TOP} core ({', '.join(conns)});", "endmodule"]
    return core + "\n".join(enc + top) + "\n"


# -- synthesis ---------------------------------------------------------------------------------

def _tool(name, why):
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH ({why}); on Debian/Ubuntu: "
                           f"apt-get install {'iverilog' if name in ('iverilog', 'vvp') else name}")
    return path


def _yosys_script(target, lut, top):
    """Yosys commands after reading the design: flatten, map to ``lut``-input LUTs, write the
    netlist."""
    if target == "generic":
        synth = f"synth -top {top} -flatten -lut {lut}"
    else:                       # LUT4 parts: Spartan-3; LUT6: 7-series
        synth = f"synth_xilinx -top {top} -flatten -noiopad -family {'xc7' if lut == 6 else 'xc3s'}"
    return [synth, "opt_clean -purge", "stat", "write_json net.json", "write_verilog -noattr net.v"]


def synthesize(circuit, lut=6, target="generic", pipeline=None, simplify=True, timeout=3600,
               workdir=None, primitives=True, encoder=None):
    """Synthesize ``to_lut_verilog(circuit, pipeline)`` with Yosys and report the mapped design.

    ``lut``: 6 or 4 (LUT inputs); ``target``: "generic" (``synth -lut N``: Yosys ``$lut`` cells)
    or "xilinx" (``synth_xilinx``: 7-series for LUT6, Spartan-3 for LUT4); ``pipeline``: register
    every that many gate levels (None: combinational); ``simplify``: run ``Circuit.simplify()``
    first; ``timeout``: seconds for Yosys; ``workdir``: keep design.v, net.v (the mapped netlist),
    luts.v (``lut_models``), net.json and yosys.log there (default: a temporary folder, removed);
    ``primitives``: emit the gates of 3..``lut`` inputs as LUT primitives with their INIT, which
    Yosys keeps one to one (an 8K six-input net synthesises in minutes, not hours); False:
    as truth-table expressions that Yosys re-maps (it may merge small gates).

    ``encoder`` (``pylgn.encoders``, 8-bit values): synthesize the raw top of
    ``to_raw_verilog`` (comparators, circuit, popcount, argmax); the encoder's comparators are
    also synthesized alone and reported as ``luts_encoder`` (and left out of ``luts_head``).

    Returns a dict: luts (total), luts_by_size {inputs: count}, ffs, logic_levels (LUTs on the
    longest path between inputs / registers / outputs), cells (mapped cell types and counts),
    latency_cycles, gates_trained / gates (after simplify) / depth, gates_by_arity, seconds
    (Yosys wall time), target, lut, and with ``workdir`` the netlist path.
    """
    from .circuit import Circuit
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit: expected a pylgn.Circuit, got {type(circuit).__name__}")
    if lut not in (4, 6):
        raise ValueError(f"lut: expected 4 or 6 (LUT inputs), got {lut!r}")
    if target not in TARGETS:
        raise ValueError(f"target: expected one of {TARGETS}, got {target!r}")
    check_int("timeout", timeout, 1)
    yosys = _tool("yosys", "synthesis")
    c = circuit.simplify() if simplify else circuit
    prim = lut if primitives else None
    text = to_raw_verilog(c, encoder, pipeline, prim) if encoder is not None else \
        to_lut_verilog(c, pipeline, primitives=prim)
    top = RAW_TOP if encoder is not None else TOP
    tmp = None if workdir is not None else tempfile.mkdtemp(prefix="pylgn-fpga-")
    wd = os.fspath(workdir) if workdir is not None else tmp
    os.makedirs(wd, exist_ok=True)
    try:
        with open(os.path.join(wd, "design.v"), "w") as f:
            f.write(text)
        with open(os.path.join(wd, "luts.v"), "w") as f:
            f.write(lut_models())
        reads = ["read_verilog -lib luts.v"] if target == "generic" else []
        script = "; ".join(reads + ["read_verilog design.v"] + _yosys_script(target, lut, top))
        t0 = time.perf_counter()
        try:
            run = subprocess.run([yosys, "-q", "-l", "yosys.log", "-p", script], cwd=wd,
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timeout: yosys ran past {timeout} s on {c.num_gates} gates "
                               f"(raise timeout=, or synthesize a smaller circuit)") from None
        seconds = time.perf_counter() - t0
        if run.returncode:
            raise RuntimeError(f"yosys failed (exit {run.returncode}): "
                               f"{(run.stderr or run.stdout).strip()[-2000:]}")
        with open(os.path.join(wd, "net.json")) as f:
            netlist = json.load(f)["modules"][top]
        if encoder is not None:
            enc_luts = _encoder_luts(yosys, wd, target, lut, timeout, reads)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    report = netlist_report(netlist)
    report["luts_gates"] = sum(1 for name, cell in netlist["cells"].items()   # kept by name
                               if _GATE_CELL.fullmatch(name) and _lut_size(cell))
    report["luts_head"] = report["luts"] - report["luts_gates"]
    if encoder is not None:
        report["luts_encoder"] = enc_luts
        report["luts_head"] -= enc_luts
    st = c.stats()
    report.update(target=target, lut=lut, pipeline=pipeline,
                  latency_cycles=pipeline_latency(c, pipeline), seconds=round(seconds, 2),
                  gates_trained=circuit.num_gates, gates=c.num_gates, depth=st["depth"],
                  gates_by_arity=st["gates_per_arity"])
    if workdir is not None:
        report["netlist"] = os.path.join(wd, "net.v")
    return report


def _encoder_luts(yosys, wd, target, lut, timeout, reads):
    """LUTs of the module pylgn_raw_encoder of design.v in ``wd``, synthesized alone."""
    script = "; ".join(reads + ["read_verilog design.v"]
                       + _yosys_script(target, lut, ENCODER_TOP)[:1]
                       + ["write_json enc.json"])
    run = subprocess.run([yosys, "-q", "-p", script], cwd=wd, capture_output=True, text=True,
                         timeout=timeout)
    if run.returncode:
        raise RuntimeError(f"yosys failed on the encoder (exit {run.returncode}): "
                           f"{(run.stderr or run.stdout).strip()[-2000:]}")
    with open(os.path.join(wd, "enc.json")) as f:
        return netlist_report(json.load(f)["modules"][ENCODER_TOP])["luts"]


_GATE_CELL = re.compile(r"\\?(?:[\w$]+\.)*u_g\d+")      # "core.u_g12" once flattened
_FF = re.compile(r"^(\$_S?DFFS?E?_|\$_DFF|\$dff|FD|\$_ALDFF|\$adff|\$sdff)")


def _lut_size(cell):
    """Inputs of a LUT cell (Yosys $lut or Xilinx LUT1..6), else None."""
    t = cell["type"]
    if t == "$lut":
        return int(str(cell["parameters"]["WIDTH"]), 2)
    m = re.fullmatch(r"LUT([1-6])", t)
    return int(m.group(1)) if m else None


def netlist_report(module):
    """Counts and LUT depth of a mapped module from Yosys ``write_json``: luts, luts_by_size,
    ffs, cells, logic_levels (the most LUTs on a path from an input or register output to an
    output or register input; other combinational cells, e.g. MUXF7 or CARRY4, count 0)."""
    cells = module["cells"]
    types, by_size, ffs = {}, {}, 0
    for cell in cells.values():
        types[cell["type"]] = types.get(cell["type"], 0) + 1
        n = _lut_size(cell)
        if n is not None:
            by_size[n] = by_size.get(n, 0) + 1
        elif _FF.match(cell["type"]):
            ffs += 1
    return dict(luts=sum(by_size.values()), luts_by_size=dict(sorted(by_size.items())), ffs=ffs,
                cells=dict(sorted(types.items())), logic_levels=_lut_depth(cells))


def _lut_depth(cells):
    """Longest path in LUTs through the combinational cells (registers cut paths)."""
    driver, comb = {}, {}
    for name, cell in cells.items():
        if _FF.match(cell["type"]):
            continue
        dirs = cell.get("port_directions", {})
        ins, outs = [], []
        for port, bits in cell["connections"].items():
            (outs if dirs.get(port) == "output" else ins).extend(b for b in bits
                                                                 if isinstance(b, int))
        comb[name] = (1 if _lut_size(cell) is not None else 0, ins)
        for b in outs:
            driver[b] = name
    depth = {}
    for start in comb:                       # iterative DFS, post-order
        if start in depth:
            continue
        stack = [(start, False)]
        while stack:
            name, done = stack.pop()
            w, ins = comb[name]
            preds = [driver[b] for b in ins if b in driver]
            if done:
                depth[name] = w + max((depth[p] for p in preds), default=0)
            elif name not in depth:
                stack.append((name, True))
                stack.extend((p, False) for p in preds if p not in depth)
    return max(depth.values(), default=0)


# -- simulation --------------------------------------------------------------------------------

_TB = """`timescale 1ns/1ps
module pylgn_tb;
    reg [{i}:0] mem [0:{n}];
    reg [{i}:0] x;
    reg clk;
    {wires}
    integer r;
    {top} dut ({conns});
    initial begin
        $readmemb("{path}", mem);
        clk = 0;
        for (r = 0; r < {steps}; r = r + 1) begin
            x = r <= {n} ? mem[r] : {w}'d0;
            {tick}
            $display("{fmt}", {outs});
        end
        $finish;
    end
endmodule
"""


def simulation_models(target):
    """Verilog files Icarus needs besides a netlist of ``target`` (Yosys's cell models)."""
    yosys = os.path.realpath(_tool("yosys", "its cell models"))
    share = os.path.join(os.path.dirname(os.path.dirname(yosys)), "share", "yosys")
    if not os.path.isfile(os.path.join(share, "simlib.v")):
        raise RuntimeError(f"yosys's cell models (simlib.v) not found in {share}")
    if target == "generic":
        return [os.path.join(share, "simlib.v"), os.path.join(share, "simcells.v"),
                _lut_models_file()]
    if target == "xilinx":
        return [os.path.join(share, "xilinx", "cells_sim.v")]
    raise ValueError(f"target: expected one of {TARGETS}, got {target!r}")


def _lut_models_file():
    """A file holding ``lut_models()`` (written once per text, in the temporary folder)."""
    import hashlib
    text = lut_models()
    path = os.path.join(tempfile.gettempdir(),
                        f"pylgn-luts-{hashlib.sha256(text.encode()).hexdigest()[:12]}.v")
    if not os.path.isfile(path):
        fd, tmp = tempfile.mkstemp(suffix=".v", dir=os.path.dirname(path))
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


def simulate(files, circuit, x, latency=0, timeout=600, encoder=None):
    """Run the module ``pylgn_lut_circuit`` of Verilog ``files`` on bit vectors ``x`` (batch,
    in_dim) under Icarus Verilog, one sample per clock cycle when ``latency`` > 0 (the outputs of
    sample r read ``latency`` cycles later). With ``encoder``: the top ``pylgn_raw_top``
    (``to_raw_verilog``) on raw uint8 samples x (batch, raw_dim). Returns {"scores": (batch, k),
    "cls": (batch,)} or {"y": (batch, outputs)} as int64 / bool arrays."""
    x = np.asarray(x)
    width, top, port = circuit.in_dim, TOP, "x"
    if encoder is not None:
        if x.dtype != np.uint8 or x.ndim < 2 or x[0].size != encoder.raw_dim:
            raise ValueError(f"x: expected raw uint8 samples of {encoder.raw_dim} values, got "
                             f"dtype {x.dtype} shape {x.shape}")
        x = np.unpackbits(x.reshape(len(x), -1)[:, :, None], axis=2,
                          bitorder="little").reshape(len(x), -1)     # value p -> bits 8p..8p+7
        width, top, port = 8 * encoder.raw_dim, RAW_TOP, "raw"
    if x.ndim != 2 or x.shape[1] != width or x.shape[0] < 1:
        raise ValueError(f"x: expected shape (batch >= 1, {width}), got {x.shape}")
    iverilog, vvp = _tool("iverilog", "simulation"), _tool("vvp", "simulation")
    latency = check_int("latency", latency, 0)
    ports = _output_ports(circuit)
    n = x.shape[0]
    with tempfile.TemporaryDirectory(prefix="pylgn-sim-") as wd:
        path = os.path.join(wd, "in.txt")
        with open(path, "w") as f:
            f.writelines("".join("1" if v else "0" for v in row[::-1]) + "\n" for row in x)
        tb = _TB.format(i=width - 1, n=n - 1, w=width, top=top, path=path,
                        wires=" ".join(f"wire [{w - 1}:0] {p};" for p, w in ports),
                        conns=", ".join([f".{port}(x)"] + (([".clk(clk)"] if latency else []))
                                        + [f".{p}({p})" for p, _ in ports]),
                        steps=n + max(latency - 1, 0),
                        tick="#1 clk = 1; #1 clk = 0;" if latency else "#1;",
                        fmt=" ".join("%b" for _ in ports), outs=", ".join(p for p, _ in ports))
        with open(os.path.join(wd, "tb.v"), "w") as f:
            f.write(tb)
        sim = os.path.join(wd, "sim")
        build = subprocess.run([iverilog, "-g2012", "-o", sim, os.path.join(wd, "tb.v"),
                                *map(os.fspath, files)], capture_output=True, text=True,
                               timeout=timeout)
        if build.returncode:
            raise RuntimeError(f"iverilog failed: {build.stderr.strip()[-2000:]}")
        out = subprocess.run([vvp, "-n", sim], capture_output=True, text=True, timeout=timeout,
                             check=True).stdout.split("\n")
    rows = [ln.split() for ln in out if ln and set(ln) <= set("01 xz")]
    rows = rows[max(latency - 1, 0):][:n]
    if len(rows) != n:
        raise RuntimeError(f"simulation printed {len(rows)} result lines, expected {n}")
    if circuit.k is None:
        return dict(y=np.array([[ch == "1" for ch in r[0][::-1]] for r in rows]))
    w = ports[0][1] // circuit.k
    packed = [int(r[0], 2) for r in rows]
    scores = np.array([[(p >> (cl * w)) & ((1 << w) - 1) for cl in range(circuit.k)]
                       for p in packed], dtype=np.int64)
    return dict(scores=scores, cls=np.array([int(r[1], 2) for r in rows], dtype=np.int64))
