import re
import subprocess
import sys

import numpy as np
import pytest

from fld_train.cli import build_parser, main


def test_demo_meets_the_documented_targets(tmp_path, capsys):
    """The README's demo at its defaults: F1 >= 0.90, AUROC >= 0.98, >= 90% of relabels right."""
    from fld_train.demo import run_demo

    result = run_demo(tmp_path / "demo")
    assert result.detection.f1 >= 0.90
    assert result.detection.auroc >= 0.98
    assert result.relabeled > 0 and result.relabel_accuracy >= 0.90
    assert result.downweighted == int(np.count_nonzero(result.report.weights < 1))
    assert result.report_csv.exists()
    assert any(result.tensorboard_dir.glob("events.out.tfevents.*"))


def test_demo_command_prints_metrics_and_paths(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--epochs", "4", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for needle in ("precision", "recall", "F1", "AUROC", "restored the true label", "down-weighted", "plain training",
                   "with fld-train", str(tmp_path / "label_report.csv"), "tensorboard --logdir"):
        assert needle in out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["demo", "--noise-rate", "1.5"], "--noise-rate: must be in \\[0, 1\\), got 1.5"),
        (["demo", "--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
        (["nothing"], "invalid choice: 'nothing'"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, match, capsys):
    with pytest.raises(SystemExit) as err:
        build_parser().parse_args(argv)
    assert err.value.code == 2
    assert __import__("re").search(match, capsys.readouterr().err)


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "fld_train.cli", "--help"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0 and "demo" in out.stdout


def test_report_command_prints_counts_per_class_table_and_top_flagged(tmp_path, capsys):
    import numpy as np

    from fld_train import LabelReport, scoring

    given = np.array([0, 0, 1, 0, 1, 1])
    model = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.9, 0.1]])
    ev = scoring.evaluate(given, model, model, action="relabel")
    report = LabelReport.from_evaluation(ev, given, np.where(ev.decisions == 1, ev.suggested_labels, given), 3)
    report.to_csv(tmp_path / "r.csv")
    assert main(["report", str(tmp_path / "r.csv"), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "6 samples, 2 flagged (33.3%): 2 relabel" in out
    assert "class  samples  flagged" in out and "top 2 flagged" in out
    assert "      3  0->1" in out and "      5  1->0" in out
    loaded = LabelReport.from_csv(tmp_path / "r.csv")
    np.testing.assert_array_equal(loaded.flagged, report.flagged)
    np.testing.assert_allclose(loaded.scores, report.scores, atol=1e-6)


def test_report_command_on_a_bad_file(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    assert main(["report", str(tmp_path / "x.csv")]) == 2
    assert "missing column(s) index" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope.csv")]) == 2


def _image_folder(root, classes=3, per_class=8):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(rng.normal(60 * c + 40, 25, size=(20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")
    return root


def test_fit_command_writes_report_review_queue_and_tensorboard(tmp_path, capsys):
    data = _image_folder(tmp_path / "train")
    out = tmp_path / "out"
    code = main(["fit", "--data-dir", str(data), "--out", str(out), "--epochs", "2", "--workers", "0",
                 "--batch-size", "8", "--limit-batches", "2", "--threads", "1", "--accelerator", "cpu"])
    assert code == 0
    text = capsys.readouterr().out
    # 2 epochs of 2 batches of 8 images: some of the 24 are never drawn
    assert re.search(r"24 samples \(\d+ not seen in training yet\)", text) and "review queue" in text
    for name in ("label_report.csv", "audit_log.csv", "review/review_queue.csv", "review/review_queue.jsonl"):
        assert (out / name).exists(), name
    assert list((out / "tensorboard").glob("version_*/events.out.tfevents.*"))
    from fld_train.report import LabelReport

    report = LabelReport.from_csv(out / "label_report.csv")
    assert len(report) == 24 and set(report.given_labels) == {0, 1, 2}


def test_fit_command_explains_a_bad_data_dir(tmp_path, capsys):
    assert main(["fit", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "`data_dir`" in capsys.readouterr().err


def test_fit_help_lists_its_options():
    help_text = build_parser()._subparsers._group_actions[0].choices["fit"].format_help()
    for flag in ("--data-dir", "--model", "--epochs", "--action", "--out", "--limit-batches"):
        assert flag in help_text
