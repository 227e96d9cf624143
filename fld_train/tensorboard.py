"""What a check writes to TensorBoard (rank 0 only).

Scalars go to every Lightning logger; histograms, the PR curve, images, the embedding projector
and the text table go to the ``SummaryWriter`` of the Trainer's ``TensorBoardLogger``, when there is
one. :class:`TensorBoardOptions` switches each part off.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fld_train import _render
from fld_train._validation import check_choice, check_int
from fld_train.metrics import detection_metrics
from fld_train.report import LabelReport

#: Prefix of every tag fld-train writes.
PREFIX = "fld"


@dataclass(frozen=True)
class TensorBoardOptions:
    """What each check writes besides the count scalars (all on by default; each cheap).

    Attributes:
        per_class: per-class flagged / relabeled / down-weighted counts and fractions.
        histograms: the score and every signal, over the samples seen.
        pr_curve: precision-recall curve of the score (needs a known ``noise_mask``).
        images: the label-transition matrix, the data map and, for image data, a grid of the
            top flagged samples captioned ``given->suggested score``.
        projector: when to write the embedding projector (metadata: index, given, suggested,
            score, flagged; thumbnails for image data): ``"end"`` once, at the end of training;
            ``"every_check"``; or ``"off"``. It is the one costly part (about 1 s for 1,000 points),
            so it is written once by default.
        projector_max_points: cap on projector points: the top flagged first, then a fixed random
            sample of the rest.
        top_k: samples in the image grid and in the text table.
        image_shape: reshape flat inputs to this shape to show them as images (e.g. ``(8, 8)``).
    """

    per_class: bool = True
    histograms: bool = True
    pr_curve: bool = True
    images: bool = True
    projector: str = "end"
    projector_max_points: int = 1000
    top_k: int = 32
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_choice("projector", self.projector, ("end", "every_check", "off"))
        check_int("projector_max_points", self.projector_max_points, minimum=1)
        check_int("top_k", self.top_k, minimum=1)


def check_scalars(report: LabelReport, *, noise_mask: np.ndarray | None = None,
                  per_class: bool = False) -> dict[str, float]:
    """Scalars of one check.

    Always: counts and fractions of flagged, relabeled, down-weighted and review samples
    (``relabeled`` and ``downweighted`` count what training uses after the check), and the kNN
    vote's ``k``, the concentration and asymmetry of the estimated wrong labels, the concentration
    they would show by chance, whether the noise model ranked and whether the flips were diffuse
    (``flip_concentration``, ``flip_asymmetry``, ``chance_concentration``, ``noise_model``,
    ``diffuse_flips``) when the report comes from a check (``knn_k``). With
    ``noise_mask``: precision, recall, F1 and AUROC of the flags. With reviews applied: the share
    of automatic corrections reviewers confirmed. With ``per_class``: the counts per given class.
    """
    n = max(len(report), 1)
    counts = {
        "flagged": report.flagged,
        "relabeled": report.current_labels != report.given_labels,
        "downweighted": report.weights < 1.0,
        "review": report.decisions == "review",
    }
    out: dict[str, float] = {}
    for key, mask in counts.items():
        out[f"{PREFIX}/{key}"] = float(mask.sum())
        out[f"{PREFIX}/{key}_fraction"] = float(mask.sum()) / n
    if report.knn_k > 0:
        out[f"{PREFIX}/knn_k"] = float(report.knn_k)
        out[f"{PREFIX}/flip_concentration"] = report.flip_concentration
        out[f"{PREFIX}/flip_asymmetry"] = report.flip_asymmetry
        out[f"{PREFIX}/chance_concentration"] = report.chance_concentration
        out[f"{PREFIX}/noise_model"] = float(report.noise_model)
        out[f"{PREFIX}/diffuse_flips"] = float(report.diffuse_flips)
    if noise_mask is not None:
        m = detection_metrics(report.flagged, report.scores, noise_mask)
        out.update({f"{PREFIX}/precision": m.precision, f"{PREFIX}/recall": m.recall,
                    f"{PREFIX}/f1": m.f1, f"{PREFIX}/auroc": m.auroc})
    agreement = report.human_agreement()
    if agreement["reviewed_corrections"]:
        out[f"{PREFIX}/human_agreement"] = agreement["overall"]
        for c, share in enumerate(agreement["per_class"]):
            if np.isfinite(share):
                out[f"{PREFIX}_per_class/human_agreement/{c}"] = float(share)
    if per_class:
        table = report.per_class()
        size = np.maximum(table["samples"], 1)
        for key in ("flagged", "relabeled", "downweighted"):
            for c in range(report.classes):
                out[f"{PREFIX}_per_class/{key}/{c}"] = float(table[key][c])
                out[f"{PREFIX}_per_class/{key}_fraction/{c}"] = float(table[key][c] / size[c])
    return out


def top_flagged_markdown(report: LabelReport, k: int) -> str:
    """A markdown table of the top flagged samples with their reasons."""
    reasons = report.reasons()
    lines = ["| index | given | suggested | score | decision | reason |", "|---|---|---|---|---|---|"]
    for i in report.top_flagged(k):
        lines.append(f"| {i} | {report.given_labels[i]} | {report.suggested_labels[i]} | "
                     f"{report.scores[i]:.3f} | {report.decisions[i]} | {reasons[i]} |")
    if len(lines) == 2:
        lines.append("| - | - | - | - | - | nothing flagged |")
    return "\n".join(lines)


def projector_points(report: LabelReport, limit: int, seen: np.ndarray) -> np.ndarray:
    """Up to ``limit`` seen samples: the top flagged first, then a fixed random sample of the rest."""
    flagged = report.top_flagged(limit)
    rest = np.setdiff1d(np.flatnonzero(seen), flagged)
    rng = np.random.default_rng(0)
    extra = rng.choice(rest, size=min(rest.size, limit - flagged.size), replace=False) if rest.size else rest
    return np.sort(np.concatenate([flagged, extra]).astype(np.int64))


def log_check(
    loggers: Iterable[Any],
    report: LabelReport,
    step: int,
    *,
    options: TensorBoardOptions | None = None,
    noise_mask: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    seen: np.ndarray | None = None,
    fetch_inputs: Callable[[Sequence[int]], list[Any]] | None = None,
    final: bool = False,
) -> dict[str, float]:
    """Write one check to the loggers; returns the scalars.

    Args:
        loggers: the Trainer's loggers (Lightning loggers write on rank 0 only).
        report: the check's report.
        step: global step to log at.
        options: what to write besides the counts; ``None`` writes the counts only.
        noise_mask: ``(N,)`` known noise, for precision / recall / F1 and the PR curve.
        embeddings: ``(N, D)`` latest embeddings, for the projector.
        seen: ``(N,)`` bool, samples observed so far.
        fetch_inputs: indices -> the dataset's inputs, for image grids and thumbnails.
        final: the end of training (the projector is written then by default).
    """
    loggers = list(loggers)
    scalars = check_scalars(report, noise_mask=noise_mask,
                            per_class=options is not None and options.per_class)
    for logger in loggers:
        logger.log_metrics(scalars, step=step)
    if options is None:
        return scalars
    writer = _summary_writer(loggers)
    if writer is None:
        return scalars
    seen = np.ones(len(report), dtype=bool) if seen is None else seen
    if options.histograms and seen.any():
        writer.add_histogram(f"{PREFIX}_hist/score", report.scores[seen], step)
        for name, values in report.signals.items():
            finite = seen & np.isfinite(values)
            if finite.any():
                writer.add_histogram(f"{PREFIX}_hist/{name}", values[finite], step)
    if options.pr_curve and noise_mask is not None and seen.any():
        writer.add_pr_curve(f"{PREFIX}/pr_curve", np.asarray(noise_mask)[seen], report.scores[seen], step)
    writer.add_text(f"{PREFIX}/top_flagged", top_flagged_markdown(report, options.top_k), step)
    if options.images:
        _log_images(writer, report, step, options, seen, fetch_inputs)
    if options.projector == "every_check" or (options.projector == "end" and final):
        log_projector(loggers, report, step, options=options, embeddings=embeddings, seen=seen,
                      fetch_inputs=fetch_inputs)
    writer.flush()
    return scalars


def log_report_epoch(loggers: Iterable[Any], epoch: int, step: int) -> None:
    """Write ``fld/report_epoch``: the epoch of the check the report holds (with ``monitor``, the best)."""
    for logger in loggers:
        logger.log_metrics({f"{PREFIX}/report_epoch": float(epoch)}, step=step)


def log_projector(
    loggers: Iterable[Any],
    report: LabelReport,
    step: int,
    *,
    options: TensorBoardOptions,
    embeddings: np.ndarray | None,
    seen: np.ndarray,
    fetch_inputs: Callable[[Sequence[int]], list[Any]] | None = None,
) -> None:
    """Write the embedding projector for ``report`` (see :class:`TensorBoardOptions`)."""
    writer = _summary_writer(list(loggers))
    if writer is not None and embeddings is not None and seen.any():
        _log_projector(writer, report, step, options, embeddings, seen, fetch_inputs)
        writer.flush()


def _summary_writer(loggers: list[Any]) -> Any:
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _log_images(writer: Any, report: LabelReport, step: int, options: TensorBoardOptions,
                seen: np.ndarray, fetch_inputs: Callable[[Sequence[int]], list[Any]] | None) -> None:
    writer.add_image(f"{PREFIX}_images/label_transitions",
                     _render.heatmap(report.label_transitions(), row_label="given label",
                                     col_label="suggested label (flagged samples)"),
                     step, dataformats="HWC")
    mean = report.signals.get("model_given_prob")
    spread = report.signals.get("given_prob_variability")
    if mean is not None and spread is not None and seen.any():
        writer.add_image(f"{PREFIX}_images/data_map",
                         _render.scatter(spread[seen], mean[seen], report.flagged[seen],
                                         xlabel="variability", ylabel="mean confidence (red: flagged)"),
                         step, dataformats="HWC")
    top = report.top_flagged(options.top_k)
    if fetch_inputs is None or top.size == 0:
        return
    images = [_render.as_image(x, options.image_shape) for x in fetch_inputs(top.tolist())]
    if all(img is not None for img in images):
        captions = [f"{report.given_labels[i]}->{report.suggested_labels[i]} {report.scores[i]:.2f}"
                    for i in top]
        writer.add_image(f"{PREFIX}_images/top_flagged", _render.grid(images, captions), step,
                         dataformats="HWC")


def _log_projector(writer: Any, report: LabelReport, step: int, options: TensorBoardOptions,
                   embeddings: np.ndarray, seen: np.ndarray,
                   fetch_inputs: Callable[[Sequence[int]], list[Any]] | None) -> None:
    import torch

    points = projector_points(report, options.projector_max_points, seen)
    metadata = [[str(i), str(report.given_labels[i]), str(report.suggested_labels[i]),
                 f"{report.scores[i]:.4f}", str(bool(report.flagged[i]))] for i in points]
    label_img = None
    if fetch_inputs is not None:
        images = [_render.as_image(x, options.image_shape) for x in fetch_inputs(points.tolist())]
        if images and all(img is not None for img in images):
            side = 32
            from PIL import Image

            thumbs = np.stack([np.asarray(Image.fromarray(img).resize((side, side))) for img in images])
            label_img = torch.from_numpy(thumbs).permute(0, 3, 1, 2).float() / 255.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer.add_embedding(torch.from_numpy(np.asarray(embeddings[points], dtype=np.float32)),
                             metadata=metadata, label_img=label_img, global_step=step,
                             tag=f"{PREFIX}_embeddings",
                             metadata_header=["index", "given", "suggested", "score", "flagged"])
