"""Gather per-batch tensors across ranks (pad-gather-trim) for the per-sample store.

Each rank may hold a different number of rows (uneven last batches); rows are padded to the largest
count, gathered, and trimmed back. The store then scatters rows by sample index and counts a sample
once per epoch, so the indices ``DistributedSampler`` repeats to even out ranks are not double-counted.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class _Strategy(Protocol):
    world_size: int

    def all_gather(self, tensor: torch.Tensor, group: Any = None, sync_grads: bool = False) -> torch.Tensor:
        ...


def gather_rows(strategy: _Strategy, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate each tensor's rows from all ranks, in rank order.

    Args:
        strategy: a Lightning strategy (anything with ``world_size`` and ``all_gather``).
        tensors: name -> ``(B, ...)`` tensor; all share the same ``B`` on one rank, which may differ
            between ranks.

    Returns:
        name -> ``(sum of B over ranks, ...)`` tensor.
    """
    if strategy.world_size <= 1:
        return tensors
    first = next(iter(tensors.values()))
    count = torch.tensor([first.shape[0]], device=first.device, dtype=torch.long)
    counts = strategy.all_gather(count).reshape(-1).tolist()
    longest = max(counts)
    out = {}
    for name, t in tensors.items():
        padded = t.new_zeros((longest, *t.shape[1:]))
        padded[: t.shape[0]] = t
        gathered = strategy.all_gather(padded)  # (world, longest, ...)
        out[name] = torch.cat([gathered[r, :c] for r, c in enumerate(counts)], dim=0)
    return out
