"""Smoke runs of the benchmark scripts on tiny data, so they cannot rot."""

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from fld_train import scoring
from fld_train.check import run_check
from fld_train.folds import combine_folds
from fld_train.metrics import auroc

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
            # a suggestion is never the given label, so a flagged right label is never a correction
            assert 0.0 <= r["correction"] <= r["precision"] + 1e-12, method
        elif r["flagged_share"] > 0:  # every flag on clean labels is wrong, and so is its suggestion
            assert r["correction"] == 0.0, method
        if method != "fld-train relabel":  # the relabel run's may be NaN too: two epochs may relabel nothing
            assert np.isnan(r["relabels_right"]), method
        # fld-train's rows say which ranking their report's check used; the other methods have none
        assert ("noise_model" in r) == method.startswith("fld-train"), method
        assert r.get("noise_model", 0.0) in (0.0, 1.0), method
        assert ("plain_acc" in r) == (method == "fld-train relabel"), method
    assert rows["fld-train relabel"]["plain_acc"] == rows["fld-train"]["test_acc"]  # both: plain training
    # ratios only; their size is measured by the benchmark itself, never asserted in a unit test
    assert all(r["time"] > 0 for r in rows.values())


def test_table_notes_name_the_noise_model_seeds_and_the_gap_closed(capsys):
    bench = _load("detection")
    row = {c: 0.5 for c in bench.COLUMNS}
    per_seed = [{"fld-train": {**row, "noise_model": 1.0}, "kNN": row},
                {"fld-train": {**row, "noise_model": 0.0}, "kNN": row}]
    bench.print_table("title", per_seed, [3, 4])
    out = capsys.readouterr().out
    assert "fld-train: the report's check ranked by the noise model in seeds [3] of [3, 4]" in out
    assert "kNN:" not in out
    relabel = {**row, "test_acc": 0.8, "clean_acc": 0.9, "plain_acc": 0.5}
    bench.print_table("title", [{"fld-train relabel": relabel}, {"fld-train relabel": {**relabel, "test_acc": 0.6}}])
    out = capsys.readouterr().out
    assert "plain training's test accuracy 0.500, clean training's 0.900, share of the gap closed 50%" in out


def test_best_other_is_the_most_probable_class_but_the_given_one():
    bench = _load("detection")
    probs = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(bench.best_other(probs, np.array([0, 1, 1])), [1, 0, 2])
    assert probs[0, 0] == 0.7  # the caller's array is not changed


def test_merged_tables_read_json_files_written_before_the_correction_column(tmp_path, capsys):
    bench = _load("detection")
    nan = float("nan")
    old = {"precision": 0.9, "recall": 0.8, "f1": 0.85, "auroc": 0.95, "flagged_share": 0.2, "test_acc": 0.9,
           "time": 1.1, "clean_acc": 0.95}
    rows = {"fld-train": {**old, "correction": nan}, "fld-train relabel": {**old, "correction": 0.875}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"dataset": "digits", "model": "mlp", "epochs": 40, "clean_acc": {"0": 0.95},
                                "results": {"symmetric:0.4": [rows]}}))
    bench.print_merged([str(path)])
    lines = capsys.readouterr().out.splitlines()
    assert "| correction | relabels right |" in lines[2]
    relabel = next(line for line in lines if line.startswith("| fld-train relabel |"))
    assert "| 20.0% | - | 87.5% | 0.900 |" in relabel  # the old correction key was the relabels right


def test_knn_scale_benchmark_row():
    bench = _load("knn_scale")
    row = bench.one_size(3000, classes=50, dim=32, sklearn_max=3000, seed=0)
    assert row["index"] == "exact" and row["flag_f1"] > 0.9
    assert row["knn_s"] > 0 and row["sklearn_s"] > 0 and row["store_mb"] > 0
    assert row["imagenet_store_mb"] < 1000
    assert "cluster_check_s" not in row
    row = bench.one_size(3000, classes=50, dim=32, sklearn_max=0, seed=0, cluster_votes=True)
    assert row["cluster_check_s"] > 0 and row["clusters"] == 150 and "sklearn_s" not in row
    labels = np.array([0, 1, 1, 2])
    np.testing.assert_array_equal(bench._top_vote(labels, np.array([[1, 2, 0], [0, 3, 3]]), 3), [1, 2])


def test_knn_scale_compares_an_ivf_search_with_the_exact_one(monkeypatch):
    bench = _load("knn_scale")
    from fld_train import knn

    monkeypatch.setattr(knn, "EXACT_SEARCH_MAX", 1000)  # 3,000 samples: IVF
    row = bench.one_size(3000, classes=50, dim=32, sklearn_max=0, seed=0)
    assert row["index"] == "ivf"
    assert 0.5 <= row["recall_at_10"] <= 1.0 and 0.5 <= row["vote_agreement"] <= 1.0


@pytest.fixture
def recorded_callbacks(monkeypatch):
    """The detection script, with every FakeLabelDiscovery it makes recording its keyword arguments."""
    bench = _load("detection")
    made = []

    class Recording(bench.FakeLabelDiscovery):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(bench, "FakeLabelDiscovery", Recording)
    return bench, made


def test_relabel_options_reach_the_relabel_run(recorded_callbacks):
    bench, made = recorded_callbacks
    data = bench.load_digits_data()
    small = replace(data, x=data.x[:300], y=data.y[:300], epochs=2, hidden=16)
    rows = bench.run_setting(small, "symmetric:0.2", seed=0, clean_acc=0.9, methods=("relabel",),
                             relabel_options={"uncertain_action": "downweight", "check_every_n_epochs": 1})
    assert set(rows) == {"fld-train relabel"}
    assert made == [{"check_every_n_epochs": 1, "action": "relabel", "tensorboard": False,
                     "uncertain_action": "downweight"}]


def test_flag_options_reach_the_flag_and_monitor_runs(recorded_callbacks):
    bench, made = recorded_callbacks
    data = bench.load_digits_data()
    small = bench.with_validation(replace(data, x=data.x[:300], y=data.y[:300], epochs=2, hidden=16))
    rows = bench.run_setting(small, "pairflip:0.4", seed=0, clean_acc=0.9, methods=("flag", "monitor"),
                             flag_options={"ranking": "margin"}, monitor="val_acc")
    assert set(rows) == {"fld-train", "fld-train, monitor=val_acc"}
    assert [m["ranking"] for m in made] == ["margin", "margin"]
    assert [r["noise_model"] for r in rows.values()] == [0.0, 0.0]
    assert made[1]["monitor"] == "val_acc" and made[1]["mode"] == "max"


def test_relabel_options_are_parsed_into_callback_arguments():
    parse = _load("detection").parse_options
    assert parse(["uncertain_action=downweight", "k=20", "target_precision=0.9", "cluster_votes=true",
                  "embedding_dim=none"]) == {"uncertain_action": "downweight", "k": 20, "target_precision": 0.9,
                                             "cluster_votes": True, "embedding_dim": None}
    with pytest.raises(SystemExit, match="--relabel-options: 'downweight' is not name=value"):
        parse(["downweight"])
    with pytest.raises(SystemExit, match="--flag-options: 'margin' is not name=value"):
        parse(["margin"], "--flag-options")


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


def test_detection_benchmark_on_an_image_folder_and_merged_seeds(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (("train", 30), ("test", 5)):
        for c in range(10):
            (tmp_path / split / f"c{c}").mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / split / f"c{c}" / f"{i}.png")
    bench = _load("detection")
    data = bench.load_cifar10(str(tmp_path), subset=200)
    assert data.x.shape == (200, 3, 32, 32) and data.x_test.shape == (50, 3, 32, 32)
    assert data.model == "small-cnn" and bench.make_model(data).__class__.__name__ == "SmallCNN"
    tiny = replace(data, epochs=1)
    labels, mask = bench.noisy_labels(tiny, "instance:0.3", seed=0)  # PCA before the confusion model
    assert mask.mean() == pytest.approx(0.3, abs=0.02) and np.all((labels != tiny.y) == mask)
    files = []
    for seed in (0, 1):
        methods = ("flag", "relabel", "cleanlab", "baselines") if seed == 0 else ("relabel",)
        rows = bench.run_setting(tiny, "symmetric:0.4", seed=seed, clean_acc=0.1, methods=methods,
                                 save=tmp_path / "saved")
        assert "fld-train K-fold" not in rows and ("cleanlab 5-fold" in rows) == (seed == 0)
        saved = np.load(tmp_path / "saved" / f"symmetric_0.4_seed{seed}.npz")
        assert np.array_equal(saved["mask"], saved["labels"] != tiny.y)
        assert ("oos" in saved) == (seed == 0) and ("store_embeddings" in saved) == (seed == 0)
        if seed == 0:
            assert saved["oos"].shape == (200, 10) and np.allclose(saved["oos"].sum(1), 1, atol=1e-4)
        files.append(tmp_path / f"seed{seed}.json")
        files[-1].write_text(json.dumps({"dataset": "cifar10", "model": tiny.model, "epochs": 1,
                                         "clean_acc": {str(seed): 0.1}, "results": {"symmetric:0.4": [rows]}}))
    capsys.readouterr()
    bench.print_merged([str(f) for f in files])  # seed 1 measured the relabel run only
    out = capsys.readouterr().out
    assert "| cleanlab 5-fold (seeds [0]) |" in out and "| fld-train relabel |" in out
    rerun = json.loads(files[1].read_text())
    rerun["clean_acc"] = {"0": 0.1}
    rerun["results"]["symmetric:0.4"][0]["fld-train relabel"]["test_acc"] = 0.777  # tells the rows apart
    files.append(tmp_path / "rerun.json")
    files[-1].write_text(json.dumps(rerun))
    capsys.readouterr()
    bench.print_merged([str(files[0]), str(files[2])])  # seed 0 again, its relabel row replaced
    out = capsys.readouterr().out
    assert "cifar10 (small-cnn, 1 epochs), symmetric:0.4, mean over seeds [0]" in out
    assert out.count("| fld-train |") == 1 and "| cleanlab 5-fold |" in out
    relabel = next(line for line in out.splitlines() if line.startswith("| fld-train relabel |"))
    assert "| 0.777 |" in relabel


def test_rescore_reproduces_the_saved_flag_run(tmp_path, capsys, monkeypatch):
    bench = _load("detection")
    data = bench.load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=4, hidden=32)
    rows = bench.run_setting(small, "symmetric:0.3", seed=0, clean_acc=0.9, methods=("flag", "cleanlab"),
                             save=tmp_path)
    rescore = _load("rescore")
    assert rescore.parse_variant("cluster_votes+target_precision=0.9") == {"cluster_votes": True,
                                                                          "target_precision": 0.9}
    with pytest.raises(SystemExit, match="not 'default'"):
        rescore.parse_variant("target precision=0.9")
    assert rescore.parse_variant("k=20") == {"k": 20}  # converted as detection.py's --relabel-options
    again = rescore.rows_for(tmp_path / "symmetric_0.3_seed0.npz", ["default", "target_precision=0.99", "k=5"])
    for method, name in (("default", "fld-train"), ("cleanlab 5-fold", "cleanlab 5-fold")):
        expect = rows[name]
        assert again[method][:6] == pytest.approx(
            (expect["precision"], expect["recall"], expect["f1"], expect["auroc"], expect["flagged_share"],
             expect["correction"]), nan_ok=True)
    assert 0.0 <= again["default"][5] <= 1.0  # the saved run kept its true labels
    assert again["k=5"][6] == 5 and again["default"][6] in (5, 10, 20, 30, 50, 100)  # the k each variant used
    assert again["target_precision=0.99"][4] <= again["default"][4]  # a stricter target only removes flags
    assert 0.0 <= again["k=5"][4] <= 1.0  # a variant may override the default k
    monkeypatch.setattr(sys, "argv", ["rescore.py", str(tmp_path), "--variants", "default"])
    rescore.main()
    out = capsys.readouterr().out
    assert "symmetric_0.3, mean over 1 seed(s)" in out and "| default |" in out and "| cleanlab 5-fold |" in out
    assert "| correction | k per seed |" in out
    assert rescore.parse_variant("kfold+oof_weight=1") == {"kfold": True, "oof_weight": 1.0}
    with pytest.raises(SystemExit, match="'kfold' must come first"):
        rescore.parse_variant("model_weight=0.3+kfold")
    with pytest.raises(SystemExit, match="no K-fold parts"):
        rescore.rows_for(tmp_path / "symmetric_0.3_seed0.npz", ["kfold"])
    witnesses = _load("witnesses")
    model_clean, model_wrong, knn_clean, knn_wrong, ratio = witnesses.witness_row(tmp_path / "symmetric_0.3_seed0.npz")
    # the neighbours name a right label far more often than a wrong one; the model, 4 epochs into a
    # tiny MLP, barely beats chance here but still not the other way round
    assert knn_clean > knn_wrong + 0.3 and model_clean >= model_wrong and np.isfinite(ratio)
    monkeypatch.setattr(sys, "argv", ["witnesses.py", str(tmp_path)])
    witnesses.main()
    assert f"| {tmp_path.name} | symmetric_0.3 (1 seeds) |" in capsys.readouterr().out
    found, posterior, model, neighbours = witnesses.suggestion_row(tmp_path / "symmetric_0.3_seed0.npz")
    # the flagged wrong labels, as a share of all samples, are the flags' precision times the share flagged
    assert found == pytest.approx(rows["fld-train"]["precision"] * rows["fld-train"]["flagged_share"])
    # posterior suggestions that are right, over those flags: the benchmark's correction over its precision
    assert posterior == pytest.approx(rows["fld-train"]["correction"] / rows["fld-train"]["precision"])
    assert 0.0 <= model <= 1.0 and 0.0 <= neighbours <= 1.0
    monkeypatch.setattr(sys, "argv", ["witnesses.py", "--suggestions", str(tmp_path)])
    witnesses.main()
    assert "| posterior suggests the true class | model alone | kNN alone |" in capsys.readouterr().out


def test_relabel_trace_benchmark_rows():
    bench = _load("relabel_trace")
    data = _load("detection").load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=4, hidden=32)
    result = bench.run_trace(small, "symmetric:0.4", 0, {"uncertain_action": "downweight"})
    assert [t.epoch for t in result.traces] == [1, 3]  # every 2 epochs; the last epoch was checked, so no final check
    for t in result.traces:
        assert t.relabeled + t.downweighted <= t.flagged
        assert isinstance(t.noise_model, bool)
        assert 0.0 < t.concentration <= 1.0 and -1.0 <= t.asymmetry <= 1.0  # what "auto" chose by
        assert 0.0 < t.chance <= 1.0
        assert np.isnan(t.relabels_right) or 0.0 <= t.relabels_right <= 1.0
    assert 0.0 <= result.test_acc <= 1.0 and 0.0 <= result.wrong_left <= 1.0
    o = result.outcome
    assert o.relabeled == result.traces[-1].relabeled  # the last check's relabels are the ones that stand
    assert o.right + o.changed_right + o.wrong_to_wrong == o.relabeled
    assert 0 <= o.after_downweight <= o.relabeled


def test_relabel_outcome_splits_the_final_relabels():
    bench = _load("relabel_trace")
    given = np.array([0, 0, 1, 1, 2, 2])
    true = np.array([0, 1, 1, 0, 2, 0])
    current = np.array([1, 1, 1, 2, 2, 0])  # 0: right label changed; 1: restored; 3: wrong -> wrong; 5: restored
    down = np.array([-1, 1, -1, 3, -1, 5])  # down-weighted at these epochs (-1: never)
    since = np.array([3, 3, -1, 3, -1, 5])  # relabeled since (-1: not relabeled at the end)
    o = bench.relabel_outcome(given, current, true, down, since)
    assert (o.relabeled, o.right, o.changed_right, o.wrong_to_wrong, o.after_downweight) == (4, 2, 1, 1, 1)


def test_training_recipe_overrides_reach_the_model_and_the_json_tables(tmp_path, capsys):
    bench = _load("detection")
    parser = bench.bench_parser(bench.__doc__, ["symmetric:0.2"])
    data = bench.start(parser.parse_args(["--epochs", "3", "--lr", "0.05", "--batch-size", "32", "--threads", "1"]))
    assert (data.epochs, data.lr, data.batch_size) == (3, 0.05, 32)
    assert bench.make_model(data).lr == 0.05
    default = bench.start(parser.parse_args(["--threads", "1"]))
    assert default.lr is None and bench.make_model(default).lr == bench.MLPClassifier(64, 10).lr
    assert bench.describe("mnist1d", "cnn1d", 60, 0.01) == "mnist1d (cnn1d, 60 epochs, Adam at 0.01)"
    assert bench.describe("digits", "mlp", 40) == "digits (mlp, 40 epochs)"
    row = {c: 0.5 for c in bench.COLUMNS}
    paths = []
    for name, lr in (("fast", 0.01), ("slow", None)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"dataset": "mnist1d", "model": "cnn1d", "epochs": 60, "lr": lr,
                                         "batch_size": 100, "clean_acc": {"0": 0.9},
                                         "results": {"none:0": [{"fld-train": row}]}}))
    bench.print_merged([str(paths[0])])
    assert "mnist1d (cnn1d, 60 epochs, Adam at 0.01), none:0" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="one dataset, model, training recipe and --monitor"):
        bench.print_merged([str(p) for p in paths])  # the same epochs at two learning rates


def test_check_curve_benchmark_reads_every_check():
    bench = _load("check_curve")
    data = _load("detection").load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=4, hidden=32)
    rows = bench.curve(small, "symmetric:0.3", seed=0)
    assert sorted(rows) == [1, 3]  # checks every 2 epochs: after the 2nd and the 4th
    for row in rows.values():
        assert set(row) >= set(bench.COLUMNS)
        assert row["gap"] == pytest.approx(row["fits"] - row["supported"])
        assert 0.0 <= row["fits"] <= 1.0 and 0.0 <= row["supported"] <= 1.0 and 0.0 <= row["f1"] <= 1.0


def test_epoch_window_windows_average_the_epochs_they_name():
    bench = _load("epoch_window")
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(8, 5))  # 8 epochs, 5 samples, 3 classes
    out = bench.windows(probs)
    np.testing.assert_allclose(out["all"], probs.mean(axis=0))
    np.testing.assert_allclose(out["from 50%"], probs[4:].mean(axis=0))
    np.testing.assert_allclose(out["from 75%"], probs[6:].mean(axis=0))
    np.testing.assert_array_equal(out["last"], probs[-1])
    ema = probs[0]
    for epoch in probs[1:]:
        ema = 0.7 * ema + 0.3 * epoch
    np.testing.assert_allclose(out["ema 0.3"], ema)


def test_epoch_window_all_epochs_reproduce_the_report(monkeypatch):
    bench = _load("epoch_window")
    data = _load("detection").load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=4, hidden=32)
    reports = []
    real_discovery = bench.discovery

    def keep(**options):
        fld = real_discovery(**options)
        reports.append(fld)
        return fld

    monkeypatch.setattr(bench, "discovery", keep)
    rows = bench.window_rows(small, "symmetric:0.3", seed=0)
    report = reports[0].report()
    detection = _load("detection")
    _, mask = detection.noisy_labels(small, "symmetric:0.3", 0)
    assert rows["all"] == pytest.approx(detection.flag_metrics(report.flagged, report.scores, mask))
    assert rows["last"] != rows["all"]  # four epochs of a learning model differ


def test_package_versions_name_what_the_numbers_depend_on():
    versions = _load("detection").package_versions()
    assert {"torch", "lightning", "numpy", "scikit-learn"} <= set(versions)
    assert all(isinstance(v, str) and v for v in versions.values())
    facts = _load("detection").machine_facts()
    assert set(facts) == {"cpu_capability", "processor", "cpu_count", "machine"}
    assert facts["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_monitor_runs_validate_on_half_the_test_set_with_noisy_labels(tmp_path, capsys):
    bench = _load("detection")
    data = bench.load_digits_data()
    small = bench.with_validation(replace(data, x=data.x[:400], y=data.y[:400], epochs=4, hidden=32))
    assert len(small.y_val) == len(data.y_test) // 2 and len(small.y_test) == len(data.y_test) - len(small.y_val)
    assert not set(map(bytes, small.x_val)) & set(map(bytes, small.x_test))  # the halves do not overlap
    assert (bench.monitor_mode("val_acc"), bench.monitor_mode("val_loss")) == ("max", "min")
    rows = bench.run_setting(small, "symmetric:0.3", seed=0, clean_acc=0.9, methods=("flag", "monitor"),
                             monitor="val_loss")
    assert set(rows) == {"fld-train", "fld-train, monitor=val_loss"}
    assert rows["fld-train, monitor=val_loss"]["check_epoch"] in (2, 4)
    with pytest.raises(ValueError, match="needs `monitor` and a validation set"):
        bench.run_setting(replace(small, x_val=None), "none:0", seed=0, clean_acc=0.9, methods=("monitor",),
                          monitor="val_loss")
    row = {c: 0.5 for c in bench.COLUMNS}
    paths = []
    for name, monitor in (("plain", None), ("monitored", "val_loss")):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"dataset": "digits", "model": "mlp", "epochs": 40, "lr": None,
                                         "batch_size": 64, "monitor": monitor, "clean_acc": {"0": 0.9},
                                         "results": {"none:0": [{"fld-train": row}]}}))
    bench.print_merged([str(paths[1])])
    assert "digits (mlp, 40 epochs; half the test set validates, val_loss), none:0" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--monitor"):
        bench.print_merged([str(p) for p in paths])  # test accuracy on two different test sets


def test_augmented_cnn_recipe_is_chosen_by_model_name_for_images_only(monkeypatch):
    bench = _load("detection")
    parser = bench.bench_parser(bench.__doc__, ["none:0"])
    with pytest.raises(SystemExit, match="small-cnn-aug trains on images; --dataset digits"):
        bench.start(parser.parse_args(["--model", "small-cnn-aug", "--threads", "1"]))
    images = bench.Data(np.zeros((4, 3, 32, 32), np.float32), np.zeros(4, np.int64),
                        np.zeros((2, 3, 32, 32), np.float32), np.zeros(2, np.int64), epochs=4, hidden=0,
                        model="small-cnn", batch_size=128)
    args = parser.parse_args(["--model", "small-cnn-aug", "--threads", "1"])
    args.dataset = "fake-images"
    monkeypatch.setitem(bench.DATASETS, "fake-images", lambda args: images)
    data = bench.start(args)
    assert (data.model, data.epochs, data.lr) == ("small-cnn-aug", 12, 0.01)
    model = bench.make_model(data)
    assert model.augment and model.one_cycle and model.lr == 0.01


@pytest.mark.parametrize(("noise", "fits"), [(["symmetric:0.2", "none:0"], 4), (["symmetric:0.2"], 3)])
def test_a_noise_free_setting_is_its_own_clean_reference(monkeypatch, tmp_path, noise, fits):
    bench = _load("detection")
    data = bench.load_digits_data()
    small = replace(data, x=data.x[:300], y=data.y[:300], epochs=2, hidden=32)
    calls = []

    def counting_fit(*args, **kwargs):
        calls.append(args[2])
        return fit(*args, **kwargs)

    fit = bench.fit
    monkeypatch.setattr(bench, "fit", counting_fit)
    monkeypatch.setattr(bench, "start", lambda args: small)
    path = tmp_path / "run.json"
    monkeypatch.setattr(sys, "argv", ["detection.py", "--noise", *noise, "--seeds", "0", "--methods", "flag",
                                      "--json", str(path)])
    bench.main()
    saved = json.loads(path.read_text())
    assert len(calls) == fits  # plain + flag per setting, and a clean training only when no setting is one
    assert list(saved["results"]) == sorted(noise, key=lambda spec: spec != "none:0")
    assert saved["clean_acc"]["0"] == saved["results"][noise[-1]][0]["fld-train"]["clean_acc"]
    if "none:0" in noise:
        assert saved["clean_acc"]["0"] == saved["results"]["none:0"][0]["fld-train"]["test_acc"]
        with pytest.raises(ValueError, match="`clean_acc` may be None only for a noise-free setting"):
            bench.run_setting(small, "symmetric:0.2", seed=0, clean_acc=None)


def test_rescore_rank_by_keeps_the_flags_and_ranks_by_the_named_signal(tmp_path):
    bench = _load("detection")
    data = bench.load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=6, hidden=32)
    bench.run_setting(small, "symmetric:0.3", seed=0, clean_acc=0.9, methods=("flag",), save=tmp_path)
    path = tmp_path / "symmetric_0.3_seed0.npz"
    rescore = _load("rescore")
    names = ["rank_by=aum_margin", "rank_by=first_learned_epoch", "rank_by=forgetting_events",
             "rank_by=rank_average", "self_confidence", "rank_by=posterior_given"]
    again = rescore.rows_for(path, ["default", *names])
    for name in names:
        assert again[name][:3] == again["default"][:3]  # same flags: precision, recall, F1
    assert again["self_confidence"][3] == again["rank_by=posterior_given"][3]
    saved = np.load(path)
    ev = run_check(rescore.load_store(saved))
    mask = saved["mask"]
    assert again["rank_by=aum_margin"][3] == pytest.approx(auroc(-ev.signals["aum_margin"], mask))
    learned = ev.signals["first_learned_epoch"]
    assert (learned < 0).any()  # some labels were never fit in six epochs: they rank as the latest
    latest = np.where(learned < 0, learned.max() + 1, learned)
    assert again["rank_by=first_learned_epoch"][3] == pytest.approx(auroc(latest, mask))
    # the ensemble: mean percentile rank of the score, -AUM, the first-learned epoch and the forgetting events
    signals = (ev.scores, -ev.signals["aum_margin"], latest, ev.signals["forgetting_events"])
    ensemble = np.mean([rankdata(x) / x.size for x in signals], axis=0)
    assert again["rank_by=rank_average"][3] == pytest.approx(auroc(ensemble, mask))
    assert again["rank_by=rank_average"][3] != again["default"][3]
    with pytest.raises(SystemExit, match="rank_by='margin'; choose from"):
        rescore.rows_for(path, ["rank_by=margin"])
    labels = saved["labels"]
    posterior = rescore._posterior(rescore.load_store(saved), labels)  # the check's own posterior
    np.testing.assert_allclose(posterior[np.arange(labels.size), labels], ev.signals["posterior_given"], atol=1e-9)
    both = rescore.rows_for(path, ["rank_by=noise_model", "ranking=noise_model"])
    noise_model = both["rank_by=noise_model"]
    assert noise_model[:3] == again["default"][:3] and 0.0 <= noise_model[3] <= 1.0
    # the check's own option ranks by the same probabilities and moves the flags, not their number
    assert both["ranking=noise_model"][3] == pytest.approx(noise_model[3])
    assert both["ranking=noise_model"][4] == again["default"][4]


def test_rescore_reproduces_the_saved_kfold_run(tmp_path):
    bench = _load("detection")
    data = bench.load_digits_data()
    small = replace(data, x=data.x[:400], y=data.y[:400], epochs=4, hidden=32)
    rows = bench.run_setting(small, "symmetric:0.3", seed=0, clean_acc=0.9, methods=("kfold",), save=tmp_path)
    path = tmp_path / "symmetric_0.3_seed0.npz"
    assert "store_embeddings" not in np.load(path)  # K-fold mode alone: no flag run to keep
    rescore = _load("rescore")
    again = rescore.rows_for(path, ["kfold", "kfold+oof_weight=1+model_weight=1", "kfold+self_confidence"])
    expect = rows["fld-train K-fold"]
    assert again["kfold"][:6] == pytest.approx(
        (expect["precision"], expect["recall"], expect["f1"], expect["auroc"], expect["flagged_share"],
         expect["correction"]))
    assert again["kfold+oof_weight=1+model_weight=1"][3] != pytest.approx(expect["auroc"])
    # self_confidence keeps the flags and ranks by 1 - posterior_given
    assert again["kfold+self_confidence"][:3] == again["kfold"][:3]
    saved = np.load(path)
    parts = bench.kfold_parts(saved)
    ev = combine_folds(saved["labels"], parts["oof"], parts["dynamics"], parts["votes"], num_classes=10)
    assert again["kfold+self_confidence"][3] == pytest.approx(auroc(1 - ev.signals["posterior_given"], saved["mask"]))
    with pytest.raises(SystemExit, match="without a flag-run store"):
        rescore.rows_for(path, ["default"])
    with pytest.raises(SystemExit, match="rank_by=noise_model needs the flag run's store"):
        rescore.rows_for(path, ["kfold+rank_by=noise_model"])


def test_many_classes_benchmark_rows():
    bench = _load("many_classes")
    problem = bench.make_problem(20, 1500, 1.5)
    assert problem.x.shape == (1200, 40) and problem.x_test.shape == (300, 40)
    assert set(np.unique(problem.y)) == set(range(20))
    rows, acc, plain = bench.run_setting(problem, "symmetric:0.4", 0, epochs=4, every=2)
    assert [r.epoch for r in rows] == [1, 3]
    for r in rows:
        assert 0.0 <= r.concentration <= 1.0 and 0.0 < r.chance <= 1.0
        assert r.diffuse == scoring.is_diffuse(r.concentration, r.chance)
        assert 0 <= r.downweighted <= r.flagged
    assert rows[0].downweighted == 0  # the licence needs two checks in a row
    assert 0.0 <= acc <= 1.0 and 0.0 <= plain <= 1.0
