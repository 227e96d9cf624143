import csv

import numpy as np

from fld_train import LabelReport, scoring


def _report() -> LabelReport:
    given = np.array([0, 0, 1, 0])
    model = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]])
    knn = np.array([[1.0, 0.0], [0.9, 0.1], [0.2, 0.8], [0.0, 1.0]])
    ev = scoring.evaluate(given, model, knn, action="relabel")
    return LabelReport.from_evaluation(ev, given, np.array([0, 0, 1, 1]), epoch=3)


def test_report_holds_contract_arrays():
    r = _report()
    assert len(r) == 4 and r.epoch == 3
    np.testing.assert_array_equal(r.flagged, [False, False, False, True])
    np.testing.assert_array_equal(r.suggested_labels, [0, 0, 1, 1])
    assert list(r.decisions) == ["keep", "keep", "keep", "relabel"]
    assert r.summary()["flagged"] == 1 and r.summary()["relabel_fraction"] == 0.25


def test_to_csv_writes_one_row_per_sample_with_reasons(tmp_path):
    r = _report()
    r.to_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert rows[3]["flagged"] == "1" and rows[3]["decision"] == "relabel"
    assert "kNN agreement=0.00" in rows[3]["reason"] and "suggested 1 over given 0" in rows[3]["reason"]
    assert rows[0]["reason"] == "" and float(rows[3]["score"]) == r.scores[3].round(6)


def test_detection_and_correction_against_known_truth():
    r = _report()
    m = r.detection(np.array([False, False, False, True]))
    assert (m.precision, m.recall, m.auroc) == (1.0, 1.0, 1.0)
    assert r.correction_accuracy(np.array([0, 0, 1, 1])) == 1.0


def test_diffuse_flips_follow_the_concentration_of_the_estimated_flips():
    zeros = np.zeros(2, dtype=np.int64)
    arrays = {"given_labels": zeros, "current_labels": zeros, "suggested_labels": zeros, "scores": np.zeros(2),
              "flagged": np.zeros(2, dtype=bool), "decisions": np.array(["keep", "keep"]),
              "weights": np.ones(2, dtype=np.float32)}
    assert LabelReport(**arrays, flip_concentration=0.2).diffuse_flips
    assert not LabelReport(**arrays, flip_concentration=0.5).diffuse_flips
    assert not LabelReport(**arrays, flip_concentration=0.0).diffuse_flips  # no flip estimated
