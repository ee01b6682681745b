"""Formal properties of the PDFA controller with SymbiYosys (``yowasp-sby``, Yices via ``yices-smt2``).

The harness leaves every input free on every cycle (``AnySeq``): table entries, start commands, the
engines' command ``ready`` and ``done``, the status consumer. The only assumptions are that reset stays low
and that an engine reports ``done`` only while it has a command outstanding.

Safety - weight versions. The harness counts, per layer, the updates committed so far in the run (WG
``done`` transfers) and checks every weight read against :mod:`golden.training`'s version rule, at the
command's issue *and* at its ``done`` (so no update lands while the engine reads):

* ``FF(l, t)`` reads version ``max(0, t - s)`` of ``W_l`` (``s`` = 1 when pipelined);
* a BP ``EP(l, t)`` reads version ``t`` of ``W_{l+1}``;
* ``WG(l, t)`` commits update number ``t`` of ``W_l`` (updates land in order, none lost).

Stream rules: a command, once offered, stays offered with the same payload until taken.

No deadlock. While a run is in progress some engine can always make progress - a command is offered, an
FF or EP command is outstanding (its ``done`` is always accepted) or the outstanding WG may commit - or else
the run has ended and ``status`` is offered on the next cycle. Together with engines that answer
eventually, every run ends. Checked by BMC from reset; the cover task reaches a completed pipelined
three-layer run of several samples.
"""


from amaranth.asserts import AnySeq
from amaranth.hdl import Array, Assert, Assume, Cover, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring

from golden.pdfa_schedule import Error
from hw.pdfa import ENGINES, PDFAController
from verif import formal


__all__ = ["PDFAProperties", "run_sby"]


class PDFAProperties(wiring.Component):
    """The controller with free inputs, the weight-version and no-deadlock assertions and a cover."""

    def __init__(self, *, max_layers=3, size_width=2, sample_width=2, counter_width=4):
        self._params = dict(max_layers=max_layers, size_width=size_width, sample_width=sample_width,
                            counter_width=counter_width)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = PDFAController(**self._params)
        n, tw = self._params["max_layers"], self._params["sample_width"]
        m.d.comb += Assume(~ResetSignal())
        for port in (dut.table, dut.start):
            m.d.comb += [port.valid.eq(AnySeq(1)), port.payload.eq(AnySeq(len(port.payload.as_value())))]
        m.d.comb += dut.status.ready.eq(AnySeq(1))

        started = dut.start.valid & dut.start.ready
        pipelined = Signal()
        with m.If(started):
            m.d.sync += pipelined.eq(dut.start.payload.pipelined)
        version = Array(Signal(tw + 1, name=f"version{i}") for i in range(n))
        with m.If(started):
            m.d.sync += [v.eq(0) for v in version]

        can = []
        for e in ENGINES:
            cmd, done = getattr(dut, f"{e}_cmd"), getattr(dut, f"{e}_done")
            m.d.comb += cmd.ready.eq(AnySeq(1))
            m.d.comb += done.valid.eq(AnySeq(1))
            outstanding = Signal(name=f"{e}_outstanding")
            held = Signal.like(cmd.payload, name=f"{e}_held")
            m.d.comb += Assume(~done.valid | outstanding)
            issue = cmd.valid & cmd.ready
            finish = done.valid & done.ready
            with m.If(issue):
                m.d.sync += [outstanding.eq(1), held.eq(cmd.payload)]
            with m.If(finish):
                m.d.sync += outstanding.eq(0)
            with m.If(started):
                m.d.sync += outstanding.eq(0)

            # Weight versions at issue (the payload) and at done (the held command).
            for when, c in ((issue, cmd.payload), (finish, held)):
                l, t = c.layer, c.sample
                if e == "ff":
                    want = Mux(pipelined, Mux(t == 0, 0, t - 1), t)
                    with m.If(when):
                        m.d.comb += Assert(version[l] == want)
                if e == "ep":
                    with m.If(when & (c.feedback == 1)):
                        m.d.comb += Assert((l + 1 < n) & (version[l + 1] == t))
            if e == "wg":
                with m.If(finish):
                    m.d.comb += Assert(version[held.layer] == held.sample)
                    m.d.sync += version[held.layer].eq(version[held.layer] + 1)

            # Stream rule on the command port.
            was_offered = Signal(name=f"{e}_was_offered")
            last_payload = Signal.like(cmd.payload, name=f"{e}_last_payload")
            m.d.sync += [was_offered.eq(cmd.valid & ~cmd.ready & ~started), last_payload.eq(cmd.payload)]
            with m.If(was_offered):
                m.d.comb += Assert(cmd.valid & (cmd.payload.as_value() == last_payload.as_value()))

            can.append(cmd.valid | (outstanding & (done.ready | (e != "wg"))))

        # No deadlock: in a run, some engine can move, or the status follows on the next cycle.
        in_run = dut.running & ~dut.status.valid
        stuck, stuck_q = Signal(), Signal()
        m.d.comb += stuck.eq(in_run & ~(can[0] | can[1] | can[2]))
        m.d.sync += stuck_q.eq(stuck)
        with m.If(stuck_q):
            m.d.comb += Assert(dut.status.valid)

        # Cover: a pipelined three-layer run of three samples completes without error.
        run_samples = Signal(tw)
        with m.If(started):
            m.d.sync += run_samples.eq(dut.start.payload.samples)
        m.d.comb += Cover(dut.status.valid & (dut.status.payload.error == Error.NONE) & pipelined
                          & (run_samples == 3) & (dut.status.payload.cycles > 0) & (version[2] == 3))
        return m


def run_sby(workdir, *, mode="bmc", depth=24, **params):
    """Run one SymbiYosys task (``bmc`` or ``cover``) on the harness; returns ``(passed, log text)``."""
    return formal.run_sby(workdir, PDFAProperties(**params), "pdfa_props", mode=mode, depth=depth)
