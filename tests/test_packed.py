"""Bit-packed circuit kernel (pylgn.kernels.packed) against a plain-numpy circuit evaluator."""
import numpy as np
import pytest

from pylgn import gates
from pylgn.circuit import Circuit, PackedBits, pack_bits, unpack_bits
from pylgn.kernels import packed


def numpy_eval(c, xbits):
    """Output bits (batch, outputs) of circuit c node by node: gate = table[sum_k b_k 2**(n-1-k)]."""
    vals = [xbits[:, i].astype(np.int64) for i in range(c.in_dim)]
    for g in range(c.num_gates):
        n, code = int(c.arity[g]), int(c.codes[g])
        row = np.zeros(xbits.shape[0], dtype=np.int64)
        for s in c.src[c.ptr[g]:c.ptr[g + 1]]:
            row = 2 * row + vals[s]
        table = np.array([(code >> ((1 << n) - 1 - r)) & 1 for r in range(1 << n)])
        vals.append(table[row])
    return np.stack([vals[o] for o in c.outputs], axis=1).astype(bool)


def numpy_scores(c, xbits):
    """Ones per group of k contiguous outputs."""
    y = numpy_eval(c, xbits)
    return y.reshape(y.shape[0], c.k, -1).sum(axis=2)


def random_layers(rng, in_dim, widths, arities, special=0.0):
    """Layered circuit description; a fraction ``special`` of the tables are constant or
    pass-through (the kernel's short-cuts)."""
    layers, w = [], in_dim
    for G, n in zip(widths, arities):
        tab = rng.integers(0, 2, size=(G, 2 ** n)).astype(np.uint8)
        for g in np.flatnonzero(rng.random(G) < special):
            kind = rng.integers(0, 3)
            tab[g] = (gates.pass_through_table(n, rng.integers(0, n)) if kind == 2 else kind)
        layers.append((rng.integers(0, w, size=(n, G)), tab))
        w = G
    return layers


def random_graph(rng, in_dim, n_gates, n_out, k=None):
    """A graph circuit: gate g of random arity reads any earlier node; outputs anywhere."""
    arity = rng.integers(1, 7, size=n_gates)
    src = np.concatenate([rng.integers(0, in_dim + g, size=a) for g, a in enumerate(arity)])
    codes = rng.integers(0, 2 ** 64, size=n_gates, dtype=np.uint64) >> (
        np.uint64(64) - (np.uint64(1) << arity.astype(np.uint64)))
    outputs = rng.integers(0, in_dim + n_gates, size=n_out)
    return Circuit.from_graph(in_dim, arity, src, codes, outputs, k=k)


def all_inputs(n):
    return ((np.arange(2 ** n)[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(bool)


def test_every_two_input_gate_and_one_input_gate():
    x = all_inputs(2)
    tabs = np.stack([gates.gate_table(i) for i in range(16)])
    c = Circuit(2, [(np.tile([[0], [1]], 16), tabs)])
    assert np.array_equal(c.evaluate(x).T, tabs.astype(bool))
    one = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.uint8)
    c1 = Circuit(2, [(np.array([[1, 1, 1, 1]]), one)])
    assert np.array_equal(c1.evaluate(x).T, one[:, x[:, 1].astype(int)].astype(bool))


@pytest.mark.parametrize("arity", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("batch", [1, 63, 64, 65, 200, 1100])
def test_layers_every_arity_match_numpy(arity, batch):
    rng = np.random.default_rng(arity * 100 + batch)
    c = Circuit(12, random_layers(rng, 12, [40, 30, 20], [arity, 2, arity], special=0.3), k=4)
    x = rng.integers(0, 2, size=(batch, 12)).astype(bool)
    assert np.array_equal(c.evaluate(x), numpy_eval(c, x))
    assert np.array_equal(c.scores(x), numpy_scores(c, x))
    assert np.array_equal(c.predict(x), np.argmax(numpy_scores(c, x), axis=1))
    s = c.simplify()
    assert np.array_equal(s.scores(x), numpy_scores(c, x))
    assert np.array_equal(s.predict(x), c.predict(x))
    words = c.evaluate_packed(x).words
    assert words.shape == (20, -(-batch // 64))
    out = np.full(words.shape, 7, dtype=np.uint64)
    assert c.evaluate_packed(x, out=out).words is out and np.array_equal(out, words)
    with pytest.raises(ValueError, match="out"):
        c.evaluate_packed(x, out=out[:, :0])
    if batch % 64:                                        # the tail past the batch is masked
        assert not (words[:, -1] >> np.uint64(batch % 64)).any()


def test_graph_circuits_exhaustive():
    for seed in range(6):
        rng = np.random.default_rng(seed)
        c = random_graph(rng, 9, 120, 30, k=3)
        x = all_inputs(9)
        assert np.array_equal(c.evaluate(x), numpy_eval(c, x))
        assert np.array_equal(c.scores(x), numpy_scores(c, x))


@pytest.mark.parametrize("words", [1, 2, 3, 8, 32])
def test_block_width_and_ranges_do_not_change_results(words):
    """run_blocks over any block width, the blocks split in uneven ranges, equals numpy."""
    rng = np.random.default_rng(words)
    c = random_graph(rng, 16, 300, 40, k=5)
    x = rng.integers(0, 2, size=(777, 16)).astype(bool)
    px, p = c.pack(x), c.plan()
    scores = np.empty((777, 5), dtype=np.int32)
    bits = np.empty((40, px.words.shape[1]), dtype=np.uint64)
    nb = -(-px.words.shape[1] // words)
    cuts = sorted({0, nb, *rng.integers(0, nb + 1, size=3).tolist()})
    for k in (5, 0):
        for b0, b1 in zip(cuts[:-1], cuts[1:]):
            buf = packed.aligned_empty((p["n_slots"], words))
            assert buf.ctypes.data % 64 == 0
            packed.run_blocks(px.words, np.zeros((0, 1), np.uint8), packed._empty_enc(), px.n,
                              b0, b1, buf, packed.aligned_empty((32, words)),
                              packed.aligned_empty((packed.MAX_LEVELS, words)), p["op"],
                              p["ptr"], p["src"], p["dst"], p["arity"], p["table"], p["out"], k,
                              int(k > 0), bits, scores, np.empty(1, np.int64))
    assert np.array_equal(scores, numpy_scores(c, x))
    assert np.array_equal(unpack_bits(bits, 777).T, numpy_eval(c, x))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_do_not_change_results(threads):
    rng = np.random.default_rng(threads)
    c = random_graph(rng, 16, 200, 30, k=3)
    x = rng.integers(0, 2, size=(5000, 16)).astype(bool)
    px = c.pack(x)
    assert np.array_equal(packed.run_circuit(px.words, px.n, c.plan(), 3, threads),
                          numpy_scores(c, x))


@pytest.mark.parametrize("group", [1, 2, 3, 5, 64, 255, 1000])
def test_group_counts_any_group_size(group):
    """The carry-save counter against a plain sum, group sizes 1 .. 1000 (up to 10 planes)."""
    rng = np.random.default_rng(group)
    k = 3
    p_one = rng.random(k * group)                     # biased bits: counts spread over the range
    c = Circuit(k * group, [(np.arange(k * group)[None, :], np.tile([[0, 1]], (k * group, 1)))],
                k=k)
    x = rng.random((150, k * group)) < p_one
    assert np.array_equal(c.scores(x), x.reshape(150, k, group).sum(axis=2))
    assert np.array_equal(c.scores(np.ones((3, k * group), bool)), np.full((3, k), group))


def test_opcodes_shortcuts():
    """Constant and pass-through tables of any arity map to the two-input opcodes 0, 15 and 3."""
    for n in range(3, 7):
        tabs = [np.zeros(2 ** n, np.uint8), np.ones(2 ** n, np.uint8)]
        tabs += [gates.pass_through_table(n, k) for k in range(n)]
        tabs.append(gates.and_table(n))
        op, which = packed.opcodes(np.full(len(tabs), n, np.uint8), gates.table_class(tabs))
        assert op.tolist() == [0, 15] + [3] * n + [packed.OP_GENERIC]
        assert which.tolist() == [0, 0] + list(range(n)) + [0]


def test_slots_are_reused():
    rng = np.random.default_rng(0)
    c = Circuit(50, random_layers(rng, 50, [400] * 5, [2] * 5))
    assert c.plan()["n_slots"] < 50 + 2 * 400 + 40
    x = rng.integers(0, 2, size=(300, 50)).astype(bool)
    assert np.array_equal(c.evaluate(x), numpy_eval(c, x))


def test_block_words():
    budget = 8 << 20
    assert packed.block_words(1000, 10 ** 6, 2, budget) == packed.MAX_WORDS
    assert packed.block_words(10 ** 6, 10 ** 6, 2, budget) == 1
    assert packed.block_words(1000, 4, 2, budget) == 2       # every thread gets a block
    assert packed.block_words(4096, 10 ** 6, 1, 4096 * 8 * 8) == 8   # scratch fits the budget
    l2, l3 = packed.cache_sizes()
    assert l2 >= 64 << 10 and l3 >= l2 and packed.default_budget() >= l2


def test_pack_roundtrip_and_bad_bits():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, size=(130, 7)).astype(bool)
    px = pack_bits("x", x, 7)
    assert px.words.shape == (7, 3) and px.words.dtype == np.uint64
    assert np.array_equal(unpack_bits(px.words, 130).T, x)
    assert int(px.words[2, 0]) == sum(int(x[s, 2]) << s for s in range(64))
    for bad, err in ((x.astype(float) * 0.5, ValueError), (x[:, :6], ValueError),
                     (x[0], ValueError), (x.astype(str), TypeError),
                     (np.full((2, 7), np.nan), ValueError), (x.astype(int) * 2, ValueError)):
        with pytest.raises(err, match="x"):
            pack_bits("x", bad, 7)


def test_packedbits_declaring_more_samples_than_words_is_rejected():
    c = Circuit(5, random_layers(np.random.default_rng(0), 5, [8], [2]), k=2)
    px = c.pack(np.zeros((70, 5), bool))                    # 2 words
    for n in (129, 0, -1, 2.5):
        with pytest.raises(ValueError, match="x"):
            c.scores(PackedBits(px.words, n))
    with pytest.raises(ValueError, match="x"):
        c.predict(PackedBits(px.words.astype(np.int64), 70))
    assert c.scores(PackedBits(px.words, 3)).shape == (3, 2)  # fewer samples than words: fine
    assert c.evaluate_packed(PackedBits(px.words, 3)).words.shape == (8, 1)

