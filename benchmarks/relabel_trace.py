"""Trace a relabel run check by check: what was flagged, relabeled and down-weighted, and how right.

One ``action="relabel"`` training per setting and seed; after each check it prints the ranking
``ranking="auto"`` chose (:func:`fld_train.scoring.evaluate`) and the statistics it chose by (the
estimated flips' concentration, what it would be by chance, and their asymmetry), the number of
flags, relabels (and the share that restores the true label), down-weighted samples (and the share
of them whose label is wrong, with the mean weight of wrong and of right labels among them), and
how many wrong labels are still trained on as they are. At the end: test accuracy, the share of
wrong labels training finished with, and where the final relabels that are not right come from (a
right label changed, or a wrong one moved to another wrong class) and how many relabels came after
the sample had been down-weighted at an earlier check.

    python benchmarks/relabel_trace.py --dataset digits --noise symmetric:0.4 --seed 0
    python benchmarks/relabel_trace.py --dataset mnist1d --noise none:0 --seed 0 \
        --relabel-options uncertain_action=downweight
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import (  # a sibling script
    Data,
    bench_parser,
    fit,
    noisy_labels,
    parse_options,
    predict,
    start,
)

from fld_train import FakeLabelDiscovery, scoring


@dataclass(frozen=True)
class CheckTrace:
    """One check of a relabel run."""

    epoch: int
    knn_k: int
    noise_model: bool
    concentration: float
    chance: float
    asymmetry: float
    flagged: int
    relabeled: int
    relabels_right: float
    downweighted: int
    wrong_in_downweighted: float
    weight_wrong: float
    weight_right: float
    wrong_kept: int


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def trace_check(evaluation: scoring.Evaluation, epoch: int, true_labels: np.ndarray,
                noise_mask: np.ndarray) -> CheckTrace:
    """Summarise one check's decisions against the true labels."""
    relabel = evaluation.decisions == scoring.RELABEL
    down = evaluation.decisions == scoring.DOWNWEIGHT
    return CheckTrace(
        epoch=epoch, knn_k=evaluation.knn_k, noise_model=evaluation.noise_model,
        concentration=evaluation.flip_concentration, chance=evaluation.chance_concentration,
        asymmetry=evaluation.flip_asymmetry,
        flagged=int(evaluation.flagged.sum()), relabeled=int(relabel.sum()),
        relabels_right=_mean(evaluation.suggested_labels[relabel] == true_labels[relabel]),
        downweighted=int(down.sum()), wrong_in_downweighted=_mean(noise_mask[down]),
        weight_wrong=_mean(evaluation.weights[down & noise_mask]),
        weight_right=_mean(evaluation.weights[down & ~noise_mask]),
        wrong_kept=int((noise_mask & ~relabel & ~down).sum()),
    )


@dataclass(frozen=True)
class RelabelOutcome:
    """The labels a relabel run finished with, against the truth.

    Attributes:
        relabeled: labels that differ from the given ones at the end.
        right: ... that are the true label.
        changed_right: ... that replaced a right given label.
        wrong_to_wrong: ... that replaced a wrong given label with another wrong one.
        after_downweight: ... whose sample was down-weighted at a check before it was relabeled
            (the relabel that stands at the end).
    """

    relabeled: int
    right: int
    changed_right: int
    wrong_to_wrong: int
    after_downweight: int


@dataclass(frozen=True)
class TraceResult:
    """One relabel run: its checks, test accuracy, share of wrong labels at the end, final relabels."""

    traces: list[CheckTrace]
    test_acc: float
    wrong_left: float
    outcome: RelabelOutcome


class _Tracing(FakeLabelDiscovery):
    """The callback, keeping a :class:`CheckTrace` of every check and, per sample, the first check
    that down-weighted it and the first check of the relabel streak that is standing."""

    def __init__(self, true_labels: np.ndarray, noise_mask: np.ndarray, **options) -> None:
        super().__init__(10, **options)
        self._truth = (true_labels, noise_mask)
        self.traces: list[CheckTrace] = []
        self.first_downweighted = np.full(true_labels.size, -1)
        self.relabeled_since = np.full(true_labels.size, -1)

    def _evaluate(self) -> scoring.Evaluation:
        evaluation = super()._evaluate()
        epoch = int(self.store.last_epoch.max())
        self.traces.append(trace_check(evaluation, epoch, *self._truth))
        down, relabel = evaluation.decisions == scoring.DOWNWEIGHT, evaluation.decisions == scoring.RELABEL
        self.first_downweighted[down & (self.first_downweighted < 0)] = epoch
        self.relabeled_since[~relabel] = -1
        self.relabeled_since[relabel & (self.relabeled_since < 0)] = epoch
        return evaluation


def relabel_outcome(given: np.ndarray, current: np.ndarray, true: np.ndarray, first_downweighted: np.ndarray,
                    relabeled_since: np.ndarray) -> RelabelOutcome:
    """Compare the final labels with the given and the true ones (see :class:`RelabelOutcome`)."""
    changed = current != given
    before = (first_downweighted >= 0) & (first_downweighted < relabeled_since)
    return RelabelOutcome(
        relabeled=int(changed.sum()), right=int((changed & (current == true)).sum()),
        changed_right=int((changed & (given == true)).sum()),
        wrong_to_wrong=int((changed & (given != true) & (current != true)).sum()),
        after_downweight=int((changed & before).sum()),
    )


def run_trace(data: Data, spec: str, seed: int, options: dict) -> TraceResult:
    """Train one relabel run with the callback traced (see :class:`TraceResult`)."""
    labels, mask = noisy_labels(data, spec, seed)
    fld = _Tracing(data.y, mask, **{"check_every_n_epochs": 2, "action": "relabel", "tensorboard": False,
                                    **options})
    model, _, ds = fit(data, data.x, labels, seed, [fld])
    test_acc = float(np.mean(predict(model, data.x_test).argmax(1) == data.y_test))
    outcome = relabel_outcome(labels, ds.current_labels, data.y, fld.first_downweighted, fld.relabeled_since)
    return TraceResult(fld.traces, test_acc, float(np.mean(ds.current_labels != data.y)), outcome)


def main() -> None:
    parser = bench_parser(__doc__, ["symmetric:0.4"], seeds=False)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--relabel-options", nargs="*", default=[], metavar="NAME=VALUE",
                        help="FakeLabelDiscovery options, e.g. uncertain_action=downweight")
    args = parser.parse_args()
    data = start(args)
    options = parse_options(args.relabel_options)
    for spec in args.noise:
        result = run_trace(data, spec, args.seed, options)
        print(f"\n{args.dataset}, {spec}, seed {args.seed}, options {options or 'default'}")
        print("| epoch | k | ranking | concentration (by chance) / asymmetry | flagged | relabeled | right | down-weighted | wrong among them | weight wrong / right "
              "| wrong labels trained as they are |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for t in result.traces:
            ranking = "noise model" if t.noise_model else "margin"
            print(f"| {t.epoch} | {t.knn_k} | {ranking} | {t.concentration:.2f} ({t.chance:.2f}) / {t.asymmetry:.2f} | {t.flagged} | {t.relabeled} | {t.relabels_right:.3f} | {t.downweighted} "
                  f"| {t.wrong_in_downweighted:.2f} | {t.weight_wrong:.2f} / {t.weight_right:.2f} | {t.wrong_kept} |")
        o = result.outcome
        print(f"test accuracy {result.test_acc:.3f}; wrong labels at the end {result.wrong_left:.1%}; "
              f"{o.relabeled} relabels, {o.right} right, {o.changed_right} changed a right label, "
              f"{o.wrong_to_wrong} moved a wrong label to another wrong class; {o.after_downweight} came "
              "after a check that down-weighted the sample")


if __name__ == "__main__":
    main()
