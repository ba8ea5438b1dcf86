"""Circuit: a trained network as discrete logic gates, run bit-packed, simplified, exported.

The IR. ``Circuit(in_dim, layers, k=None, tau=1.0)`` takes a list of ``(connections, tables)``
pairs: ``connections`` (arity, G) ints index the previous layer's outputs (the first layer reads
the ``in_dim`` circuit inputs), ``tables`` (G, 2**arity) 0/1 with the pylgn row order
(row r = sum_k b_k 2**(n-1-k), the first input is the high bit). Arity may differ between layers
(1..6). The outputs are the last layer's gates. With ``k``, ``scores`` counts the ones in each of
k contiguous groups of outputs (integers; ``model.eval().forward(x) == scores(x) / tau``) and
``predict`` is the argmax of the scores, the lowest class index winning ties.

Inside, a circuit is a graph with one global node numbering: nodes 0..in_dim-1 are the inputs,
node in_dim + g is gate g; a gate may read any earlier node (any input or lower-numbered gate),
and the outputs are any list of nodes. Layers are the special case where every gate reads the
layer before it. ``simplify`` needs the general form (bypassing a pass-through gate makes its
reader skip a level); ``Circuit.from_graph`` builds one directly. Tables are stored as integer
codes, row 0 as the most significant bit (``pylgn.gates.table_class``; for two inputs the code is
the gate id), which fits 64 rows in a uint64.

Nothing here compiles at import: the packed kernels (pylgn.kernels.packed) and h5py are imported
on first use.
"""
import json
import numbers
import os

import numpy as np

from . import gates
from ._checks import check_float, check_int

FORMAT = "pylgn.circuit"
VERSION = 1


class PackedBits:
    """Bit-packed samples: ``words`` (features, ceil(n/64)) uint64, word w bit b = sample 64 w + b."""

    def __init__(self, words, n):
        self.words, self.n = words, n

    def __repr__(self):
        return f"PackedBits(features={self.words.shape[0]}, n={self.n})"


class Circuit:
    """Discrete logic circuit (see the module doc for the IR). Validated on construction."""

    def __init__(self, in_dim, layers, k=None, tau=1.0):
        in_dim = check_int("in_dim", in_dim, 1)
        self._init_graph(in_dim, *_layers_to_graph(in_dim, layers), k, tau)

    @classmethod
    def from_graph(cls, in_dim, arity, sources, codes, outputs, k=None, tau=1.0):
        """General form: gate g has ``arity[g]`` sources, ``sources`` lists them gate after gate as
        node ids (< in_dim + g: inputs or earlier gates), ``codes[g]`` is its table code (row 0 the
        most significant bit), ``outputs`` are node ids."""
        self = cls.__new__(cls)
        self._init_graph(check_int("in_dim", in_dim, 1), arity, sources, codes, outputs, k, tau)
        return self

    def _init_graph(self, in_dim, arity, sources, codes, outputs, k, tau):
        arity, ptr, src, codes, outputs = _check_graph(in_dim, arity, sources, codes, outputs)
        if k is not None:
            k = check_int("k", k, 1)
            if outputs.shape[0] % k:
                raise ValueError(f"k: must divide the number of outputs {outputs.shape[0]}, got {k}")
        self.in_dim, self.arity, self.ptr, self.src = in_dim, arity, ptr, src
        self.codes, self.outputs = codes, outputs
        self.k, self.tau = k, check_float("tau", tau, 0.0, low_open=True)
        self.report, self._plan, self._levels = None, None, None
        self._enc, self._enc_key = None, None

    # -- structure ------------------------------------------------------------------------

    @property
    def num_gates(self):
        return int(self.arity.shape[0])

    @property
    def num_outputs(self):
        return int(self.outputs.shape[0])

    def sources(self, g):
        """Node ids gate g reads, first input first."""
        return self.src[self.ptr[g]:self.ptr[g + 1]]

    def table(self, g):
        """Truth table (2**arity,) uint8 of gate g."""
        return _code_to_table(int(self.codes[g]), int(self.arity[g]))

    def levels(self):
        """Level of each gate: 1 + the highest level among its sources (inputs are level 0)."""
        if self._levels is None:
            from .kernels.packed import gate_levels
            self._levels = gate_levels(self.in_dim, self.ptr, self.src)[self.in_dim:]
        return self._levels

    @property
    def depth(self):
        return int(self.levels().max()) if self.num_gates else 0

    def stats(self):
        """Gate count, depth, gates per level (level 1 first) and gates per arity."""
        lv = self.levels()
        return dict(in_dim=self.in_dim, gates=self.num_gates, outputs=self.num_outputs,
                    depth=self.depth, gates_per_level=np.bincount(lv)[1:].tolist(),
                    gates_per_arity={int(a): int(c) for a, c in
                                     zip(*np.unique(self.arity, return_counts=True))})

    def __repr__(self):
        return (f"Circuit(in_dim={self.in_dim}, gates={self.num_gates}, outputs={self.num_outputs}, "
                f"depth={self.depth}, k={self.k}, tau={self.tau})")

    # -- inference ------------------------------------------------------------------------

    def pack(self, x):
        """(batch, in_dim) bits (bool, or ints/floats equal to 0 or 1) -> PackedBits."""
        return pack_bits("x", x, self.in_dim)

    def evaluate(self, x):
        """Output bits (batch, num_outputs) bool for bits x (array or PackedBits)."""
        out = self.evaluate_packed(x)
        return unpack_bits(out.words, out.n).T

    def evaluate_packed(self, x, out=None):
        """Output bits as PackedBits (num_outputs, ceil(n / 64) words); bits past the batch are
        zero. ``out``: optional C-contiguous uint64 array of that shape to write into."""
        px = self._packed(x)
        shape = (self.num_outputs, -(-int(px.n) // 64))
        if out is not None and (not isinstance(out, np.ndarray) or out.shape != shape
                                or out.dtype != np.uint64 or not out.flags.c_contiguous):
            raise ValueError(f"out: expected a C-contiguous uint64 array of shape {shape}")
        words = self._run(px, 0, out)
        if px.n % 64:
            words[:, -1] &= np.uint64((1 << (px.n % 64)) - 1)
        return PackedBits(words, px.n)

    def scores(self, x):
        """(batch, k) int32: ones per group of outputs; model.eval().forward(x) == scores / tau."""
        if self.k is None:
            raise ValueError("scores: this circuit has no k (GroupSum); use evaluate() for bits")
        return self._run(self._packed(x), self.k)

    def predict(self, x):
        """(batch,) int64 class = argmax of scores; on ties the lowest class index wins (taken
        inside the kernel: no scores array)."""
        if self.k is None:
            raise ValueError("predict: this circuit has no k (GroupSum); use evaluate() for bits")
        return self._run(self._packed(x), self.k, mode=2)

    def scores_raw(self, x, encoder):
        """``scores(encoder.encode(x))`` with the encoding fused into the kernel: each block of
        samples is thermometer-coded and packed straight from the raw uint8 data (see
        ``pylgn.encoders``; any Encoder: uint8 data go through the fused kernel, other data
        through ``encoder.encode``); nothing of size (batch, in_dim) is built on the fused path."""
        return self._run_raw(x, encoder, 1)

    def predict_raw(self, x, encoder):
        """``predict(encoder.encode(x))`` from raw samples, fused like ``scores_raw``."""
        return self._run_raw(x, encoder, 2)

    def _run_raw(self, x, encoder, mode):
        from .encoders import Encoder
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder: expected a pylgn.encoders.Encoder (Thermometer, "
                            f"LearnedThermometer, QuantileEncoder), got {type(encoder)}")
        if encoder.in_dim != self.in_dim:
            raise ValueError(f"encoder: encodes {encoder.in_dim} features, the circuit reads "
                             f"{self.in_dim}")
        if self.k is None:
            raise ValueError("x: this circuit has no k (GroupSum); use evaluate() for bits")
        raw = encoder.raw_uint8(x)
        if raw is None:                       # floats, tables: the comparisons, then packing
            return self._run(self.pack(encoder.encode(x)), self.k, mode=mode)
        import numba
        from .encoders import words64
        from .kernels.packed import run_circuit
        if self._enc_key is not encoder:
            self._enc, self._enc_key = encoder.plan(_read_inputs(self)), encoder
        groups, vrow, ptr, entry, slot = self._enc
        enc = (groups, vrow, ptr, encoder.cut_table(x)[entry].astype(np.int64), slot)
        return run_circuit(None, raw.shape[0], self.plan(), self.k, numba.get_num_threads(),
                           mode=mode, raw=words64(raw), enc=enc)

    def plan(self):
        """The flat arrays the packed kernel runs (built once, cached)."""
        if self._plan is None:
            from .kernels.packed import make_plan
            self._plan = make_plan(self.in_dim, self.arity, self.ptr, self.src, self.codes,
                                   self.outputs)
        return self._plan

    def _packed(self, x):
        if isinstance(x, PackedBits):
            w = x.words
            if not isinstance(w, np.ndarray) or w.ndim != 2 or w.shape[0] != self.in_dim \
                    or w.dtype != np.uint64:
                raise ValueError(f"x: expected PackedBits of {self.in_dim} features (uint64 words)")
            if not isinstance(x.n, (int, np.integer)) or not 1 <= x.n <= 64 * w.shape[1]:
                raise ValueError(f"x: PackedBits declares n={x.n} samples, its {w.shape[1]} "
                                 f"words hold 1..{64 * w.shape[1]}")
            return x
        return self.pack(x)

    def _run(self, px, k, out=None, mode=None):
        import numba
        from .kernels.packed import run_circuit
        words = np.ascontiguousarray(px.words[:, :-(-int(px.n) // 64)])
        return run_circuit(words, int(px.n), self.plan(), k, numba.get_num_threads(), out,
                           mode=mode)

    # -- simplification ---------------------------------------------------------------------

    def simplify(self):
        """A new Circuit computing the same outputs with fewer gates; its ``report`` gives gate
        counts before/after (total and per level) and what each rule removed. See ``_simplify``."""
        return _simplify(self)

    # -- export -------------------------------------------------------------------------------

    def to_c(self, encoder=None, main=False, form="auto"):
        """One self-contained C file (bit-sliced uint64); see its header. With an ``encoder``
        (``pylgn.encoders``) it also holds ``pylgn_predict`` (raw samples -> classes), with
        ``main`` a main() that classifies raw float32 samples; ``form``: "lines", "tables" or
        "auto" (``pylgn.export.to_c_classifier``)."""
        from .export import STRAIGHT_LINE_LIMIT, to_c, to_c_classifier
        if encoder is None and not main and form == "auto" and \
                self.num_gates <= STRAIGHT_LINE_LIMIT:
            return to_c(self)
        return to_c_classifier(self, encoder, main=main, form=form)

    def to_verilog(self):
        """One combinational Verilog module; see its header comment."""
        from .export import to_verilog
        return to_verilog(self)

    # -- files ----------------------------------------------------------------------------------

    def save(self, path):
        """Write to an HDF5 file (atomically: temp file + rename) or into an open h5py Group."""
        import h5py
        if isinstance(path, h5py.Group):
            _write_group(self, path)
            return
        from ._io import atomic_path
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            _write_group(self, f)

    @classmethod
    def load(cls, path):
        """Read a circuit written by ``save`` (a path or an h5py Group)."""
        import h5py
        if isinstance(path, h5py.Group):
            return _read_group(cls, path)
        try:
            f = h5py.File(os.fspath(path), "r")
        except (OSError, TypeError) as e:
            raise ValueError(f"path: cannot read an HDF5 circuit from {path!r} ({e})") from None
        with f:
            try:
                return _read_group(cls, f)
            except (OSError, KeyError, TypeError, ValueError) as e:    # name the file
                raise ValueError(f"{os.fspath(path)}: not a valid pylgn circuit file: "
                                 f"{e}") from None


# -- construction and validation ------------------------------------------------------------

def _layers_to_graph(in_dim, layers):
    """Layer list -> (arity, sources, codes, outputs) with the global node numbering."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError("layers: expected a non-empty list of (connections, tables) pairs")
    arity, sources, codes = [], [], []
    prev_base, width, next_id = 0, in_dim, in_dim
    for i, item in enumerate(layers):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"layers[{i}]: expected a (connections, tables) pair")
        conn, tab = _check_layer(i, item[0], item[1], width)
        n, G = conn.shape
        arity.append(np.full(G, n, dtype=np.uint8))
        sources.append((conn.T.astype(np.int64) + prev_base).ravel())
        codes.append(gates.table_class(tab))
        prev_base, width, next_id = next_id, G, next_id + G
    outputs = np.arange(prev_base, next_id)
    return np.concatenate(arity), np.concatenate(sources), np.concatenate(codes), outputs


def _check_layer(i, conn, tab, width):
    conn, tab = np.asarray(conn), np.asarray(tab)
    if conn.dtype.kind not in "iu" or conn.ndim != 2 or not 1 <= conn.shape[0] <= 6 \
            or conn.shape[1] < 1:
        raise ValueError(f"layers[{i}]: connections must be an int array (arity 1..6, gates >= 1), "
                         f"got dtype {conn.dtype} shape {conn.shape}")
    if conn.min() < 0 or conn.max() >= width:
        raise ValueError(f"layers[{i}]: connections must lie in [0, {width}), got range "
                         f"[{conn.min()}, {conn.max()}]")
    n, G = conn.shape
    if tab.shape != (G, 2 ** n):
        raise ValueError(f"layers[{i}]: tables must have shape ({G}, {2 ** n}), got {tab.shape}")
    if tab.dtype.kind not in "biu" or not np.isin(tab, (0, 1)).all():
        raise ValueError(f"layers[{i}]: tables must hold 0/1 integers, got dtype {tab.dtype}")
    return conn, tab


def _check_graph(in_dim, arity, sources, codes, outputs):
    arity, src = _int_array("arity", arity), _int_array("sources", sources)
    codes, outputs = _int_array("codes", codes), _int_array("outputs", outputs)
    G = arity.shape[0]
    if G and (arity.min() < 1 or arity.max() > 6):
        raise ValueError("arity: values must lie in [1, 6]")
    ptr = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(arity, out=ptr[1:])
    if src.shape[0] != ptr[-1]:
        raise ValueError(f"sources: expected {ptr[-1]} entries (the sum of arity), "
                         f"got {src.shape[0]}")
    limit = in_dim + np.repeat(np.arange(G), arity)
    if src.shape[0] and (src.min() < 0 or (src >= limit).any()):
        raise ValueError("sources: gate g may read only inputs and gates before it "
                         "(node < in_dim + g)")
    if codes.shape[0] != G or (codes.shape[0] and codes.min() < 0):
        raise ValueError(f"codes: expected {G} non-negative table codes")
    codes = codes.astype(np.uint64)
    small = arity < 6
    if (codes[small] >> (np.uint64(1) << arity[small].astype(np.uint64))).any():
        raise ValueError("codes: a table code has more than 2**arity bits")
    if outputs.shape[0] < 1 or outputs.min() < 0 or outputs.max() >= in_dim + G:
        raise ValueError(f"outputs: expected >= 1 node ids in [0, {in_dim + G})")
    return arity.astype(np.uint8), ptr, src.astype(np.int32), codes, outputs.astype(np.int32)


def _int_array(name, a):
    a = np.asarray(a)
    if a.size == 0 and a.ndim == 1:
        return a.astype(np.int64)
    if a.dtype.kind not in "iu" or a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D integer array, got dtype {a.dtype} shape {a.shape}")
    return a


def _code_to_table(code, n):
    R = 1 << n
    return np.array([(code >> (R - 1 - r)) & 1 for r in range(R)], dtype=np.uint8)


def from_model(model):
    """Circuit of a Sequential: each LogicLayer's connections and discrete_table(), the GroupSum's
    k and tau. A layer type with a ``circuit_layers()`` method contributes its own (conn, tables).
    A leading input encoder (``model.encoder``) is left out: the circuit reads its bits."""
    from .layers import GroupSum
    to_host = model.backend.to_host
    layers, k, tau = [], None, 1.0
    encoder = model.encoder                    # its bits are the circuit's inputs
    for layer in model.layers:
        if layer is encoder:
            continue
        if isinstance(layer, GroupSum):
            k, tau = layer.k, layer.tau
        elif hasattr(layer, "circuit_layers"):
            layers.extend(layer.circuit_layers())
        else:
            layers.append((to_host(layer.connections), to_host(layer.discrete_table())))
    in_dim = encoder.out_dim if encoder is not None else model.in_dim
    return Circuit(in_dim, layers, k=k, tau=tau)


# -- bit packing ------------------------------------------------------------------------------

def pack_bits(name, x, width):
    """(batch, width) bits -> PackedBits (words (width, ceil(batch/64)) uint64, little bit order)."""
    x = x if hasattr(x, "dtype") else np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a bool/int/float array of bits, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != width or x.shape[0] < 1:
        raise ValueError(f"{name}: expected shape (batch >= 1, {width}), got {tuple(x.shape)}")
    if x.dtype.kind != "b" and not ((x == 0) | (x == 1)).all():
        raise ValueError(f"{name}: expected bits (values 0 or 1); threshold or encode the data first")
    n = x.shape[0]
    padded = np.zeros((width, -(-n // 64) * 64), dtype=bool)
    padded[:, :n] = x.T
    words = np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64, copy=False)
    return PackedBits(np.ascontiguousarray(words), n)


def unpack_bits(words, n):
    """(rows, words) uint64 -> (rows, n) bool: bit b of word w is sample 64 w + b."""
    w = np.ascontiguousarray(words).astype("<u8", copy=False).view(np.uint8)
    return np.unpackbits(w, axis=1, count=n, bitorder="little").astype(bool)


def _read_inputs(c):
    """Sorted ids of the circuit inputs some gate or output reads."""
    src = c.src[c.src < c.in_dim]
    outs = c.outputs[c.outputs < c.in_dim]
    return np.unique(np.concatenate([src, outs]).astype(np.int64))


# -- simplification -------------------------------------------------------------------------

def _simplify(c):
    """Rewrite every gate on its resolved sources, then drop what no output reads.

    A source resolves to a constant, or to a node of the new circuit, possibly negated. Rewriting
    gate g (``_rewrite``) folds constant sources into its table, absorbs negated sources (the
    table flipped along that input), merges repeated sources, sorts sources, and drops inputs the
    table ignores. Then: no input left -> constant; the identity of one source -> bypassed
    (readers use the source); its negation -> bypassed as a negated source (absorbed by readers,
    so NOT chains cancel); same sources and same (or complementary) table as a gate already
    kept -> merged. Constant or negated outputs get a one-input gate. Gates no output depends on
    are dropped. The result is a graph circuit (a gate may read any earlier node).
    """
    new = _Builder(c.in_dim)
    res = [(i, 0) for i in range(c.in_dim)]              # node -> (new node | -1, negated | const)
    counts = dict(constant=0, pass_through=0, negation=0, merged=0)
    for g in range(c.num_gates):
        ins = [res[s] for s in c.sources(g)]
        nodes, code = _rewrite(int(c.codes[g]), int(c.arity[g]), ins)
        if not nodes:
            res.append((-1, code & 1))
            counts["constant"] += 1
        elif len(nodes) == 1 and code in (1, 2):          # table 01 = identity, 10 = NOT
            res.append((nodes[0], int(code == 2)))
            counts["pass_through" if code == 1 else "negation"] += 1
        else:
            node, neg, merged = new.gate(nodes, code)
            res.append((node, neg))
            counts["merged"] += merged
    outputs = [new.materialize(*res[o]) for o in c.outputs]
    added = new.added
    out = new.build(outputs, c.k, c.tau)
    before, after = c.stats(), out.stats()
    out.report = dict(gates_before=c.num_gates, gates_after=out.num_gates,
                      depth_before=before["depth"], depth_after=after["depth"],
                      per_level_before=before["gates_per_level"],
                      per_level_after=after["gates_per_level"],
                      dead=new.num_gates - out.num_gates, outputs_materialized=added, **counts)
    return out


class _Builder:
    """Gates of the simplified circuit, deduplicated by (sources, table)."""

    def __init__(self, in_dim):
        self.in_dim, self.arity, self.src, self.codes, self.index = in_dim, [], [], [], {}
        self.added = 0

    @property
    def num_gates(self):
        return len(self.arity)

    def gate(self, nodes, code, complement=True):
        """(node, negated, merged?) of the gate computing ``code`` over ``nodes``; an existing gate
        with the complementary table is reused negated when ``complement``."""
        key = (tuple(nodes), code)
        if key in self.index:
            return self.index[key], 0, 1
        comp = (tuple(nodes), code ^ ((1 << (1 << len(nodes))) - 1))
        if complement and comp in self.index:
            return self.index[comp], 1, 1
        self.arity.append(len(nodes))
        self.src.extend(nodes)
        self.codes.append(code)
        self.index[key] = self.in_dim + len(self.arity) - 1
        return self.index[key], 0, 0

    def materialize(self, node, v):
        """Output node for a resolved value: the node, a NOT gate or a constant gate (reading
        input 0)."""
        if node >= 0 and not v:
            return node
        before = self.num_gates
        out, _, _ = self.gate([max(node, 0)], 2 if node >= 0 else 3 * v, complement=False)
        self.added += self.num_gates - before
        return out

    def build(self, outputs, k, tau):
        """Keep the gates the outputs depend on, renumbered in order."""
        ptr = np.concatenate([[0], np.cumsum(self.arity, dtype=np.int64)])
        live = _live_nodes(self.in_dim, ptr, np.asarray(self.src, dtype=np.int64), outputs)
        live[:self.in_dim] = True                    # inputs keep their ids
        new_id = np.cumsum(live) - 1
        keep = np.flatnonzero(live[self.in_dim:])
        src = np.asarray(self.src, dtype=np.int64)
        srcs = [new_id[src[ptr[g]:ptr[g + 1]]] for g in keep]
        return Circuit.from_graph(self.in_dim, np.asarray(self.arity, dtype=np.int64)[keep],
                                  np.concatenate(srcs) if srcs else np.zeros(0, np.int64),
                                  np.asarray(self.codes, dtype=np.uint64)[keep],
                                  new_id[np.asarray(outputs)], k=k, tau=tau)


def _live_nodes(in_dim, ptr, src, outputs):
    """Mask of the nodes some output depends on (a backward pass over the gates)."""
    live = np.zeros(in_dim + ptr.shape[0] - 1, dtype=bool)
    live[np.asarray(outputs)] = True
    for g in range(ptr.shape[0] - 2, -1, -1):
        if live[in_dim + g]:
            live[src[ptr[g]:ptr[g + 1]]] = True
    return live


def _rewrite(code, n, ins):
    """Table of gate ``code`` (n inputs) over its resolved sources ``ins`` = [(node | -1, v)], as a
    table over the sorted distinct nodes it really depends on. Row r' of the new table reads old
    row r with b_k = v (constant source) or b_k = bit of node_k in r' XOR v (negated source)."""
    nodes = sorted({nd for nd, _ in ins if nd >= 0})
    m = len(nodes)
    pos = {nd: m - 1 - i for i, nd in enumerate(nodes)}
    R, M = 1 << n, 1 << m
    new = 0
    for r2 in range(M):
        r = 0
        for nd, v in ins:
            r = (r << 1) | (v if nd < 0 else ((r2 >> pos[nd]) & 1) ^ v)
        new |= ((code >> (R - 1 - r)) & 1) << (M - 1 - r2)
    for i in range(m - 1, -1, -1):
        lo, hi = _restrict(new, m, i, 0), _restrict(new, m, i, 1)
        if lo == hi:
            new, m = lo, m - 1
            del nodes[i]
    return nodes, new


def _restrict(code, m, i, b):
    """Table over m-1 inputs: input i of an m-input table fixed to b."""
    p = m - 1 - i
    R, M = 1 << m, 1 << (m - 1)
    out = 0
    for r2 in range(M):
        r = ((r2 >> p) << (p + 1)) | (b << p) | (r2 & ((1 << p) - 1))
        out |= ((code >> (R - 1 - r)) & 1) << (M - 1 - r2)
    return out


# -- HDF5 -------------------------------------------------------------------------------------

def _write_group(c, f):
    f.attrs["format"], f.attrs["version"] = FORMAT, VERSION
    f.attrs["in_dim"], f.attrs["k"], f.attrs["tau"] = c.in_dim, c.k or 0, c.tau
    if c.report is not None:
        f.attrs["report"] = json.dumps(c.report)
    for key in ("arity", "src", "codes", "outputs"):
        f.create_dataset(key, data=getattr(c, key))


def _read_group(cls, f):
    if f.attrs.get("format") != FORMAT:
        raise ValueError(f"path: not a pylgn circuit (format attribute {f.attrs.get('format')!r})")
    if _attr(f, "version", numbers.Integral) != VERSION:
        raise ValueError(f"path: unsupported circuit version {f.attrs.get('version')!r}")
    k, in_dim = _attr(f, "k", numbers.Integral), _attr(f, "in_dim", numbers.Integral)
    tau = _attr(f, "tau", numbers.Real)
    try:
        data = {key: np.asarray(f[key]) for key in ("arity", "src", "codes", "outputs")}
        c = cls.from_graph(int(in_dim), data["arity"], data["src"], data["codes"],
                           data["outputs"], k=int(k) or None, tau=float(tau))
    except (KeyError, TypeError) as e:
        raise ValueError(f"path: corrupt circuit group ({e})") from None
    if "report" in f.attrs:
        try:
            c.report = json.loads(f.attrs["report"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"attribute 'report': expected JSON ({e})") from None
    return c


def _attr(f, name, kind):
    """Attribute ``name``, which must be a number of ``kind`` (ValueError naming it)."""
    if name not in f.attrs:
        raise ValueError(f"missing attribute {name!r}")
    value = f.attrs[name]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind):
        raise ValueError(f"attribute {name!r}: expected "
                         f"{'an int' if kind is numbers.Integral else 'a number'}, got {value!r}")
    return value


from .encoders import Thermometer, words64 as _words64  # noqa: E402,F401 (re-exported)
