"""A training process killed mid-epoch and resumed from its last checkpoint loses no decision."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "scripts" / "fault_run.py"
N_TRAIN = 1437


def _run(*args: str) -> None:
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, timeout=300)


def _complete_report(path: Path) -> None:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == N_TRAIN and rows[-1]["index"] == str(N_TRAIN - 1)


@pytest.mark.slow
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    _run("--out", str(tmp_path / "full"))

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--out", str(out), "--slow"],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "epoch 2 batch 10":  # mid-epoch, after the epoch-1 check and checkpoint
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (out / "ckpt" / "last.ckpt").exists()
    _complete_report(out / "report" / "label_report.csv")  # the check's report is whole

    _run("--out", str(out), "--resume", str(out / "ckpt" / "last.ckpt"))
    _complete_report(out / "report" / "label_report.csv")
    full, resumed = np.load(tmp_path / "full" / "final.npz"), np.load(out / "final.npz")
    for key in ("labels", "weights", "prob_sum", "seen_epochs", "flagged", "audit"):
        np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)
    assert len(full["audit"]) > 0
    np.testing.assert_array_equal(resumed["seen_epochs"], 4)
