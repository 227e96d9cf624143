"""``FakeLabelDiscovery``: the Lightning callback that finds and fixes wrong labels during ``fit``.

Lightning glue only: it arms a forward hook on the classifier head for every training batch,
summarises ``(index, label, logits, embedding)`` on the model's device and, every
``FLUSH_EVERY_N_BATCHES`` batches and at the end of each epoch, gathers the summaries across ranks and
moves them to the per-sample store in one transfer (no host synchronisation per batch). It runs the
kNN check and scoring every ``check_every_n_epochs`` on rank 0, broadcasts the decisions, applies them
to the ``RelabeledDataset`` on every rank and logs the counts.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from typing_extensions import override

from fld_train import knn, scoring
from fld_train._validation import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_k,
    check_labels,
)
from fld_train.capture import HeadCapture, find_head, summarise
from fld_train.check import run_check
from fld_train.dataset import RelabeledDataset
from fld_train.distributed import gather_rows
from fld_train.report import LabelReport
from fld_train.store import Observations, SampleStore
from fld_train.tensorboard import TensorBoardOptions, log_check, log_projector, log_report_epoch


def _iter_datasets(obj: Any, depth: int = 0) -> Iterator[Any]:
    """Yield every dataset reachable from dataloaders and dataset wrappers (``.dataset`` chains)."""
    if obj is None or depth > 8:
        return
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _iter_datasets(value, depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _iter_datasets(value, depth + 1)
        return
    if not isinstance(obj, torch.utils.data.DataLoader):
        yield obj
    inner = getattr(obj, "dataset", None)
    if inner is not None and inner is not obj:
        yield from _iter_datasets(inner, depth + 1)


def _as_tensors(state: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays -> tensors (checkpoints then load with ``weights_only=True``); the rest as is."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
            for k, v in state.items()}


def _as_arrays(state: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`_as_tensors`."""
    return {k: v.numpy() if torch.is_tensor(v) else v for k, v in state.items()}


class FakeLabelDiscovery(Callback):
    """Find mislabeled training samples while the model trains, and relabel or down-weight them.

    Each training batch must be ``(x, y, idx)``, as :class:`~fld_train.RelabeledDataset` yields. The
    callback finds the classifier head (the last ``nn.Linear`` with ``out_features == num_classes``,
    or ``head``), reads logits from its output and embeddings from its input, and keeps per-sample
    training dynamics. Every ``check_every_n_epochs`` epochs (and once at the end of training) it
    runs a kNN label-consistency check on the latest embeddings, scores every sample and applies
    ``action``.

    Down-weighting needs no change to ``training_step``: a down-weighted sample's gradient through
    the head's output is multiplied by its weight, which equals multiplying its loss term by the
    weight (the logged loss value stays unweighted).

    Args:
        num_classes: number of classes C.
        check_every_n_epochs: run a check after every this many training epochs.
        action: ``"flag"`` only observes and reports; ``"relabel"`` swaps a flagged sample's label
            when the model and its neighbours each give the new one a majority (under the noise
            model, see ``ranking``, the neighbours alone; the other flagged samples are left for
            review or down-weighted, see ``uncertain_action``);
            ``"downweight"`` lowers a flagged sample's weight to ``1 - score``.
        head: dotted name of the classifier layer, overriding the automatic search.
        k: neighbours in the kNN check, or ``"auto"`` (default): at each check, the count among
            5, 10, 20, 30, 50 and 100 whose vote best predicts held-out labels (leave-one-out Brier
            score on up to 10,000 samples, :func:`fld_train.knn.choose_k`; counts above 10 only while
            samples x k <= 10 million); logged as ``fld/knn_k``.
        use_gpu_index: ``None`` uses GPU FAISS when it sees a GPU.
        max_relabel_fraction: one check changes at most this share of the labels; the
            highest-scored candidates go first, the rest are treated as ``uncertain_action`` says.
        max_relabel_class_fraction: ... and at most this share of one (given) class.
        max_flag_class_fraction: at most this share of one (given) class is flagged, the
            highest-scored first; it protects rare and hard classes, whose correct labels the
            neighbours outvote (``1.0``: no cap).
        report_dir: if set, rank 0 writes ``label_report.csv`` and ``audit_log.csv`` there after
            every check, atomically (a reader never sees a half-written file).
        noise_mask: ``(N,)`` bool, the known wrong labels (benchmarks, demos): adds precision,
            recall, F1, AUROC and a PR curve to TensorBoard.
        tensorboard: what each check writes to TensorBoard besides the counts;
            ``False`` writes the counts only.
        knn_index: ``"auto"``, ``"exact"`` or ``"ivf"`` (see :func:`fld_train.knn.search`).
        top_classes: classes per sample whose mean probability the store keeps (exact when
            ``num_classes <= top_classes``); the store holds no ``N x num_classes`` array.
        embedding_dim: project wider embeddings to this many dimensions before storing them
            (e.g. 128 for ImageNet-sized data); ``None`` keeps them.
        store_dir: keep the store's large arrays in memory-mapped files in this folder.
        target_precision: strictness: flag only the most likely wrong samples, as many as keep the
            estimated precision at or above this (e.g. 0.95), and with ``action="relabel"`` relabel
            only the flags most likely restored to their true label, as many as keep the estimated
            share of right relabels at or above it; ``None`` flags every sample whose combined
            posterior prefers another class (see :func:`fld_train.scoring.evaluate`).
        cluster_votes: add the k-means cluster vote to the kNN vote (measured to help on structured
            noise - pair-flip, clustered - and to change little on random noise; docs/benchmarks.md).
            Its k-means grows with samples x classes: at 100,000 samples of 1,000 classes a check
            took 72 s instead of 3.5 s on 2 CPU cores.
        model_weight: weight of the training dynamics (the model's mean softmax) in the combined
            posterior; the neighbourhood vote gets the rest. Measured: an under-trained model whose
            embedding separates classes poorly is better trusted more (0.7); a model that memorises
            its labels, less (0.4); docs/benchmarks.md, "Weighting the two witnesses".
        uncertain_action: with ``action="relabel"``, what happens to a flagged sample that is not
            relabeled: ``"review"`` (trained on as it is, first in the review queue),
            ``"downweight"`` (its weight drops to ``1 - score``, reversibly at every check; better
            on noisy data, worse on clean data with a weak model: docs/tuning.md), or ``"auto"``
            (default): down-weight where two checks in a row found the estimated flips diffuse
            (spread over all other classes alike, as noise that ignores the inputs spreads them;
            ``fld/flip_concentration`` at most
            :data:`~fld_train.scoring.DIFFUSE_CONCENTRATION` and at most
            :data:`~fld_train.scoring.DIFFUSE_CHANCE_RATIO` times ``fld/chance_concentration``,
            what such flips show by chance), review elsewhere.
        monitor: a metric the LightningModule logs on held-out data (e.g. ``"val_acc"`` with
            ``mode="max"``; the held-out labels may be as noisy as the training labels), read from
            ``trainer.callback_metrics`` at each check. A check whose value is not better than the
            best check's so far changes nothing: the report, the decisions and the dataset's
            overrides stay those of the best check, as ``ModelCheckpoint`` keeps its best model.
            It guards against memorisation: once a model starts fitting its wrong labels, its
            held-out accuracy stops improving and its later checks find fewer of them. Monitor an
            accuracy rather than a loss, which rises as soon as the model grows confident
            (docs/tuning.md). ``None`` (default): every check acts.
        mode: ``"min"`` (default) or ``"max"``: whether a lower or a higher ``monitor`` is better.
        ranking: which of each class's samples are flagged (as many as the posterior's margin
            flags) and what the score is. ``"auto"`` (default) ranks by the probability that a
            label is wrong under the class-conditional noise model confident learning estimates
            from the posterior when its estimated wrong labels mostly come, class by class, from
            one other class and one way (pair-flips: F1 +0.10 to +0.17 at 40%), by the margin
            otherwise; ``"margin"`` and ``"noise_model"`` force one (docs/tuning.md). TensorBoard
            logs the choice (``fld/noise_model``) and what it rests on (``fld/flip_concentration``,
            ``fld/flip_asymmetry``). Under the noise model (with ``"auto"``: at two checks in a
            row) a relabel needs the neighbours' majority, not the model's, which a model trained
            on one-way flips does not give the flipped samples' true class. An explicit
            ``"noise_model"`` does not combine with ``target_precision``.

    Example:
        >>> fld = FakeLabelDiscovery(num_classes=10, check_every_n_epochs=2, action="relabel")
        >>> trainer = L.Trainer(max_epochs=30, callbacks=[fld])  # doctest: +SKIP
    """

    def __init__(
        self,
        num_classes: int,
        check_every_n_epochs: int = 2,
        action: str = "flag",
        *,
        head: str | None = None,
        k: int | str = "auto",
        use_gpu_index: bool | None = None,
        max_relabel_fraction: float = 0.5,
        max_relabel_class_fraction: float = 0.5,
        max_flag_class_fraction: float = 0.5,
        report_dir: str | os.PathLike[str] | None = None,
        noise_mask: np.ndarray | None = None,
        tensorboard: bool | TensorBoardOptions = True,
        knn_index: str = "auto",
        top_classes: int = 10,
        embedding_dim: int | None = None,
        store_dir: str | os.PathLike[str] | None = None,
        target_precision: float | None = None,
        cluster_votes: bool = False,
        model_weight: float = scoring.MODEL_WEIGHT,
        uncertain_action: str = "auto",
        monitor: str | None = None,
        mode: str = "min",
        ranking: str = "auto",
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.check_every_n_epochs = check_int(
            "check_every_n_epochs", check_every_n_epochs, minimum=1,
            hint="Checks run after every N-th training epoch.",
        )
        self.action = check_choice(
            "action", action, scoring.ACTIONS,
            hint="'flag' only reports; 'relabel' and 'downweight' change training.",
        )
        if head is not None and not isinstance(head, str):
            raise TypeError(f"`head` must be a module name (str) or None, got {head!r}.")
        self.head = head
        self.k = check_k(k)
        if use_gpu_index not in (None, True, False):
            raise TypeError(f"`use_gpu_index` must be None, True or False, got {use_gpu_index!r}.")
        self.use_gpu_index = use_gpu_index
        self.max_relabel_fraction = check_float(
            "max_relabel_fraction", max_relabel_fraction, low=0.0, high=1.0,
            hint="It is the share of all labels one check may change.",
        )
        self.max_relabel_class_fraction = check_float(
            "max_relabel_class_fraction", max_relabel_class_fraction, low=0.0, high=1.0,
            hint="It is the share of one class's labels one check may change.",
        )
        self.max_flag_class_fraction = check_float(
            "max_flag_class_fraction", max_flag_class_fraction, low=0.0, high=1.0,
            hint="It is the largest share of one class that may be flagged; 1.0 = no cap.",
        )
        self.report_dir = None if report_dir is None else Path(report_dir)
        self.noise_mask = None if noise_mask is None else np.asarray(noise_mask, dtype=bool)
        if self.noise_mask is not None and self.noise_mask.ndim != 1:
            raise ValueError(f"`noise_mask` must be a 1-D bool array, got shape {self.noise_mask.shape}.")
        if not isinstance(tensorboard, (bool, TensorBoardOptions)):
            raise TypeError(f"`tensorboard` must be True, False or a TensorBoardOptions, got {tensorboard!r}.")
        self.tensorboard = TensorBoardOptions() if tensorboard is True else (tensorboard or None)
        self.knn_index = check_choice("knn_index", knn_index, knn.INDEX_KINDS,
                                      hint="'auto' is exact for small datasets and IVF for large ones.")
        self.top_classes = check_int("top_classes", top_classes, minimum=1)
        self.embedding_dim = None if embedding_dim is None else check_int(
            "embedding_dim", embedding_dim, minimum=1, hint="Use None to store embeddings as they are.")
        self.store_dir = None if store_dir is None else Path(store_dir)
        self.target_precision = None if target_precision is None else check_float(
            "target_precision", target_precision, low=0.0, high=1.0,
            hint="It is the precision the flags should keep, e.g. 0.95; None flags by the posterior alone.")
        self.cluster_votes = check_bool("cluster_votes", cluster_votes)
        self.model_weight = check_float(
            "model_weight", model_weight, low=0.0, high=1.0,
            hint="It is the model's share of the posterior; the neighbours' vote gets 1 - model_weight.")
        self.uncertain_action = check_choice(
            "uncertain_action", uncertain_action, scoring.UNCERTAIN_ACTIONS,
            hint="It applies to flagged samples that action='relabel' does not relabel.")
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise TypeError(f"`monitor` must be the name of a logged metric (str) or None, got {monitor!r}.")
        self.monitor = monitor
        self.mode = check_choice("mode", mode, ("min", "max"),
                                 hint="'min' when a lower `monitor` is better (a loss), 'max' otherwise.")
        self.ranking = scoring.check_ranking(ranking, self.target_precision)
        self._warned: set[str] = set()
        self._state_key = self._generate_state_key(num_classes=num_classes, action=action, head=head)

        self.store: SampleStore | None = None
        self.dataset: RelabeledDataset | None = None
        self._capture: HeadCapture | None = None
        self._report: LabelReport | None = None
        self._evaluation: scoring.Evaluation | None = None  # the one the report and the dataset follow
        self._last_check_epoch = -1
        self._best_score: float | None = None  # the monitored value of the check the report holds
        self._pending_state: dict[str, Any] | None = None
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None  # (labels, indices) in flight
        self._pending: list[dict[str, torch.Tensor]] = []  # batch summaries not yet in the store
        self._pending_epoch = -1
        self._given_on_device: torch.Tensor | None = None
        self._weights_on_device: torch.Tensor | None = None
        self._weights_key: tuple[int, torch.device] | None = None
        self._projection: torch.Tensor | None = None
        self._strategy: Any = None

    #: Batch summaries wait on the device for at most this many batches before moving to the store.
    FLUSH_EVERY_N_BATCHES = 64

    @property
    @override
    def state_key(self) -> str:
        return self._state_key

    # ------------------------------------------------------------------ lifecycle
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        name, head = find_head(pl_module, self.num_classes, self.head)
        if isinstance(head, nn.Linear) and head.out_features != self.num_classes:
            raise ValueError(
                f"the head '{name}' has out_features={head.out_features} but num_classes="
                f"{self.num_classes}. Set `num_classes` to the model's number of outputs, or name "
                "the classifier layer with `head=`."
            )
        self._capture = HeadCapture(head)
        self.dataset = self._find_dataset(trainer)
        if self.dataset is not None and trainer.world_size > 1:
            self.dataset.own_memory()  # ranks made by spawn or fork must not share one label tensor
        n = len(self.dataset) if self.dataset is not None else self._loader_length(trainer)
        if self.noise_mask is not None and self.noise_mask.size != n:
            raise ValueError(
                f"`noise_mask` has {self.noise_mask.size} entries but the training dataset has {n} samples."
            )
        self.store = SampleStore(n, self.num_classes, top_k=self.top_classes,
                                 embedding_dim=self.embedding_dim, memmap_dir=self.store_dir)
        self._strategy = trainer.strategy
        self._pending, self._given_on_device, self._projection, self._weights_on_device = [], None, None, None
        if self.dataset is not None:
            labels = check_labels("the RelabeledDataset's labels", self.dataset.original_labels,
                                  num_classes=self.num_classes)
            self.store.set_given_labels(labels)
        if self._pending_state is not None:
            self._restore(self._pending_state)
            self._pending_state = None

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active(trainer):
            self._flush()
        if self._active(trainer) and self.store is not None and self.store.seen.any():
            epoch = int(self.store.last_epoch.max())  # last epoch observed, not yet checked?
            if epoch > self._last_check_epoch:
                self._check(trainer, epoch, final=True)
            elif trainer.is_global_zero:
                self._log_end_projector(trainer)
        if self._capture is not None:
            self._capture.remove()
            self._capture = None

    # ------------------------------------------------------------------ per batch
    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._active(trainer) or self._capture is None:
            return
        self._batch = self._split_batch(batch)
        indices = self._batch[1]
        weights = None
        ds = self.dataset
        if ds is not None and ds.has_reduced_weights:  # down-weighted or excluded samples exist
            # a copy on the batch's device, refreshed when the weights change: no host round trip
            key = (ds.weights_version, indices.device)
            if self._weights_on_device is None or self._weights_key != key:
                self._weights_on_device, self._weights_key = torch.from_numpy(ds.weights).to(indices.device), key
            weights = self._weights_on_device[indices]
        self._capture.arm(indices.shape[0], weights)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._active(trainer) or self._capture is None or self.store is None:
            return
        labels, indices = self._batch if self._batch is not None else self._split_batch(batch)
        self._batch = None
        captured = self._capture.take()
        if captured is None:
            raise RuntimeError(
                f"FakeLabelDiscovery saw no output of the classifier head for a batch of "
                f"{indices.shape[0]} samples. The head must be called in training_step with the whole "
                "batch; pass `head=` to name the layer that produces the logits."
            )
        if captured.logits.ndim != 2 or captured.logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the head's output has shape {tuple(captured.logits.shape)}, but num_classes="
                f"{self.num_classes}. Set `num_classes` to the model's number of outputs, or name the "
                "classifier layer with `head=`."
            )
        device = captured.logits.device
        indices = indices.to(device)
        labels = labels.to(device)
        given = labels  # without a RelabeledDataset labels never change: the batch's are the given ones
        if self.dataset is not None:
            if self._given_on_device is None or self._given_on_device.device != device:
                self._given_on_device = torch.from_numpy(self.dataset.original_labels).to(device)
            given = self._given_on_device[indices]
        if self._projection is None:
            self._projection = self._projection_for(captured.embeddings.shape[1], device)
        if self._pending_epoch != trainer.current_epoch:
            self._flush()
            self._pending_epoch = trainer.current_epoch
        self._pending.append(summarise(
            indices, labels, given, captured.logits, captured.embeddings, top_k=self.store.top_k,
            projection=None if self._projection.numel() == 0 else self._projection,
        ))
        if len(self._pending) >= self.FLUSH_EVERY_N_BATCHES:
            self._flush()

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer):
            return
        self._flush()
        epoch = trainer.current_epoch
        if (epoch + 1) % self.check_every_n_epochs == 0 and epoch > self._last_check_epoch:
            self._check(trainer, epoch)

    # ------------------------------------------------------------------ results
    def report(self) -> LabelReport:
        """The :class:`~fld_train.LabelReport` of the latest check.

        Raises:
            RuntimeError: no check has run yet.
        """
        if self._report is None:
            raise RuntimeError(
                "FakeLabelDiscovery has no report yet: no check has run. Checks run after every "
                f"{self.check_every_n_epochs} training epoch(s) and at the end of `trainer.fit`."
            )
        return self._report

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        self._flush()  # a mid-epoch checkpoint holds every batch seen so far (all ranks save together)
        state: dict[str, Any] = {"last_check_epoch": self._last_check_epoch,
                                 "report_epoch": -1 if self._report is None else self._report.epoch,
                                 "best_score": self._best_score}
        if self._evaluation is not None:
            state["evaluation"] = _as_tensors(self._evaluation.state_dict())
        if self.store is not None:
            state["store"] = _as_tensors(self.store.state_dict())
        if self.dataset is not None:
            state["dataset"] = _as_tensors(self.dataset.state_dict())
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before training starts; the store and the dataset exist only
        # from on_train_start, which applies this.
        self._pending_state = dict(state_dict)

    def _restore(self, state: dict[str, Any]) -> None:
        self._last_check_epoch = int(state.get("last_check_epoch", -1))
        if "store" in state and self.store is not None:
            self.store.load_state_dict(_as_arrays(state["store"]))
        if "dataset" in state and self.dataset is not None:
            live = self.dataset.reviews  # reviews applied before resuming outrank the checkpoint
            self.dataset.load_state_dict(_as_arrays(state["dataset"]))
            restored = {r.index: r for r in self.dataset.reviews}
            newer = [r for r in live if restored.get(r.index) != r]
            if newer:
                self.dataset.reapply_reviews(newer, epoch=self._last_check_epoch)
        best = state.get("best_score")
        self._best_score = None if best is None else float(best)
        if "evaluation" in state and self.store is not None:  # report() works before the next check
            self._evaluation = scoring.Evaluation.from_state_dict(_as_arrays(dict(state["evaluation"])))
            self._report = self._report_of(
                self._evaluation, int(state.get("report_epoch", self._last_check_epoch)))

    # ------------------------------------------------------------------ internals
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=2)

    @staticmethod
    def _active(trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and not trainer.fast_dev_run

    def _split_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, (list, tuple)) or len(batch) < 3:
            kind = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (list, tuple)) \
                else f"a {type(batch).__name__}"
            raise ValueError(
                f"FakeLabelDiscovery needs each training batch to be (x, y, idx), got {kind}. Wrap the "
                "training dataset in fld_train.RelabeledDataset, which yields the sample index."
            )
        labels, indices = batch[1], batch[2]
        for name, t in (("y", labels), ("idx", indices)):
            if not torch.is_tensor(t) or t.ndim != 1 or t.is_floating_point() or t.is_complex():
                desc = f"shape {tuple(t.shape)}, dtype {t.dtype}" if torch.is_tensor(t) else type(t).__name__
                raise ValueError(
                    f"FakeLabelDiscovery expects batch[{1 if name == 'y' else 2}] (`{name}`) to be a 1-D "
                    f"integer tensor, got {desc}. Batches must be (x, y, idx) as RelabeledDataset yields."
                )
        if labels.shape != indices.shape:
            raise ValueError(f"batch `y` has {labels.shape[0]} labels but `idx` has {indices.shape[0]} indices.")
        # on an accelerator this would stall the device every batch; the store checks at the next flush
        bad = (labels < 0) | (labels >= self.num_classes)
        if labels.device.type == "cpu" and bool(bad.any()):
            first = int(torch.nonzero(bad)[0, 0])
            raise ValueError(
                f"batch label {int(labels[first])} (sample index {int(indices[first])}) is outside "
                f"[0, num_classes={self.num_classes}). Check `num_classes` or the dataset's labels."
            )
        return labels, indices

    def _find_dataset(self, trainer: pl.Trainer) -> RelabeledDataset | None:
        found = [d for d in _iter_datasets(trainer.train_dataloader) if isinstance(d, RelabeledDataset)]
        if not found and self.action != "flag":
            raise ValueError(
                f"action={self.action!r} changes labels or weights, so the training DataLoader's dataset "
                "must be (or wrap) a fld_train.RelabeledDataset; none was found. Wrap it, or use "
                "action='flag'."
            )
        if len({id(d) for d in found}) > 1:
            raise ValueError("found more than one RelabeledDataset in the training dataloaders; use one.")
        if found and found[0].num_classes not in (None, self.num_classes):
            raise ValueError(
                f"RelabeledDataset(num_classes={found[0].num_classes}) disagrees with "
                f"FakeLabelDiscovery(num_classes={self.num_classes})."
            )
        return found[0] if found else None

    @staticmethod
    def _loader_length(trainer: pl.Trainer) -> int:
        datasets = list(_iter_datasets(trainer.train_dataloader))
        if not datasets:
            raise ValueError("FakeLabelDiscovery found no training dataset to size its store.")
        return len(datasets[0])

    def _fetch_inputs(self) -> Any:
        ds = self.dataset
        return None if ds is None else (lambda idx: [ds.base[i][0] for i in idx])

    def _projection_for(self, in_dim: int, device: torch.device) -> torch.Tensor:
        assert self.store is not None
        if self.embedding_dim is None and self.store.num_samples * in_dim * 2 > 1e9:
            self._warn_once(
                "embedding_size",
                f"FakeLabelDiscovery: storing {self.store.num_samples} embeddings of {in_dim} dimensions "
                f"takes {self.store.num_samples * in_dim * 2 / 1e9:.1f} GB; pass `embedding_dim=128` to "
                "project them (kNN on random projections keeps most neighbours).",
            )
        matrix = self.store.projection_for(in_dim)
        return torch.empty(0, device=device) if matrix is None else torch.from_numpy(matrix).to(device)

    def _flush(self) -> None:
        """Move the batch summaries waiting on the device into the store: one gather, one transfer.

        Every rank calls it at the same points (a fixed batch count, the end of an epoch or of
        training, a checkpoint), so the gather is collective.
        """
        if not self._pending or self.store is None:
            return
        batches, self._pending = self._pending, []
        local = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
        rows = gather_rows(self._strategy, local) if self._strategy is not None else local
        host = {key: value.cpu().numpy() for key, value in rows.items()}
        own = host["indices"] if rows is local else local["indices"].cpu().numpy()
        bounds = np.cumsum([b["indices"].shape[0] for b in batches])[:-1]
        if any(np.unique(part).size != part.size for part in np.split(own, bounds)):
            self._warn_once(
                "duplicates",
                "FakeLabelDiscovery: a training batch holds the same sample index more than once (a "
                "sampler with replacement?). Each sample is counted once per epoch.",
            )
        skipped = self.store.nonfinite_rows
        self.store.record(Observations(**host), self._pending_epoch)
        if self.store.nonfinite_rows > skipped:
            self._warn_once(
                "nonfinite",
                "FakeLabelDiscovery: skipped samples whose logits or embeddings hold NaN or inf; they "
                "are not recorded (count so far in `fld.store.nonfinite_rows`). Is training diverging?",
            )

    def _check(self, trainer: pl.Trainer, epoch: int, *, final: bool = False) -> None:
        assert self.store is not None  # set in on_train_start
        value = self._monitored(trainer, epoch)  # every rank reads it, so a missing metric fails on all
        payload = None
        if trainer.is_global_zero:
            payload = (value, self._evaluate() if self._improves(value) else None)
        value, evaluation = trainer.strategy.broadcast(payload, src=0)
        self._last_check_epoch = epoch
        if evaluation is None:  # no better than the report's check: the report and the dataset stay
            assert self._evaluation is not None and self._report is not None  # the first check acts
            self._mark_reviewed(self._evaluation)  # reviews applied since then show in the report
            self._report = self._report_of(self._evaluation, self._report.epoch)
            if trainer.is_global_zero:
                log_report_epoch(trainer.loggers, self._report.epoch, trainer.global_step)
                self._write_files()
                if final:
                    self._log_end_projector(trainer)
            return
        self._apply(evaluation, epoch)
        self._evaluation, self._best_score = evaluation, value
        self._report = self._report_of(evaluation, epoch)
        if trainer.is_global_zero:
            if self.monitor is not None:
                log_report_epoch(trainer.loggers, epoch, trainer.global_step)
            log_check(
                trainer.loggers, self._report, trainer.global_step, options=self.tensorboard,
                noise_mask=self.noise_mask, embeddings=self.store.embeddings, seen=self.store.seen,
                fetch_inputs=self._fetch_inputs(), final=final,
            )
            self._write_files()

    def _write_files(self) -> None:
        """Rank 0: ``label_report.csv`` and ``audit_log.csv`` in ``report_dir``, when it is set."""
        if self.report_dir is None or self._report is None:
            return
        self.report_dir.mkdir(parents=True, exist_ok=True)
        self._report.to_csv(self.report_dir / "label_report.csv")
        if self.dataset is not None:
            self.dataset.write_audit_csv(self.report_dir / "audit_log.csv")

    def _log_end_projector(self, trainer: pl.Trainer) -> None:
        """Rank 0, end of training: the projector of the report, when it is written once at the end."""
        if self._report is not None and self.tensorboard is not None and self.tensorboard.projector == "end":
            assert self.store is not None
            log_projector(trainer.loggers, self._report, trainer.global_step,
                          options=self.tensorboard, embeddings=self.store.embeddings,
                          seen=self.store.seen, fetch_inputs=self._fetch_inputs())

    def _mark_reviewed(self, evaluation: scoring.Evaluation) -> None:
        """A human's decision outranks the automatic one: reviewed samples get decision ``reviewed``."""
        if self.dataset is not None and self.store is not None:
            evaluation.decisions[self.dataset.reviewed_mask & self.store.seen] = scoring.REVIEWED

    def _report_of(self, evaluation: scoring.Evaluation, epoch: int) -> LabelReport:
        assert self.store is not None
        ds = self.dataset
        current = ds.current_labels if ds is not None else self.store.given_labels
        return LabelReport.from_evaluation(
            evaluation, self.store.given_labels, current, epoch,
            reviews=ds.reviews if ds is not None else (), num_classes=self.num_classes,
        )

    def _monitored(self, trainer: pl.Trainer, epoch: int) -> float | None:
        """The value of ``monitor`` at this check; ``None`` without one."""
        if self.monitor is None:
            return None
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise RuntimeError(
                f"FakeLabelDiscovery(monitor={self.monitor!r}) found no metric {self.monitor!r} at the "
                f"check after epoch {epoch}; the logged metrics are {sorted(metrics)}. Log it in "
                f"`validation_step` (`self.log({self.monitor!r}, ...)`) and run validation at least "
                f"every check_every_n_epochs={self.check_every_n_epochs} epochs, or set `monitor=None`."
            )
        return float(metrics[self.monitor])

    def _improves(self, value: float | None) -> bool:
        """Whether a check with monitored ``value`` replaces the report (always, without ``monitor``)."""
        if value is None or self._evaluation is None:
            return True
        if not math.isfinite(value):
            return False
        best = self._best_score
        if best is None or not math.isfinite(best):
            return True
        return value < best if self.mode == "min" else value > best

    def _evaluate(self) -> scoring.Evaluation:
        assert self.store is not None
        evaluation = run_check(
            self.store, None if self.dataset is None else self.dataset.current_labels, k=self.k,
            action=self.action, use_gpu=self.use_gpu_index, index=self.knn_index,
            max_change_fraction=self.max_relabel_fraction,
            max_class_change_fraction=self.max_relabel_class_fraction,
            max_flag_class_fraction=self.max_flag_class_fraction,
            target_precision=self.target_precision, cluster_votes=self.cluster_votes,
            model_weight=self.model_weight,
            uncertain_action=self.uncertain_action, ranking=self.ranking,
            # the last check that scored is the one the report holds (checks that do not improve
            # on a monitored best do not score); its findings travel in the checkpoint with it
            previous=self._evaluation,
        )
        self._mark_reviewed(evaluation)
        return evaluation

    def _apply(self, evaluation: scoring.Evaluation, epoch: int) -> None:
        """Make the dataset's overrides match the decisions; undo overrides no longer decided."""
        ds = self.dataset
        if ds is None or self.action == "flag":
            return
        original, current, reviewed = ds.original_labels, ds.current_labels, ds.reviewed_mask
        target = np.where(evaluation.decisions == scoring.RELABEL, evaluation.suggested_labels, original)
        target[reviewed] = current[reviewed]
        weights = np.where(reviewed, ds.weights, evaluation.weights)
        idx = np.flatnonzero(target != current)
        if idx.size:
            reasons = [
                f"relabel: score={evaluation.scores[i]:.3f}" if target[i] != original[i]
                else "revert: no longer flagged"
                for i in idx
            ]
            ds.set_labels(idx, target[idx], epoch=epoch, reason=reasons)
        idx = np.flatnonzero(weights != ds.weights)
        if idx.size:
            reasons = [
                f"downweight: score={evaluation.scores[i]:.3f}" if weights[i] < 1
                else "revert: no longer flagged"
                for i in idx
            ]
            ds.set_weights(idx, weights[idx], epoch=epoch, reason=reasons)
