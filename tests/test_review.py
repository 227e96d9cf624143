"""The review loop: queue -> a reviewer's edits -> apply; malformed files change nothing."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fld_train import LabelReport, RelabeledDataset, ReviewFileError, scoring
from fld_train.review import human_agreement, queue_order


def _report_and_dataset():
    """Six samples, two classes; 3, 4 and 5 are labelled 0 but look like 1, and were relabeled (three
    of five: over the default flag cap of half a class, lifted here)."""
    given = np.array([0, 0, 1, 0, 0, 0])
    model = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    knn = np.array([[1.0, 0.0], [1.0, 0.0], [0.2, 0.8], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    ev = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=1.0)
    ds = RelabeledDataset(list(zip(np.zeros(6), given)), num_classes=2)
    relabel = np.flatnonzero(ev.decisions == scoring.RELABEL)
    ds.set_labels(relabel, ev.suggested_labels[relabel], epoch=1, reason="relabel")
    return LabelReport.from_evaluation(ev, given, ds.current_labels, 1, num_classes=2), ds


def _write(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_queue_ranks_unresolved_first_then_least_certain_corrections():
    scores = np.array([0.9, 0.6, 0.8, 0.7, 0.1])
    decisions = np.array(["review", "relabel", "review", "relabel", "keep"], dtype=object)
    flagged = np.array([1, 1, 1, 1, 0], bool)
    np.testing.assert_array_equal(queue_order(scores, decisions, flagged), [0, 2, 1, 3])
    np.testing.assert_array_equal(queue_order(scores, decisions, flagged, flagged & (scores > 0.85)), [2, 1, 3])


def test_queue_files_are_private_by_default(tmp_path):
    report, _ = _report_and_dataset()
    csv_path, jsonl_path = report.review_queue(tmp_path)
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["index"]) for r in rows] == [int(i) for i in queue_order(
        report.scores, report.decisions, report.flagged)]
    assert "path" not in rows[0] and "thumbnail" not in rows[0]
    with open(jsonl_path) as fh:
        lines = [json.loads(x) for x in fh]
    assert [r["index"] for r in lines] == [int(r["index"]) for r in rows]
    assert not (tmp_path / "thumbnails").exists()


def test_queue_adds_paths_and_thumbnails_only_when_asked(tmp_path):
    report, _ = _report_and_dataset()
    csv_path, _ = report.review_queue(tmp_path, paths=[f"img/{i}.png" for i in range(6)],
                                      images=lambda i: np.full((4, 4), 10 * i, np.uint8))
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["path"] == f"img/{rows[0]['index']}.png"
    assert (tmp_path / rows[0]["thumbnail"]).exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_round_trip_serves_reviewed_labels_and_audits_them(tmp_path, fmt):
    report, ds = _report_and_dataset()
    csv_path, _ = report.review_queue(tmp_path)
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    decisions = {3: ("relabel", "1"), 4: ("keep", ""), 5: ("exclude", "")}
    for row in rows:
        row["review_decision"], row["review_label"] = decisions.get(int(row["index"]), ("", ""))
    edited = tmp_path / f"edited.{fmt}"
    if fmt == "csv":
        _write(edited, rows)
    else:
        edited.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ds.apply_review(edited, epoch=2) == 3
    assert ds[3][1] == 1 and ds[4][1] == 0 and ds.weights[5] == 0.0 and ds.weights[3] == 1.0
    np.testing.assert_array_equal(ds.reviewed_mask, [0, 0, 0, 1, 1, 1])
    reviews = {(c.index, c.field, c.old, c.new) for c in ds.audit_log if c.reason.startswith("review")}
    assert {(3, "review", 1, 1), (4, "label", 1, 0), (4, "review", 1, 0), (5, "weight", 1.0, 0.0),
            (5, "label", 1, 0), (5, "review", 1, 0)} <= reviews
    agreement = human_agreement(ds.reviews, ds.original_labels, 2)
    # 3, 4 and 5 had automatic corrections to 1: the reviewer confirmed 3, overruled 4 and 5
    assert (agreement["reviewed_corrections"], agreement["confirmed"]) == (3, 1)
    np.testing.assert_allclose(agreement["per_class"], [1 / 3, np.nan])
    ds.revert()
    np.testing.assert_array_equal(ds.current_labels, ds.original_labels)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"index": "x", "review_decision": "keep"}], "line 3: `index` must be an integer, got 'x'"),
        ([{"index": "9", "review_decision": "keep"}], "line 3: `index` 9 is outside \\[0, 6\\)"),
        ([{"index": "1", "review_decision": "keep"}, {"index": "1", "review_decision": "exclude"}],
         "line 4: index 1 was already decided on line 3"),
        ([{"index": "1", "review_decision": "delete"}], "`review_decision` must be one of keep, relabel"),
        ([{"index": "1", "review_decision": "relabel", "review_label": ""}], "relabel needs a `review_label`"),
        ([{"index": "1", "review_decision": "relabel", "review_label": "7"}], "`review_label` 7 is outside \\[0, 2\\)"),
        ([{"idx": "1", "review_decision": "keep"}], "missing column `index`"),
    ],
)
def test_malformed_review_files_raise_and_change_nothing(tmp_path, rows, match):
    _, ds = _report_and_dataset()
    before = (ds.current_labels, ds.weights, ds.audit_log)
    rows = [{"index": "0", "review_decision": "relabel", "review_label": "1"}, *rows]  # a valid row first
    keys = sorted({k for r in rows for k in r})
    _write(tmp_path / "bad.csv", [{k: r.get(k, "") for k in keys} for r in rows])
    if "idx" in keys:  # the missing-column case: drop `index` from the header altogether
        _write(tmp_path / "bad.csv", [{k: v for k, v in r.items() if k != "index"} | {"idx": r.get("idx", "0")}
                                      for r in rows])
    with pytest.raises(ReviewFileError, match=match):
        ds.apply_review(tmp_path / "bad.csv")
    np.testing.assert_array_equal(ds.current_labels, before[0])
    np.testing.assert_array_equal(ds.weights, before[1])
    assert ds.audit_log == before[2] and ds.reviews == []


def test_bad_file_kinds(tmp_path):
    _, ds = _report_and_dataset()
    with pytest.raises(ReviewFileError, match="must end in .csv or .jsonl"):
        (tmp_path / "r.txt").write_text("x")
        ds.apply_review(tmp_path / "r.txt")
    with pytest.raises(ReviewFileError, match="line 1: not valid JSON"):
        (tmp_path / "r.jsonl").write_text("{oops\n")
        ds.apply_review(tmp_path / "r.jsonl")
    with pytest.raises(ReviewFileError, match="does not exist"):
        ds.apply_review(tmp_path / "missing.csv")


def test_reviews_outrank_later_checks_and_survive_resume(tmp_path):
    """Train, review the queue, resume from the checkpoint: reviewed labels stay, agreement is logged."""
    import logging

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.data import DataLoader, TensorDataset

    from fld_train import FakeLabelDiscovery
    from fld_train.demo import MLPClassifier, load_digits_split
    from fld_train.noise import inject_noise

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    x, y, _, _ = load_digits_split(seed=0)
    noisy, _ = inject_noise(y, 10, rate=0.2, seed=0)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))

    def fit(epochs, ckpt_path=None):
        fld = FakeLabelDiscovery(10, check_every_n_epochs=1, action="relabel", tensorboard=False)
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", callbacks=[
            fld, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)],
            logger=TensorBoardLogger(tmp_path, name="tb", version=0), enable_progress_bar=False,
            enable_model_summary=False)
        trainer.fit(MLPClassifier(64, 10), DataLoader(ds, batch_size=64, shuffle=True), ckpt_path=ckpt_path)
        return fld

    pl.seed_everything(0, verbose=False)
    report = fit(6).report()  # relabels start once model and neighbours both give a majority
    csv_path, _ = report.review_queue(tmp_path / "queue")
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    auto = [r for r in rows if r["decision"] == "relabel"][:6]
    # the reviewer confirms three automatic corrections, overrules two (keep) and excludes one
    for r, verdict in zip(auto, ["relabel", "relabel", "relabel", "keep", "keep", "exclude"]):
        r["review_decision"] = verdict
        r["review_label"] = r["current_label"] if verdict == "relabel" else ""
    _write(tmp_path / "reviewed.csv", rows)
    assert ds.apply_review(tmp_path / "reviewed.csv") == 6
    served = {int(r["index"]): (ds[int(r["index"])][1], ds.weights[int(r["index"])]) for r in auto}

    fld = fit(9, ckpt_path=tmp_path / "ckpt" / "last.ckpt")  # restores the checkpoint, then checks 3 more times
    after = fld.report()
    for i, (label, weight) in served.items():
        assert (ds[i][1], ds.weights[i]) == (label, weight)  # later checks and the restore kept them
        assert after.decisions[i] == "reviewed"
    kept = [int(r["index"]) for r in auto[3:5]]
    np.testing.assert_array_equal(ds.current_labels[kept], noisy[kept])
    agreement = after.human_agreement()
    assert (agreement["reviewed_corrections"], agreement["confirmed"]) == (6, 3)
    acc = EventAccumulator(str(tmp_path / "tb" / "version_0"))
    acc.Reload()
    assert acc.Scalars("fld/human_agreement")[-1].value == pytest.approx(0.5)
