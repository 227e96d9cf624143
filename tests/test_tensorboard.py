"""What a check writes to TensorBoard, read back with TensorBoard's own reader and its HTTP server."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset, TensorBoardOptions
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore")
EPOCHS = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One relabel run on digits with every TensorBoard option on; returns what the test needs."""
    out = tmp_path_factory.mktemp("tb")
    x, y, _, _ = load_digits_split(seed=0)
    noisy, mask = inject_noise(y, 10, rate=0.2, seed=0)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    options = TensorBoardOptions(image_shape=(8, 8), projector_max_points=600, top_k=16)
    fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel", noise_mask=mask, tensorboard=options)
    logger = TensorBoardLogger(out, name="tb")
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", logger=logger, callbacks=[fld],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=5)
    trainer.fit(MLPClassifier(64, 10), DataLoader(ds, batch_size=64, shuffle=True))
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return {"acc": acc, "report": fld.report(), "mask": mask, "log_dir": Path(logger.log_dir),
            "root": out, "options": options}


def _last(acc, tag):
    return acc.Scalars(tag)[-1].value


def test_count_scalars_equal_the_report(run):
    acc, report = run["acc"], run["report"]
    assert len(acc.Scalars("fld/flagged")) == EPOCHS // 2
    assert _last(acc, "fld/flagged") == report.flagged.sum()
    assert _last(acc, "fld/relabeled") == (report.current_labels != report.given_labels).sum()
    # 20% symmetric noise: the second check confirms the first's diffuse flips, so "auto" down-weights
    assert _last(acc, "fld/downweighted") == (report.decisions == "downweight").sum() > 0
    assert _last(acc, "fld/review") == (report.decisions == "review").sum()
    assert _last(acc, "fld/flagged_fraction") == pytest.approx(report.flagged.mean(), rel=1e-6)
    assert _last(acc, "fld/knn_k") == report.knn_k and report.knn_k in (5, 10, 20, 30, 50, 100)
    assert _last(acc, "fld/flip_concentration") == pytest.approx(report.flip_concentration)
    assert _last(acc, "fld/flip_asymmetry") == pytest.approx(report.flip_asymmetry)
    assert _last(acc, "fld/noise_model") == float(report.noise_model)
    assert _last(acc, "fld/diffuse_flips") == 1.0 and report.diffuse_flips  # 20% symmetric noise


def test_per_class_scalars_equal_the_report(run):
    acc, report = run["acc"], run["report"]
    table = report.per_class()
    for c in range(10):
        assert _last(acc, f"fld_per_class/flagged/{c}") == table["flagged"][c]
        assert _last(acc, f"fld_per_class/relabeled/{c}") == table["relabeled"][c]
        assert _last(acc, f"fld_per_class/flagged_fraction/{c}") == pytest.approx(
            table["flagged"][c] / table["samples"][c], rel=1e-6)


def test_detection_scalars_and_pr_curve_against_the_noise_mask(run):
    acc, report, mask = run["acc"], run["report"], run["mask"]
    m = report.detection(mask)
    for key in ("precision", "recall", "f1", "auroc"):
        assert _last(acc, f"fld/{key}") == pytest.approx(getattr(m, key), rel=1e-5)
    assert "fld/pr_curve" in acc.Tags()["tensors"]
    pr = acc.Tensors("fld/pr_curve")[-1].tensor_proto
    assert pr.tensor_shape.dim[0].size == 6  # TP, FP, TN, FN, precision, recall rows


def test_histograms_of_score_and_every_signal(run):
    acc, report = run["acc"], run["report"]
    tags = set(acc.Tags()["histograms"])
    assert {"fld_hist/score", *(f"fld_hist/{k}" for k in report.signals)} <= tags
    hist = acc.Histograms("fld_hist/score")[-1].histogram_value
    assert hist.num == len(report) and hist.max == pytest.approx(report.scores.max(), rel=1e-6)


def test_images_and_text(run):
    acc, report = run["acc"], run["report"]
    assert set(acc.Tags()["images"]) == {"fld_images/top_flagged", "fld_images/label_transitions",
                                         "fld_images/data_map"}
    grid = acc.Images("fld_images/top_flagged")[-1]
    assert grid.width == 8 * 72 and grid.height == 2 * (72 + 14)  # 16 tiles, 8 per row
    text = acc.Tensors("fld/top_flagged/text_summary")[-1].tensor_proto.string_val[0].decode()
    top = np.flatnonzero(report.flagged)[np.argsort(-report.scores[report.flagged], kind="stable")][0]
    assert f"| {top} | {report.given_labels[top]} | {report.suggested_labels[top]} |" in text


def test_projector_has_one_metadata_row_per_point_and_thumbnails(run):
    log_dir, report = run["log_dir"], run["report"]
    config = (log_dir / "projector_config.pbtxt").read_text()
    assert "metadata_path" in config and "sprite" in config
    (step_dir,) = [p for p in log_dir.iterdir() if p.is_dir()]
    rows = (step_dir / "fld_embeddings" / "metadata.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["index", "given", "suggested", "score", "flagged"]
    assert len(rows) == 1 + 600
    points = [int(r.split("\t")[0]) for r in rows[1:]]
    assert report.flagged.sum() < 600 and set(np.flatnonzero(report.flagged)) <= set(points)  # flagged first
    tensors = (step_dir / "fld_embeddings" / "tensors.tsv").read_text().splitlines()
    assert len(tensors) == 600


def test_tensorboard_false_writes_only_the_counts(tmp_path):
    x, y, _, _ = load_digits_split(seed=0)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x[:300]), torch.from_numpy(y[:300])))
    fld = FakeLabelDiscovery(10, check_every_n_epochs=1, action="flag", tensorboard=False)
    logger = TensorBoardLogger(tmp_path, name="tb")
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=logger, callbacks=[fld], enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(
        MLPClassifier(64, 10), DataLoader(ds, batch_size=64))
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert not acc.Tags()["images"] and not acc.Tags()["histograms"]
    assert {t for t in acc.Tags()["scalars"] if t.startswith("fld")} == {
        f"fld/{k}{s}" for k in ("flagged", "relabeled", "downweighted", "review") for s in ("", "_fraction")} | {
        "fld/knn_k", "fld/flip_concentration", "fld/flip_asymmetry", "fld/chance_concentration", "fld/noise_model",
        "fld/diffuse_flips"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.mark.slow
def test_a_real_tensorboard_server_serves_the_scalars_and_images(run):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(run["root"]),
                             "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while True:
            try:
                tags = json.loads(_get(f"{base}/data/plugin/scalars/tags"))
                if tags and any("fld/flagged" in t for t in tags.values()):
                    break
            except OSError:
                pass
            assert time.time() < deadline, "tensorboard did not come up"
            time.sleep(1)
        (run_name,) = [r for r, t in tags.items() if "fld/flagged" in t]
        q = urllib.parse.urlencode({"run": run_name, "tag": "fld/flagged"})
        points = json.loads(_get(f"{base}/data/plugin/scalars/scalars?{q}"))
        assert [p[2] for p in points][-1] == run["report"].flagged.sum()

        q = urllib.parse.urlencode({"run": run_name, "tag": "fld_images/top_flagged", "sample": 0})
        images = json.loads(_get(f"{base}/data/plugin/images/images?{q}"))
        png = _get(f"{base}/data/plugin/images/individualImage?{images[-1]['query']}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
