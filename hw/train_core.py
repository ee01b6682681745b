"""TrainCore: the whole training accelerator, one generated core behind AXI4-Lite and AXI4-Stream.

::

                AXI4-Lite: registers (hw.train_core.register_map) and the weight window        irq
                     |                                                                          ^
     AXI4-Stream     v                                                                          |
     samples --> [input, labels] --+--> FF engine: PE array -> conversion -> ReLU --> [activations]
                                   |        dReLU --> [masks]    last layer: -> output-error unit --> [output error]
     [weights: 2 versions] --------+--> EP engine: BP = PE array on W^T / DFA = LFSR feedback --> [errors]
                                   +--> WG engine: PE array (E X^T) -> conversion -> update --> [weights, other version]
                PDFA controller (hw.pdfa): layer table, BP / DFA / PDFA schedule, busy/stall/idle counters

What it computes is :mod:`golden.core`, bit for bit: the host loads the initial state that
:class:`golden.core.CoreTrainer` holds (master weights, fractional lengths, LFSR states), streams the
mini-batches of :meth:`golden.core.CoreTrainer.batches` and reads back the same state after every run.

Memories and why they are tile-wide
-----------------------------------
Every tensor is kept as ``tile x tile`` tiles, one tile per memory word (:class:`hw.tile_gemm.TileGemm`):
weights (16-bit masters, two versions: a WG update writes the version the next step reads while the current
one is still read by the forward pass of the pipelined step), the input mini-batches and their labels
(three: two steps in flight and the next one streaming in, :data:`INPUT_SLOTS`), hidden activations, dReLU
masks, errors and the output error (two of each, for the two steps in flight). A PE
array takes ``tile * n`` operands per cycle on each side (``n`` pairs per PE line: 4 at DFXP-8), four times
the row a transposable SRAM gives per cycle; a whole tile per word feeds it with one read per ``tile / n``
beats, and reading a tile transposed (BP's ``W^T``, WG's ``E`` and ``X^T``) is the beat packer's choice of
rows or columns. Writes go a row or a column at a time through per-element write enables. The
transposable SRAM (:mod:`hw.tsram`) stays the block for designs whose bandwidth is one row per cycle.

Host interface
--------------
* AXI4-Lite slave ``s_axil_*`` (:func:`register_map`; ``python -m hw.build`` writes its reference, C header
  and Python driver): configuration (algorithm, layer table, batch, steps, fractional lengths, LFSR
  states), control (start, stop), status (error code, cycles, per-engine counters, overflow counters),
  interrupt enable/status, and the weight window: word ``(layer << 2w) | (row << w) | col`` is master
  ``W_layer[row, col]`` (``w = ceil(log2(core.max_width))``), read or written whole; the window and every
  configuration register refuse writes (SLVERR) while the core runs, the window refuses reads too then
  (the engines own the weight memory), and a word outside the current table (``layer >= layers``,
  ``row >= n_out`` or ``col >= n_in``) answers SLVERR, read as 0, and is never written.
* AXI4-Stream slave ``s_axis_*`` (32-bit ``tdata``): the samples of a run in order, each one beat with
  the label in bits 15:0, then the input codes two per beat (feature ``2i`` in bits 15:0, ``2i + 1`` in
  31:16), ``tlast`` on the sample's last beat. Taken while the core runs and a mini-batch buffer
  (:data:`INPUT_SLOTS`) is free.
* ``irq``: a level, high while an enabled interrupt status bit (run done, error) is set.

Errors
------
Bad run-time input never hangs: a start is checked (:class:`golden.core.CoreError`) and refused with the
error code in ``status`` and the error interrupt; a start while running is refused the same way and the
run goes on; ``ctrl.stop`` aborts a run.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.core import MASTER_BITS, CoreError, Unit
from golden.dfxp import PRECISIONS as DFXP_PRECISIONS
from golden.pdfa_schedule import PRECISIONS as LAYER_PRECISIONS
from golden.pe_array import precision_code

from .axil import AXILiteSlave, axil_connect, axil_members
from .core_engines import EPEngine, FFEngine, WGEngine, ep_job_layout, ff_job_layout, result_layout, wg_job_layout
from .core_glue import TileWriter, write_signature
from .pdfa import ENGINES, PDFAController
from .regmap import CSRBlock, Field, Register, RegisterMap, Window
from .tile_gemm import ELEMENT_BITS, core_precisions


__all__ = ["Algorithm", "INPUT_SLOTS", "CORE_PIPELINED", "register_map", "core_layer_precisions", "core_stages",
           "TrainCore", "geometry"]

#: Mini-batch buffers of the input (and labels). A mini-batch is read by its step's first FF and last WG
#: operation; in the pipelined step the next mini-batch is in use meanwhile, and a third one can stream
#: in, so the stream does not wait for the step before the current one to end.
INPUT_SLOTS = 3


class Algorithm(enum.Enum, shape=2):
    BP = 0
    DFA = 1
    PDFA = 2


#: The pipelined blocks inside the core (:mod:`hw.pipeline`); their depths follow the configuration.
CORE_PIPELINED = ("pe", "output_error", "weight_update", "dfa_ep")


def core_stages(config):
    """``{block: stages}`` of the core's pipelined blocks in ``config`` (the engines' ``stages``, and
    :class:`golden.core_timing.CoreTiming`'s)."""
    return {block: config.stages(block) for block in CORE_PIPELINED}


def core_layer_precisions(config):
    """The layer precisions (names of :data:`golden.pdfa_schedule.PRECISIONS`) a core of ``config`` runs."""
    bits = core_precisions(config.core.tile, config.pe.precisions)
    return tuple(p for p in config.pdfa.precisions if p.startswith("dfxp") and int(p[4:]) in bits)


def _width_bits(config):
    return max(1, (config.core.max_width - 1).bit_length())


def geometry(config):
    """Derived sizes of a core: tiles of each memory, address widths, the weight window's size."""
    core = config.core
    t = core.tile
    batch_tiles = -(-core.max_batch // t)
    width_tiles = -(-core.max_width // t)
    inp_tiles = 1 << (batch_tiles * width_tiles - 1).bit_length()
    oerr_tiles = 1 << (batch_tiles * -(-config.dfa.classes // t) - 1).bit_length()
    wbits = _width_bits(config)
    layer_bits = max(1, (config.pdfa.max_layers - 1).bit_length())
    return {
        "tile": t, "inp_tiles": inp_tiles, "oerr_tiles": oerr_tiles,
        "weight_tiles": core.weight_tiles, "act_tiles": core.act_tiles,
        "addr_width": max([(INPUT_SLOTS * inp_tiles - 1).bit_length()]
                          + [(2 * n - 1).bit_length() for n in (oerr_tiles, core.weight_tiles, core.act_tiles)]),
        "dim_width": max(core.max_width, core.max_batch, config.dfa.classes).bit_length() + 1,
        "window_words": 1 << (layer_bits + 2 * wbits),
        "width_bits": wbits, "layer_bits": layer_bits,
    }


def register_map(config):
    """The TrainCore's register map (the one source of the RTL decode, the reference, the C header and the
    Python driver) for a configuration."""
    L = config.pdfa.max_layers
    t = config.core.tile
    sw = config.pdfa.size_width
    cw = min(config.pdfa.counter_width, 32)
    geo = geometry(config)
    frac = dict(width=7, access="rwh")
    algorithms = {"bp": 0, "dfa": 1, "pdfa": 2}
    precisions = {name: i for i, name in enumerate(LAYER_PRECISIONS)}
    regs = [
        Register("info", [
            Field("tile", 0, 8, access="ro", description="PE array and tile size"),
            Field("max_layers", 8, 8, access="ro", description="layer-table capacity"),
            Field("classes", 16, 8, access="ro", description="output layer width"),
            Field("precisions", 24, 5, access="ro",
                  description="bit i set: layer precision code i runs on this core"),
        ], description="What this core was generated with."),
        Register("limits", [
            Field("max_batch", 0, 16, access="ro", description="largest mini-batch"),
            Field("max_width", 16, 16, access="ro", description="largest layer width"),
        ]),
        Register("ctrl", [
            Field("start", 0, access="w1p", description="start a run of `steps` mini-batches"),
            Field("stop", 1, access="w1p", description="abort the run (the engines and the controller reset)"),
        ], description="Control pulses."),
        Register("status", [
            Field("running", 0, access="ro", description="a run is in progress"),
            Field("error", 4, 4, access="ro", description="why the last start was refused (CoreError), 0 if not",
                  enum={e.name.lower(): int(e) for e in CoreError}),
            Field("steps_done", 16, 16, access="ro", description="mini-batches whose update has landed"),
        ]),
        Register("irq_status", [
            Field("done", 0, access="w1c", description="a run finished"),
            Field("error", 1, access="w1c", description="a start was refused"),
        ], description="Interrupt causes; write 1 to clear."),
        Register("irq_enable", [Field("done", 0), Field("error", 1)], description="Causes that raise irq."),
        Register("config", [
            Field("algorithm", 0, 2, enum=algorithms, description="bp, dfa or pdfa (DFA pipelined)"),
            Field("serial", 2, description="BP: stage-sequential (WG after every EP of the step)"),
            Field("layers", 8, 8, description="weight layers in the table"),
            Field("batch", 16, 16, description="samples per mini-batch"),
        ], locked_while_busy=True),
        Register("steps", [Field("count", 0, min(config.pdfa.sample_width, 32), description="mini-batches per run")],
                 locked_while_busy=True),
        Register("numerics", [
            Field("frac_in", 0, 7, description="fractional length of the input codes (two's complement)"),
            Field("feedback_shift", 8, 4, description="DFA: B e is taken at 2**-feedback_shift"),
            Field("overflow_shift", 12, 5, description="overflow rule: at most n >> overflow_shift elements"),
            Field("threshold", 20, 4, description="stochastic thresholding of errors and gradients, 0 = off"),
            Field("grad_prec", 24, 2, enum={f"dfxp{p}": precision_code(p) for p in DFXP_PRECISIONS},
                  description="precision of converted gradients"),
        ], locked_while_busy=True),
        Register("cycles", [Field("count", 0, cw, access="ro", description="cycles of the last run")]),
    ]
    for engine in ENGINES:
        for kind in ("busy", "stall", "idle"):
            regs.append(Register(f"{engine}_{kind}", [Field("count", 0, cw, access="ro")],
                                 description=f"{engine.upper()} engine: {kind} cycles of the last run"))
    regs += [
        Register("layer_size", [Field("n_in", 0, sw), Field("n_out", 16, sw)], count=L, locked_while_busy=True,
                 description="Layer l: inputs and outputs (n_out of the last layer = classes)."),
        Register("layer_cfg", [
            Field("precision", 0, 3, enum=precisions, description="operand precision of the layer"),
            Field("lr_shift", 4, 5, description="learning-rate shift of the update"),
            Field("frac_w", 12, 7, description="fractional length of the 16-bit masters"),
        ], count=L, locked_while_busy=True),
        Register("fb_seed", [Field("seed", 0, 32, description="LFSR seed of the DFA feedback matrix B_l")],
                 count=L, locked_while_busy=True),
        Register("frac_a", [Field("frac", 0, **frac, description="activation a_l (l >= 1)")], count=L),
        Register("frac_d", [Field("frac", 0, **frac, description="error d_l of hidden layer l")], count=L),
        Register("frac_g", [Field("frac", 0, **frac, description="gradient G_l")], count=L),
        Register("frac_out", [Field("z", 0, **frac, description="logits"),
                              Field("e", 8, **frac, description="output error")]),
        Register("ovf_a", [Field("ovf0", 0, 16, access="ro"), Field("ovf1", 16, 16, access="ro")], count=L,
                 description="Last conversion of a_l: elements overflowing at frac and frac + 1 (saturated)."),
        Register("ovf_d", [Field("ovf0", 0, 16, access="ro"), Field("ovf1", 16, 16, access="ro")], count=L),
        Register("ovf_g", [Field("ovf0", 0, 16, access="ro"), Field("ovf1", 16, 16, access="ro")], count=L),
        Register("ovf_z", [Field("ovf0", 0, 16, access="ro"), Field("ovf1", 16, 16, access="ro")]),
        Register("ovf_e", [Field("ovf0", 0, 16, access="ro"), Field("ovf1", 16, 16, access="ro")]),
    ]
    for unit in Unit:
        regs.append(Register(f"lfsr_{unit.name.lower()}", [Field("state", 0, 32, access="rwh")], count=t,
                             locked_while_busy=True,
                             description=f"LFSR state of each lane of the {unit.name.lower()} unit"))
    return RegisterMap(name="edgetrain_core", registers=regs,
                       windows=[Window("weights", size=4 * geo["window_words"], locked_while_busy=True)],
                       description="TrainCore registers; the weight window holds one master per word.")


def _ceil_tiles(value, log_t):
    return (value + (1 << log_t) - 1) >> log_t


class TrainCore(wiring.Component):
    """The training accelerator: three engines, the PDFA controller, the memories and the host interface.

    See the module docstring for the structure, the memories and the host interface;
    :func:`register_map` for the registers. One run trains ``steps`` mini-batches of ``batch`` samples
    with the algorithm, layer table and numerics of the registers, exactly as
    :meth:`golden.core.CoreTrainer.step_codes` does after :meth:`golden.core.CoreTrainer.begin_run`.

    Latency and throughput: a run takes the cycles :func:`golden.core_timing.predict` gives for its layer
    table, steps, batch and algorithm (each engine one PE-array beat per cycle; the benches check the
    prediction against the ``cycles`` register to the cycle). The input stream is taken at one 32-bit word
    per cycle while the input memory has room; AXI4-Lite answers one access at a time
    (:class:`hw.axil.AXILiteSlave`).

    Parameters
    ----------
    config : hw.config.Config
        ``core.*`` sizes the arrays and memories; ``pe.max_k`` the accumulators; ``dfa.classes`` the output
        layer; ``pdfa.*`` the layer table and counters; ``pe.precisions`` and ``pdfa.precisions`` the layer
        precisions (those that fit the tile, :func:`core_layer_precisions`).

    Members
    -------
    s_axil_* : AXI4-Lite slave (``awaddr`` ... ``rready``), byte addresses of ``register_map(config).addr_width`` bits
    s_axis_tdata : In(32), s_axis_tvalid : In(1), s_axis_tready : Out(1), s_axis_tlast : In(1)
    irq : Out(1)
    """

    def __init__(self, config):
        from .config import Config
        if not isinstance(config, Config):
            raise TypeError(f"Configuration must be a hw.config.Config, not {config!r}")
        if not core_layer_precisions(config):
            raise ValueError(f"No layer precision runs on a core with tiles of {config.core.tile}: pdfa.precisions "
                             f"{list(config.pdfa.precisions)} and pe.precisions {list(config.pe.precisions)}")
        self._config = config
        self._regmap = register_map(config)
        self._geo = geometry(config)
        members = axil_members(addr_width=self._regmap.addr_width)
        members.update({
            "s_axis_tdata": In(32), "s_axis_tvalid": In(1), "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "irq": Out(1),
        })
        super().__init__(members)

    config = property(lambda self: self._config)
    regmap = property(lambda self: self._regmap)

    def elaborate(self, platform):
        m = Module()
        cfg, geo = self._config, self._geo
        t = cfg.core.tile
        log_t = t.bit_length() - 1
        L = cfg.pdfa.max_layers
        aw, dw = geo["addr_width"], geo["dim_width"]
        classes = cfg.dfa.classes
        bits = core_precisions(t, cfg.pe.precisions)
        names = core_layer_precisions(cfg)
        supported = sum(1 << LAYER_PRECISIONS.index(n) for n in names)

        # -- host interface
        m.submodules.axil = axil = AXILiteSlave(addr_width=self._regmap.addr_width)
        m.d.comb += axil_connect(self, axil.axil)
        m.submodules.csr = csr = CSRBlock(regmap=self._regmap)
        wiring.connect(m, axil.bus, csr.bus)
        m.d.comb += [
            csr.info_tile.eq(t), csr.info_max_layers.eq(L), csr.info_classes.eq(classes),
            csr.info_precisions.eq(supported),
            csr.limits_max_batch.eq(cfg.core.max_batch), csr.limits_max_width.eq(cfg.core.max_width),
        ]

        running = Signal()
        abort = Signal()
        m.d.comb += [abort.eq(csr.ctrl_stop), csr.lock.eq(running)]

        # -- layer table and geometry (registered from the configuration registers)
        layers = csr.config_layers
        batch = csr.config_batch
        algo = csr.config_algorithm
        n_in = [csr.layer_size_n_in[l] for l in range(L)]
        n_out = [csr.layer_size_n_out[l] for l in range(L)]
        prec_code = [csr.layer_cfg_precision[l] for l in range(L)]
        active = [Signal(name=f"active{l}") for l in range(L)]
        ti = [Signal(dw, name=f"ti{l}") for l in range(L)]       # tiles along a layer's inputs
        to = [Signal(dw, name=f"to{l}") for l in range(L)]       # ... and outputs
        bt = Signal(dw)                                          # tiles along the batch
        m.d.sync += bt.eq(_ceil_tiles(batch, log_t))
        for l in range(L):
            m.d.sync += [active[l].eq(l < layers), ti[l].eq(_ceil_tiles(n_in[l], log_t)),
                         to[l].eq(_ceil_tiles(n_out[l], log_t))]
        wide = aw + 2
        wbase = [Signal(wide, name=f"wbase{l}") for l in range(L + 1)]
        abase = [Signal(wide, name=f"abase{l}") for l in range(L + 1)]
        dbase = [Signal(wide, name=f"dbase{l}") for l in range(L + 1)]
        for l in range(L):
            last_hidden = l + 2 <= layers         # layer l has a hidden output (d_l, mask_l exist)
            m.d.sync += [
                wbase[l + 1].eq(wbase[l] + Mux(active[l], to[l] * ti[l], 0)),
                abase[l + 1].eq(abase[l] + Mux(active[l] & (l >= 1), bt * ti[l], 0)),
                dbase[l + 1].eq(dbase[l] + Mux(active[l] & last_hidden, bt * to[l], 0)),
            ]
        m.d.comb += [wbase[0].eq(0), abase[0].eq(0), dbase[0].eq(0)]
        # abase[l] is the start of a_l for l >= 1 (a_1 at 0): abase[1] = 0 by construction.

        def pick(values, index):
            result = values[0]
            for i in range(1, len(values)):
                result = Mux(index == i, values[i], result)
            return result

        # -- start checks (golden.core.CoreError, in its order)
        zero = mismatch = bad_prec = too_wide = 0
        for l in range(L):
            a = active[l]
            zero = zero | (a & ((n_in[l] == 0) | (n_out[l] == 0)))
            if l + 1 < L:
                mismatch = mismatch | (a & active[l + 1] & (n_out[l] != n_in[l + 1]))
            bad_prec = bad_prec | (a & ~Const(supported, 8).bit_select(prec_code[l], 1))
            too_wide = too_wide | (a & ((n_in[l] > cfg.core.max_width) | (n_out[l] > cfg.core.max_width)))
        last_out = pick(n_out, layers - 1)
        # The tiles the table needs, per layer, registered straight from the configuration registers and
        # summed here: the chained bases above lag a size change by up to L + 1 cycles, and a start may come
        # 5 cycles after the last configuration write (the bus's throughput), so a check of wbase[L] ...
        # could pass a table that does not fit. (The bases have settled before any job reads them: the
        # table push alone takes L cycles.) A product that wraps belongs to a layer wider than the core or a
        # batch above the maximum, which are refused anyway.
        wt_max = _ceil_tiles(cfg.core.max_width, log_t)
        bt_max = _ceil_tiles(cfg.core.max_batch, log_t)
        need_w = [Signal(range(wt_max * wt_max + 1), name=f"need_w{l}") for l in range(L)]
        need_a = [Signal(range(bt_max * wt_max + 1), name=f"need_a{l}") for l in range(1, L)]   # a_1 .. a_{L-1}
        need_d = [Signal(range(bt_max * wt_max + 1), name=f"need_d{l}") for l in range(L)]
        bt_now = _ceil_tiles(batch, log_t)
        for l in range(L):
            ti_now, to_now = _ceil_tiles(n_in[l], log_t), _ceil_tiles(n_out[l], log_t)
            m.d.sync += [need_w[l].eq(Mux(l < layers, to_now * ti_now, 0)),
                         need_d[l].eq(Mux(l + 2 <= layers, bt_now * to_now, 0))]
            if l >= 1:
                m.d.sync += need_a[l - 1].eq(Mux(l < layers, bt_now * ti_now, 0))
        too_large = (too_wide | (batch == 0) | (batch > cfg.core.max_batch) | (sum(need_w) > geo["weight_tiles"])
                     | (sum(need_a) > geo["act_tiles"]) | (sum(need_d) > geo["act_tiles"]))
        check = Signal(4)
        with m.If(layers == 0):
            m.d.comb += check.eq(CoreError.EMPTY_TABLE)
        with m.Elif(layers > L):
            m.d.comb += check.eq(CoreError.TOO_MANY_LAYERS)
        with m.Elif(zero):
            m.d.comb += check.eq(CoreError.ZERO_SIZE)
        with m.Elif(mismatch):
            m.d.comb += check.eq(CoreError.SIZE_MISMATCH)
        with m.Elif(bad_prec):
            m.d.comb += check.eq(CoreError.BAD_PRECISION)
        with m.Elif(too_large):
            m.d.comb += check.eq(CoreError.TOO_LARGE)
        with m.Elif(last_out != classes):
            m.d.comb += check.eq(CoreError.BAD_OUTPUT)
        with m.Elif(algo == 3):
            m.d.comb += check.eq(CoreError.BAD_ALGORITHM)

        # -- memories
        def memory(name, depth, element_bits, reads):
            mem = Memory(shape=unsigned(t * t * element_bits), depth=depth, init=[])
            m.submodules[f"{name}_mem"] = mem
            ports = [mem.read_port(transparent_for=()) for _ in range(reads)]
            wport = mem.write_port(granularity=element_bits)
            return ports, wport

        w_rd, w_wr = memory("weights", 2 * geo["weight_tiles"], ELEMENT_BITS, 2)
        inp_rd, inp_wr = memory("input", INPUT_SLOTS * geo["inp_tiles"], ELEMENT_BITS, 2)
        act_rd, act_wr = memory("act", 2 * geo["act_tiles"], ELEMENT_BITS, 2)
        err_rd, err_wr = memory("err", 2 * geo["act_tiles"], ELEMENT_BITS, 2)
        oerr_rd, oerr_wr = memory("oerr", 2 * geo["oerr_tiles"], ELEMENT_BITS, 2)
        mask_rd, mask_wr = memory("mask", 2 * geo["act_tiles"], 1, 1)

        def connect_read(port, reader):
            m.d.comb += [port.addr.eq(reader.addr), port.en.eq(reader.en), reader.data.eq(port.data)]

        def connect_write(port, writer):
            m.d.comb += [port.addr.eq(writer.addr), port.data.eq(writer.data), port.en.eq(writer.en)]

        # -- engines and the controller (reset by `stop` too)
        common = dict(tile=t, max_k=cfg.pe.max_k, precisions=bits, dim_width=dw, addr_width=aw,
                      stages=core_stages(cfg))
        ff = FFEngine(**common, classes=classes)
        ep = EPEngine(**common, classes=classes, max_rows=cfg.core.max_width)
        wg = WGEngine(**common)
        ctrl = PDFAController(max_layers=L, size_width=cfg.pdfa.size_width, sample_width=cfg.pdfa.sample_width,
                              counter_width=cfg.pdfa.counter_width, precisions=names)
        for name, block in (("ff", ff), ("ep", ep), ("wg", wg), ("ctrl", ctrl)):
            m.submodules[name] = ResetInserter({"sync": abort})(block)

        connect_read(inp_rd[0], ff.inp_rd)
        connect_read(act_rd[0], ff.act_rd)
        connect_write(act_wr, ff.act_wr)
        connect_write(mask_wr, ff.mask_wr)
        connect_write(oerr_wr, ff.oerr_wr)
        connect_read(err_rd[0], ep.err_rd)
        connect_read(oerr_rd[0], ep.oerr_rd)
        connect_read(mask_rd[0], ep.mask_rd)
        connect_write(err_wr, ep.err_wr)
        connect_read(err_rd[1], wg.err_rd)
        connect_read(oerr_rd[1], wg.oerr_rd)
        connect_read(inp_rd[1], wg.inp_rd)
        connect_read(act_rd[1], wg.act_rd)
        connect_read(w_rd[1], wg.w_rd)

        # Weight read port 0: FF, the BP EP (never at once: the controller orders them) and the window.
        win_rd_addr = Signal(aw)
        win_rd_en = Signal()
        m.d.comb += [
            w_rd[0].addr.eq(Mux(ff.w_rd.en, ff.w_rd.addr, Mux(ep.w_rd.en, ep.w_rd.addr, win_rd_addr))),
            w_rd[0].en.eq(ff.w_rd.en | ep.w_rd.en | win_rd_en),
            ff.w_rd.data.eq(w_rd[0].data), ep.w_rd.data.eq(w_rd[0].data),
        ]
        # Weight write port: WG, or the window between runs.
        win_wr = write_signature(aw, t, ELEMENT_BITS).create(path=("win_wr",))
        m.d.comb += [
            w_wr.addr.eq(Mux(running, wg.w_wr.addr, win_wr.addr)),
            w_wr.data.eq(Mux(running, wg.w_wr.data, win_wr.data)),
            w_wr.en.eq(Mux(running, wg.w_wr.en, win_wr.en)),
        ]
        err_flags = Signal()
        m.d.comb += err_flags.eq(ff.error | ep.error | wg.error)

        # -- run state
        ver = Signal(L)                         # current weight version of each layer
        # Input slots: mini-batch t is in slot t mod 3 from its first beat to the done of WG(0, t), its last
        # reader; with three, mini-batch t + 2 streams while step t is still in flight.
        slot_full = Signal(INPUT_SLOTS)
        slot_free = Signal(INPUT_SLOTS, init=(1 << INPUT_SLOTS) - 1)
        frac_slot_a = [[Signal(signed(7), name=f"frac_a{l}_{h}") for h in range(2)] for l in range(L)]
        frac_slot_d = [[Signal(signed(7), name=f"frac_d{l}_{h}") for h in range(2)] for l in range(L)]
        frac_slot_e = [Signal(signed(7), name=f"frac_e_{h}") for h in range(2)]
        frac_in = csr.numerics_frac_in.as_signed()
        frac_w = [csr.layer_cfg_frac_w[l].as_signed() for l in range(L)]
        frac_a_now = [csr.frac_a_frac[l].as_signed() for l in range(L)]
        frac_d_now = [csr.frac_d_frac[l].as_signed() for l in range(L)]
        # A WG operation's results, registered from its done handshake and written the cycle after (below).
        g_written = Signal()
        g_written_layer = Signal(range(max(L, 2)))
        g_written_result = Signal(result_layout(wg.count_width))
        frac_g_now = [Mux(g_written & (g_written_layer == l), g_written_result.next_frac.as_signed(),
                          csr.frac_g_frac[l].as_signed()) for l in range(L)]
        frac_z_now = csr.frac_out_z.as_signed()
        frac_e_now = csr.frac_out_e.as_signed()
        lr_shift = [csr.layer_cfg_lr_shift[l] for l in range(L)]

        def read_frac(l, p):
            """Fractional length of the p-bit copy of layer l's masters."""
            return frac_w_of(l) - (MASTER_BITS - 4 - 4 * p)

        def frac_w_of(l):
            return pick(frac_w, l)

        half = {"inp": geo["inp_tiles"], "act": geo["act_tiles"], "oerr": geo["oerr_tiles"], "w": geo["weight_tiles"]}
        oerr_stride = _ceil_tiles(classes, log_t)

        # -- FF jobs
        fc = ctrl.ff_cmd.payload
        fl = fc.layer
        fh = fc.sample[0]                       # the step's half of the ping-pong buffers
        f_in_slot = fc.sample % INPUT_SLOTS     # and its input slot
        f_last = fl == layers - 1
        f_prec = pick(prec_code, fl)[:2]
        f_next_prec = pick(prec_code, fl + 1)[:2]
        f_job = Signal(ff_job_layout(dw, aw))
        f_frac_x = Mux(fl == 0, frac_in, Mux(fh, pick([frac_slot_a[l][1] for l in range(L)], fl),
                                              pick([frac_slot_a[l][0] for l in range(L)], fl)))
        f_frac_out = Mux(f_last, frac_z_now, pick(frac_a_now, fl + 1))
        m.d.comb += [
            f_job.last.eq(f_last), f_job.prec.eq(f_prec), f_job.out_prec.eq(f_next_prec),
            f_job.m.eq(pick(n_out, fl)), f_job.n.eq(batch), f_job.k.eq(pick(n_in, fl)),
            f_job.w_base.eq((pick([ver[l] for l in range(L)], fl) * half["w"]) + pick(wbase, fl)),
            f_job.w_stride.eq(pick(ti, fl)),
            f_job.x_input.eq(fl == 0),
            f_job.x_base.eq(Mux(fl == 0, f_in_slot * half["inp"], fh * half["act"] + pick(abase, fl))),
            f_job.x_stride.eq(pick(ti, fl)),
            f_job.shift.eq(read_frac(fl, f_prec) + f_frac_x - f_frac_out),
            f_job.frac.eq(f_frac_out), f_job.overflow_shift.eq(csr.numerics_overflow_shift),
            f_job.out_base.eq(Mux(f_last, fh * half["oerr"], fh * half["act"] + pick(abase, fl + 1))),
            f_job.out_stride.eq(Mux(f_last, oerr_stride, pick(to, fl))),
            f_job.mask_base.eq(fh * half["act"] + pick(dbase, fl)),
            f_job.frac_e.eq(frac_e_now), f_job.err_prec.eq(pick(prec_code, layers - 1)[:2]),
        ]
        f_input_ready = (fl != 0) | slot_full.bit_select(f_in_slot, 1)
        m.d.comb += [
            ff.job.valid.eq(ctrl.ff_cmd.valid & f_input_ready), ff.job.payload.eq(f_job),
            ctrl.ff_cmd.ready.eq(ff.job.ready & f_input_ready),
        ]
        # Remember, per FF operation in flight, what its done updates.
        f_layer = Signal.like(fl)
        f_slot = Signal(range(INPUT_SLOTS))     # the input slot (and labels) of the operation's step
        f_is_last = Signal()
        with m.If(ctrl.ff_cmd.valid & ctrl.ff_cmd.ready):
            m.d.sync += [f_layer.eq(fl), f_slot.eq(f_in_slot), f_is_last.eq(f_last)]
            for l in range(L):
                for h in range(2):
                    with m.If((fl + 1 == l) & (fh == h) & ~f_last):
                        m.d.sync += frac_slot_a[l][h].eq(frac_a_now[l])
            for h in range(2):
                with m.If(f_last & (fh == h)):
                    m.d.sync += frac_slot_e[h].eq(frac_e_now)

        # -- EP jobs
        ec = ctrl.ep_cmd.payload
        el = ec.layer
        eh = ec.sample[0]
        e_dfa = algo != Algorithm.BP
        e_next = el + 1
        e_oerr = e_dfa | (e_next == layers - 1)
        e_prec_next = pick(prec_code, e_next)[:2]
        e_frac_next = Mux(e_oerr, Mux(eh, frac_slot_e[1], frac_slot_e[0]),
                          Mux(eh, pick([frac_slot_d[l][1] for l in range(L)], e_next),
                              pick([frac_slot_d[l][0] for l in range(L)], e_next)))
        e_frac_acc = Mux(e_dfa, e_frac_next + csr.numerics_feedback_shift, read_frac(e_next, e_prec_next) + e_frac_next)
        e_job = Signal(ep_job_layout(dw, aw))
        m.d.comb += [
            e_job.dfa.eq(e_dfa), e_job.prec.eq(e_prec_next), e_job.out_prec.eq(pick(prec_code, el)[:2]),
            e_job.m.eq(pick(n_out, el)), e_job.n.eq(batch), e_job.k.eq(pick(n_out, e_next)),
            e_job.w_base.eq(pick([ver[l] for l in range(L)], e_next) * half["w"] + pick(wbase, e_next)),
            e_job.w_stride.eq(pick(ti, e_next)),
            e_job.e_oerr.eq(e_oerr),
            e_job.e_base.eq(Mux(e_oerr, eh * half["oerr"], eh * half["act"] + pick(dbase, e_next))),
            e_job.e_stride.eq(Mux(e_oerr, oerr_stride, pick(to, e_next))),
            e_job.seed.eq(pick([csr.fb_seed_seed[l] for l in range(L)], el)),
            e_job.shift.eq(e_frac_acc - pick(frac_d_now, el)), e_job.frac.eq(pick(frac_d_now, el)),
            e_job.overflow_shift.eq(csr.numerics_overflow_shift), e_job.threshold.eq(csr.numerics_threshold),
            e_job.out_base.eq(eh * half["act"] + pick(dbase, el)), e_job.out_stride.eq(pick(to, el)),
            e_job.mask_base.eq(eh * half["act"] + pick(dbase, el)),
            ep.job.valid.eq(ctrl.ep_cmd.valid), ep.job.payload.eq(e_job), ctrl.ep_cmd.ready.eq(ep.job.ready),
        ]
        e_layer = Signal.like(el)
        with m.If(ctrl.ep_cmd.valid & ctrl.ep_cmd.ready):
            m.d.sync += e_layer.eq(el)
            for l in range(L):
                for h in range(2):
                    with m.If((el == l) & (eh == h)):
                        m.d.sync += frac_slot_d[l][h].eq(frac_d_now[l])

        # -- WG jobs
        gc = ctrl.wg_cmd.payload
        gl = gc.layer
        gh = gc.sample[0]
        g_in_slot = gc.sample % INPUT_SLOTS
        g_oerr = gl == layers - 1
        g_frac_d = Mux(g_oerr, Mux(gh, frac_slot_e[1], frac_slot_e[0]),
                       Mux(gh, pick([frac_slot_d[l][1] for l in range(L)], gl),
                           pick([frac_slot_d[l][0] for l in range(L)], gl)))
        g_frac_x = Mux(gl == 0, frac_in, Mux(gh, pick([frac_slot_a[l][1] for l in range(L)], gl),
                                              pick([frac_slot_a[l][0] for l in range(L)], gl)))
        g_ver = pick([ver[l] for l in range(L)], gl)
        g_job = Signal(wg_job_layout(dw, aw))
        m.d.comb += [
            g_job.prec.eq(pick(prec_code, gl)[:2]), g_job.grad_prec.eq(csr.numerics_grad_prec),
            g_job.m.eq(pick(n_out, gl)), g_job.n.eq(pick(n_in, gl)), g_job.k.eq(batch),
            g_job.e_oerr.eq(g_oerr),
            g_job.e_base.eq(Mux(g_oerr, gh * half["oerr"], gh * half["act"] + pick(dbase, gl))),
            g_job.e_stride.eq(Mux(g_oerr, oerr_stride, pick(to, gl))),
            g_job.x_input.eq(gl == 0),
            g_job.x_base.eq(Mux(gl == 0, g_in_slot * half["inp"], gh * half["act"] + pick(abase, gl))),
            g_job.x_stride.eq(pick(ti, gl)),
            g_job.shift.eq(g_frac_d + g_frac_x - pick(frac_g_now, gl)), g_job.frac.eq(pick(frac_g_now, gl)),
            g_job.overflow_shift.eq(csr.numerics_overflow_shift), g_job.threshold.eq(csr.numerics_threshold),
            g_job.update_shift.eq(pick(frac_g_now, gl) + pick(lr_shift, gl) - frac_w_of(gl)),
            g_job.w_base.eq(g_ver * half["w"] + pick(wbase, gl)),
            g_job.w_new_base.eq(~g_ver * half["w"] + pick(wbase, gl)),
            g_job.w_stride.eq(pick(ti, gl)),
            wg.job.valid.eq(ctrl.wg_cmd.valid), wg.job.payload.eq(g_job), ctrl.wg_cmd.ready.eq(wg.job.ready),
        ]
        g_layer = Signal.like(gl)
        g_slot = Signal(range(INPUT_SLOTS))
        g_sample = Signal.like(gc.sample)
        with m.If(ctrl.wg_cmd.valid & ctrl.wg_cmd.ready):
            m.d.sync += [g_layer.eq(gl), g_slot.eq(g_in_slot), g_sample.eq(gc.sample)]

        # -- done handshakes: results into the registers (fractional lengths, counters), commits
        def sat16(value):
            return Mux(value > 0xFFFF, 0xFFFF, value)

        frac_writes = {}              # (register port) -> list of (element, condition, value)

        def hw_write(port, index, cond, value):
            frac_writes.setdefault(port, []).append((index, cond, value))

        ovf_a0 = [Signal(16, name=f"ovf_a0_{l}") for l in range(L)]
        ovf_a1 = [Signal(16, name=f"ovf_a1_{l}") for l in range(L)]
        ovf_d0 = [Signal(16, name=f"ovf_d0_{l}") for l in range(L)]
        ovf_d1 = [Signal(16, name=f"ovf_d1_{l}") for l in range(L)]
        ovf_g0 = [Signal(16, name=f"ovf_g0_{l}") for l in range(L)]
        ovf_g1 = [Signal(16, name=f"ovf_g1_{l}") for l in range(L)]
        ovf_z = [Signal(16, name="ovf_z0"), Signal(16, name="ovf_z1")]
        ovf_e = [Signal(16, name="ovf_e0"), Signal(16, name="ovf_e1")]
        for l in range(L):
            m.d.comb += [csr.ovf_a_ovf0[l].eq(ovf_a0[l]), csr.ovf_a_ovf1[l].eq(ovf_a1[l]),
                         csr.ovf_d_ovf0[l].eq(ovf_d0[l]), csr.ovf_d_ovf1[l].eq(ovf_d1[l]),
                         csr.ovf_g_ovf0[l].eq(ovf_g0[l]), csr.ovf_g_ovf1[l].eq(ovf_g1[l])]
        m.d.comb += [csr.ovf_z_ovf0.eq(ovf_z[0]), csr.ovf_z_ovf1.eq(ovf_z[1]),
                     csr.ovf_e_ovf0.eq(ovf_e[0]), csr.ovf_e_ovf1.eq(ovf_e[1])]

        for engine, done in ((ff, ctrl.ff_done), (ep, ctrl.ep_done), (wg, ctrl.wg_done)):
            m.d.comb += [done.valid.eq(engine.done.valid), engine.done.ready.eq(done.ready)]
        f_done = ff.done.valid & ff.done.ready
        e_done = ep.done.valid & ep.done.ready
        g_done = wg.done.valid & wg.done.ready
        m.d.sync += [g_written.eq(g_done), g_written_layer.eq(g_layer), g_written_result.eq(wg.done.payload)]
        r = ff.done.payload
        for l in range(L):
            hw_write("frac_a", l, f_done & ~f_is_last & (f_layer + 1 == l), r.next_frac)
            with m.If(f_done & ~f_is_last & (f_layer + 1 == l)):
                m.d.sync += [ovf_a0[l].eq(sat16(r.ovf0)), ovf_a1[l].eq(sat16(r.ovf1))]
        hw_write("frac_out_z", None, f_done & f_is_last, r.next_frac)
        hw_write("frac_out_e", None, f_done & f_is_last, r.e_next_frac)
        with m.If(f_done & f_is_last):
            m.d.sync += [ovf_z[0].eq(sat16(r.ovf0)), ovf_z[1].eq(sat16(r.ovf1)),
                         ovf_e[0].eq(sat16(r.e_ovf0)), ovf_e[1].eq(sat16(r.e_ovf1))]
        r = ep.done.payload
        for l in range(L):
            hw_write("frac_d", l, e_done & (e_layer == l), r.next_frac)
            with m.If(e_done & (e_layer == l)):
                m.d.sync += [ovf_d0[l].eq(sat16(r.ovf0)), ovf_d1[l].eq(sat16(r.ovf1))]
        steps_done = Signal(16)
        # The WG results go into their registers a cycle after the handshake, whose ready is the controller's
        # commit rule (a long path); a WG job taken in that cycle reads the pending fractional length
        # (forwarded into frac_g_now above).
        for l in range(L):
            hw_write("frac_g", l, g_written & (g_written_layer == l), g_written_result.next_frac)
            with m.If(g_written & (g_written_layer == l)):
                m.d.sync += [ovf_g0[l].eq(sat16(g_written_result.ovf0)), ovf_g1[l].eq(sat16(g_written_result.ovf1))]
            with m.If(g_done & (g_layer == l)):
                m.d.sync += ver[l].eq(~ver[l])
        with m.If(g_done & (g_layer == 0)):
            # The input buffer of this step is free again (its last reader, WG(0), is done).
            for h in range(INPUT_SLOTS):
                with m.If(g_slot == h):
                    m.d.sync += [slot_free[h].eq(1), slot_full[h].eq(0)]
        # A step lands with its last WG; it is counted the cycle after, so the count's carry chain starts at a
        # register, not at the controller's commit logic (the status is read long after a run's last step).
        step_landed = Signal()
        m.d.sync += step_landed.eq(g_done & (g_layer == Mux(algo == Algorithm.PDFA, layers - 1, 0)))
        with m.If(step_landed):
            m.d.sync += steps_done.eq(steps_done + 1)

        # Hardware writes of the rwh registers: fractional lengths (on done) and LFSR states (always).
        for port, writes in frac_writes.items():
            name = port if port.startswith("frac_out") else f"{port}_frac"
            we = getattr(csr, f"{name}_we")
            wdata = getattr(csr, f"{name}_wdata")
            by_index = {}
            for index, cond, value in writes:
                by_index.setdefault(index, []).append((cond, value))
            for index, items in by_index.items():
                cond_any, value_sel = 0, 0
                for cond, value in items:
                    cond_any = cond_any | cond
                    value_sel = Mux(cond, value, value_sel)
                target_we, target_data = (we, wdata) if index is None else (we[index], wdata[index])
                m.d.comb += [target_we.eq(cond_any), target_data.eq(value_sel)]
        units = {Unit.ERROR: (ff.err_seed, ff.err_state), Unit.EP: (ep.seed, ep.state),
                 Unit.WG: (wg.conv_seed, wg.conv_state), Unit.UPDATE: (wg.update_seed, wg.update_state)}
        for unit, (seed, state) in units.items():
            name = f"lfsr_{unit.name.lower()}_state"
            we, wdata, written = (getattr(csr, f"{name}_{s}") for s in ("we", "wdata", "written"))
            value = getattr(csr, name)
            lane = 0
            for i in range(t):
                m.d.comb += [we[i].eq(~written[i]), wdata[i].eq(state[i])]
                lane = Mux(written[i], i, lane)
            m.d.comb += [seed.valid.eq(written != 0), seed.payload.lane.eq(lane),
                         seed.payload.state.eq(pick([value[i] for i in range(t)], lane))]

        # -- samples (AXI4-Stream) into the input buffer and the labels
        label_bits = max(1, (classes - 1).bit_length())
        labels = [[Signal(label_bits, name=f"label{h}_{s}") for s in range(cfg.core.max_batch)]
                  for h in range(INPUT_SLOTS)]
        recv_batch = Signal(32)
        recv_slot = Signal(range(INPUT_SLOTS))
        recv_sample = Signal(dw)
        recv_beat = Signal(dw)
        steps = csr.steps_count
        beats_per_sample = 1 + ((n_in[0] + 1) >> 1)
        accept = running & (recv_batch < steps) & slot_free.bit_select(recv_slot, 1)
        m.d.comb += self.s_axis_tready.eq(accept)
        m.submodules.inp_writer = inp_writer = TileWriter(addr_width=aw, tile=t, element_bits=ELEMENT_BITS)
        connect_write(inp_wr, inp_writer.wr)
        beat_in = self.s_axis_tvalid & accept
        feature = (recv_beat - 1) << 1
        col = feature[:log_t]
        m.d.comb += [
            inp_writer.i.valid.eq(beat_in & (recv_beat != 0)),
            inp_writer.i.payload.addr.eq(recv_slot * half["inp"] + (recv_sample >> log_t) * ti[0] + (feature >> log_t)),
            inp_writer.i.payload.index.eq(recv_sample[:log_t]), inp_writer.i.payload.column.eq(0),
        ]
        en_bits = []
        for c in range(t):
            lo_here = col == c
            hi_here = col + 1 == c
            m.d.comb += inp_writer.i.payload.values[c].eq(Mux(hi_here, self.s_axis_tdata[16:32], self.s_axis_tdata[:16]))
            en_bits.append((lo_here & (feature < n_in[0])) | (hi_here & (feature + 1 < n_in[0])))
        m.d.comb += inp_writer.i.payload.en.eq(Cat(*en_bits))
        with m.If(beat_in):
            with m.If(recv_beat == 0):
                for h in range(INPUT_SLOTS):
                    for s in range(cfg.core.max_batch):
                        with m.If((recv_slot == h) & (recv_sample == s)):
                            m.d.sync += labels[h][s].eq(self.s_axis_tdata[:label_bits])
            with m.If(recv_beat == beats_per_sample - 1):
                m.d.sync += recv_beat.eq(0)
                with m.If(recv_sample == batch - 1):
                    m.d.sync += [recv_sample.eq(0), recv_batch.eq(recv_batch + 1),
                                 recv_slot.eq(Mux(recv_slot == INPUT_SLOTS - 1, 0, recv_slot + 1))]
                    for h in range(INPUT_SLOTS):
                        with m.If(recv_slot == h):
                            m.d.sync += [slot_full[h].eq(1), slot_free[h].eq(0)]
                with m.Else():
                    m.d.sync += recv_sample.eq(recv_sample + 1)
            with m.Else():
                m.d.sync += recv_beat.eq(recv_beat + 1)
        # Labels of the FF engine's current group (its job's slot).
        for c in range(t):
            sample = (ff.labels_group << log_t) + c
            value = 0
            for s in range(cfg.core.max_batch):
                value = Mux(sample == s, Array(labels[h][s] for h in range(INPUT_SLOTS))[f_slot], value)
            m.d.comb += ff.labels[c].eq(value)

        # -- weight window: one master per word, between runs
        win = csr.weights
        wbits = geo["width_bits"]
        req = win.req.payload
        w_col = req.addr[:wbits]
        w_row = req.addr[wbits:2 * wbits]
        w_layer = req.addr[2 * wbits:]
        w_ok = ~running & (w_layer < layers) & (w_row < pick(n_out, w_layer)) & (w_col < pick(n_in, w_layer))
        w_tile = (pick([ver[l] for l in range(L)], w_layer) * half["w"] + pick(wbase, w_layer)
                  + (w_row >> log_t) * pick(ti, w_layer) + (w_col >> log_t))
        w_elem = Cat(w_col[:log_t], w_row[:log_t])       # element index r * t + c
        win_busy = Signal()
        win_reading = Signal()
        win_error = Signal()
        win_elem = Signal(2 * log_t)
        m.d.comb += win.req.ready.eq(~win_busy)
        with m.If(win.req.valid & win.req.ready):
            m.d.sync += [win_busy.eq(1), win_reading.eq(~req.write & w_ok), win_error.eq(~w_ok), win_elem.eq(w_elem)]
        m.d.comb += [win_rd_addr.eq(w_tile), win_rd_en.eq(win.req.valid & win.req.ready & ~req.write & w_ok),
                     win_wr.addr.eq(w_tile)]
        for e in range(t * t):
            m.d.comb += [win_wr.data[ELEMENT_BITS * e:ELEMENT_BITS * (e + 1)].eq(req.wdata[:16]),
                         win_wr.en[e].eq(win.req.valid & win.req.ready & req.write & w_ok & (w_elem == e))]
        elements = [w_rd[0].data[ELEMENT_BITS * e:ELEMENT_BITS * (e + 1)] for e in range(t * t)]
        word = pick(elements, win_elem)
        m.d.comb += [win.resp.valid.eq(win_busy), win.resp.payload.error.eq(win_error),
                     win.resp.payload.rdata.eq(Mux(win_reading, word.as_signed(), 0))]
        with m.If(win.resp.valid & win.resp.ready):
            m.d.sync += win_busy.eq(0)

        # -- control: start checks, the table, the controller's start, the end of the run
        status_error = Signal(4)
        m.d.comb += [csr.status_running.eq(running), csr.status_error.eq(status_error),
                     csr.status_steps_done.eq(steps_done)]
        table_index = Signal(range(L + 1))
        pushing = Signal()
        starting = Signal()
        m.d.comb += [
            ctrl.table.valid.eq(pushing),
            ctrl.table.payload.n_in.eq(pick(n_in, table_index)), ctrl.table.payload.n_out.eq(pick(n_out, table_index)),
            ctrl.table.payload.precision.eq(pick(prec_code, table_index)),
            ctrl.table.payload.feedback.eq(algo == Algorithm.BP),
            ctrl.table.payload.lr_shift.eq(pick(lr_shift, table_index)),
            ctrl.table.payload.last.eq(table_index == layers - 1),
            ctrl.start.valid.eq(starting),
            ctrl.start.payload.samples.eq(steps), ctrl.start.payload.pipelined.eq(algo == Algorithm.PDFA),
            ctrl.start.payload.serial.eq(csr.config_serial & (algo == Algorithm.BP)),
            ctrl.status.ready.eq(1),
        ]
        irq_done = Signal()
        irq_error = Signal()
        m.d.comb += [csr.irq_status_done_set.eq(irq_done), csr.irq_status_error_set.eq(irq_error),
                     self.irq.eq(((csr.irq_status_done & csr.irq_enable_done)
                                  | (csr.irq_status_error & csr.irq_enable_error)) != 0)]
        m.d.sync += [irq_done.eq(0), irq_error.eq(0)]
        with m.If(ctrl.table.valid & ctrl.table.ready):
            with m.If(table_index == layers - 1):
                m.d.sync += [pushing.eq(0), starting.eq(1)]
            with m.Else():
                m.d.sync += table_index.eq(table_index + 1)
        with m.If(ctrl.start.valid & ctrl.start.ready):
            m.d.sync += starting.eq(0)
        cycles = Signal(min(cfg.pdfa.counter_width, 32))
        m.d.comb += csr.cycles_count.eq(cycles)
        for engine in ENGINES:
            for kind in ("busy", "stall", "idle"):
                m.d.comb += getattr(csr, f"{engine}_{kind}_count").eq(getattr(ctrl, f"{engine}_{kind}"))
        with m.If(ctrl.status.valid & running):
            m.d.sync += [running.eq(0), cycles.eq(ctrl.status.payload.cycles), irq_done.eq(1)]
        with m.If(csr.ctrl_start):
            with m.If(running):
                m.d.sync += [status_error.eq(CoreError.BUSY), irq_error.eq(1)]
            with m.Elif(check != CoreError.NONE):
                m.d.sync += [status_error.eq(check), irq_error.eq(1)]
            with m.Else():
                m.d.sync += [status_error.eq(CoreError.NONE), running.eq(1), pushing.eq(1), table_index.eq(0),
                             recv_batch.eq(0), recv_slot.eq(0), recv_sample.eq(0), recv_beat.eq(0),
                             slot_full.eq(0), slot_free.eq((1 << INPUT_SLOTS) - 1), steps_done.eq(0)]
        with m.If(abort):
            m.d.sync += [running.eq(0), pushing.eq(0), starting.eq(0)]
        return m
