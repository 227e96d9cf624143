"""Combine per-sample signals into one score, flag samples and decide what to do with them.

Two estimates of each sample's true class are combined:

* training dynamics: the mean softmax vector over the epochs seen so far (networks fit clean labels
  before they memorise wrong ones, so the early epochs pull this away from a wrong given label);
* neighbourhood: the label distribution of the sample's k nearest neighbours in embedding space.

Their average ``q`` is a per-sample class posterior. A sample is flagged when another class is more
probable than its given label under ``q`` (its suggested label is ``argmax q``); no fixed cut-off is
involved. The score is the normalised margin between the best other class and the given class,
``(max_{j != y} q_ij - q_iy + 1) / 2`` in ``[0, 1]``, so flagged samples score above 0.5.
Where the wrong labels that confident learning estimates from ``q`` mostly come, class by class,
from one other class and one way (pair-flips), the default ``ranking="auto"`` keeps the number of flags per
given class but flags, scores and suggests by the class-conditional noise model of that estimate
(:mod:`fld_train.confident`), which ranks such noise far better.

Acting on a flag needs more. Thresholds come from the data, as in confident learning: class ``j``'s
threshold ``t_j`` is the mean ``q_ij`` over the samples labelled ``j``, and a sample is *confidently*
in class ``j`` when ``q_ij >= t_j``. A flagged sample is relabeled only when it is confidently in its
suggested class and each witness on its own gives that class a majority: more than half of the
model's mean probability and more than half of the neighbours' votes (see :func:`evaluate`). Naming
it as the most probable class is not enough: the two witnesses share one embedding, so a model that
confuses a sample also puts it among the other class's neighbours. With top-class agreement, on a
clean MNIST-1D training set (a 1-D CNN, 86% clean test accuracy) a sixth of the samples was
relabeled at the first check, all wrongly, and test accuracy fell from 0.864 to 0.598; with majority
agreement it stayed at 0.854 (docs/benchmarks.md, "The relabel loop").

Under the noise model the model's belief has already been weighed, by Bayes' rule, in the
probability that ranked the sample among its class's flags, and a model trained on labels of which a
share was flipped one way keeps part of its belief on the flipped label even where it has learned
the true class, so a majority of it is the wrong test: there a flag is relabeled when it is confidently in its suggested
class and the neighbours give that class a majority. What licenses the looser test is the data-level
evidence that turned the noise model on (concentrated, one-way flips), so with ``ranking="auto"``
two checks in a row must have chosen it (``previous``): on clean data a single check's
switch happens, and one such check relabeled 7% of a clean MNIST-1D training set. On clean data a
hard sample and a wrong label look alike one by one, and there both majorities stay
(docs/benchmarks.md, "The relabel gate under the noise model").

The flags the gate does not pass are left for review, except where the data shows the noise that
down-weighting helps against: with the default ``uncertain_action="auto"`` they train at weight ``1 - score`` where
this check and the one before found the estimated flips *diffuse* (spread over all other classes
alike, :data:`DIFFUSE_CONCENTRATION`), the mark of noise that ignores the inputs. Down-weighting
helps there and costs accuracy on clean data, whose hard samples are confused with one or two
neighbouring classes (docs/benchmarks.md, "A licence for diffuse noise").

(The confident-learning flag rule itself, flagging only samples confidently in another class, was
measured too conservative here: on digits with 20% symmetric noise it found 86% of the wrong labels
where the posterior's argmax finds 99% at 95% precision; see docs/benchmarks.md.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fld_train._validation import check_choice, check_float, check_int, check_labels, check_mask
from fld_train.confident import (
    bayes_wrong_probability,
    chance_flip_concentration,
    confident_joint,
    flip_asymmetry,
    flip_concentration,
    per_class_thresholds,
)
from fld_train.sparse import Segments, SparseProbs

ACTIONS = ("flag", "relabel", "downweight")
#: How flags are chosen among each class's samples and what the score is (see :func:`evaluate`).
RANKINGS = ("auto", "margin", "noise_model")
#: ``ranking="auto"`` ranks by the noise model when at least this share of the estimated wrong labels
#: come from their given class's main source class (:func:`fld_train.confident.flip_concentration`) ...
#: Measured per run: pair-flip noise 0.76-0.99 (0.37 with CIFAR-10's weak 4-epoch model), symmetric
#: 0.17-0.34, instance-dependent 0.41-0.58 but up to 0.95 with a model that memorised its labels
#: (docs/benchmarks.md, "A class-conditional noise model as the ranking").
NOISE_MODEL_CONCENTRATION = 0.7
#: ... and those flips run one way at least this much (:func:`fld_train.confident.flip_asymmetry`):
#: a model's own confusions run both ways. Measured where the concentration passed: pair-flip and
#: planted noise 0.38-1.00, instance-dependent noise and clean labels 0.06-0.16.
NOISE_MODEL_ASYMMETRY = 0.25
#: A check finds the estimated flips *diffuse* when at most this share comes from each class's main
#: source (:func:`fld_train.confident.flip_concentration`): wrong labels spread over all other classes
#: alike, as a noise process that ignores the inputs spreads them, where a model's confusions on clean
#: labels, and noise that follows them, sit on one or two neighbouring classes. Measured at every
#: check of relabel runs on digits, MNIST-1D and CIFAR-10 (10 classes): symmetric noise at 40%
#: 0.16-0.26 (at 20% up to 0.36), instance-dependent noise 0.37-0.49, clean labels 0.39-1.00,
#: pair-flip noise 0.32-0.97 (docs/benchmarks.md, "A licence for diffuse noise"). Measured with 10
#: classes only; with many more, symmetric noise's share nears ``1 / (C - 1)`` and this bound is loose,
#: which the next one is for.
DIFFUSE_CONCENTRATION = 0.3
#: ... and at most this many times what flips from all other classes alike would show by chance with
#: the same counts (:func:`fld_train.confident.chance_flip_concentration`), which is far below 0.3
#: with many classes: on a generated 100-class problem a clean training set's estimated flips
#: measured 0.20-0.27 at the first three checks (1.8-2.2 times chance) and 20% and 40% symmetric
#: noise 0.05-0.09 (1.2-1.6 times). With 10 classes it removed no licence on digits and MNIST-1D
#: (CIFAR-10 at 40% symmetric noise: 0.21 at 1.75 times chance) (docs/benchmarks.md, "Diffuse with
#: many classes").
DIFFUSE_CHANCE_RATIO = 2.0
#: Default weight of the training dynamics (the model's mean softmax) in the combined posterior; the
#: neighbourhood vote gets the rest (docs/benchmarks.md, "Weighting the two witnesses").
MODEL_WEIGHT = 0.5
#: What ``action="relabel"`` does with a flagged sample it does not relabel.
UNCERTAIN_ACTIONS = ("review", "downweight", "auto")

#: Decision codes, stored as int8 and named in reports.
KEEP, RELABEL, DOWNWEIGHT, REVIEW, UNSEEN, REVIEWED = 0, 1, 2, 3, 4, 5
DECISION_NAMES = ("keep", "relabel", "downweight", "review", "unseen", "reviewed")


@dataclass(frozen=True)
class Evaluation:
    """Scores and decisions of one check.

    Attributes:
        scores: ``(N,)`` float in ``[0, 1]``, higher = the given label is more likely wrong.
        flagged: ``(N,)`` bool.
        suggested_labels: ``(N,)`` int64 most probable class under the combined posterior (with
            ``ranking="noise_model"``, a flag's most probable other class under the noise model).
        decisions: ``(N,)`` int8 decision codes (:data:`DECISION_NAMES`).
        weights: ``(N,)`` float32 training weight per sample (1 unless down-weighted).
        thresholds: ``(C,)`` per-class confidence thresholds ``t_j``.
        signals: name -> ``(N,)`` array of each input signal, for reports and logging.
        knn_k: neighbours each kNN vote counted (0: not known, e.g. votes given to :func:`evaluate`).
        flip_concentration: share of the estimated wrong labels that come from their given class's
            main source (:func:`fld_train.confident.flip_concentration`).
        flip_asymmetry: how one-way those flips run (:func:`fld_train.confident.flip_asymmetry`).
        chance_concentration: the concentration flips from all other classes alike would show by
            chance with this check's counts (:func:`fld_train.confident.chance_flip_concentration`;
            0: not known).
        noise_model: the flags and scores are the noise model's (``ranking="noise_model"``, or
            ``"auto"`` with both statistics at their thresholds, :data:`NOISE_MODEL_CONCENTRATION`
            and :data:`NOISE_MODEL_ASYMMETRY`).
    """

    scores: np.ndarray
    flagged: np.ndarray
    suggested_labels: np.ndarray
    decisions: np.ndarray
    weights: np.ndarray
    thresholds: np.ndarray
    signals: dict[str, np.ndarray] = field(default_factory=dict)
    knn_k: int = 0
    flip_concentration: float = 0.0
    flip_asymmetry: float = 0.0
    noise_model: bool = False
    chance_concentration: float = 0.0

    @property
    def diffuse_flips(self) -> bool:
        """The estimated wrong labels come from all other classes alike (:func:`is_diffuse`)."""
        return is_diffuse(self.flip_concentration, self.chance_concentration)

    def state_dict(self) -> dict[str, Any]:
        """Arrays and numbers only (for checkpoints): the fields, each signal as ``signal/<name>``."""
        state: dict[str, Any] = {name: getattr(self, name) for name in _ARRAY_FIELDS}
        state.update({f"signal/{name}": values for name, values in self.signals.items()})
        state.update(knn_k=self.knn_k, flip_concentration=self.flip_concentration,
                     flip_asymmetry=self.flip_asymmetry, noise_model=self.noise_model,
                     chance_concentration=self.chance_concentration)
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Evaluation:
        """The inverse of :meth:`state_dict`."""
        missing = [name for name in _ARRAY_FIELDS if name not in state]
        if missing:
            raise ValueError(f"an Evaluation state needs {list(_ARRAY_FIELDS)}; missing {missing}.")
        signals = {key[len("signal/"):]: np.asarray(v) for key, v in state.items() if key.startswith("signal/")}
        return cls(**{name: np.asarray(state[name]) for name in _ARRAY_FIELDS}, signals=signals,
                   knn_k=int(state.get("knn_k", 0)), flip_concentration=float(state.get("flip_concentration", 0.0)),
                   flip_asymmetry=float(state.get("flip_asymmetry", 0.0)), noise_model=bool(state.get("noise_model", False)),
                   chance_concentration=float(state.get("chance_concentration", 0.0)))


_ARRAY_FIELDS = ("scores", "flagged", "suggested_labels", "decisions", "weights", "thresholds")


def is_diffuse(flip_concentration: float, chance_concentration: float = 0.0) -> bool:
    """Whether a check's estimated flips are diffuse: some were estimated, and at most
    :data:`DIFFUSE_CONCENTRATION` of them, and at most :data:`DIFFUSE_CHANCE_RATIO` times
    ``chance_concentration`` (what flips from all other classes alike would show by chance; 0: not
    known, e.g. a checkpoint from before it was kept), come from their given class's main source."""
    bound = DIFFUSE_CONCENTRATION
    if chance_concentration > 0.0:
        bound = min(bound, DIFFUSE_CHANCE_RATIO * chance_concentration)
    return 0.0 < flip_concentration <= bound


def precision_cut(flagged: np.ndarray, p_wrong: np.ndarray, target: float) -> np.ndarray:
    """The largest set of the most likely wrong flags whose estimated precision reaches ``target``.

    Args:
        flagged: ``(N,)`` bool, candidate flags.
        p_wrong: ``(N,)`` estimated probability that each sample's given label is wrong.
        target: the precision to keep, in ``[0, 1]``.

    Returns:
        ``(N,)`` bool: the top-``m`` flags by ``p_wrong``, with ``m`` the largest count whose mean
        ``p_wrong`` is ``>= target``.
    """
    idx = np.flatnonzero(flagged)
    order = idx[np.argsort(-p_wrong[idx], kind="stable")]
    running = np.cumsum(p_wrong[order]) / np.arange(1, order.size + 1)
    keep = int(np.flatnonzero(running >= target - 1e-12)[-1]) + 1 if np.any(running >= target - 1e-12) else 0
    out = np.zeros_like(flagged)
    out[order[:keep]] = True
    return out


def within_budget(
    candidates: np.ndarray,
    scores: np.ndarray,
    given: np.ndarray,
    num_classes: int,
    *,
    max_fraction: float,
    max_class_fraction: float,
    population: np.ndarray,
) -> np.ndarray:
    """Keep the highest-scored ``candidates`` that fit the overall and per-class budgets.

    Args:
        candidates: ``(N,)`` bool, proposed changes.
        scores: ``(N,)`` priority (higher first).
        given: ``(N,)`` given labels; the per-class budget counts by given class.
        num_classes: number of classes C.
        max_fraction: at most ``floor(max_fraction * population.sum())`` changes.
        max_class_fraction: at most ``floor(max_class_fraction * n_j)`` changes of class ``j``, where
            ``n_j`` counts ``population`` samples labelled ``j``.
        population: ``(N,)`` bool, samples the fractions refer to.

    Returns:
        ``(N,)`` bool, the candidates that fit.
    """
    class_cap = np.floor(max_class_fraction * np.bincount(given[population], minlength=num_classes))
    order = _top_per_class(candidates, scores, given, class_cap)
    cap = int(np.floor(max_fraction * population.sum()))
    order = order[np.argsort(-scores[order], kind="stable")][:cap]
    keep = np.zeros_like(candidates)
    keep[order] = True
    return keep


def top_per_class(candidates: np.ndarray, scores: np.ndarray, given: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The ``counts[j]`` highest-scored ``candidates`` of each given class ``j`` (ties: lower index first).

    Args:
        candidates: ``(N,)`` bool.
        scores: ``(N,)`` priority (higher first).
        given: ``(N,)`` given labels.
        counts: ``(C,)`` how many to keep per given class (all of them where fewer are candidates).

    Returns:
        ``(N,)`` bool.
    """
    keep = np.zeros_like(candidates)
    keep[_top_per_class(candidates, scores, given, counts)] = True
    return keep


def _top_per_class(candidates: np.ndarray, scores: np.ndarray, given: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """:func:`top_per_class` as indices, by class and best score first within each class."""
    idx = np.flatnonzero(candidates)
    order = idx[np.lexsort((-scores[idx], given[idx]))]
    cls = given[order]
    starts = np.searchsorted(cls, np.arange(counts.size))
    return order[np.arange(order.size) - starts[cls] < counts[cls]]


def evaluate(
    given_labels: np.ndarray,
    model_probs: np.ndarray | SparseProbs,
    neighbour_dist: np.ndarray | SparseProbs,
    *,
    num_classes: int | None = None,
    seen: np.ndarray | None = None,
    action: str = "flag",
    model_weight: float = MODEL_WEIGHT,
    current_labels: np.ndarray | None = None,
    learned_at_first_sight: np.ndarray | None = None,
    max_change_fraction: float = 1.0,
    max_class_change_fraction: float = 1.0,
    max_flag_class_fraction: float = 0.5,
    target_precision: float | None = None,
    uncertain_action: str = "auto",
    ranking: str = "auto",
    previous: Evaluation | None = None,
    extra_signals: dict[str, np.ndarray] | None = None,
) -> Evaluation:
    """Score every sample, flag the likely mislabeled ones and decide an action for each.

    Args:
        given_labels: ``(N,)`` the labels being judged (the original ones).
        model_probs: ``(N, C)`` mean softmax over epochs (training dynamics), or its largest
            entries as :class:`~fld_train.sparse.SparseProbs` (what the store keeps).
        neighbour_dist: ``(N, C)`` kNN neighbour label distribution, or as
            :class:`~fld_train.sparse.SparseProbs` (see :func:`fld_train.knn.neighbour_labels`).
        num_classes: C; needed only when both inputs are sparse.
        seen: ``(N,)`` bool, samples with observations; others get decision ``"unseen"``.
        action: a flagged sample's decision is ``"review"`` (no change) unless ``action`` is
            ``"relabel"`` and the sample is confidently in its suggested class and the model's mean
            probability and the neighbours' votes each give that class more than half (under the
            noise model, see ``ranking`` and ``previous``: the neighbours' votes alone) (then
            ``"relabel"``; otherwise see ``uncertain_action``), or ``action`` is
            ``"downweight"`` (then ``"downweight"``, with weight ``1 - score``).
        model_weight: weight of ``model_probs`` in the posterior (the kNN gets the rest).
        current_labels: ``(N,)`` labels training uses now (default: the given ones); relabels that
            would change one count against the budgets, standing ones do not.
        learned_at_first_sight: ``(N,)`` bool, the model predicted the given label in the first
            epoch it saw the sample. Such a sample whose mean given-label probability also reaches
            its class's threshold is never relabeled (it goes to review): an early, confident fit
            is the sign of a clean label, whatever the neighbours say.
        max_change_fraction: one check changes at most this share of the seen samples' labels.
        max_class_change_fraction: ... and at most this share of one given class.
        max_flag_class_fraction: at most this share of the seen samples of one given class is
            flagged, the highest-scored first; the rest of that class's candidates are kept (signal
            ``over_class_cap`` marks them). It protects rare and hard classes, whose correct labels the
            neighbours and a weak model outvote. ``1.0`` turns the cap off.
        target_precision: the strictness knob. ``None`` flags every sample whose posterior prefers
            another class. A value in ``(0, 1)`` keeps only the most likely wrong of those, as many
            as keep the estimated precision at or above it: each flag's chance of being right is
            estimated as ``1 - q_given`` and the flags are taken in decreasing order of that chance
            while their running mean stays >= the target (see :func:`precision_cut`). The rest
            are not flagged (decision ``keep``), so nothing acts on them. With
            ``action="relabel"`` the corrections are held to the same target: each relabel the
            gate passes is right with the estimated chance ``q_suggested``, the posterior of its new
            label (signal ``posterior_suggested``), and only the most likely right are relabeled,
            as many as keep the running mean of that chance at or above the target; the others are
            uncertain (see ``uncertain_action``).
        uncertain_action: what ``action="relabel"`` does with a flagged sample it does not relabel
            (the signals do not agree on one label, it is not confident, or the budget is spent):
            ``"review"`` leaves it as it is for a human; ``"downweight"`` lowers its weight to
            ``1 - score`` (decision ``"downweight"``), so training leans less on a label that is
            probably wrong while no one has looked at it; ``"auto"`` (default) down-weights where
            this check and the one before found diffuse flips (:attr:`Evaluation.diffuse_flips`,
            see ``previous``) and leaves it for review elsewhere. Down-weighting helped test accuracy
            on noisy data and hurt it on clean data with a weaker model, where the down-weighted
            samples are fit less, stay flagged and draw more flags; flips spread over all classes
            alike are the mark of noise that ignores the inputs, which a clean training set's hard
            samples do not leave (docs/benchmarks.md, "A licence for diffuse noise").
        ranking: ``"margin"``: the score is the posterior's normalised margin and the flags are
            the samples whose posterior prefers another class. ``"noise_model"``: as many flags per
            given class as ``"margin"`` makes (after ``max_flag_class_fraction``), but the samples of
            that class most likely wrong under the class-conditional noise model that confident
            learning estimates from the same posterior
            (:func:`fld_train.confident.wrong_label_probability`), which is then the score; a flag's
            suggested label is its most probable other class under that model. It ranks far better
            where each class's wrong labels come mostly from one other class (pair-flips) and worse
            under symmetric and instance-dependent noise. ``"auto"`` (default): ``"noise_model"``
            when the estimated wrong labels come mostly from each class's main source
            (:data:`NOISE_MODEL_CONCENTRATION`) and mostly one way (:data:`NOISE_MODEL_ASYMMETRY`)
            and ``target_precision`` is not set, ``"margin"`` otherwise (docs/tuning.md). An
            explicit ``"noise_model"`` does not combine with ``target_precision``, whose estimate
            the noise model's uncalibrated scores would break. Under the noise model a relabel
            needs the neighbours' majority for the suggested class, not the model's (see the
            module docstring), where ``ranking="noise_model"`` or the check before ranked by it too
            (``previous``).
        previous: the :class:`Evaluation` of the check before this one (``None`` for the first).
            Two findings change what a check does only when this check confirms the one before:
            with ``ranking="auto"``, the noise model (both checks ranked by it) loosens the relabel
            gate as ``ranking`` says (an explicit ``ranking="noise_model"`` needs no second check);
            diffuse flips (:attr:`Evaluation.diffuse_flips` at both checks) turn on down-weighting
            with ``uncertain_action="auto"``. On clean data a single check's finding happens (a
            model's confusions can look one-way for a check).
        extra_signals: more ``(N,)`` arrays to carry into :attr:`Evaluation.signals`.

    Returns:
        An :class:`Evaluation`.
    """
    action = check_choice("action", action, ACTIONS)
    model_weight = check_float("model_weight", model_weight, low=0.0, high=1.0)
    dense_c = [np.shape(a)[1] for a in (model_probs, neighbour_dist) if not isinstance(a, SparseProbs)]
    if num_classes is None:
        if not dense_c:
            raise ValueError("`num_classes` is required when `model_probs` and `neighbour_dist` are sparse.")
        num_classes = dense_c[0]
    c = check_int("num_classes", num_classes, minimum=2)
    n = np.shape(given_labels)[0] if np.ndim(given_labels) == 1 else -1
    given = check_labels("given_labels", given_labels, num_classes=c)
    model = _sparse("model_probs", model_probs, n, c)
    neighbours = _sparse("neighbour_dist", neighbour_dist, n, c)
    seen = check_mask("seen", seen, n, default=True)
    early = check_mask("learned_at_first_sight", learned_at_first_sight, n, default=False)
    current = given if current_labels is None else check_labels(
        "current_labels", current_labels, num_classes=c, length=n)
    if target_precision is not None:
        target_precision = check_float("target_precision", target_precision, low=0.0, high=1.0,
                                       hint="It is the precision the flags should keep, e.g. 0.95.")
    budget = (
        check_float("max_change_fraction", max_change_fraction, low=0.0, high=1.0),
        check_float("max_class_change_fraction", max_class_change_fraction, low=0.0, high=1.0),
        check_float("max_flag_class_fraction", max_flag_class_fraction, low=0.0, high=1.0,
                    hint="It is the largest share of one class that may be flagged; 1.0 = no cap."),
    )
    uncertain_action = check_choice("uncertain_action", uncertain_action, UNCERTAIN_ACTIONS)
    ranking = check_ranking(ranking, target_precision)
    if previous is not None and not isinstance(previous, Evaluation):
        raise TypeError(f"`previous` must be the Evaluation of the check before this one or None, got "
                        f"{type(previous).__name__}.")
    trust = _Trust(noise_model=ranking == "noise_model" or (previous is not None and previous.noise_model),
                   diffuse=previous is not None and previous.diffuse_flips)
    return _evaluate_impl(given, c, model, neighbours, seen, action, model_weight, current, early, budget,
                          target_precision, uncertain_action, ranking, trust, dict(extra_signals or {}))


@dataclass(frozen=True)
class _Trust:
    """What the check before this one found, which a finding of this check confirms.

    Attributes:
        noise_model: it ranked by the noise model (or the user chose that ranking).
        diffuse: its estimated flips were diffuse (:attr:`Evaluation.diffuse_flips`).
    """

    noise_model: bool
    diffuse: bool


def check_ranking(ranking: Any, target_precision: float | None) -> str:
    """Validate ``ranking`` (one of :data:`RANKINGS`) and its combination with ``target_precision``."""
    ranking = check_choice("ranking", ranking, RANKINGS,
                           hint="'auto' chooses between the other two from the data.")
    if ranking == "noise_model" and target_precision is not None:
        raise ValueError(
            f"`target_precision={target_precision!r}` needs `ranking='margin'` or 'auto', got "
            "`ranking='noise_model'`: the noise model's probabilities rank but are not calibrated, so a "
            "precision estimated from them would cut nearly every flag. Use one or the other."
        )
    return ranking


def _sparse(name: str, values: np.ndarray | SparseProbs, n: int, c: int) -> SparseProbs:
    if isinstance(values, SparseProbs):
        return values.check(name, n, c)
    if np.shape(values) != (n, c):
        raise ValueError(f"`{name}` must have shape {(n, c)}, got {np.shape(values)}.")
    return SparseProbs.from_dense(values)


def _evaluate_impl(
    given: np.ndarray,
    num_classes: int,
    model: SparseProbs,
    neighbours: SparseProbs,
    seen: np.ndarray,
    action: str,
    model_weight: float,
    current: np.ndarray,
    early: np.ndarray,
    budget: tuple[float, float, float],
    target_precision: float | None,
    uncertain_action: str,
    ranking: str,
    trust: _Trust,
    extra: dict[str, np.ndarray],
) -> Evaluation:
    n = given.size
    # one segment per (sample, candidate class): the given label, the model's and the neighbours' classes
    k_model = model.classes.shape[1]
    classes = np.concatenate([given[:, None], model.classes, neighbours.classes], axis=1)
    channels = np.zeros((2, n, classes.shape[1]))
    channels[0, :, 1:1 + k_model] = model.values
    channels[1, :, 1 + k_model:] = neighbours.values
    seg = Segments.merge(classes, channels)
    seg_model, seg_knn = seg.values
    seg_q = model_weight * seg_model + (1.0 - model_weight) * seg_knn

    q_given = seg.at(seg_q, given)
    thresholds = per_class_thresholds(q_given, given, seen, num_classes)
    other = np.where(seg.classes == given[seg.rows], -np.inf, seg_q)
    scores = np.clip((np.maximum(seg.row_max(other), 0.0) - q_given + 1.0) / 2.0, 0.0, 1.0)

    suggested = np.where(seg.row_max(seg_q) > 0, seg.row_argmax(seg_q), given)
    q_suggested = seg.at(seg_q, suggested)
    flagged = seen & (suggested != given) & (q_suggested > q_given)
    capped = within_budget(flagged, scores, given, num_classes, max_fraction=1.0,
                           max_class_fraction=budget[2], population=seen)
    over_cap, flagged = flagged & ~capped, capped
    if target_precision is not None:  # after the cap: a stricter target only ever removes flags
        flagged = precision_cut(flagged, 1.0 - q_given, target_precision)
    joint = confident_joint(seg, seg_q, given, seen, thresholds)  # the thresholds above
    concentration, asymmetry = flip_concentration(joint), flip_asymmetry(joint)
    chance = chance_flip_concentration(joint)
    diffuse = trust.diffuse and is_diffuse(concentration, chance)  # this check and the one before
    if ranking == "auto":
        one_way = concentration >= NOISE_MODEL_CONCENTRATION and asymmetry >= NOISE_MODEL_ASYMMETRY
        ranking = "noise_model" if one_way and target_precision is None else "margin"
    if ranking == "noise_model":  # the same count per class, the most likely wrong under the noise model
        p_wrong, likely = bayes_wrong_probability(seg, seg_q, given, joint)
        counts = np.bincount(given[flagged], minlength=num_classes)
        flagged = top_per_class(seen & (p_wrong > 0), p_wrong, given, counts)
        scores = p_wrong
        suggested = np.where(flagged, likely, suggested)
        q_suggested = seg.at(seg_q, suggested)
    # a sample exactly at its class's mean is confident; the tolerance absorbs summation rounding
    confident = (q_suggested >= thresholds[suggested] - 1e-9) & (q_suggested > 0)

    decisions = np.full(n, KEEP, dtype=np.int8)
    decisions[~seen] = UNSEEN
    decisions[flagged] = REVIEW
    weights = np.ones(n, dtype=np.float32)
    model_given = seg.at(seg_model, given)
    model_suggested, knn_suggested = seg.at(seg_model, suggested), seg.at(seg_knn, suggested)
    downweight = flagged if action == "downweight" else np.zeros(n, dtype=bool)
    if action == "relabel":
        if ranking == "noise_model" and trust.noise_model:  # the model spoke through the noise model
            agree = knn_suggested > 0.5
        else:
            agree = (model_suggested > 0.5) & (knn_suggested > 0.5)  # each witness a majority
        model_thresholds = per_class_thresholds(model_given, given, seen, num_classes)
        confident_fit = early & (model_given >= model_thresholds[given] - 1e-9)
        relabel = flagged & confident & agree & ~confident_fit
        if target_precision is not None:  # the corrections too: each right with chance q_suggested
            relabel = precision_cut(relabel, q_suggested, target_precision)
        standing = relabel & (suggested == current)
        change = within_budget(relabel & ~standing, scores, given, num_classes,
                               max_fraction=budget[0], max_class_fraction=budget[1], population=seen)
        decisions[standing | change] = RELABEL
        if uncertain_action == "downweight" or (uncertain_action == "auto" and diffuse):
            downweight = flagged & (decisions == REVIEW)
    decisions[downweight] = DOWNWEIGHT
    weights[downweight] = (1.0 - scores[downweight]).astype(np.float32)
    scores = np.where(seen, scores, 0.0)

    signals = {
        "model_given_prob": model_given,
        "knn_agreement": seg.at(seg_knn, given),
        "posterior_given": q_given,
        "model_suggested_prob": model_suggested,
        "knn_suggested_share": knn_suggested,
        "posterior_suggested": q_suggested,
        "over_class_cap": over_cap.astype(np.float64),
        **extra,
    }
    return Evaluation(
        scores=scores,
        flagged=flagged,
        suggested_labels=suggested.astype(np.int64),
        decisions=decisions,
        weights=weights,
        thresholds=thresholds,
        signals=signals,
        flip_concentration=concentration,
        chance_concentration=chance,
        flip_asymmetry=asymmetry,
        noise_model=ranking == "noise_model",
    )
