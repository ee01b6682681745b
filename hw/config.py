"""Generator configuration: one frozen dataclass per block, presets, TOML files and ``key=value`` overrides.

The configuration is the single source of the generator parameters. The build writes it as JSON beside the
generated Verilog (``config.json``), and the golden models and the cocotb benches read that same file back
with :meth:`Config.from_dict`, so hardware, reference and stimulus never disagree about a parameter.

Invariants are checked in ``__post_init__``; every violation raises :class:`ConfigError` with one line that
names the parameter by its dotted key and says what is allowed.
"""

import dataclasses
import json
import math
import tomllib
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path

from golden.dfxp import PRECISIONS as SUPPORTED_PRECISIONS
from golden.pdfa_schedule import PRECISIONS


__all__ = [
    "ConfigError", "PEArrayConfig", "FP8TreeConfig", "TSRAMConfig", "DFAConfig", "PDFAConfig", "SparsityConfig",
    "TrainCoreConfig", "PipelineConfig", "Config",
    "PRESETS",
    "preset", "read_toml", "load_toml", "apply_overrides", "parameter_keys",
]



class ConfigError(ValueError):
    """A generator parameter is missing, unknown, of the wrong type or out of range."""


def _check_int(key, value, *, minimum=1, power_of_two=False):
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, not {value!r}")
    if power_of_two and value & (value - 1):
        raise ConfigError(f"{key} must be a power of two, not {value!r}")


def _list_to_tuple(config, name):
    """A list read from TOML or JSON becomes the tuple a frozen configuration keeps."""
    if isinstance(getattr(config, name), list):
        object.__setattr__(config, name, tuple(getattr(config, name)))


@dataclass(frozen=True)
class PEArrayConfig:
    """Parameters of the bit-scalable PE array (block 1).

    Attributes
    ----------
    rows, cols : int
        PE grid size. Each PE computes one output element of an output tile of ``rows x cols``.
    max_k : int
        Longest reduction, in operand beats (cycles), of one command. It sets the accumulator width
        (:attr:`acc_width`) so that no result can overflow; a beat carries one 16x16-bit product per PE in
        the widest mode and up to 16 narrower products, all bounded by 2**30 in magnitude.
    precisions : tuple of int
        Operand precisions (bits) the hardware supports at run time, a subset of 4, 8, 12, 16. Dropping one
        removes its operand-routing multiplexers; a command asking for a missing precision sets the sticky
        error flag and computes zeros.
    drain_buffers : int
        Output tiles buffered for draining, 1 or 2: with two, a finished tile waits while the previous one
        drains, so short reductions overlap their drain (see :class:`hw.pe_array.PEArray`).
    drain_rows : int
        Output tile rows per transfer on the array's output, 1 to 64 (at most ``rows`` are used): the
        output bandwidth that short reductions need, e.g. 4 so that an 8-row array runs the error
        propagation over 10 classes (3 beats at 8 bits) at full rate.
    """
    rows: int = 8
    cols: int = 8
    max_k: int = 4096
    precisions: tuple = SUPPORTED_PRECISIONS
    drain_buffers: int = 2
    drain_rows: int = 4

    def __post_init__(self):
        _check_int("pe.rows", self.rows)
        _check_int("pe.cols", self.cols)
        if self.rows > 64 or self.cols > 64:
            raise ConfigError(f"pe.rows and pe.cols must be at most 64, not {self.rows}x{self.cols}")
        _check_int("pe.max_k", self.max_k, minimum=2, power_of_two=True)
        _check_int("pe.drain_buffers", self.drain_buffers)
        if self.drain_buffers > 2:
            raise ConfigError(f"pe.drain_buffers must be 1 or 2, not {self.drain_buffers!r}")
        _check_int("pe.drain_rows", self.drain_rows)
        if self.drain_rows > 64:
            raise ConfigError(f"pe.drain_rows must be at most 64, not {self.drain_rows!r}")
        _list_to_tuple(self, "precisions")
        if not isinstance(self.precisions, tuple) or not self.precisions:
            raise ConfigError(f"pe.precisions must be a non-empty list of bit widths from "
                              f"{list(SUPPORTED_PRECISIONS)}, not {self.precisions!r}")
        for p in self.precisions:
            if p not in SUPPORTED_PRECISIONS or isinstance(p, bool):
                raise ConfigError(f"pe.precisions entries must be one of {list(SUPPORTED_PRECISIONS)}, "
                                  f"not {p!r}")
        if len(set(self.precisions)) != len(self.precisions):
            raise ConfigError(f"pe.precisions must not repeat a width, not {list(self.precisions)!r}")
        object.__setattr__(self, "precisions", tuple(sorted(self.precisions)))

    @property
    def acc_width(self):
        """Accumulator width: a beat adds at most 2**30 in magnitude, ``max_k`` beats at most
        ``max_k * 2**30``, which a signed word of ``32 + log2(max_k)`` bits holds (including +2**30 per beat,
        the product of two most-negative 16-bit operands)."""
        return 32 + int(math.log2(self.max_k))


@dataclass(frozen=True)
class FP8TreeConfig:
    """Parameters of the shared-exponent FP8 MAC tree (block 2).

    Attributes
    ----------
    k : int
        Elements per block (the tree's width), a power of two >= 2: 32 as OCP MX, 8 and 16 also tested.
    """
    k: int = 32

    def __post_init__(self):
        _check_int("fp8.k", self.k, minimum=2, power_of_two=True)
        if self.k > 256:
            raise ConfigError(f"fp8.k must be at most 256, not {self.k!r}")


@dataclass(frozen=True)
class TSRAMConfig:
    """Parameters of the transposable SRAM wrapper (block 3).

    Attributes
    ----------
    n : int
        Tile size and number of SRAM banks, a power of two >= 2.
    width : int
        Bits per word.
    tiles : int
        Tiles stored; each bank is ``tiles * n`` words deep.
    """
    n: int = 8
    width: int = 16
    tiles: int = 4

    def __post_init__(self):
        _check_int("tsram.n", self.n, minimum=2, power_of_two=True)
        if self.n > 64:
            raise ConfigError(f"tsram.n must be at most 64, not {self.n!r}")
        _check_int("tsram.width", self.width)
        _check_int("tsram.tiles", self.tiles)


@dataclass(frozen=True)
class DFAConfig:
    """Parameters of the DFA error-propagation engine (part of block 5).

    Attributes
    ----------
    classes : int
        Length of the output error vector (the network's output size).
    width : int
        Bits of an error code.
    max_rows : int
        Largest hidden layer the engine serves in one command.
    """
    classes: int = 10
    width: int = 16
    max_rows: int = 1024

    def __post_init__(self):
        _check_int("dfa.classes", self.classes)
        _check_int("dfa.width", self.width, minimum=2)
        _check_int("dfa.max_rows", self.max_rows)


#: Layer precisions of the training controller's table.
LAYER_PRECISIONS = PRECISIONS


@dataclass(frozen=True)
class PDFAConfig:
    """Parameters of the PDFA training controller (block 5).

    Attributes
    ----------
    max_layers : int
        Layer-table capacity (weight layers of the MLP).
    size_width, sample_width, counter_width : int
        Bits of a layer size, of a run's sample count and of the cycle counters.
    precisions : tuple of str
        Layer precisions the engines support, from dfxp4, dfxp8, dfxp12, dfxp16, sefp8.
    """
    max_layers: int = 8
    size_width: int = 16
    sample_width: int = 16
    counter_width: int = 32
    precisions: tuple = LAYER_PRECISIONS

    def __post_init__(self):
        _check_int("pdfa.max_layers", self.max_layers)
        if self.max_layers > 64:
            raise ConfigError(f"pdfa.max_layers must be at most 64, not {self.max_layers!r}")
        for key in ("size_width", "sample_width", "counter_width"):
            _check_int(f"pdfa.{key}", getattr(self, key))
            if getattr(self, key) > 64:
                raise ConfigError(f"pdfa.{key} must be at most 64, not {getattr(self, key)!r}")
        _list_to_tuple(self, "precisions")
        if not isinstance(self.precisions, tuple) or not self.precisions \
                or any(p not in LAYER_PRECISIONS for p in self.precisions) \
                or len(set(self.precisions)) != len(self.precisions):
            raise ConfigError(f"pdfa.precisions must be a non-empty list of distinct names from "
                              f"{list(LAYER_PRECISIONS)}, not {self.precisions!r}")


@dataclass(frozen=True)
class SparsityConfig:
    """Parameters of the sparsity logic (block 4).

    Attributes
    ----------
    window, slots : int
        Zero-skip unit: elements read per cycle (lookahead window) and compute slots fed per cycle.
    width, weight_width : int
        Bits of an activation element and of a weight.
    depth : int
        Longest vector the zero-skip unit indexes, and words of its weight memory.
    zvc_n, zvc_width : int
        ZVC encoder/decoder: elements per vector and bits per word.
    mask_lanes, max_rows : int
        dReLU mask buffer and EP row skipper: mask bits per word, largest layer.
    slice_bits, slice_pairs, slice_slots : int
        Slice-skipping PE: operand width (4, 8, 12 or 16), operand pairs per input beat, 4-bit slice
        multipliers (at least ``(slice_bits / 4) ** 2``).
    """
    window: int = 32
    slots: int = 4
    width: int = 16
    weight_width: int = 16
    depth: int = 256
    zvc_n: int = 16
    zvc_width: int = 16
    mask_lanes: int = 16
    max_rows: int = 1024
    slice_bits: int = 16
    slice_pairs: int = 8
    slice_slots: int = 16

    def __post_init__(self):
        for key in ("window", "slots", "depth", "zvc_n", "zvc_width", "mask_lanes", "max_rows", "slice_pairs",
                    "slice_slots"):
            _check_int(f"sparsity.{key}", getattr(self, key))
        _check_int("sparsity.width", self.width, minimum=2)
        _check_int("sparsity.weight_width", self.weight_width, minimum=2)
        if self.window < self.slots:
            raise ConfigError(f"sparsity.window must be at least sparsity.slots ({self.slots}), not {self.window}")
        if self.slice_bits not in SUPPORTED_PRECISIONS or isinstance(self.slice_bits, bool):
            raise ConfigError(f"sparsity.slice_bits must be one of {list(SUPPORTED_PRECISIONS)}, "
                              f"not {self.slice_bits!r}")
        if self.slice_slots < (self.slice_bits // 4) ** 2:
            raise ConfigError(f"sparsity.slice_slots must be at least {(self.slice_bits // 4) ** 2} for "
                              f"{self.slice_bits}-bit operands, not {self.slice_slots}")
        if self.window > 128 or self.zvc_n > 256:
            raise ConfigError(f"sparsity.window must be at most 128 and sparsity.zvc_n at most 256, "
                              f"not {self.window} and {self.zvc_n}")


@dataclass(frozen=True)
class TrainCoreConfig:
    """Parameters of the TrainCore (block 7), the whole training accelerator.

    Attributes
    ----------
    tile : int
        Its PE arrays are ``tile x tile`` (one for each of FF, EP and WG), its memories hold ``tile x tile``
        tiles per word, and its conversion, output-error and update units have ``tile`` lanes. A power of
        two from 4 to 64; a layer precision runs on the core when its operand pairs per PE line fit a tile
        row (8, 12, 16 bits from 4 up; 4 bits from 16).
    max_batch : int
        Largest mini-batch (samples per step).
    max_width : int
        Largest layer width (input, hidden or output).
    weight_tiles : int
        Weight tiles of one version (two versions are stored), a power of two.
    act_tiles : int
        Tiles of hidden activations, of errors and of dReLU masks for one of the two steps in flight, a
        power of two.
    """
    tile: int = 8
    max_batch: int = 32
    max_width: int = 128
    weight_tiles: int = 1024
    act_tiles: int = 256

    def __post_init__(self):
        _check_int("core.tile", self.tile, minimum=4, power_of_two=True)
        if self.tile > 64:
            raise ConfigError(f"core.tile must be at most 64, not {self.tile!r}")
        _check_int("core.max_batch", self.max_batch)
        _check_int("core.max_width", self.max_width)
        _check_int("core.weight_tiles", self.weight_tiles, power_of_two=True)
        _check_int("core.act_tiles", self.act_tiles, power_of_two=True)
        if self.max_batch > 4096 or self.max_width > 4096:
            raise ConfigError(f"core.max_batch and core.max_width must be at most 4096, not "
                              f"{self.max_batch} and {self.max_width}")


@dataclass(frozen=True)
class PipelineConfig:
    """Register stages each pipelined block adds to its shallowest form (:mod:`hw.pipeline`).

    Each attribute is a depth, 0 up to the block's maximum, or ``"auto"``: the shallowest depth whose
    estimated critical path fits the target clock (:attr:`Config.clock_mhz`). Read a block's depth with
    :meth:`Config.stages`, never the attribute: the golden models and benches follow that depth.

    Attributes
    ----------
    pe : int or str
        The bit-scalable PE (and so the PE arrays and the core's GEMMs).
    fp8_tree : int or str
        The shared-exponent FP8 MAC tree.
    zero_skip, slice_skip : int or str
        The zero-skip unit and the slice-skipping PE.
    output_error, weight_update : int or str
        The core's output-error and weight-update units.
    dfa_ep : int or str
        The DFA error-propagation engine (and so the core's EP engine).
    """
    pe: int | str = "auto"
    fp8_tree: int | str = "auto"
    zero_skip: int | str = "auto"
    slice_skip: int | str = "auto"
    output_error: int | str = "auto"
    weight_update: int | str = "auto"
    dfa_ep: int | str = "auto"

    def __post_init__(self):
        from .pipeline import max_stages
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            deepest = max_stages(f.name)
            if value != "auto" and (not isinstance(value, int) or isinstance(value, bool)
                                    or not 0 <= value <= deepest):
                raise ConfigError(f"pipeline.{f.name} must be \"auto\" or an integer from 0 to {deepest}, "
                                  f"not {value!r}")


@dataclass(frozen=True)
class Config:
    """The whole generator configuration.

    Attributes
    ----------
    name : str
        Configuration name; the build writes under ``build/<name>/``.
    clock_mhz : float
        Target clock: the SDC constraint written beside the Verilog, and the clock the pipeline stages are
        placed for (:class:`PipelineConfig`). 200 MHz by default, which the default design meets on
        sky130_fd_sc_hd typical.
    pe : PEArrayConfig
        Bit-scalable PE array.
    fp8 : FP8TreeConfig
        Shared-exponent FP8 MAC tree.
    tsram : TSRAMConfig
        Transposable SRAM wrapper.
    dfa : DFAConfig
        DFA error-propagation engine.
    pdfa : PDFAConfig
        PDFA training controller.
    sparsity : SparsityConfig
        Zero-skip unit and ZVC encoder/decoder.
    core : TrainCoreConfig
        The TrainCore (uses ``pe.max_k``, ``dfa.classes``, ``pdfa.*`` too).
    pipeline : PipelineConfig
        Pipeline depth of each pipelined block.
    """
    name: str = "default"
    clock_mhz: float = 200.0
    pe: PEArrayConfig = field(default_factory=PEArrayConfig)
    fp8: FP8TreeConfig = field(default_factory=FP8TreeConfig)
    tsram: TSRAMConfig = field(default_factory=TSRAMConfig)
    dfa: DFAConfig = field(default_factory=DFAConfig)
    pdfa: PDFAConfig = field(default_factory=PDFAConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    core: TrainCoreConfig = field(default_factory=TrainCoreConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    def stages(self, block):
        """The pipeline depth of ``block`` (a key of :class:`PipelineConfig`) in this configuration: its
        ``pipeline`` value, with ``"auto"`` placed for :attr:`clock_mhz`."""
        from .pipeline import auto_stages
        value = getattr(self.pipeline, block)
        return auto_stages(block, self.clock_mhz) if value == "auto" else value

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or not all(
                c.isalnum() or c in "-_." for c in self.name) or self.name.startswith("."):
            raise ConfigError(f"name must be a non-empty string of letters, digits, '-', '_' or '.', "
                              f"not {self.name!r}")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)) \
                or not 0 < self.clock_mhz <= 10000:
            raise ConfigError(f"clock_mhz must be a number in (0, 10000], not {self.clock_mhz!r}")
        object.__setattr__(self, "clock_mhz", float(self.clock_mhz))
        core = self.core
        if max(core.max_width, core.max_batch) > self.pe.max_k:
            raise ConfigError(f"core.max_width and core.max_batch must be at most pe.max_k ({self.pe.max_k}): a "
                              f"16-bit reduction takes one beat per element, not {core.max_width} and {core.max_batch}")
        if core.max_width >= 1 << self.pdfa.size_width:
            raise ConfigError(f"core.max_width must fit pdfa.size_width ({self.pdfa.size_width} bits), not "
                              f"{core.max_width}")
        lanes = {4: 16, 8: 4, 12: 1, 16: 1}            # operand pairs per PE line (golden.pe_array.lanes)
        if not any(lanes[p] <= core.tile and f"dfxp{p}" in self.pdfa.precisions for p in self.pe.precisions):
            raise ConfigError(f"core.tile {core.tile} runs none of the layer precisions: pe.precisions and "
                              f"pdfa.precisions must share a DFXP width whose operand pairs per line fit the tile "
                              f"(8, 12 or 16 bits from 4, 4 bits from 16)")
        if self.dfa.classes > core.max_width:
            raise ConfigError(f"dfa.classes must be at most core.max_width ({core.max_width}), not {self.dfa.classes}")

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data):
        """Rebuild a configuration from :meth:`to_dict` output (e.g. a build's ``config.json``); keys it
        does not name keep their defaults."""
        return _merge(cls(), data)

    @classmethod
    def from_json_file(cls, path):
        return cls.from_dict(json.loads(Path(path).read_text()))


PRESETS = {
    "default": Config(),
    # Small enough for both simulators in the default test run, non-square to catch row/column mix-ups.
    "small": Config(name="small", pe=PEArrayConfig(rows=2, cols=3, max_k=64), fp8=FP8TreeConfig(k=8),
                    tsram=TSRAMConfig(n=4, width=8, tiles=3), dfa=DFAConfig(classes=10, width=8, max_rows=32),
                    pdfa=PDFAConfig(max_layers=4, size_width=8, sample_width=6, counter_width=20),
                    sparsity=SparsityConfig(window=8, slots=3, width=8, weight_width=8, depth=40, zvc_n=12,
                                            zvc_width=8, mask_lanes=4, max_rows=64, slice_bits=8, slice_pairs=4,
                                            slice_slots=4),
                    core=TrainCoreConfig(tile=4, max_batch=8, max_width=64, weight_tiles=64, act_tiles=16)),
}


def preset(name):
    """Return the preset called ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {sorted(PRESETS)}, not {name!r}")
    return PRESETS[name]


def _fields(cls):
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parameter_keys(cls=Config, prefix=""):
    """All dotted parameter keys, e.g. ``["clock_mhz", "name", "pe.cols", ...]``."""
    keys = []
    for name, hint in _fields(cls).items():
        if dataclasses.is_dataclass(hint):
            keys += parameter_keys(hint, prefix + name + ".")
        else:
            keys.append(prefix + name)
    return sorted(keys)


def _merge(config, data, prefix=""):
    """Return ``config`` with the (possibly nested) values of ``data`` replaced."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'configuration'} must be a table, not {data!r}")
    fields = _fields(type(config))
    changes = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown parameter {prefix + key!r}; known parameters: "
                              f"{', '.join(parameter_keys())}")
        if dataclasses.is_dataclass(fields[key]):
            value = _merge(getattr(config, key), value, prefix + key + ".")
        elif isinstance(value, dict):
            raise ConfigError(f"{prefix + key} must be a single value, not a table")
        changes[key] = value
    return replace(config, **changes)


def read_toml(path, what="config file"):
    """The table of the TOML file ``path``; :class:`ConfigError` with one line (``what`` names the file's
    role) when it is missing, unreadable or not TOML."""
    where = f"{what} {str(path)!r}"
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None


def load_toml(path):
    """Load a configuration file.

    The file may name a ``preset`` to start from (``"default"`` if absent) and then override any
    parameter, e.g.::

        preset = "small"
        name = "tiny"
        [pe]
        rows = 4
    """
    data = read_toml(path)
    base = preset(data.pop("preset", "default"))
    return _merge(base, data)


def _parse_value(text):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text     # a bare word is a string: ``--set name=tiny``


def apply_overrides(config, overrides):
    """Apply ``key=value`` overrides; values are TOML literals (``4``, ``[8, 16]``, ``"x"``) or bare words."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set takes key=value (e.g. pe.rows=4), not {item!r}")
        data = _parse_value(text.strip())
        for part in reversed(key.split(".")):
            data = {part: data}
        config = _merge(config, data)
    return config
