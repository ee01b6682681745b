import random

import pytest

from golden.pdfa_schedule import (Engine, Layer, TableError, check_table, mlp, op_matrix, program, schedule,
                                  simulate)


def weight_versions_ok(table, sched, pipelined):
    """The training model's weight-version rule, checked on the issue and done cycles of every operation
    (a WG writes its update on its done cycle): FF(l, t) reads v_{t-s}, so it starts after WG(l, t-1-s) is
    done and is done before WG(l, t-s) is; a BP EP(l-1, t) reads W_l after WG(l, t-1) and before WG(l, t).
    When pipelined, FF(l, t) overwrites the activation buffer WG(l+1, t-2) reads."""
    s = 1 if pipelined else 0
    at = {(op.engine, op.layer, op.sample): op for op in sched.ops}
    for op in sched.ops:
        if op.engine == "FF":
            before, after = at.get(("WG", op.layer, op.sample - 1 - s)), at.get(("WG", op.layer, op.sample - s))
        elif op.engine == "EP" and table[op.layer].feedback == "bp":
            before = at.get(("WG", op.layer + 1, op.sample - 1))
            after = at.get(("WG", op.layer + 1, op.sample))
        else:
            continue
        assert before is None or before.end < op.start, (op, before)
        assert after is None or op.end < after.end, (op, after)
        if op.engine == "FF" and pipelined and ("WG", op.layer + 1, op.sample - 2) in at:
            assert at[("WG", op.layer + 1, op.sample - 2)].end < op.start


def data_flow_ok(table, sched):
    """Every operation starts after its inputs are done: the activations of FF(l-1, t), the error of
    FF(L-1, t) or of the EP above, a WG's own error."""
    at = {(op.engine, op.layer, op.sample): op for op in sched.ops}
    last = len(table) - 1
    for op in sched.ops:
        l, t = op.layer, op.sample
        needs = []
        if op.engine == "FF" and l:
            needs.append(("FF", l - 1, t))
        if op.engine == "EP":
            needs.append(("FF", last, t))
            if table[l].feedback == "bp" and l + 1 < last:
                needs.append(("EP", l + 1, t))
        if op.engine == "WG":
            needs.append(("EP", l, t) if l < last else ("FF", last, t))
        for need in needs:
            assert at[need].end < op.start, (op, need)


@pytest.mark.parametrize("algorithm", ["bp", "dfa", "pdfa"])
@pytest.mark.parametrize("sizes", [[16, 8], [64, 32, 10], [64, 48, 32, 16, 10]])
def test_rules_and_engine_order(algorithm, sizes):
    sched = schedule(sizes, 6, algorithm=algorithm, batch=2, ff=Engine(8, 3), ep=Engine(4, 1), wg=Engine(16, 2))
    table = mlp(sizes, feedback="bp" if algorithm == "bp" else "dfa")
    weight_versions_ok(table, sched, algorithm == "pdfa")
    data_flow_ok(table, sched)
    layers = len(sizes) - 1
    for engine in ("FF", "EP", "WG"):
        ops = sorted((op for op in sched.ops if op.engine == engine), key=lambda op: op.start)
        assert [(op.layer, op.sample) for op in ops] == program(engine, layers, 6, pipelined=algorithm == "pdfa")
        for a, b in zip(ops, ops[1:]):
            assert b.start > a.end                      # one operation at a time
        assert sched.busy[engine] == sum(op.end - op.start + 1 for op in ops)
        assert sched.busy[engine] + sched.stall[engine] + sched.idle[engine] == sched.cycles
    assert sched.cycles == max(op.end for op in sched.ops) + 1


def test_mixed_table_and_ready_pattern():
    # Hybrid BP/DFA layers, random engine latencies and random back-pressure: the rules still hold, stalls
    # are exactly the offered-but-not-ready cycles.
    rng = random.Random(3)
    table = [Layer(12, 9, "dfxp4", "bp"), Layer(9, 7, "dfxp16", "dfa"), Layer(7, 5, "sefp8", "bp"),
             Layer(5, 3)]
    durations = {}
    patterns = {e: [rng.random() < 0.6 for _ in range(5000)] for e in ("FF", "EP", "WG")}

    def duration(engine, layer, sample):
        return durations.setdefault((engine, layer, sample), rng.randint(1, 9))
    sched = simulate(table, 5, duration=duration, ready=lambda e, c: patterns[e][c])
    weight_versions_ok(table, sched, False)
    data_flow_ok(table, sched)
    for op in sched.ops:
        assert patterns[op.engine][op.start] and op.end - op.start == durations[(op.engine, op.layer, op.sample)]
    assert sum(sched.stall.values()) > 0


def test_durations_and_precision():
    sched = schedule([10, 6, 4], 1, algorithm="bp", batch=3, ff=Engine(7, 2), ep=Engine(5, 1), wg=Engine(9))
    d = {(op.engine, op.layer): op.end - op.start for op in sched.ops}
    assert d[("FF", 0)] == 2 + -(-10 * 6 * 3 // 7) and d[("FF", 1)] == 2 + -(-6 * 4 * 3 // 7)
    assert d[("EP", 0)] == 1 + -(-6 * 4 * 3 // 5)          # W_1^T d_1: 6 x 4 MACs per column
    assert d[("WG", 0)] == -(-10 * 6 * 3 // 9)
    dfa = schedule([10, 6, 4], 1, algorithm="dfa", batch=3, ep=Engine(5, 1), precision="dfxp16")
    assert [op.end - op.start for op in dfa.ops if op.engine == "EP"] == [1 + -(-6 * 4 * 3 // 5)]
    assert [op.end - op.start for op in dfa.ops if op.engine == "FF"][0] == -(-10 * 6 * 3 * 4 // 64)
    four = schedule([64, 64], 1, algorithm="dfa", precision="dfxp4")
    assert [op.end - op.start for op in four.ops] == [16, 16]  # FF and WG of 4096 4-bit MACs at 256/cycle
    assert op_matrix(mlp([10, 6, 4], feedback="bp"), "EP", 0) == (6, 4, "dfxp8")
    assert op_matrix(mlp([10, 6, 4, 3]), "EP", 1) == (4, 3, "dfxp8")


def test_pipelined_overlap_is_layer_by_layer():
    # Pipelined, the WG engine computes WG(l, t) while FF(l, t+1) reads the same weights, then commits.
    sched = schedule([32, 32, 32, 32, 10], 6, algorithm="pdfa")
    at = {(op.engine, op.layer, op.sample): op for op in sched.ops}
    assert any(at[("WG", l, t)].start < at[("FF", l, t + 1)].end for l in range(4) for t in range(5))
    assert all(at[("FF", l, t + 1)].end < at[("WG", l, t)].end for l in range(4) for t in range(5))
    serial_bp = schedule([32, 32, 32, 32, 10], 6, algorithm="bp", serial=True)
    assert serial_bp.cycles / sched.cycles > 2


def test_handshake_timing():
    # One layer, one sample, unit durations: FF issued at 0 and done at 1, WG offered at 2, done at 3.
    sched = simulate([Layer(1, 1)], 1, duration=lambda *op: 1)
    assert [(op.engine, op.start, op.end) for op in sched.ops] == [("FF", 0, 1), ("WG", 2, 3)]
    assert sched.cycles == 4 and sched.busy == {"FF": 2, "EP": 0, "WG": 2}
    assert simulate([Layer(1, 1)], 0).cycles == 0


def test_pipelining_overlaps_samples():
    sizes = [64, 64, 64, 10]
    bp = schedule(sizes, 8, algorithm="bp")
    pdfa = schedule(sizes, 8, algorithm="pdfa")
    dfa = schedule(sizes, 8, algorithm="dfa")
    serial = schedule(sizes, 8, algorithm="bp", serial=True)

    def overlaps(sched):
        ends = {(op.engine, op.layer, op.sample): op.end for op in sched.ops}
        return any(op.engine == "FF" and op.sample > 0 and op.start < ends[("WG", op.layer, op.sample - 1)]
                   for op in sched.ops)
    assert not overlaps(bp) and not overlaps(dfa) and overlaps(pdfa)
    assert pdfa.cycles < dfa.cycles < bp.cycles < serial.cycles
    assert all(0 < u <= 1 for u in pdfa.utilization().values())


@pytest.mark.parametrize("table, kwargs, message", [
    ([], {}, "layer table must have at least one layer, not 0"),
    (mlp([4, 4, 4]), dict(max_layers=1), "layer table has 2 layers; the controller was built for at most 1"),
    ([Layer(0, 4)], {}, "layer 0 n_in must be a positive integer, not 0"),
    ([Layer(4, 70000)], dict(size_limit=65535), "layer 0 n_out must be at most 65535, not 70000"),
    ([Layer(4, 4, "fp16")], {}, "layer 0 precision must be one of"),
    ([Layer(4, 4, "dfxp4")], dict(precisions=("dfxp8",)), "layer 0 precision must be one of \\['dfxp8'\\]"),
    ([Layer(4, 4, feedback="fa")], {}, "layer 0 feedback must be 'bp' or 'dfa', not 'fa'"),
    ([Layer(4, 4, lr_shift=16)], {}, "layer 0 lr_shift must be an integer in \\[0, 15\\], not 16"),
    ([Layer(4, 5), Layer(4, 3)], {}, "layer 1 n_in must equal layer 0 n_out \\(5\\), not 4"),
    (mlp([4, 4, 4], feedback="bp"), dict(pipelined=True), "layer 0 is BP"),
])
def test_table_wrong(table, kwargs, message):
    with pytest.raises(TableError, match=message):
        check_table(table, **kwargs)


def test_table_right():
    # The last layer's feedback is never used: no EP computes the output error.
    assert check_table([Layer(4, 4), Layer(4, 4, feedback="bp")], pipelined=True)


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
