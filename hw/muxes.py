"""Small multiplexer (and reduction) helpers shared by the blocks. They build plain expressions (continuous
assignments in the Verilog), never comb ``If`` blocks: an ``always`` block whose inputs never change stays X at
time 0 in some event-driven simulators."""

from amaranth.hdl import Mux


__all__ = ["select", "any_of", "balanced_sum", "lowest_set_bit"]


def select(signals, index, lo=0, hi=None):
    """``signals[index]`` for a dynamic ``index`` known to lie in ``lo .. hi``, as a multiplexer chain."""
    hi = len(signals) - 1 if hi is None else hi
    result = signals[lo]
    for k in range(lo + 1, hi + 1):
        result = Mux(index == k, signals[k], result)
    return result


def any_of(values):
    """The OR of ``values`` (0 for none)."""
    result = 0
    for value in values:
        result = result | value
    return result


def balanced_sum(terms):
    """The sum of ``terms`` (at least one) as a balanced tree of adds: depth ceil(log2(len(terms)))."""
    terms = list(terms)
    while len(terms) > 1:
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]


def lowest_set_bit(value, width):
    """Index of the lowest set bit of ``value`` (0 when none)."""
    result = 0
    for i in reversed(range(width)):
        result = Mux(value[i], i, result)
    return result
