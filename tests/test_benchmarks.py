"""Smoke runs of the benchmark scripts on tiny data, so they cannot rot."""

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("noise", ["symmetric:0.2", "instance:0.3", "none:0"])
def test_detection_benchmark_rows(noise):
    bench = _load("detection")
    data = bench.load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=2, hidden=32)
    rows = bench.run_setting(small, noise, seed=0, clean_acc=0.9)
    assert set(rows) == {"fld-train", "fld-train relabel", "fld-train K-fold", "cleanlab 5-fold", "AUM",
                         "kNN", "conf<0.7", "k-means vote"}
    for method, r in rows.items():
        assert set(r) >= set(bench.COLUMNS)
        assert 0.0 <= r["flagged_share"] <= 1.0, method
        if noise != "none:0":
            assert 0.0 <= r["auroc"] <= 1.0, method
    # ratios only; their size is measured by the benchmark itself, never asserted in a unit test
    assert all(r["time"] > 0 for r in rows.values())


def test_knn_scale_benchmark_row():
    bench = _load("knn_scale")
    row = bench.one_size(3000, classes=50, dim=32, sklearn_max=3000, seed=0)
    assert row["index"] == "exact" and row["flag_f1"] > 0.9
    assert row["knn_s"] > 0 and row["sklearn_s"] > 0 and row["store_mb"] > 0
    assert row["imagenet_store_mb"] < 1000


def test_strictness_benchmark_rows():
    bench = _load("strictness")
    data = _load("detection").load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=2, hidden=32)
    rows = bench.run_setting(small, "symmetric:0.2", seed=0)
    assert set(rows) == {"none", "0.80", "0.90", "0.95", "0.99"}
    flagged = [rows[k][2] for k in ("none", "0.80", "0.90", "0.95", "0.99")]
    assert flagged == sorted(flagged, reverse=True)  # a stricter target never flags more


def test_cluster_signal_benchmark_rows():
    bench = _load("cluster_signal")
    data = _load("detection").load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=2, hidden=32)
    rows = bench.run_setting(small, "pairflip:0.4", seed=0)
    assert set(rows) == set(bench.SIGNALS)
    for f1, auc, flagged in rows.values():
        assert 0.0 <= f1 <= 1.0 and 0.0 <= auc <= 1.0 and 0.0 <= flagged <= 1.0


def test_flag_rules_benchmark_rows():
    bench = _load("flag_rules")
    data = _load("detection").load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=2, hidden=32)
    rows = bench.run_setting(small, "symmetric:0.2", seed=0)
    assert set(rows) == {"confident learning", "posterior argmax"}
    assert all(0.0 <= v <= 1.0 for row in rows.values() for v in row)


def test_rare_class_benchmark_rows():
    bench = _load("rare_class")
    data = _load("detection").load_digits_data()
    small = replace(data, x=data.x[:500], y=data.y[:500], epochs=2, hidden=32)
    rows = bench.run_setting(small, "symmetric:0.2", seed=0, rare_class=8, keep=6, caps=[1.0, 0.5, 0.25])
    assert int((bench.rare_data(small, 8, 6, 0).y == 8).sum()) == 6
    flagged_in_rare = [rows[cap][0] for cap in (1.0, 0.5, 0.25)]
    assert flagged_in_rare == sorted(flagged_in_rare, reverse=True)  # a tighter cap never flags more
