"""scripts/train_core.py: argument checking before training, the report and plot of tiny real runs (equal to
the golden trainers run directly), the default output path and the progress display."""

import dataclasses
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from golden.core import CoreConfig, CoreTrainer
from golden.training import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "train_core.py"
TINY = ["--sizes", "64,16,10", "--epochs", "1", "--batch", "32"]


def _script():
    spec = importlib.util.spec_from_file_location("train_core", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def _plain(config):
    return json.loads(json.dumps(dataclasses.asdict(config), default=lambda v: v.value))


@pytest.mark.parametrize("args, message", [
    (["--precision", "5"], "precision must be one of dfxp4, dfxp8, dfxp12, dfxp16 (or 4, 8, 12, 16), not '5'"),
    (["--precision", "8,8"], "precision must name one width or one per layer (3), not 2"),
    (["--sizes", "64"], "sizes must be at least two integers in [1, 65535], not (64,)"),
    (["--sizes", "64,x,10"], "--sizes must be comma-separated integers, not '64,x,10'"),
    (["--sizes", "32,10"], "sizes must start with the data's 64 features, not 32"),
    (["--sizes", "64,16,8"], "sizes must end with at least the data's 10 classes, not 8"),
    (["--lr-shift", "32"], "lr_shift must be an integer in [0, 31], not 32"),
    (["--lr-shift", "8,8"], "lr_shift must be one value or one per layer (3), not 2"),
    (["--batch", "1438"], "batch must be at most the data's 1437 training samples, not 1438"),
    (["--epochs", "0"], "epochs must be an integer in [1, 100000], not 0"),
    (["--grad-bits", "6"], "grad_bits must be one of [4, 8, 12, 16], not 6"),
    (["--algorithm", "sgd"], "argument --algorithm: invalid choice: 'sgd'"),
])
def test_bad_input(args, message, tmp_path):
    out = tmp_path / "sub" / "run.json"
    proc = _run(*args, "--out", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "sub").exists()


@pytest.mark.parametrize("out, message", [
    ("file/run.json", "is not a directory"),            # under an existing regular file
    ("file/deeper/run.json", "is not a directory"),
    ("folder.json", "is a directory"),
    ("run.png.json", "is a directory"),                  # the plot's path is taken by a folder
    ("run.txt", "--out must name a .json file, not"),
])
def test_bad_out(out, message, tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "run.png.png").mkdir()
    before = sorted(tmp_path.rglob("*"))
    proc = _run(*TINY, "--no-reference", "--out", str(tmp_path / out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_run_no_reference(tmp_path):
    out = tmp_path / "new" / "core.json"
    proc = _run(*TINY, "--algorithm", "dfa", "--precision", "dfxp16,8", "--lr-shift", "7,8", "--seed", "3",
                "--no-reference", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == str(out)
    assert proc.stdout.splitlines()[0].startswith("core DFA DFXP16-8 64-16-10, 1 epoch: test accuracy ")
    # Not a terminal: one progress line per epoch.
    assert [line for line in proc.stderr.splitlines() if "epoch 1/1" in line][0].startswith("core DFA DFXP16-8")
    report = json.loads(out.read_text())
    config = CoreConfig(sizes=(64, 16, 10), algorithm="dfa", precision=(16, 8), batch=32, epochs=1,
                        lr_shift=(7, 8), seed=3)
    assert report["config"] == _plain(config)
    trainer = CoreTrainer(config)
    assert report["curve"] == trainer.run()
    assert report["test_accuracy"] == report["curve"]["test_accuracy"][-1]
    assert report["reference"] is None and report["gap_points"] is None
    assert report["fracs"] == trainer.fracs and set(report["fracs"]) == {"a1", "z", "e", "d0", "g0", "g1"}
    assert report["frac_w"] == trainer.frac_w and report["frac_in"] == trainer.frac_in
    assert report["seconds"] > 0 and report["wall_seconds"] >= report["seconds"]
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["core.json", "core.png"]


def test_run_with_reference(tmp_path):
    out = tmp_path / "core.json"
    proc = _run(*TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    reference = TrainConfig(sizes=(64, 16, 10), algorithm="bp", arithmetic="fp32", epochs=1, seed=0)
    ref = report["reference"]
    assert ref["config"] == _plain(reference) and ref["config"]["batch"] == 32
    assert ref["curve"] == Trainer(reference).run()
    assert ref["test_accuracy"] == ref["curve"]["test_accuracy"][-1]
    assert report["gap_points"] == round(100 * (report["test_accuracy"] - ref["test_accuracy"]), 2)
    assert f"(gap {report['gap_points']:+.2f} points)" in proc.stdout
    assert sum("epoch 1/1" in line for line in proc.stderr.splitlines()) == 2
    assert out.with_suffix(".png").stat().st_size > 0


def test_default_out():
    config, reference, out, _ = _script().parse(["--algorithm", "bp", "--precision", "16,8,8", "--no-reference"])
    assert out == ROOT / "reports" / "train_core" / "bp_dfxp16-8-8.json"
    assert reference is None and config.precision == (16, 8, 8) and config.epochs == 30
    config, reference, out, _ = _script().parse([])
    assert out == ROOT / "reports" / "train_core" / "pdfa_dfxp8.json"
    assert config == CoreConfig() and reference.epochs == 30 and reference.sizes == config.sizes


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    progress = _script().Progress
    log = io.StringIO()
    p = progress({"core": ("core PDFA DFXP8", "core", 2), "reference": ("FP32 BP", "FP32 BP", 2)}, log)
    p.update("core", 0, 1.5, 0.5, 0.25)
    p.update("reference", 1, 0.5, 0.75, 0.875)
    p.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("core PDFA DFXP8: epoch 1/2  loss 1.5000  train 50.00 %  test 25.00 %  ")
    assert lines[1].startswith("FP32 BP: epoch 2/2  loss 0.5000  train 75.00 %  test 87.50 %  ")
    term = _Terminal()
    p = progress({"core": ("core PDFA DFXP8", "core", 4)}, term)
    p.update("core", 1, 1.5, 0.5, 0.25)
    p.draw()
    p.close()
    text = term.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "[##########..........] core 2/4 loss 1.500 train 50.0% test 25.0% | " in text
