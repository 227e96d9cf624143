"""Re-score saved detection runs: scoring variants measured without training again.

``benchmarks/detection.py --save-dir DIR`` keeps, per noise setting and seed, the noisy labels, the
noise mask, the flag run's per-sample store and cleanlab's out-of-sample probabilities. This script
rebuilds each store, runs :func:`fld_train.check.run_check` once per variant and prints, per setting,
precision, recall, F1, AUROC, share flagged and correction accuracy (mean over the saved seeds; the
correction needs the true labels, which runs saved before session 9 lack) and the kNN ``k`` each seed
used (``k="auto"`` chooses it per seed), with cleanlab's
``find_label_issues`` on the same labels beside them.

    python benchmarks/rescore.py /tmp/cifar_saved
    python benchmarks/rescore.py /tmp/cifar_saved --variants default "target_precision=0.9" cluster_votes

A variant is ``default``, a :func:`~fld_train.check.run_check` option (``cluster_votes``) or
``option=value`` (``target_precision=0.9``), several joined with ``+``; ``noise_rate_cap``,
``self_confidence``, ``rank_by=SIGNAL`` and ``rank_by=noise_model`` are variants of this script only
(see :func:`_noise_rate_cap`, :func:`_ranking` and :func:`fld_train.confident.wrong_label_probability`;
``ranking=noise_model`` is the check's own option, which also moves the flags). A variant that
starts with ``kfold`` re-scores K-fold mode's saved parts with :func:`fld_train.folds.combine_folds`
and its options (``kfold``, ``kfold+oof_weight=1``,
``kfold+oof_weight=0.75+model_weight=0.6+self_confidence``).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import best_other, cleanlab_verdict, flag_metrics, kfold_parts, parse_options  # a sibling script

from fld_train import confident, knn, scoring
from fld_train.check import run_check
from fld_train.folds import combine_folds
from fld_train.metrics import correction_accuracy
from fld_train.store import SampleStore

#: Variants measured when ``--variants`` is not given.
DEFAULT_VARIANTS = ("default", "cluster_votes", "target_precision=0.8", "target_precision=0.9")


def parse_variant(text: str) -> dict[str, Any]:
    """``"default"`` -> ``{}``; ``"cluster_votes"`` -> ``{"cluster_votes": True}``;
    ``"name=value"`` -> ``{"name": value}`` converted as :func:`detection.parse_options` does; several
    joined with ``+``. ``"kfold"`` as the first part adds ``{"kfold": True}``."""
    options: dict[str, Any] = {}
    for i, part in enumerate(filter(None, text.split("+"))):
        if part == "default":
            continue
        if part == "kfold":
            if i:
                raise SystemExit(f"--variants: 'kfold' must come first in {text!r}")
            options["kfold"] = True
            continue
        name, sep, _ = part.partition("=")
        if not name.isidentifier():
            raise SystemExit(f"--variants: {part!r} is not 'default', 'option' or 'option=value'")
        options.update(parse_options([part if sep else f"{name}=true"]))
    return options


def saved_runs(folder: Path) -> dict[str, list[Path]]:
    """The ``*_seed*.npz`` files of a ``--save-dir``, grouped by noise setting (``symmetric_0.4``)."""
    by_setting: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("*_seed*.npz")):
        by_setting[re.sub(r"_seed\d+$", "", path.stem)].append(path)
    if not by_setting:
        raise SystemExit(f"no *_seed*.npz files in {folder}")
    return dict(by_setting)


def load_store(saved: Any) -> SampleStore:
    """The flag run's store, rebuilt from the ``store_*`` arrays of a saved run."""
    state = {key[len("store_"):]: saved[key] for key in saved.files if key.startswith("store_")}
    if not state:
        raise SystemExit("a saved run without a flag-run store: run detection.py with --methods flag")
    store = SampleStore(int(state["num_samples"]), int(state["num_classes"]), top_k=int(state["top_k"]))
    store.load_state_dict(state)
    return store


def rows_for(path: Path, variants: list[str]) -> dict[str, tuple[float, ...]]:
    """``method -> (precision, recall, F1, AUROC, flagged share, correction, kNN k, noise model, flip
    concentration, flip asymmetry)`` for one saved run (k 0: cleanlab; correction NaN when the run did
    not save its true labels; noise model 1 when the check ranked by it, ``ranking``, whose statistics
    follow)."""
    saved = np.load(path)
    labels, mask = saved["labels"], saved["mask"]
    true = saved["true_labels"] if "true_labels" in saved.files else None

    def correction(flagged: np.ndarray, suggested: np.ndarray) -> float:
        return float("nan") if true is None else correction_accuracy(flagged, suggested, true)

    parts = kfold_parts(saved)
    store = None
    out = {}
    for variant in variants:
        options = parse_variant(variant)
        rank_by = "posterior_given" if options.pop("self_confidence", False) else options.pop("rank_by", None)
        if rank_by is not None and rank_by not in (*RANKINGS, "noise_model"):
            raise SystemExit(f"--variants: rank_by={rank_by!r}; choose from {sorted([*RANKINGS, 'noise_model'])}")
        kfold = options.pop("kfold", False)
        if kfold and rank_by == "noise_model":
            raise SystemExit(f"--variants: {variant!r}: rank_by=noise_model needs the flag run's store, not K-fold parts")
        if kfold:
            if parts is None:
                raise SystemExit(f"{path}: no K-fold parts; run detection.py with --methods kfold --save-dir")
            ev = combine_folds(labels, parts["oof"], parts["dynamics"], parts["votes"], num_classes=10, **options)
            flagged = ev.flagged
        else:
            if store is None:
                store = load_store(saved)
            noise_cap = options.pop("noise_rate_cap", False)
            ev = run_check(store, **options)
            flagged = _noise_rate_cap(store, labels, ev) if noise_cap else ev.flagged
        if rank_by == "noise_model":
            ranking = confident.wrong_label_probability(_posterior(store, labels), labels)[0]
        else:
            ranking = _ranking(ev, rank_by)
        out[variant] = (*_row(flagged, ranking, mask), correction(flagged, ev.suggested_labels),
                        ev.knn_k, int(ev.noise_model), ev.flip_concentration, ev.flip_asymmetry)
    if "oos" in saved.files:
        flagged, scores = cleanlab_verdict(labels, saved["oos"])
        out["cleanlab 5-fold"] = (*_row(flagged, scores, mask), correction(flagged, best_other(saved["oos"], labels)),
                                  0, 0, float("nan"), float("nan"))
    return out


def _ranking(ev: Any, rank_by: str | None) -> np.ndarray:
    """The scores AUROC ranks by: the evaluation's own (the posterior's margin), or with variant
    ``rank_by=SIGNAL`` one of :data:`RANKINGS` (``self_confidence`` is ``rank_by=posterior_given``,
    cleanlab's default label-quality score on the same posterior). Flags are the evaluation's either
    way. Measured, not adopted: docs/benchmarks.md."""
    return ev.scores if rank_by is None else RANKINGS[rank_by](ev)


def _signal(ev: Any, name: str) -> np.ndarray:
    if name not in ev.signals:
        raise SystemExit(f"--variants: rank_by needs the signal {name!r}, which this evaluation lacks "
                         f"(it has {sorted(ev.signals)})")
    return ev.signals[name]


def _never_last(epochs: np.ndarray) -> np.ndarray:
    """First-learned epochs, with never learned (-1) after the latest."""
    return np.where(epochs < 0, epochs.max() + 1, epochs)


def _rank_average(ev: Any) -> np.ndarray:
    """Mean percentile rank of the score and the three training-dynamics signals, each oriented so
    that higher means more likely wrong (an unsupervised ensemble: no signal is weighted by the noise)."""
    signals = [ev.scores, -_signal(ev, "aum_margin"), _never_last(_signal(ev, "first_learned_epoch")),
               _signal(ev, "forgetting_events")]
    return np.mean([rankdata(x) / x.size for x in signals], axis=0)


#: Variant ``rank_by=NAME``: each signal of the report, oriented so that a higher value means a label
#: more likely wrong, and ``rank_average`` (:func:`_rank_average`).
RANKINGS: dict[str, Callable[[Any], np.ndarray]] = {
    "posterior_given": lambda ev: 1.0 - _signal(ev, "posterior_given"),
    "model_given_prob": lambda ev: 1.0 - _signal(ev, "model_given_prob"),
    "knn_agreement": lambda ev: 1.0 - _signal(ev, "knn_agreement"),
    "aum_margin": lambda ev: -_signal(ev, "aum_margin"),
    "first_learned_epoch": lambda ev: _never_last(_signal(ev, "first_learned_epoch")),
    "forgetting_events": lambda ev: _signal(ev, "forgetting_events"),
    "rank_average": _rank_average,
}


def _posterior(store: SampleStore, labels: np.ndarray) -> np.ndarray:
    """``(N, C)`` the default check's combined posterior, dense: the model's mean softmax and the vote
    of the neighbours :func:`fld_train.knn.auto_neighbours` finds (deterministic, so the check's own),
    weighted as the default check weighs them."""
    c = store.num_classes
    votes = knn.neighbour_label_distribution(knn.auto_neighbours(store.embeddings, labels, c), labels, c)
    w = scoring.MODEL_WEIGHT
    return w * store.model_probs().to_dense(c) + (1.0 - w) * votes


def _noise_rate_cap(store: SampleStore, labels: np.ndarray, ev: Any) -> np.ndarray:
    """Variant ``noise_rate_cap`` (measured, not adopted; docs/benchmarks.md): keep, per given class,
    only as many flags as confident learning's calibrated confident joint of the posterior estimates
    wrong labels in that class, highest scores first."""
    c = store.num_classes
    dist = knn.neighbour_label_distribution(knn.search(store.embeddings, k=10), labels, c)
    q = 0.5 * store.model_probs().to_dense(c) + 0.5 * dist
    calibrated = confident.estimate_joint(q, labels, seen=store.seen)
    wrong = np.rint(calibrated.sum(1) - np.diag(calibrated)).astype(int)
    keep = np.zeros_like(ev.flagged)
    for j in range(c):
        idx = np.flatnonzero(ev.flagged & (labels == j))
        keep[idx[np.argsort(-ev.scores[idx], kind="stable")[: wrong[j]]]] = True
    return keep


def _row(flagged: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> tuple[float, ...]:
    metrics = flag_metrics(flagged, scores, mask)
    return tuple(metrics[c] for c in ("precision", "recall", "f1", "auroc", "flagged_share"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("save_dir", type=Path, help="a --save-dir of benchmarks/detection.py")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        help="run_check options: default, an option name (True) or option=value, joined by +")
    args = parser.parse_args()
    for variant in args.variants:
        parse_variant(variant)  # bad spellings fail before any work
    for setting, paths in saved_runs(args.save_dir).items():
        per_seed = [rows_for(p, args.variants) for p in paths]
        print(f"\n{setting}, mean over {len(paths)} seed(s) ({', '.join(p.stem for p in paths)})")
        print("| method | precision | recall | F1 | AUROC | flagged | correction | k per seed "
              "| noise model per seed (flip concentration / asymmetry) |\n|---|---|---|---|---|---|---|---|---|")
        for method in dict.fromkeys(m for rows in per_seed for m in rows):
            measured = [rows[method] for rows in per_seed if method in rows]
            cols = [statistics.mean(row[i] for row in measured) for i in range(6)]
            name = method if len(measured) == len(per_seed) else f"{method} ({len(measured)} of {len(per_seed)} seeds)"
            ks = "/".join(str(row[6]) for row in measured) if measured[0][6] else "-"
            noise_model = "-" if method == "cleanlab 5-fold" else ", ".join(
                f"{'yes' if row[7] else 'no'} ({row[8]:.2f} / {row[9]:.2f})" for row in measured)
            print(f"| {name} | " + " | ".join("-" if np.isnan(v) else f"{v:.3f}" for v in cols[:4])
                  + f" | {cols[4]:.1%} | " + ("-" if np.isnan(cols[5]) else f"{cols[5]:.1%}")
                  + f" | {ks} | {noise_model} |", flush=True)


if __name__ == "__main__":
    main()
