import numpy as np
import pytest

from pylgn import gates


def eval_expr(expr, a, b):
    """Evaluate a C-style gate expression on ints; bit 0 of the result is the gate output."""
    return eval(expr, {}, {"a": a, "b": b}) & 1


@pytest.mark.parametrize("gate_id", range(16))
def test_table_matches_expression(gate_id):
    table = gates.gate_table(gate_id)
    expr = gates.GATE_EXPRS[gate_id]
    for r, (a, b) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert table[r] == eval_expr(expr, a, b), (gate_id, expr, a, b)
    assert gates.table_to_id(table) == gate_id


def test_named_gates():
    assert list(gates.gate_table(3)) == [0, 0, 1, 1]        # A: first input = high bit
    assert list(gates.gate_table(5)) == [0, 1, 0, 1]        # B
    assert gates.GATE_NAMES[6] == "XOR" and list(gates.gate_table(6)) == [0, 1, 1, 0]
    assert np.array_equal(gates.OP_TABLES[1], [0, 0, 0, 1])


def test_negation_pairs():
    for i in range(16):
        assert np.array_equal(gates.gate_table(15 - i), 1 - gates.gate_table(i))


@pytest.mark.parametrize("n", range(1, 7))
def test_tables_any_arity(n):
    bits = gates.input_bits(n)
    assert bits.shape == (2 ** n, n)
    for k in range(n):
        assert np.array_equal(gates.pass_through_table(n, k), bits[:, k])
    assert np.array_equal(gates.and_table(n), bits.all(axis=1))
    assert np.array_equal(gates.or_table(n), bits.any(axis=1))


def test_table_from_string_and_class():
    t = gates.table_from_string("0110", 2)
    assert gates.table_class(t[None])[0] == 6
    with pytest.raises(ValueError, match="init_target"):
        gates.table_from_string("012", 2)
