"""Pipeline depth of the blocks, placed by the generator for the target clock.

A block whose longest register-to-register path can exceed a clock period takes a ``stages`` parameter:
the register stages it adds to its shallowest form, 0 up to its maximum. Its module declares
``STAGE_DELAYS_NS``: the critical path, in ns, at each depth 0, 1, ... (sky130_fd_sc_hd typical, flip-flop
clock-to-Q and setup included, as ``python -m hw.build --target synth --block NAME`` reports it at the
default configuration with ``pipeline.NAME`` set to that depth; a block the core instantiates more widely
than its stand-alone default, the DFA engine, declares the core instance's). The configuration key ``pipeline.NAME``
is a depth or ``"auto"``: the shallowest depth whose delay fits the period ``1000 / clock_mhz`` less a
guard band of :data:`GUARD_BAND` of the period, or the deepest when none does (the timing report then
shows what is left). The guard band stands for what the estimate leaves out: wires, and the few percent by
which ABC's result for the same logic varies from run to run. The delays are the estimate the
placement uses; the synthesis report is the measurement.

Every block states its latency at each depth in its docstring, and its golden model and bench read the
depth from the configuration (:meth:`hw.config.Config.stages`).
"""

import importlib


__all__ = ["GUARD_BAND", "BLOCK_MODULES", "check_stages", "stage_delays", "max_stages", "auto_stages"]

#: The part of the clock period ``"auto"`` keeps free of logic.
GUARD_BAND = 0.05

#: Pipelined blocks (their ``pipeline.<name>`` key) and the module that declares ``STAGE_DELAYS_NS``.
BLOCK_MODULES = {
    "pe": "hw.pe",
    "fp8_tree": "hw.fp8_tree",
    "zero_skip": "hw.zero_skip",
    "slice_skip": "hw.slice_skip",
    "output_error": "hw.output_error",
    "weight_update": "hw.weight_update",
    "dfa_ep": "hw.dfa_ep",
}


def check_stages(stages, deepest):
    """A block constructor's check of its ``stages`` parameter (0 to ``deepest``): TypeError or ValueError."""
    if not isinstance(stages, int) or isinstance(stages, bool):
        raise TypeError(f"Stages must be an integer, not {stages!r}")
    if not 0 <= stages <= deepest:
        raise ValueError(f"Stages must be from 0 to {deepest}, not {stages!r}")


def stage_delays(block):
    """The estimated critical path (ns) of ``block`` at each depth, shallowest first."""
    return importlib.import_module(BLOCK_MODULES[block]).STAGE_DELAYS_NS


def max_stages(block):
    """The deepest ``stages`` value ``block`` accepts."""
    return len(stage_delays(block)) - 1


def auto_stages(block, clock_mhz):
    """The shallowest depth of ``block`` whose estimated critical path fits a ``clock_mhz`` clock less the
    guard band (else the deepest)."""
    period = 1000.0 / clock_mhz * (1 - GUARD_BAND)
    delays = stage_delays(block)
    return next((depth for depth, ns in enumerate(delays) if ns <= period + 1e-9), len(delays) - 1)
