import csv

import numpy as np
import pytest

from fld_train import LabelReport, scoring
from fld_train._io import atomic_write


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("old")
    with atomic_write(path) as fh:
        fh.write("new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["f.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as fh:
        fh.write("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.csv"]


def test_report_csv_is_never_half_written(tmp_path, monkeypatch):
    n = 50
    ev = scoring.evaluate(np.zeros(n, int), np.tile([0.9, 0.1], (n, 1)), np.tile([1.0, 0.0], (n, 1)))
    report = LabelReport.from_evaluation(ev, np.zeros(n, int), np.zeros(n, int), epoch=0)
    path = tmp_path / "r.csv"
    report.to_csv(path)
    before = path.read_text()

    calls = {"n": 0}
    real_writer = csv.writer

    class Failing:
        def __init__(self, fh):
            self.inner = real_writer(fh)

        def writerow(self, row):
            calls["n"] += 1
            if calls["n"] == 10:
                raise OSError("killed mid-write")
            self.inner.writerow(row)

    monkeypatch.setattr(csv, "writer", Failing)
    with pytest.raises(OSError):
        report.to_csv(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.csv") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.csv").stat().st_mode & 0o777 == 0o644
