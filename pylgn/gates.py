"""Gate algebra: the 16 two-input gates, truth tables of any arity, OP -> table projection.

Truth-table rows are ordered by the row index ``r = sum_k b_k * 2**(n-1-k)``: the first input is the
high bit, so for two inputs the rows are 00, 01, 10, 11. A two-input gate's id (0..15) is its
truth table read as a binary number with row 00 as the most significant bit: id 3 = ``0011`` = A,
id 6 = ``0110`` = XOR, id 7 = ``0111`` = OR.
"""
import numpy as np

#: (id, name, C-style expression over ``a`` and ``b``) for the 16 two-input gates.
GATES = (
    (0, "FALSE", "0"),
    (1, "AND", "a & b"),
    (2, "A_AND_NOT_B", "a & ~b"),
    (3, "A", "a"),
    (4, "NOT_A_AND_B", "~a & b"),
    (5, "B", "b"),
    (6, "XOR", "a ^ b"),
    (7, "OR", "a | b"),
    (8, "NOR", "~(a | b)"),
    (9, "XNOR", "~(a ^ b)"),
    (10, "NOT_B", "~b"),
    (11, "B_IMPLIES_A", "a | ~b"),
    (12, "NOT_A", "~a"),
    (13, "A_IMPLIES_B", "~a | b"),
    (14, "NAND", "~(a & b)"),
    (15, "TRUE", "~0"),
)
GATE_NAMES = tuple(name for _, name, _ in GATES)
GATE_EXPRS = tuple(expr for _, _, expr in GATES)


def gate_table(gate_id):
    """Truth table (4,) uint8 of a two-input gate id: row r is bit (3 - r) of the id."""
    return np.array([(gate_id >> (3 - r)) & 1 for r in range(4)], dtype=np.uint8)


#: OP_TABLES[i, r]: output of gate i on row r; the OP projection omega = softmax(logits) @ OP_TABLES.
OP_TABLES = np.stack([gate_table(i) for i in range(16)]).astype(np.float64)


def table_from_string(s, arity):
    """Truth table (2**arity,) uint8 from a string of '0'/'1' characters, one per row."""
    if not isinstance(s, str) or len(s) != 2 ** arity or set(s) - {"0", "1"}:
        raise ValueError(f"init_target: expected {2 ** arity} characters of 0/1 for arity "
                         f"{arity}, got {s!r}")
    return np.array([int(c) for c in s], dtype=np.uint8)


def input_bits(arity):
    """(2**arity, arity) uint8: bit b_k of each row, first input first."""
    rows = np.arange(2 ** arity)
    return ((rows[:, None] >> (arity - 1 - np.arange(arity))[None, :]) & 1).astype(np.uint8)


def pass_through_table(arity, k):
    """Truth table of the gate that outputs its k-th input."""
    return input_bits(arity)[:, k].copy()


def and_table(arity):
    """Truth table of the n-input AND (1 only on the all-ones row)."""
    t = np.zeros(2 ** arity, dtype=np.uint8)
    t[-1] = 1
    return t


def or_table(arity):
    """Truth table of the n-input OR (0 only on the all-zeros row)."""
    t = np.ones(2 ** arity, dtype=np.uint8)
    t[0] = 0
    return t


def table_to_id(table):
    """Two-input truth table (4,) -> gate id 0..15."""
    return int(sum(int(v) << (3 - r) for r, v in enumerate(table)))


def table_class(tables):
    """Integer code of each truth table (rows as bits, row 0 most significant); shape (gates,)."""
    tables = np.asarray(tables, dtype=np.uint64)
    n_rows = tables.shape[1]
    weights = np.uint64(1) << np.arange(n_rows - 1, -1, -1, dtype=np.uint64)
    return (tables * weights).sum(axis=1)
