"""The TrainCore's three engines: forward (FF), error propagation (EP) and weight gradient with update (WG).

Each engine takes one job per controller command (:mod:`hw.pdfa`), runs it on its own PE array
(:class:`hw.tile_gemm.TileGemm`) or, for a DFA error, on the DFA engine (:class:`hw.dfa_ep.DFAErrorEngine`),
converts the results (:class:`hw.requant.ConversionUnit`) and writes them to the tile memories; it then
offers ``done`` with the conversion's counters and the next fractional length. Tensors and their words
are those of :mod:`golden.core`; the memories hold tiles as :class:`hw.tile_gemm.TileGemm` describes:

* weights: 16-bit masters, ``W`` (``out x in``) row-major over tiles;
* input, activation and error tensors: sample-major (``samples x features``), codes sign-extended to 16 bits;
* dReLU masks: sample-major bits.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.core import LOGIT_BITS

from . import output_error, requant
from .core_glue import MemLookup, TagQueue, TileWriter, write_signature
from .dfa_ep import DFAErrorEngine
from .pe_array import PRECISION_CODES, Mode
from .tile_gemm import ELEMENT_BITS, Order, TileGemm, tile_read_signature
from .weight_update import WeightUpdateUnit


__all__ = ["ff_job_layout", "ep_job_layout", "wg_job_layout", "result_layout", "FFEngine", "EPEngine", "WGEngine"]

_FRAC = signed(7)
_SHIFT = signed(9)


def ff_job_layout(dw, aw):
    """An FF operation: layer sizes (``m`` outputs, ``n`` samples, ``k`` inputs), the weights and the input
    tensor (from the input memory for layer 0, else the activation memory), the conversion to the next
    activation (or, on the last layer, to the logits, then the output error), and where results go."""
    return data.StructLayout({
        "last": unsigned(1), "prec": unsigned(2), "out_prec": unsigned(2),
        "m": unsigned(dw), "n": unsigned(dw), "k": unsigned(dw),
        "w_base": unsigned(aw), "w_stride": unsigned(aw),
        "x_input": unsigned(1), "x_base": unsigned(aw), "x_stride": unsigned(aw),
        "shift": _SHIFT, "frac": _FRAC, "overflow_shift": unsigned(5),
        "out_base": unsigned(aw), "out_stride": unsigned(aw), "mask_base": unsigned(aw),
        "frac_e": _FRAC, "err_prec": unsigned(2),
    })


def ep_job_layout(dw, aw):
    """An EP operation: BP (``W_{l+1}^T d_{l+1}`` on the array: ``m`` = this layer's outputs, ``k`` = the next
    layer's, ``n`` samples; ``d_{l+1}`` from the error memory or, for the last layer, the output-error
    memory) or DFA (``B_l e`` from the LFSR ``seed``, ``m`` rows), then the masked conversion of ``d_l``."""
    return data.StructLayout({
        "dfa": unsigned(1), "prec": unsigned(2), "out_prec": unsigned(2),
        "m": unsigned(dw), "n": unsigned(dw), "k": unsigned(dw),
        "w_base": unsigned(aw), "w_stride": unsigned(aw),
        "e_oerr": unsigned(1), "e_base": unsigned(aw), "e_stride": unsigned(aw),
        "seed": unsigned(32),
        "shift": _SHIFT, "frac": _FRAC, "overflow_shift": unsigned(5), "threshold": unsigned(4),
        "out_base": unsigned(aw), "out_stride": unsigned(aw), "mask_base": unsigned(aw),
    })


def wg_job_layout(dw, aw):
    """A WG operation: ``G = d_l a_l^T`` (``m`` outputs, ``n`` inputs, ``k`` samples), ``d_l`` from the error
    (or output-error) memory and ``a_l`` from the input (or activation) memory, the conversion of ``G``, and
    the update of the masters read at ``w_base`` into ``w_new_base`` (the other weight version)."""
    return data.StructLayout({
        "prec": unsigned(2), "grad_prec": unsigned(2),
        "m": unsigned(dw), "n": unsigned(dw), "k": unsigned(dw),
        "e_oerr": unsigned(1), "e_base": unsigned(aw), "e_stride": unsigned(aw),
        "x_input": unsigned(1), "x_base": unsigned(aw), "x_stride": unsigned(aw),
        "shift": _SHIFT, "frac": _FRAC, "overflow_shift": unsigned(5), "threshold": unsigned(4),
        "update_shift": _SHIFT, "w_base": unsigned(aw), "w_new_base": unsigned(aw), "w_stride": unsigned(aw),
    })


def result_layout(count_width):
    """What an engine reports with ``done``: the conversion's counters and next fractional length, and for
    the last FF layer also those of the output error."""
    return data.StructLayout({
        "ovf0": unsigned(count_width), "ovf1": unsigned(count_width), "next_frac": _FRAC,
        "e_ovf0": unsigned(count_width), "e_ovf1": unsigned(count_width), "e_next_frac": _FRAC,
    })


def _tag_layout(dw, aw, tile):
    return data.StructLayout({"addr": unsigned(aw), "index": unsigned(max(1, (tile - 1).bit_length())),
                              "group": unsigned(dw), "m": unsigned(dw)})


def _route_read(m, source, targets, select):
    """Connect a read interface to one of ``targets`` (index ``select``): address and enable go to the chosen
    one only, data comes back from it."""
    data_ = targets[0].data
    for i, target in enumerate(targets):
        m.d.comb += [target.addr.eq(source.addr), target.en.eq(source.en & (select == i))]
        if i:
            data_ = Mux(select == i, target.data, data_)
    m.d.comb += source.data.eq(data_)


class _Engine(wiring.Component):
    """What the three engines share: parameters, the job register, done with the result."""

    def __init__(self, members, *, tile, max_k, precisions, dim_width, addr_width, max_beats, stages=None):
        self._tile, self._max_k, self._precisions = tile, max_k, tuple(precisions)
        # Pipeline depths of the pipelined blocks inside (``{block: stages}``, absent = 0; see hw.pipeline).
        self._stages = dict(stages or {})
        self._dw, self._aw, self._max_beats = dim_width, addr_width, max_beats
        self._count_width = len(Signal(requant.stats_layout(tile, max_beats)).ovf0)
        members = dict(members)
        members["done"] = Out(stream.Signature(result_layout(self._count_width)))
        members["error"] = Out(1)
        super().__init__(members)

    count_width = property(lambda self: self._count_width)

    def _depth(self, block):
        return self._stages.get(block, 0)

    def _job_product(self, m, running, value, shape, name):
        """``value``, a product of the job's sizes, in a register (a multiplier is a cycle's worth of logic):
        it holds the product from the job's second cycle on, when the returned flag is set (``running`` is
        0 in the cycle that takes a job, so the flag is ``running`` a cycle late)."""
        product, ready = Signal(shape, name=name), Signal(name=f"{name}_ready")
        m.d.sync += [product.eq(value), ready.eq(running)]
        return product, ready

    def _gemm(self, *, masters=True):
        return TileGemm(tile=self._tile, max_k=self._max_k, precisions=self._precisions,
                        dim_width=self._dw, addr_width=self._aw, stages=self._depth("pe"), masters=masters)

    def _log_t(self):
        return self._tile.bit_length() - 1

    def _groups(self, n):
        return (n + self._tile - 1) >> self._log_t()

    def _column_tag(self, m, base, stride, row, group):
        """Tag of an output row of a sample-major tensor: element ``(sample, row)`` of tile
        ``(group, row // tile)`` at ``base + group * stride + row // tile``."""
        t = self._tile
        tag = Signal(_tag_layout(self._dw, self._aw, t))
        m.d.comb += [tag.addr.eq(base + group * stride + (row >> self._log_t())), tag.index.eq(row[:max(1, self._log_t())]),
                     tag.group.eq(group), tag.m.eq(row)]
        return tag


class FFEngine(_Engine):
    """Forward engine: ``acc = W a`` on its PE array, then ReLU and conversion to the next activation and the
    dReLU mask (hidden layers), or conversion to 16-bit logits and the output error (last layer).

    Output tiles go one sample group at a time (:data:`hw.tile_gemm.Order.N_OUTER`), so the logits of a
    group reach the output-error unit class by class, as it takes them. ``labels`` is the label lookup of
    the top: ``labels_group`` selects the group whose labels ``labels`` shows.

    Latency and throughput: one PE-array beat per cycle; a job's cycles from its handshake to ``done`` are
    :mod:`golden.core_timing`'s (the GEMM, then :data:`~golden.core_timing.FF_TAIL` cycles for a hidden
    layer, the output-error unit's groups for the last).

    Members
    -------
    job : In(stream.Signature(ff_job_layout(dim_width, addr_width)))
    w_rd, inp_rd, act_rd : Out(tile_read_signature(...))
    act_wr, mask_wr, oerr_wr : Out(write_signature(...))
    labels_group : Out(dim_width)
    labels : In(ArrayLayout(unsigned(label bits), tile))
    done : Out(stream.Signature(result_layout(count_width)))
    error : Out(1)
    """

    def __init__(self, *, tile, max_k, precisions, dim_width, addr_width, classes, max_beats=2 ** 16, stages=None):
        self._classes = classes
        label_bits = max(1, (classes - 1).bit_length())
        members = {
            "job": In(stream.Signature(ff_job_layout(dim_width, addr_width))),
            "w_rd": Out(tile_read_signature(addr_width, tile)),
            "inp_rd": Out(tile_read_signature(addr_width, tile)),
            "act_rd": Out(tile_read_signature(addr_width, tile)),
            "act_wr": Out(write_signature(addr_width, tile, ELEMENT_BITS)),
            "mask_wr": Out(write_signature(addr_width, tile, 1)),
            "oerr_wr": Out(write_signature(addr_width, tile, ELEMENT_BITS)),
            "labels_group": Out(dim_width),
            "labels": In(data.ArrayLayout(unsigned(label_bits), tile)),
            "conv_state": Out(data.ArrayLayout(unsigned(32), tile)),
            "err_state": Out(data.ArrayLayout(unsigned(32), tile)),
            "err_seed": In(stream.Signature(output_error.seed_layout(tile))),
        }
        super().__init__(members, tile=tile, max_k=max_k, precisions=precisions, dim_width=dim_width,
                         addr_width=addr_width, max_beats=max_beats, stages=stages)

    def elaborate(self, platform):
        m = Module()
        t, dw, aw = self._tile, self._dw, self._aw
        m.submodules.gemm = gemm = self._gemm()
        m.submodules.conv = conv = requant.ConversionUnit(lanes=t, acc_width=gemm.acc_width, max_beats=self._max_beats)
        m.submodules.oe = oe = output_error.OutputErrorUnit(lanes=t, classes=self._classes,
                                                            max_groups=max(2, self._max_k),
                                                            stages=self._depth("output_error"))
        m.submodules.tags = tags = TagQueue(shape=_tag_layout(dw, aw, t), depth=8)
        m.submodules.act_writer = act_writer = TileWriter(addr_width=aw, tile=t, element_bits=ELEMENT_BITS)
        m.submodules.mask_writer = mask_writer = TileWriter(addr_width=aw, tile=t, element_bits=1)
        m.submodules.oerr_writer = oerr_writer = TileWriter(addr_width=aw, tile=t, element_bits=ELEMENT_BITS)
        wiring.connect(m, act_writer.wr, wiring.flipped(self.act_wr))
        wiring.connect(m, mask_writer.wr, wiring.flipped(self.mask_wr))
        wiring.connect(m, oerr_writer.wr, wiring.flipped(self.oerr_wr))
        wiring.connect(m, wiring.flipped(self.err_seed), oe.seed)
        m.d.comb += [self.conv_state.eq(conv.state), self.err_state.eq(oe.state), self.error.eq(gemm.error),
                     conv.seed.valid.eq(0)]

        job = Signal(ff_job_layout(dw, aw))
        # Phases: idle, running (commands out, rows flowing), then done once every result is in.
        running = Signal()
        pending = Signal(4)          # commands still to send: gemm, conversion, output error
        conv_done = Signal()
        oe_done = Signal()
        result = Signal(result_layout(self._count_width))

        m.d.comb += self.job.ready.eq(~running & ~self.done.valid)
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [job.eq(self.job.payload), running.eq(1), conv_done.eq(0),
                         oe_done.eq(~self.job.payload.last), pending.eq(Mux(self.job.payload.last, 0b111, 0b011))]

        groups = self._groups(job.n)
        beats_m1, beats_ready = self._job_product(m, running, job.m * groups - 1, conv.cmd.payload.beats_m1.shape(),
                                                  "beats_m1")
        m.d.comb += [
            gemm.cmd.valid.eq(running & pending[0]),
            gemm.cmd.payload.mode.eq(Mode.FF), gemm.cmd.payload.prec.eq(job.prec),
            gemm.cmd.payload.m.eq(job.m), gemm.cmd.payload.n.eq(job.n), gemm.cmd.payload.k.eq(job.k),
            gemm.cmd.payload.a_base.eq(job.w_base), gemm.cmd.payload.a_stride.eq(job.w_stride),
            gemm.cmd.payload.b_base.eq(job.x_base), gemm.cmd.payload.b_stride.eq(job.x_stride),
            gemm.cmd.payload.order.eq(Order.N_OUTER), gemm.cmd.payload.a_masters.eq(1),
            conv.cmd.valid.eq(running & pending[1] & beats_ready),
            conv.cmd.payload.shift.eq(job.shift), conv.cmd.payload.frac.eq(job.frac),
            conv.cmd.payload.bits.eq(Mux(job.last, PRECISION_CODES[LOGIT_BITS], job.out_prec)),
            conv.cmd.payload.stochastic.eq(0), conv.cmd.payload.relu.eq(~job.last),
            conv.cmd.payload.threshold.eq(0), conv.cmd.payload.overflow_shift.eq(job.overflow_shift),
            conv.cmd.payload.beats_m1.eq(beats_m1),
            oe.cmd.valid.eq(running & pending[2]),
            oe.cmd.payload.frac_z.eq(job.frac), oe.cmd.payload.frac_e.eq(job.frac_e),
            oe.cmd.payload.bits.eq(job.err_prec), oe.cmd.payload.overflow_shift.eq(job.overflow_shift),
            oe.cmd.payload.groups_m1.eq(groups - 1),
        ]
        for i, port in enumerate((gemm.cmd, conv.cmd, oe.cmd)):
            with m.If(port.valid & port.ready):
                m.d.sync += pending[i].eq(0)
        _route_read(m, gemm.b_rd, [self.inp_rd, self.act_rd], job.x_input == 0)
        m.d.comb += [self.w_rd.addr.eq(gemm.a_rd.addr), self.w_rd.en.eq(gemm.a_rd.en), gemm.a_rd.data.eq(self.w_rd.data)]

        # Drain -> conversion (with the row's tag) and the dReLU mask.
        row = gemm.o.payload
        tag = self._column_tag(m, job.out_base, job.out_stride, row.m, row.group)
        mask_tag = self._column_tag(m, job.mask_base, job.out_stride, row.m, row.group)
        m.d.comb += [
            conv.i.valid.eq(gemm.o.valid & tags.push.ready),
            conv.i.payload.acc.eq(row.acc), conv.i.payload.en.eq(row.en),
            tags.push.valid.eq(gemm.o.valid & conv.i.ready),
            tags.push.payload.eq(tag),
            gemm.o.ready.eq(conv.i.ready & tags.push.ready),
        ]
        take = gemm.o.valid & gemm.o.ready
        m.d.comb += [
            mask_writer.i.valid.eq(take & ~job.last),
            mask_writer.i.payload.addr.eq(mask_tag.addr), mask_writer.i.payload.index.eq(mask_tag.index),
            mask_writer.i.payload.column.eq(1), mask_writer.i.payload.en.eq(row.en),
        ]
        for c in range(t):
            m.d.comb += mask_writer.i.payload.values[c].eq(row.acc[c] > 0)

        # Conversion -> activations (hidden layers) or the output-error unit (last layer).
        out_tag = tags.pop.payload
        m.d.comb += [self.labels_group.eq(out_tag.group)]
        m.d.comb += [
            act_writer.i.payload.addr.eq(out_tag.addr), act_writer.i.payload.index.eq(out_tag.index),
            act_writer.i.payload.column.eq(1), act_writer.i.payload.en.eq((1 << t) - 1),
            oe.i.payload.label.eq(self.labels),
            oe.i.payload.en.eq(Cat(((out_tag.group << self._log_t()) + c) < job.n for c in range(t))),
        ]
        for c in range(t):
            m.d.comb += [act_writer.i.payload.values[c].eq(conv.o.payload.code[c]),
                         oe.i.payload.z[c].eq(conv.o.payload.code[c])]
        sink_ready = Mux(job.last, oe.i.ready, act_writer.i.ready)
        m.d.comb += [
            act_writer.i.valid.eq(conv.o.valid & tags.pop.valid & ~job.last),
            oe.i.valid.eq(conv.o.valid & tags.pop.valid & job.last),
            conv.o.ready.eq(tags.pop.valid & sink_ready),
            tags.pop.ready.eq(conv.o.valid & sink_ready),
        ]

        # Output error -> its memory, in (group, class) order.
        e_class = Signal(dw)
        e_group = Signal(dw)
        e_tag = self._column_tag(m, job.out_base, job.out_stride, e_class, e_group)
        m.d.comb += [
            oerr_writer.i.valid.eq(oe.o.valid), oe.o.ready.eq(oerr_writer.i.ready),
            oerr_writer.i.payload.addr.eq(e_tag.addr), oerr_writer.i.payload.index.eq(e_tag.index),
            oerr_writer.i.payload.column.eq(1), oerr_writer.i.payload.en.eq((1 << t) - 1),
        ]
        for c in range(t):
            m.d.comb += oerr_writer.i.payload.values[c].eq(oe.o.payload.code[c])
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [e_class.eq(0), e_group.eq(0)]
        with m.Elif(oe.o.valid & oe.o.ready):
            with m.If(e_class == self._classes - 1):
                m.d.sync += [e_class.eq(0), e_group.eq(e_group + 1)]
            with m.Else():
                m.d.sync += e_class.eq(e_class + 1)

        # Counters and done.
        m.d.comb += [conv.stats.ready.eq(running & ~conv_done), oe.stats.ready.eq(running & ~oe_done)]
        with m.If(conv.stats.valid & conv.stats.ready):
            s = conv.stats.payload
            m.d.sync += [conv_done.eq(1), result.ovf0.eq(s.ovf0), result.ovf1.eq(s.ovf1), result.next_frac.eq(s.next_frac)]
        with m.If(oe.stats.valid & oe.stats.ready):
            s = oe.stats.payload
            m.d.sync += [oe_done.eq(1), result.e_ovf0.eq(s.ovf0), result.e_ovf1.eq(s.ovf1),
                         result.e_next_frac.eq(s.next_frac)]
        finished = running & conv_done & oe_done & (pending == 0)
        with m.If(finished):
            m.d.sync += [running.eq(0), self.done.valid.eq(1)]
        with m.If(self.done.valid & self.done.ready):
            m.d.sync += self.done.valid.eq(0)
        m.d.comb += self.done.payload.eq(result)
        return m


class EPEngine(_Engine):
    """Error-propagation engine: BP on its PE array (``W^T`` read transposed, ``d_{l+1}`` from the error
    memories) or DFA on the DFA engine (``B e`` for ``tile`` samples at once, ``e`` loaded from the
    output-error memory one sample group at a time), then the dReLU mask (read for every row: masked
    elements are disabled, so they are 0 and draw nothing) and the stochastic conversion of ``d_l``.

    Output order (the order of the conversion's draws): BP row-major over tiles, DFA one sample group at a
    time over all rows, as :mod:`golden.core` says.

    Latency and throughput: BP one PE-array beat per cycle, DFA one row of ``B e`` per cycle; a job's cycles
    from its handshake to ``done`` are :mod:`golden.core_timing`'s (the GEMM or the DFA rows, then
    :data:`~golden.core_timing.EP_TAIL` cycles).

    Members
    -------
    job : In(stream.Signature(ep_job_layout(dim_width, addr_width)))
    w_rd, err_rd, oerr_rd, mask_rd : Out(tile_read_signature(...))
    err_wr : Out(write_signature(...))
    seed : In(stream.Signature(seed_layout(tile))), state : Out(...)
        The conversion's LFSR lanes.
    done : Out(stream.Signature(result_layout(count_width)))
    """

    def __init__(self, *, tile, max_k, precisions, dim_width, addr_width, classes, max_rows, max_beats=2 ** 16,
                 stages=None):
        self._classes, self._max_rows = classes, max_rows
        members = {
            "job": In(stream.Signature(ep_job_layout(dim_width, addr_width))),
            "w_rd": Out(tile_read_signature(addr_width, tile)),
            "err_rd": Out(tile_read_signature(addr_width, tile)),
            "oerr_rd": Out(tile_read_signature(addr_width, tile)),
            "mask_rd": Out(tile_read_signature(addr_width, tile, 1)),
            "err_wr": Out(write_signature(addr_width, tile, ELEMENT_BITS)),
            "seed": In(stream.Signature(requant.seed_layout(tile))),
            "state": Out(data.ArrayLayout(unsigned(32), tile)),
        }
        super().__init__(members, tile=tile, max_k=max_k, precisions=precisions, dim_width=dim_width,
                         addr_width=addr_width, max_beats=max_beats, stages=stages)

    def elaborate(self, platform):
        m = Module()
        t, dw, aw = self._tile, self._dw, self._aw
        log_t = self._log_t()
        m.submodules.gemm = gemm = self._gemm()
        m.submodules.dfa = dfa = DFAErrorEngine(cols=self._classes, width=ELEMENT_BITS, max_rows=self._max_rows,
                                                lanes=t, stages=self._depth("dfa_ep"))
        m.submodules.conv = conv = requant.ConversionUnit(lanes=t, acc_width=gemm.acc_width, max_beats=self._max_beats)
        row_shape = data.StructLayout({"acc": data.ArrayLayout(signed(gemm.acc_width), t), "en": unsigned(t),
                                       "m": unsigned(dw), "group": unsigned(dw)})
        m.submodules.mask = mask = MemLookup(payload=row_shape, addr_width=aw, data_width=t * t)
        m.submodules.tags = tags = TagQueue(shape=_tag_layout(dw, aw, t), depth=8)
        m.submodules.writer = writer = TileWriter(addr_width=aw, tile=t, element_bits=ELEMENT_BITS)
        wiring.connect(m, writer.wr, wiring.flipped(self.err_wr))
        wiring.connect(m, wiring.flipped(self.seed), conv.seed)
        m.d.comb += [self.state.eq(conv.state), self.error.eq(gemm.error)]
        wiring.connect(m, mask.rd, wiring.flipped(self.mask_rd))

        job = Signal(ep_job_layout(dw, aw))
        running = Signal()
        pending = Signal(2)          # gemm (or DFA groups), conversion
        conv_done = Signal()
        result = Signal(result_layout(self._count_width))
        groups = self._groups(job.n)
        beats_m1, beats_ready = self._job_product(m, running, job.m * groups - 1, conv.cmd.payload.beats_m1.shape(),
                                                  "beats_m1")
        m.d.comb += self.job.ready.eq(~running & ~self.done.valid)
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [job.eq(self.job.payload), running.eq(1), conv_done.eq(0), pending.eq(0b11)]

        # BP: the array.
        m.d.comb += [
            gemm.cmd.valid.eq(running & pending[0] & ~job.dfa),
            gemm.cmd.payload.mode.eq(Mode.EP), gemm.cmd.payload.prec.eq(job.prec),
            gemm.cmd.payload.m.eq(job.m), gemm.cmd.payload.n.eq(job.n), gemm.cmd.payload.k.eq(job.k),
            gemm.cmd.payload.a_base.eq(job.w_base), gemm.cmd.payload.a_stride.eq(job.w_stride),
            gemm.cmd.payload.b_base.eq(job.e_base), gemm.cmd.payload.b_stride.eq(job.e_stride),
            gemm.cmd.payload.order.eq(Order.M_OUTER), gemm.cmd.payload.a_masters.eq(1),
            self.w_rd.addr.eq(gemm.a_rd.addr), self.w_rd.en.eq(gemm.a_rd.en), gemm.a_rd.data.eq(self.w_rd.data),
        ]
        with m.If(gemm.cmd.valid & gemm.cmd.ready):
            m.d.sync += pending[0].eq(0)

        # DFA: per sample group, read the group's output errors (classes / tile words), then run B e.
        e_tiles = (self._classes + t - 1) // t
        e_words = [Signal(t * t * ELEMENT_BITS, name=f"e_word{i}") for i in range(e_tiles)]
        load_group = Signal(dw)          # group being loaded / run
        load_word = Signal(range(e_tiles + 1))
        loading = Signal()
        load_arrive = Signal()
        load_index = Signal(range(e_tiles + 1))
        dfa_cmd_valid = Signal()
        with m.If(running & job.dfa & pending[0] & ~loading & ~dfa_cmd_valid):
            m.d.sync += [loading.eq(1), load_word.eq(0)]
        dfa_read = Signal()
        m.d.comb += dfa_read.eq(loading & (load_word < e_tiles))
        b_addr = Signal(aw)
        m.d.comb += b_addr.eq(job.e_base + load_group * job.e_stride + load_word)
        with m.If(dfa_read):
            m.d.sync += load_word.eq(load_word + 1)
        m.d.sync += [load_arrive.eq(dfa_read), load_index.eq(load_word)]
        with m.If(load_arrive):
            for i in range(e_tiles):
                with m.If(load_index == i):
                    m.d.sync += e_words[i].eq(self.oerr_rd.data)
            with m.If(load_index == e_tiles - 1):
                m.d.sync += [loading.eq(0), dfa_cmd_valid.eq(1)]
        # B-side reads of the array and the DFA loads share the error memories' ports (never at once).
        gemm_b = gemm.b_rd
        m.d.comb += [
            self.err_rd.addr.eq(gemm_b.addr), self.err_rd.en.eq(gemm_b.en & ~job.e_oerr & ~job.dfa),
            self.oerr_rd.addr.eq(Mux(job.dfa, b_addr, gemm_b.addr)),
            self.oerr_rd.en.eq(Mux(job.dfa, dfa_read, gemm_b.en & job.e_oerr)),
            gemm_b.data.eq(Mux(job.e_oerr, self.oerr_rd.data, self.err_rd.data)),
        ]
        # e[lane][class] is element (lane, class % tile) of word class // tile.
        m.d.comb += [dfa.cmd.valid.eq(dfa_cmd_valid), dfa.cmd.payload.seed.eq(job.seed),
                     dfa.cmd.payload.rows_m1.eq(job.m - 1)]
        for lane in range(t):
            for j in range(self._classes):
                word, col = divmod(j, t)
                pos = ELEMENT_BITS * (lane * t + col)
                m.d.comb += dfa.cmd.payload.e[lane][j].eq(e_words[word][pos:pos + ELEMENT_BITS].as_signed())
        with m.If(dfa.cmd.valid & dfa.cmd.ready):
            m.d.sync += dfa_cmd_valid.eq(0)
            with m.If(load_group == groups - 1):
                m.d.sync += [pending[0].eq(0), load_group.eq(0)]
            with m.Else():
                m.d.sync += load_group.eq(load_group + 1)
        m.d.comb += [dfa.mask.valid.eq(1), dfa.mask.payload.eq((1 << t) - 1)]
        # DFA output rows, tagged (row, group) by counters.
        dfa_row = Signal(dw)
        dfa_group = Signal(dw)
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [dfa_row.eq(0), dfa_group.eq(0), load_group.eq(0)]
        with m.If(dfa.o.valid & dfa.o.ready):
            with m.If(dfa_row == job.m - 1):
                m.d.sync += [dfa_row.eq(0), dfa_group.eq(dfa_group + 1)]
            with m.Else():
                m.d.sync += dfa_row.eq(dfa_row + 1)

        # Rows of either source -> mask lookup.
        src_valid = Mux(job.dfa, dfa.o.valid, gemm.o.valid)
        src_m = Mux(job.dfa, dfa_row, gemm.o.payload.m)
        src_group = Mux(job.dfa, dfa_group, gemm.o.payload.group)
        dfa_en = Cat(((dfa_group << log_t) + c) < job.n for c in range(t))
        m.d.comb += [
            mask.i.valid.eq(running & src_valid),
            mask.i.payload.addr.eq(job.mask_base + src_group * job.out_stride + (src_m >> log_t)),
            mask.i.payload.payload.m.eq(src_m), mask.i.payload.payload.group.eq(src_group),
            mask.i.payload.payload.en.eq(Mux(job.dfa, dfa_en, gemm.o.payload.en)),
            dfa.o.ready.eq(mask.i.ready & job.dfa),
            gemm.o.ready.eq(mask.i.ready & ~job.dfa),
        ]
        for c in range(t):
            m.d.comb += mask.i.payload.payload.acc[c].eq(Mux(job.dfa, dfa.o.payload[c], gemm.o.payload.acc[c]))

        # Mask -> conversion (masked lanes disabled).
        looked = mask.o.payload
        index = looked.payload.m[:max(1, log_t)]
        mask_bits = Cat(looked.data.bit_select(c * t + index, 1) for c in range(t)) if t > 1 else looked.data[0]
        tag = self._column_tag(m, job.out_base, job.out_stride, looked.payload.m, looked.payload.group)
        m.d.comb += [
            conv.i.valid.eq(mask.o.valid & tags.push.ready),
            conv.i.payload.acc.eq(looked.payload.acc),
            conv.i.payload.en.eq(looked.payload.en & mask_bits),
            tags.push.valid.eq(mask.o.valid & conv.i.ready), tags.push.payload.eq(tag),
            mask.o.ready.eq(conv.i.ready & tags.push.ready),
            conv.cmd.valid.eq(running & pending[1] & beats_ready),
            conv.cmd.payload.shift.eq(job.shift), conv.cmd.payload.frac.eq(job.frac),
            conv.cmd.payload.bits.eq(job.out_prec), conv.cmd.payload.stochastic.eq(1),
            conv.cmd.payload.relu.eq(0), conv.cmd.payload.threshold.eq(job.threshold),
            conv.cmd.payload.overflow_shift.eq(job.overflow_shift),
            conv.cmd.payload.beats_m1.eq(beats_m1),
        ]
        with m.If(conv.cmd.valid & conv.cmd.ready):
            m.d.sync += pending[1].eq(0)

        # Conversion -> the error memory.
        out_tag = tags.pop.payload
        m.d.comb += [
            writer.i.valid.eq(conv.o.valid & tags.pop.valid),
            conv.o.ready.eq(tags.pop.valid & writer.i.ready), tags.pop.ready.eq(conv.o.valid & writer.i.ready),
            writer.i.payload.addr.eq(out_tag.addr), writer.i.payload.index.eq(out_tag.index),
            writer.i.payload.column.eq(1), writer.i.payload.en.eq((1 << t) - 1),
        ]
        for c in range(t):
            m.d.comb += writer.i.payload.values[c].eq(conv.o.payload.code[c])

        m.d.comb += conv.stats.ready.eq(running & ~conv_done)
        with m.If(conv.stats.valid & conv.stats.ready):
            s = conv.stats.payload
            m.d.sync += [conv_done.eq(1), result.ovf0.eq(s.ovf0), result.ovf1.eq(s.ovf1), result.next_frac.eq(s.next_frac)]
        with m.If(running & conv_done & (pending == 0)):
            m.d.sync += [running.eq(0), self.done.valid.eq(1)]
        with m.If(self.done.valid & self.done.ready):
            m.d.sync += self.done.valid.eq(0)
        m.d.comb += self.done.payload.eq(result)
        return m


class WGEngine(_Engine):
    """Weight-gradient engine: ``G = d a^T`` on its PE array (both operands read transposed), the stochastic
    conversion of ``G``, then the weight update: for each gradient row, the master row is read from the
    current weight version and the updated row written to the other version (:class:`WeightUpdateUnit`).

    Output order (the order of both units' draws): row-major over tiles, as :mod:`golden.core` says.

    Latency and throughput: one PE-array beat per cycle, one master row updated per cycle; a job's cycles
    from its handshake to ``done`` are :mod:`golden.core_timing`'s (the GEMM, then
    :data:`~golden.core_timing.WG_TAIL` cycles).

    Members
    -------
    job : In(stream.Signature(wg_job_layout(dim_width, addr_width)))
    err_rd, oerr_rd, inp_rd, act_rd, w_rd : Out(tile_read_signature(...))
    w_wr : Out(write_signature(...))
    conv_seed, update_seed : In(stream.Signature(seed_layout(tile))), conv_state, update_state : Out(...)
    done : Out(stream.Signature(result_layout(count_width)))
    """

    def __init__(self, *, tile, max_k, precisions, dim_width, addr_width, max_beats=2 ** 16, stages=None):
        members = {
            "job": In(stream.Signature(wg_job_layout(dim_width, addr_width))),
            "err_rd": Out(tile_read_signature(addr_width, tile)),
            "oerr_rd": Out(tile_read_signature(addr_width, tile)),
            "inp_rd": Out(tile_read_signature(addr_width, tile)),
            "act_rd": Out(tile_read_signature(addr_width, tile)),
            "w_rd": Out(tile_read_signature(addr_width, tile)),
            "w_wr": Out(write_signature(addr_width, tile, ELEMENT_BITS)),
            "conv_seed": In(stream.Signature(requant.seed_layout(tile))),
            "conv_state": Out(data.ArrayLayout(unsigned(32), tile)),
            "update_seed": In(stream.Signature(requant.seed_layout(tile))),
            "update_state": Out(data.ArrayLayout(unsigned(32), tile)),
        }
        super().__init__(members, tile=tile, max_k=max_k, precisions=precisions, dim_width=dim_width,
                         addr_width=addr_width, max_beats=max_beats, stages=stages)

    def elaborate(self, platform):
        m = Module()
        t, dw, aw = self._tile, self._dw, self._aw
        log_t = self._log_t()
        m.submodules.gemm = gemm = self._gemm(masters=False)    # WG reads no weights
        m.submodules.conv = conv = requant.ConversionUnit(lanes=t, acc_width=gemm.acc_width, max_beats=self._max_beats)
        m.submodules.update = update = WeightUpdateUnit(lanes=t, max_beats=self._max_beats,
                                                        stages=self._depth("weight_update"))
        tag_shape = _tag_layout(dw, aw, t)
        m.submodules.conv_tags = conv_tags = TagQueue(shape=tag_shape, depth=8)
        row_shape = data.StructLayout({"grad": data.ArrayLayout(signed(ELEMENT_BITS), t), "tag": tag_shape})
        m.submodules.master = master = MemLookup(payload=row_shape, addr_width=aw, data_width=t * t * ELEMENT_BITS)
        m.submodules.update_tags = update_tags = TagQueue(shape=tag_shape, depth=8)
        m.submodules.writer = writer = TileWriter(addr_width=aw, tile=t, element_bits=ELEMENT_BITS)
        wiring.connect(m, writer.wr, wiring.flipped(self.w_wr))
        wiring.connect(m, wiring.flipped(self.conv_seed), conv.seed)
        wiring.connect(m, wiring.flipped(self.update_seed), update.seed)
        wiring.connect(m, master.rd, wiring.flipped(self.w_rd))
        m.d.comb += [self.conv_state.eq(conv.state), self.update_state.eq(update.state), self.error.eq(gemm.error)]

        job = Signal(wg_job_layout(dw, aw))
        running = Signal()
        pending = Signal(3)          # gemm, conversion, update
        conv_done = Signal()
        written = Signal()
        result = Signal(result_layout(self._count_width))
        cols = self._groups(job.n)
        beats_m1, beats_ready = self._job_product(m, running, job.m * cols - 1, conv.cmd.payload.beats_m1.shape(),
                                                  "beats_m1")
        m.d.comb += self.job.ready.eq(~running & ~self.done.valid)
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [job.eq(self.job.payload), running.eq(1), conv_done.eq(0), written.eq(0), pending.eq(0b111)]

        m.d.comb += [
            gemm.cmd.valid.eq(running & pending[0]),
            gemm.cmd.payload.mode.eq(Mode.WG), gemm.cmd.payload.prec.eq(job.prec),
            gemm.cmd.payload.m.eq(job.m), gemm.cmd.payload.n.eq(job.n), gemm.cmd.payload.k.eq(job.k),
            gemm.cmd.payload.a_base.eq(job.e_base), gemm.cmd.payload.a_stride.eq(job.e_stride),
            gemm.cmd.payload.b_base.eq(job.x_base), gemm.cmd.payload.b_stride.eq(job.x_stride),
            gemm.cmd.payload.order.eq(Order.M_OUTER), gemm.cmd.payload.a_masters.eq(0),
            conv.cmd.valid.eq(running & pending[1] & beats_ready),
            conv.cmd.payload.shift.eq(job.shift), conv.cmd.payload.frac.eq(job.frac),
            conv.cmd.payload.bits.eq(job.grad_prec), conv.cmd.payload.stochastic.eq(1),
            conv.cmd.payload.relu.eq(0), conv.cmd.payload.threshold.eq(job.threshold),
            conv.cmd.payload.overflow_shift.eq(job.overflow_shift), conv.cmd.payload.beats_m1.eq(beats_m1),
            update.cmd.valid.eq(running & pending[2] & beats_ready),
            update.cmd.payload.shift.eq(job.update_shift), update.cmd.payload.beats_m1.eq(beats_m1),
        ]
        for i, port in enumerate((gemm.cmd, conv.cmd, update.cmd)):
            with m.If(port.valid & port.ready):
                m.d.sync += pending[i].eq(0)
        _route_read(m, gemm.a_rd, [self.err_rd, self.oerr_rd], job.e_oerr)
        _route_read(m, gemm.b_rd, [self.act_rd, self.inp_rd], job.x_input)

        # Gradient rows -> conversion, tagged with the weight row they update: row m % tile of tile
        # (m // tile, column group) of the weight matrix.
        row = gemm.o.payload
        tag = Signal(tag_shape)
        m.d.comb += [tag.addr.eq((row.m >> log_t) * job.w_stride + row.group), tag.index.eq(row.m[:max(1, log_t)]),
                     tag.group.eq(row.group), tag.m.eq(row.m)]
        m.d.comb += [
            conv.i.valid.eq(gemm.o.valid & conv_tags.push.ready),
            conv.i.payload.acc.eq(row.acc), conv.i.payload.en.eq(row.en),
            conv_tags.push.valid.eq(gemm.o.valid & conv.i.ready), conv_tags.push.payload.eq(tag),
            gemm.o.ready.eq(conv.i.ready & conv_tags.push.ready),
        ]
        # Conversion -> master lookup (current version) -> update unit.
        m.d.comb += [
            master.i.valid.eq(conv.o.valid & conv_tags.pop.valid),
            master.i.payload.addr.eq(job.w_base + conv_tags.pop.payload.addr),
            master.i.payload.payload.tag.eq(conv_tags.pop.payload),
            conv.o.ready.eq(conv_tags.pop.valid & master.i.ready),
            conv_tags.pop.ready.eq(conv.o.valid & master.i.ready),
        ]
        for c in range(t):
            m.d.comb += master.i.payload.payload.grad[c].eq(conv.o.payload.code[c])
        looked = master.o.payload
        m_index = looked.payload.tag.index
        en = Cat(((looked.payload.tag.group << log_t) + c) < job.n for c in range(t))
        m.d.comb += [
            update.i.valid.eq(master.o.valid & update_tags.push.ready),
            update.i.payload.en.eq(en),
            update_tags.push.valid.eq(master.o.valid & update.i.ready),
            update_tags.push.payload.eq(looked.payload.tag),
            master.o.ready.eq(update.i.ready & update_tags.push.ready),
        ]
        for c in range(t):
            elements = [looked.data[ELEMENT_BITS * (r * t + c):ELEMENT_BITS * (r * t + c + 1)] for r in range(t)]
            value = elements[0]
            for r in range(1, t):
                value = Mux(m_index == r, elements[r], value)
            m.d.comb += [update.i.payload.master[c].eq(value), update.i.payload.grad[c].eq(looked.payload.grad[c])]
        # Update -> the other version.
        out_tag = update_tags.pop.payload
        m.d.comb += [
            writer.i.valid.eq(update.o.valid & update_tags.pop.valid),
            update.o.ready.eq(update_tags.pop.valid & writer.i.ready),
            update_tags.pop.ready.eq(update.o.valid & writer.i.ready),
            writer.i.payload.addr.eq(job.w_new_base + out_tag.addr), writer.i.payload.index.eq(out_tag.index),
            writer.i.payload.column.eq(0), writer.i.payload.en.eq((1 << t) - 1),
        ]
        for c in range(t):
            m.d.comb += writer.i.payload.values[c].eq(update.o.payload.master[c])
        with m.If(writer.i.valid & writer.i.ready & update.o.payload.last):
            m.d.sync += written.eq(1)

        m.d.comb += conv.stats.ready.eq(running & ~conv_done)
        with m.If(conv.stats.valid & conv.stats.ready):
            s = conv.stats.payload
            m.d.sync += [conv_done.eq(1), result.ovf0.eq(s.ovf0), result.ovf1.eq(s.ovf1), result.next_frac.eq(s.next_frac)]
        with m.If(running & conv_done & written & (pending == 0)):
            m.d.sync += [running.eq(0), self.done.valid.eq(1)]
        with m.If(self.done.valid & self.done.ready):
            m.d.sync += self.done.valid.eq(0)
        m.d.comb += self.done.payload.eq(result)
        return m
