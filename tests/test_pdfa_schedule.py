import pytest

from golden.pdfa_schedule import Engine, schedule


def ref_dependencies(sizes, algorithm, staleness):
    """The dependency rules of golden.pdfa_schedule, restated: (engine, layer, sample) -> its inputs."""
    layers = len(sizes) - 1
    s = staleness if algorithm == "pdfa" else 0

    def deps(engine, l, t):
        out = ("FF", layers - 1, t)
        if engine == "FF":
            return [d for d in (("FF", l - 1, t), ("WG", l, t - 1 - s)) if d[1] >= 0 and d[2] >= 0]
        if engine == "EP":
            if algorithm == "bp":
                return [("EP", l + 1, t) if l + 1 < layers - 1 else out]
            return [out]
        result = [("EP", l, t) if l < layers - 1 else out]
        if algorithm == "bp" and l >= 1:
            result.append(("EP", l - 1, t))
        return result
    return deps


@pytest.mark.parametrize("algorithm", ["bp", "dfa", "pdfa"])
@pytest.mark.parametrize("sizes", [[16, 8], [64, 32, 10], [64, 48, 32, 16, 10]])
def test_dependencies_and_engine_order(algorithm, sizes):
    sched = schedule(sizes, 6, algorithm=algorithm, batch=2, ff=Engine(8, 3), ep=Engine(4, 1), wg=Engine(16, 2))
    by_key = {(op.engine, op.layer, op.sample): op for op in sched.ops}
    deps = ref_dependencies(sizes, algorithm, 1)
    for op in sched.ops:
        for d in deps(op.engine, op.layer, op.sample):
            assert op.start >= by_key[d].end, (op, d)
    layers = len(sizes) - 1
    program = {
        "FF": [(l, t) for t in range(6) for l in range(layers)],
        "EP": [(l, t) for t in range(6) for l in range(layers - 2, -1, -1)],
        "WG": [(l, t) for t in range(6) for l in range(layers - 1, -1, -1)],
    }
    for engine, order in program.items():
        ops = sorted((op for op in sched.ops if op.engine == engine), key=lambda op: op.start)
        assert [(op.layer, op.sample) for op in ops] == order
        for a, b in zip(ops, ops[1:]):
            assert b.start >= a.end                      # one operation at a time
        assert sched.busy[engine] == sum(op.end - op.start for op in ops)


def test_durations():
    sched = schedule([10, 6, 4], 1, algorithm="bp", batch=3, ff=Engine(7, 2), ep=Engine(5, 1), wg=Engine(9))
    d = {(op.engine, op.layer): op.end - op.start for op in sched.ops}
    assert d[("FF", 0)] == 2 + -(-10 * 6 * 3 // 7) and d[("FF", 1)] == 2 + -(-6 * 4 * 3 // 7)
    assert d[("EP", 0)] == 1 + -(-6 * 4 * 3 // 5)          # W_1^T d_1: 6 x 4 MACs per column
    assert d[("WG", 0)] == -(-10 * 6 * 3 // 9)
    dfa = schedule([10, 6, 4], 1, algorithm="dfa", batch=3, ep=Engine(5, 1))
    assert [op.end - op.start for op in dfa.ops if op.engine == "EP"] == [1 + -(-6 * 4 * 3 // 5)]


def test_pipelining_overlaps_samples():
    sizes = [64, 64, 64, 10]
    bp = schedule(sizes, 8, algorithm="bp")
    pdfa = schedule(sizes, 8, algorithm="pdfa", staleness=1)
    dfa = schedule(sizes, 8, algorithm="dfa")

    def overlaps(sched):
        ends = {(op.engine, op.layer, op.sample): op.end for op in sched.ops}
        return any(op.engine == "FF" and op.sample > 0 and op.start < ends[("WG", op.layer, op.sample - 1)]
                   for op in sched.ops)
    assert not overlaps(bp) and not overlaps(dfa) and overlaps(pdfa)
    assert pdfa.cycles < dfa.cycles < bp.cycles
    assert all(0 < u <= 1 for u in pdfa.utilization().values())


@pytest.mark.parametrize("kwargs, message", [
    (dict(sizes=[8]), "Layer sizes must be at least two positive integers"),
    (dict(sizes=[8, 4], algorithm="sgd"), "Algorithm must be one of"),
    (dict(sizes=[8, 4], samples=0), "Sample count must be a positive integer, not 0"),
])
def test_wrong(kwargs, message):
    kwargs.setdefault("samples", 2)
    with pytest.raises(ValueError, match=message):
        schedule(**kwargs)


def test_engine_wrong():
    with pytest.raises(ValueError, match="Engine throughput must be a positive integer, not 0"):
        Engine(0)
    with pytest.raises(ValueError, match="Engine latency must be a non-negative integer, not -1"):
        Engine(4, -1)
