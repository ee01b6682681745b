"""The scoreboard of the PDFA controller, shared by the cocotb bench and the amaranth.sim tests.

A run is observed as: the ``status`` payload, per engine the list of ``(issue cycle, done cycle, command
fields)`` in issue order, the ``(busy, stall, idle)`` counters, and the command ``ready`` the engine models
drove on every cycle (cycle 0 is the one after the ``start`` transfer). :func:`check_run` replays the run in
:func:`golden.pdfa_schedule.simulate` with the same durations and ready patterns and compares every issue
cycle, done cycle, command field and counter.
"""

from golden.pdfa_schedule import ENGINES, PRECISIONS, Error, Layer, op_matrix, simulate


__all__ = ["COMMAND_FIELDS", "check_run", "random_table", "random_durations"]

COMMAND_FIELDS = ("layer", "sample", "rows", "cols", "precision", "feedback", "lr_shift")


def random_table(rng, layers, *, pipelined, size, precisions=PRECISIONS):
    """A chained table of ``layers`` random layers (sizes 1 to ``size``), BP or DFA at random unless
    ``pipelined`` (then DFA), any of ``precisions``, any learning-rate shift."""
    sizes = [rng.randint(1, size) for _ in range(layers + 1)]
    return [Layer(a, b, rng.choice(precisions), "dfa" if pipelined or rng.random() < 0.5 else "bp",
                  rng.randint(0, 15)) for a, b in zip(sizes, sizes[1:])]


def random_durations(rng, *, low=1, high):
    """``duration(engine, layer, sample)``: a random number of cycles in ``low .. high``, drawn once per
    operation (the engine models and the golden replay must see the same)."""
    durations = {}

    def duration(engine, layer, sample):
        return durations.setdefault((engine, int(layer), int(sample)), rng.randint(low, high))
    return duration


def check_run(table, samples, *, pipelined, serial, error, cycles, trace, counters, ready, duration):
    """Assert the observed run equals the golden schedule; ``trace[engine]`` items are
    ``(issue, done, fields)`` with ``fields`` a dict of :data:`COMMAND_FIELDS`."""
    assert error == Error.NONE, f"status error {Error(error).name} for a good table"
    want = simulate(table, samples, pipelined=pipelined, serial=serial, duration=duration,
                    ready=lambda engine, cycle: ready[engine][cycle])
    assert cycles == want.cycles, f"run took {cycles} cycles, golden {want.cycles}"
    for engine in ENGINES:
        ops = [op for op in want.ops if op.engine == engine]
        got = trace[engine]
        assert [(issue, done) for issue, done, _ in got] == [(op.start, op.end) for op in ops], \
            f"{engine} issue/done cycles differ from golden"
        for op, (_, _, fields) in zip(ops, got):
            rows, cols, precision = op_matrix(table, engine, op.layer)
            entry = table[op.layer]
            expected = (op.layer, op.sample, rows, cols, PRECISIONS.index(precision), int(entry.feedback == "bp"),
                        entry.lr_shift)
            assert tuple(fields[f] for f in COMMAND_FIELDS) == expected, f"{engine} command {fields} != {expected}"
        assert tuple(counters[engine]) == (want.busy[engine], want.stall[engine], want.idle[engine]), \
            f"{engine} counters {counters[engine]} != golden"
    return want
