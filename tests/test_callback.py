"""End-to-end tests of FakeLabelDiscovery inside Trainer.fit on digits."""

from __future__ import annotations

import io
import logging
from dataclasses import replace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from fld_train import FakeLabelDiscovery, RelabeledDataset, scoring
from fld_train.check import run_check
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.noise import inject_noise

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers.*")


@pytest.fixture(scope="module")
def digits():
    x, y, _, _ = load_digits_split(seed=0)
    noisy, mask = inject_noise(y, 10, rate=0.2, seed=0)
    return x, y, noisy, mask


def _fit(x, labels, callback, *, epochs=12, dataset=None, logger=False, model=None, **trainer_kwargs):
    pl.seed_everything(0, verbose=False)
    ds = dataset if dataset is not None else RelabeledDataset(
        TensorDataset(torch.from_numpy(x), torch.from_numpy(labels)))
    model = model if model is not None else MLPClassifier(x.shape[1], 10)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=logger, callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, **trainer_kwargs)
    trainer.fit(model, DataLoader(ds, batch_size=64, shuffle=True))
    return ds, trainer


def test_flag_mode_finds_the_injected_noise_and_changes_nothing(digits):
    x, _, noisy, mask = digits
    fld = FakeLabelDiscovery(10, check_every_n_epochs=3, action="flag")
    ds, _ = _fit(x, noisy, fld)
    report = fld.report()
    assert len(report) == len(noisy) and report.epoch == 11
    assert report.detection(mask).auroc >= 0.95
    assert report.detection(mask).f1 >= 0.8
    assert np.all((report.scores >= 0) & (report.scores <= 1))
    np.testing.assert_array_equal(report.given_labels, noisy)
    np.testing.assert_array_equal(ds.current_labels, noisy)
    assert ds.audit_log == [] and set(report.decisions) <= {"keep", "review"}
    np.testing.assert_array_equal(report.decisions == "review", report.flagged)


def test_relabel_mode_swaps_labels_and_report_still_judges_the_given_label(digits, tmp_path):
    x, y, noisy, mask = digits
    fld = FakeLabelDiscovery(10, check_every_n_epochs=3, action="relabel")
    ds, _ = _fit(x, noisy, fld)
    report = fld.report()
    changed = ds.relabeled_indices
    assert changed.size > 0.6 * mask.sum()
    assert np.mean(ds.current_labels[changed] == y[changed]) >= 0.9
    np.testing.assert_array_equal(report.current_labels, ds.current_labels)
    np.testing.assert_array_equal(report.given_labels, noisy)
    assert report.flagged[changed].all()  # a relabeled sample stays flagged
    assert report.detection(mask).auroc >= 0.95
    assert report.correction_accuracy(y) >= 0.9
    last = {c.index: c for c in ds.audit_log if c.field == "label"}
    assert set(changed) <= set(last)
    for i in changed:  # the audit trail ends at what the dataset serves, with the reason
        assert last[i].new == ds.current_labels[i] and last[i].reason.startswith("relabel: score=")
    report.to_csv(tmp_path / "r.csv")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert len(lines) == len(noisy) + 1 and lines[0].startswith("index,given_label,current_label")


def test_downweight_mode_lowers_flagged_weights_only(digits):
    x, _, noisy, mask = digits
    fld = FakeLabelDiscovery(10, check_every_n_epochs=3, action="downweight")
    ds, _ = _fit(x, noisy, fld)
    report = fld.report()
    np.testing.assert_array_equal(ds.current_labels, noisy)
    np.testing.assert_allclose(ds.weights, report.weights)
    assert np.all(ds.weights[report.flagged] < 1) and np.all(ds.weights[~report.flagged] == 1)
    assert (ds.weights < 1)[mask].mean() > 0.6


def test_relabel_mode_can_downweight_what_it_does_not_relabel(digits):
    x, _, noisy, _ = digits
    fld = FakeLabelDiscovery(10, check_every_n_epochs=3, action="relabel", uncertain_action="downweight",
                             max_relabel_class_fraction=0.05)  # a small budget leaves candidates over
    ds, _ = _fit(x, noisy, fld)
    report = fld.report()
    relabeled, downweighted = report.decisions == "relabel", report.decisions == "downweight"
    assert relabeled.any() and downweighted.any() and not np.any(report.decisions == "review")
    np.testing.assert_allclose(ds.weights, report.weights)
    np.testing.assert_array_equal(ds.current_labels[downweighted], noisy[downweighted])
    assert np.all(ds.weights[downweighted] < 1) and np.all(ds.weights[~downweighted] == 1)


def test_relabel_mode_downweights_by_default_only_where_two_checks_found_diffuse_flips(digits):
    x, y, _, _ = digits
    symmetric, _ = inject_noise(y, 10, rate=0.4, seed=0)
    def run(labels, **options):
        fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel", tensorboard=False, **options)
        ds, _ = _fit(x, labels, fld, epochs=6)
        return fld.report(), ds

    report, ds = run(symmetric)
    assert report.flip_concentration <= scoring.DIFFUSE_CONCENTRATION
    downweighted = report.decisions == "downweight"
    assert downweighted.sum() > 100 and not np.any(report.decisions == "review")
    np.testing.assert_allclose(ds.weights, report.weights)
    assert np.all(ds.weights[downweighted] < 1) and np.all(ds.weights[~downweighted] == 1)
    review, ds = run(symmetric, uncertain_action="review")
    assert not np.any(review.decisions == "downweight") and np.all(ds.weights == 1)
    clean, ds = run(y)  # a model's confusions on clean labels concentrate: no licence
    assert clean.flip_concentration > scoring.DIFFUSE_CONCENTRATION
    assert not np.any(clean.decisions == "downweight") and np.all(ds.weights == 1)


def test_each_check_logs_counts_to_tensorboard(digits, tmp_path):
    x, _, noisy, _ = digits
    fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel")
    logger = TensorBoardLogger(tmp_path, name="tb")
    _fit(x, noisy, fld, epochs=6, logger=logger)
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for key in ("flagged", "relabeled", "downweighted", "review"):
        assert f"fld/{key}" in tags and f"fld/{key}_fraction" in tags
    events = acc.Scalars("fld/relabeled")
    assert len(events) == 3  # checks after epochs 2, 4, 6
    report = fld.report()
    assert events[-1].value == (report.current_labels != report.given_labels).sum()
    np.testing.assert_allclose(acc.Scalars("fld/flagged_fraction")[-1].value, report.flagged.mean(), rtol=1e-6)


def test_final_check_runs_when_the_last_epoch_is_not_a_check_epoch(digits):
    x, _, noisy, _ = digits
    fld = FakeLabelDiscovery(10, check_every_n_epochs=4, action="flag")
    _fit(x, noisy, fld, epochs=5)
    assert fld.report().epoch == 4


def test_batch_without_indices_gets_a_clear_error(digits):
    x, _, noisy, _ = digits
    plain = TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy))
    with pytest.raises(ValueError, match="needs each training batch to be \\(x, y, idx\\).*RelabeledDataset"):
        _fit(x, noisy, FakeLabelDiscovery(10, action="flag"), epochs=1, dataset=plain)


def test_labels_outside_num_classes_get_a_clear_error(digits):
    x, _, noisy, _ = digits
    bad = noisy.copy()
    bad[5] = 12
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(bad)))
    with pytest.raises(ValueError, match="RelabeledDataset's labels` holds 1 value.*position 5: 12"):
        _fit(x, bad, FakeLabelDiscovery(10, action="flag"), epochs=1, dataset=ds)
    # without a RelabeledDataset the batch itself is checked
    plain = TensorDataset(torch.from_numpy(x), torch.from_numpy(bad), torch.arange(len(bad)))
    with pytest.raises(ValueError, match="label 12 \\(sample index 5\\) is outside \\[0, num_classes=10\\)"):
        _fit(x, bad, FakeLabelDiscovery(10, action="flag"), epochs=1, dataset=plain)


def test_model_without_a_fitting_head_lists_the_candidates(digits):
    x, _, noisy, _ = digits
    with pytest.raises(ValueError, match="out_features == num_classes=7.*'head' \\(in=128, out=10\\)"):
        _fit(x, noisy, FakeLabelDiscovery(7, action="flag"), epochs=1)


def test_changing_actions_need_a_relabeled_dataset(digits):
    x, _, noisy, _ = digits
    plain = TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy), torch.arange(len(noisy)))
    with pytest.raises(ValueError, match="action='relabel'.*RelabeledDataset"):
        _fit(x, noisy, FakeLabelDiscovery(10, action="relabel"), epochs=1, dataset=plain)


def test_flag_mode_works_on_any_dataset_yielding_indices(digits):
    x, _, noisy, mask = digits
    plain = TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy), torch.arange(len(noisy)))
    fld = FakeLabelDiscovery(10, check_every_n_epochs=3, action="flag")
    _fit(x, noisy, fld, dataset=plain, epochs=6)
    np.testing.assert_array_equal(fld.report().given_labels, noisy)
    assert fld.report().detection(mask).auroc >= 0.9


def test_fast_dev_run_is_skipped(digits):
    x, _, noisy, _ = digits
    fld = FakeLabelDiscovery(10, action="flag")
    _fit(x, noisy, fld, fast_dev_run=True)
    with pytest.raises(RuntimeError, match="no check has run"):
        fld.report()


def test_state_dict_is_plain_tensors_and_loads_with_weights_only(digits):
    x, _, noisy, _ = digits
    fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel")
    ds, _ = _fit(x, noisy, fld, epochs=2)
    buf = io.BytesIO()
    torch.save(fld.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["last_check_epoch"] == 1
    fresh = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel")
    fresh.load_state_dict(state)
    fresh.store = type(fld.store)(len(noisy), 10)
    fresh.dataset = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    fresh._restore(fresh._pending_state)
    np.testing.assert_array_equal(fresh.store.prob_sum, fld.store.prob_sum)
    np.testing.assert_array_equal(fresh.dataset.current_labels, ds.current_labels)
    assert fresh.dataset.audit_log == ds.audit_log


def test_each_check_hears_what_the_last_one_found(digits, monkeypatch):
    import fld_train.callback as callback_module

    x, _, noisy, _ = digits
    heard, made = [], []

    def recording_check(*args, **kwargs):
        heard.append(kwargs["previous"])
        evaluation = run_check(*args, **kwargs)
        # the second check "keeps the margin" and finds concentrated flips, the others diffuse ones
        made.append(replace(evaluation, noise_model=len(heard) != 2,
                            flip_concentration=0.6 if len(heard) == 2 else 0.2))
        return made[-1]

    monkeypatch.setattr(callback_module, "run_check", recording_check)
    fld = FakeLabelDiscovery(10, check_every_n_epochs=1, action="relabel", tensorboard=False)
    _fit(x, noisy, fld, epochs=4)
    assert heard[0] is None and all(a is b for a, b in zip(heard[1:], made))  # no predecessor, then the last
    assert [e.noise_model for e in heard[1:]] == [True, False, True]
    assert [e.diffuse_flips for e in heard[1:]] == [True, False, True]
    state = fld.state_dict()
    assert state["evaluation"]["noise_model"] is True  # the last check's findings are in the checkpoint
    assert state["evaluation"]["flip_concentration"] == 0.2
    fresh = FakeLabelDiscovery(10, check_every_n_epochs=1, action="relabel")
    fresh.store = type(fld.store)(len(noisy), 10)
    fresh._restore(state)
    fresh._evaluate()  # the resumed run's next check hears them
    assert heard[-1].noise_model and heard[-1].diffuse_flips
    older = {k: v for k, v in state["evaluation"].items() if k not in ("noise_model", "flip_concentration")}
    fresh._restore({**state, "evaluation": older})  # a checkpoint from before either was kept
    fresh._evaluate()
    assert not heard[-1].noise_model and not heard[-1].diffuse_flips


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 1}, ValueError, "`num_classes` must be an int >= 2, got 1"),
        ({"num_classes": 10, "check_every_n_epochs": 0}, ValueError, "`check_every_n_epochs` must be"),
        ({"num_classes": 10, "action": "fix"}, ValueError, "`action` must be one of \\{'flag', 'relabel', "),
        ({"num_classes": 10, "k": 2.5}, TypeError, "`k` must be an int, got 2.5"),
        ({"num_classes": 10, "k": "best"}, ValueError, "`k` must be .auto. or an int >= 1, got .best."),
        ({"num_classes": 10, "head": 3}, TypeError, "`head` must be a module name"),
        ({"num_classes": 10, "knn_index": "hnsw"}, ValueError, "`knn_index` must be one of \\{'auto', "),
        ({"num_classes": 10, "top_classes": 0}, ValueError, "`top_classes` must be an int >= 1, got 0"),
        ({"num_classes": 10, "embedding_dim": -4}, ValueError, "`embedding_dim` must be an int >= 1"),
        ({"num_classes": 10, "cluster_votes": "yes"}, TypeError, "`cluster_votes` must be True or False"),
        ({"num_classes": 10, "max_flag_class_fraction": 2}, ValueError, "`max_flag_class_fraction` must be in"),
        ({"num_classes": 10, "uncertain_action": "drop"}, ValueError,
         "`uncertain_action` must be one of \\{'review', 'downweight', 'auto'\\}, got 'drop'"),
        ({"num_classes": 10, "model_weight": 1.5}, ValueError, "`model_weight` must be in \\[0.0, 1.0\\], got 1.5"),
        ({"num_classes": 10, "ranking": "loss"}, ValueError, "`ranking` must be one of \\{'auto', 'margin', 'noise_model'\\}"),
        ({"num_classes": 10, "ranking": "noise_model", "target_precision": 0.9}, ValueError,
         "`target_precision=0.9` needs `ranking='margin'`"),
    ],
)
def test_constructor_validates_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        FakeLabelDiscovery(**kwargs)


def test_report_dir_gets_the_report_and_audit_trail_after_each_check(digits, tmp_path):
    x, _, noisy, _ = digits
    fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel", report_dir=tmp_path / "r")
    ds, _ = _fit(x, noisy, fld, epochs=6)  # relabels start once both witnesses give a majority
    report_lines = (tmp_path / "r" / "label_report.csv").read_text().splitlines()
    audit_lines = (tmp_path / "r" / "audit_log.csv").read_text().splitlines()
    assert len(report_lines) == len(noisy) + 1
    assert len(audit_lines) == len(ds.audit_log) + 1 > 1


def test_results_do_not_depend_on_how_often_summaries_move_to_the_store(digits, monkeypatch):
    x, _, noisy, _ = digits
    stores = []
    for every in (1, 5, 64):
        monkeypatch.setattr(FakeLabelDiscovery, "FLUSH_EVERY_N_BATCHES", every)
        fld = FakeLabelDiscovery(10, check_every_n_epochs=2, action="relabel", tensorboard=False)
        ds, _ = _fit(x, noisy, fld, epochs=4)
        stores.append((fld.store.state_dict(), ds.current_labels))
    for state, labels in stores[1:]:
        np.testing.assert_array_equal(labels, stores[0][1])
        for key, value in state.items():
            np.testing.assert_array_equal(value, stores[0][0][key], err_msg=key)


def test_training_stopped_mid_epoch_keeps_every_batch_seen(digits):
    x, _, noisy, _ = digits
    fld = FakeLabelDiscovery(10, action="flag", tensorboard=False)
    _fit(x, noisy, fld, epochs=5, max_steps=30)  # 23 batches per epoch: stops 7 batches into epoch 1
    np.testing.assert_array_equal(np.bincount(fld.store.seen_epochs), [0, len(noisy) - 7 * 64, 7 * 64])
    assert fld.report().epoch == 1


def test_embedding_dim_projects_what_the_store_keeps(digits, tmp_path):
    x, _, noisy, mask = digits
    fld = FakeLabelDiscovery(10, check_every_n_epochs=4, action="flag", tensorboard=False,
                             embedding_dim=16, store_dir=tmp_path / "store")
    _fit(x, noisy, fld, epochs=8)
    assert fld.store.embeddings.shape == (len(noisy), 16) and fld.store.projection.shape == (128, 16)
    assert (tmp_path / "store" / "embeddings.npy").exists()
    assert fld.report().detection(mask).auroc >= 0.95


def test_scoring_options_reach_the_check(monkeypatch):
    import fld_train.callback as callback_module
    from fld_train.store import SampleStore

    seen = {}

    class Stop(Exception):
        pass

    def fake_check(store, vote_labels=None, **kwargs):
        seen.update(kwargs)
        raise Stop  # the options are all this test needs

    monkeypatch.setattr(callback_module, "run_check", fake_check)
    fld = FakeLabelDiscovery(3, model_weight=0.8, cluster_votes=True, target_precision=0.9,
                             uncertain_action="downweight", max_flag_class_fraction=0.3, k=7)
    fld.store = SampleStore(4, 3)
    with pytest.raises(Stop):
        fld._evaluate()
    assert seen["model_weight"] == 0.8 and seen["cluster_votes"] is True
    assert seen["target_precision"] == 0.9 and seen["uncertain_action"] == "downweight"
    assert seen["max_flag_class_fraction"] == 0.3 and seen["k"] == 7 and seen["ranking"] == "auto"
    assert FakeLabelDiscovery(3).k == "auto"
    fld = FakeLabelDiscovery(3, ranking="noise_model")
    fld.store = SampleStore(4, 3)
    with pytest.raises(Stop):
        fld._evaluate()
    assert seen["ranking"] == "noise_model"
