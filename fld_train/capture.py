"""Find the classifier head of a model and capture its inputs (embeddings) and outputs (logits).

The model's code does not change: a forward hook on the head records what flows through it while
a training batch is in flight, and, for down-weighted samples, scales each sample's gradient through
the head's output, which weights the sample's loss without touching ``training_step``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def find_head(model: nn.Module, num_classes: int, name: str | None = None) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` of the classifier head.

    Args:
        model: the LightningModule (or any ``nn.Module``).
        num_classes: the head is the last ``nn.Linear`` with ``out_features == num_classes``.
        name: dotted module name that overrides the search (as in ``model.named_modules()``).

    Raises:
        ValueError: no module has that name, or no ``nn.Linear`` fits; the message lists candidates.
    """
    modules = dict(model.named_modules())
    linears = {n: m for n, m in modules.items() if isinstance(m, nn.Linear)}
    listing = ", ".join(f"'{n}' (in={m.in_features}, out={m.out_features})" for n, m in linears.items())
    if name is not None:
        if name not in modules:
            raise ValueError(
                f"`head={name!r}` is not a module of {type(model).__name__}. Linear modules: "
                f"{listing or 'none'}."
            )
        return name, modules[name]
    fits = [n for n, m in linears.items() if m.out_features == num_classes]
    if not fits:
        raise ValueError(
            f"found no nn.Linear with out_features == num_classes={num_classes} in "
            f"{type(model).__name__}. Linear modules: {listing or 'none'}. Pass `head=\"name\"` to "
            "FakeLabelDiscovery to name the classifier layer, or fix `num_classes`."
        )
    return fits[-1], linears[fits[-1]]


@dataclass
class Captured:
    """The head's input and output for one forward call, detached."""

    embeddings: torch.Tensor
    logits: torch.Tensor


class HeadCapture:
    """Forward hook on the head that records ``(embedding, logits)`` while a batch is armed.

    Call :meth:`arm` with the batch size (and optional per-sample gradient weights) before the
    forward pass and :meth:`take` after it; calls outside an armed batch (validation, inference)
    are ignored.
    """

    def __init__(self, head: nn.Module) -> None:
        self._handle = head.register_forward_hook(self._hook, with_kwargs=True)
        self._batch_size: int | None = None
        self._weights: torch.Tensor | None = None
        self._captured: Captured | None = None
        self._warned = False

    def arm(self, batch_size: int, weights: torch.Tensor | None = None) -> None:
        """Record the next head call whose leading dimension is ``batch_size``."""
        self._batch_size = batch_size
        self._weights = weights
        self._captured = None

    def take(self) -> Captured | None:
        """Return what the armed batch captured (``None`` if the head saw no matching call)."""
        captured, self._captured, self._batch_size, self._weights = self._captured, None, None, None
        return captured

    def remove(self) -> None:
        """Detach the hook from the model."""
        self._handle.remove()

    def _hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        if self._batch_size is None or not module.training:
            return None
        features = args[0] if args else next(iter(kwargs.values()), None)
        if not torch.is_tensor(output) or not torch.is_tensor(features):
            return None
        if output.ndim != 2 or output.shape[0] != self._batch_size:
            if not self._warned:
                warnings.warn(
                    f"FakeLabelDiscovery: the head produced shape {tuple(output.shape)} for a batch of "
                    f"{self._batch_size} samples; it needs (batch, num_classes) logits. Such calls are "
                    "ignored. Pass `head=` to name the layer whose output is the logits.",
                    stacklevel=2,
                )
                self._warned = True
            return None
        self._captured = Captured(
            embeddings=features.detach().reshape(features.shape[0], -1),
            logits=output.detach(),
        )
        weights = self._weights
        if weights is not None and output.requires_grad:
            w = weights.to(device=output.device, dtype=output.dtype).unsqueeze(1)
            output.register_hook(lambda grad: grad * w)
        return None


def summarise(
    indices: torch.Tensor,
    labels: torch.Tensor,
    given: torch.Tensor,
    logits: torch.Tensor,
    embeddings: torch.Tensor,
    *,
    top_k: int,
    projection: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Summarise one batch on the model's device, without synchronising with the host.

    The torch twin of :func:`fld_train.store.summarise_logits`: what the store keeps of ``(B, C)``
    logits (given-label probability, AUM margin, correctness, the ``top_k`` classes) and the
    embedding, projected and L2-normalised to float16. ``finite`` marks rows whose logits and
    embedding held no NaN or inf (the store skips the others). Few kernels: this runs every batch.
    """
    logits = logits.float()
    emb = embeddings.float() if projection is None else embeddings.float() @ projection
    # NaN and inf propagate through a row sum: one reduction per tensor finds them
    finite = torch.isfinite(logits.sum(dim=1)) & torch.isfinite(emb.sum(dim=1))
    given = given.to(logits.device).unsqueeze(1)
    prob = logits.softmax(dim=1)
    top_probs, top_classes = prob.topk(min(top_k, prob.shape[1]), dim=1)
    best2 = logits.topk(2, dim=1).values
    given_logit = logits.gather(1, given).squeeze(1)
    is_best = top_classes[:, 0] == given.squeeze(1)
    return {
        "indices": indices.long(),
        "labels": labels.long(),
        "given_prob": prob.gather(1, given).squeeze(1),
        "margin": given_logit - torch.where(is_best, best2[:, 1], best2[:, 0]),
        "correct": is_best,
        "top_classes": top_classes,
        "top_probs": top_probs,
        "embeddings": torch.nn.functional.normalize(emb, dim=1, eps=1e-12).half(),
        "finite": finite,
    }
