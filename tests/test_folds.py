import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from fld_train import RelabeledDataset
from fld_train.demo import MLPClassifier, load_digits_split
from fld_train.folds import combine_folds, kfold_discovery, stratified_folds
from fld_train.noise import inject_noise
from fld_train.sparse import SparseProbs

pytestmark = pytest.mark.filterwarnings("ignore")


def _trainer(callbacks):
    return pl.Trainer(max_epochs=8, accelerator="cpu", callbacks=callbacks, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def test_stratified_folds_balance_every_class():
    labels = np.repeat(np.arange(3), [10, 7, 5])
    fold_of = stratified_folds(labels, 3, seed=0)
    for c in range(3):
        counts = np.bincount(fold_of[labels == c], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert np.bincount(fold_of).max() - np.bincount(fold_of).min() <= 1


def test_kfold_finds_injected_noise_with_out_of_fold_signals(monkeypatch):
    import fld_train.callback

    checks = []
    monkeypatch.setattr(fld_train.callback, "run_check", lambda *a, **kw: checks.append(1))
    x, y, _, _ = load_digits_split(seed=0)
    x, y = x[:600], y[:600]
    noisy, mask = inject_noise(y, 10, rate=0.2, seed=0)
    ds = RelabeledDataset(TensorDataset(torch.from_numpy(x), torch.from_numpy(noisy)))
    pl.seed_everything(0, verbose=False)
    result = kfold_discovery(lambda: MLPClassifier(64, 10, hidden=64), ds, 10, folds=3,
                             make_trainer=_trainer, batch_size=64)
    report = result.report
    assert checks == []  # the folds' callbacks only record; the report is scored once, at the end
    assert len(report) == 600 and set(np.unique(result.fold_of)) == {0, 1, 2}
    assert report.detection(mask).auroc >= 0.95
    assert report.detection(mask).f1 >= 0.75  # 0.795 here, as with oof_weight=0.5 (0: 0.803)
    np.testing.assert_array_equal(report.given_labels, noisy)
    np.testing.assert_array_equal(ds.current_labels, noisy)  # K-fold mode changes nothing
    # each sample: one out-of-fold prediction and two in-training ones
    assert result.fold_misclassified.max() <= 3
    assert result.fold_misclassified[mask].mean() > 2 * result.fold_misclassified[~mask].mean()
    assert result.oof_probs.classes.shape == (600, 10)
    np.testing.assert_allclose(result.oof_probs.values.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(result.dynamics_probs.to_dense(10).sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(result.neighbour_votes.to_dense(10).sum(axis=1), 1.0, rtol=1e-6)

    # the saved parts re-score to the same report; other weights move the witnesses' shares
    parts = (result.oof_probs, result.dynamics_probs, result.neighbour_votes)
    again = combine_folds(noisy, *parts, num_classes=10)
    np.testing.assert_allclose(again.scores, report.scores)
    np.testing.assert_array_equal(again.flagged, report.flagged)
    oof_only = combine_folds(noisy, *parts, num_classes=10, oof_weight=1.0, model_weight=1.0)
    oof = result.oof_probs.to_dense(10)
    given = oof[np.arange(600), noisy]
    oof[np.arange(600), noisy] = -np.inf
    np.testing.assert_allclose(oof_only.scores, (oof.max(axis=1) - given + 1) / 2)  # the out-of-fold margin alone
    noise = combine_folds(noisy, *parts, num_classes=10, ranking="noise_model")
    margin = combine_folds(noisy, *parts, num_classes=10, ranking="margin")
    assert noise.flagged.sum() == margin.flagged.sum() and not np.allclose(noise.scores, margin.scores)
    in_training = combine_folds(noisy, *parts, num_classes=10, oof_weight=0.0, model_weight=1.0)
    assert not np.allclose(in_training.scores, oof_only.scores)
    with pytest.raises(ValueError, match=r"`oof_weight` must be in \[0.0, 1.0\], got 1.5"):
        combine_folds(noisy, *parts, num_classes=10, oof_weight=1.5)
    short = SparseProbs(result.dynamics_probs.classes[:599], result.dynamics_probs.values[:599])
    with pytest.raises(ValueError, match="`dynamics_probs` has 599 rows, expected 600"):
        combine_folds(noisy, result.oof_probs, short, result.neighbour_votes, num_classes=10)
    with pytest.raises(TypeError, match="`neighbour_votes` must be a SparseProbs"):
        combine_folds(noisy, result.oof_probs, result.dynamics_probs, np.zeros((600, 10)), num_classes=10)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"folds": 1}, "`folds` must be an int >= 2, got 1"),
    ({"folds": 4}, "`folds`=4 needs at least 8 samples; the dataset has 6"),
    ({"oof_weight": -0.1}, r"`oof_weight` must be in \[0.0, 1.0\], got -0.1. 1 ranks with"),
    ({"model_weight": 2}, r"`model_weight` must be in \[0.0, 1.0\], got 2"),
    ({"ranking": "loss"}, r"`ranking` must be one of \{'auto', 'margin', 'noise_model'\}, got 'loss'"),
])
def test_kfold_arguments_are_checked(kwargs, match):
    ds = TensorDataset(torch.zeros(6, 2), torch.tensor([0, 1, 0, 1, 0, 1]))
    with pytest.raises(ValueError, match=match):
        kfold_discovery(lambda: MLPClassifier(2, 2), ds, 2, **kwargs)
