"""Argument checks shared by the public API.

Every check raises an error that names the argument, the value it got and what is allowed, so a
user never sees a stack trace from deep inside numpy, FAISS or Lightning instead.
"""

from __future__ import annotations

from collections.abc import Collection
from numbers import Integral, Real
from typing import Any

import numpy as np


def check_int(name: str, value: Any, *, minimum: int | None = None, hint: str = "") -> int:
    """Return ``value`` as an ``int`` after checking it is an integer ``>= minimum``.

    Raises:
        TypeError: ``value`` is not an integer (``bool`` is refused too).
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"`{name}` must be an int, got {value!r} ({type(value).__name__}).{_h(hint)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.{_h(hint)}")
    return int(value)


def check_k(k: Any) -> int | str:
    """Return ``k`` after checking it is ``"auto"`` or an int >= 1 (neighbours in the kNN vote)."""
    if isinstance(k, str):
        if k == "auto":
            return k
        raise ValueError(f"`k` must be 'auto' or an int >= 1, got {k!r}.")
    return check_int("k", k, minimum=1, hint="Or 'auto', to choose it from the data.")


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    hint: str = "",
) -> float:
    """Return ``value`` as a ``float`` after checking ``low <= value <= high`` (both optional)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise TypeError(f"`{name}` must be a finite float, got {value!r}.{_h(hint)}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"`{name}` must be in [{lo}, {hi}], got {value!r}.{_h(hint)}")
    return float(value)


def check_positive(name: str, value: Any, *, hint: str = "") -> float:
    """Return ``value`` as a ``float`` after checking it is finite and ``> 0`` (a learning rate, a scale)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise TypeError(f"`{name}` must be a finite float > 0, got {value!r}.{_h(hint)}")
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}.{_h(hint)}")
    return float(value)


def check_bool(name: str, value: Any, *, hint: str = "") -> bool:
    """Return ``value`` after checking it is ``True`` or ``False`` (not a truthy stand-in such as ``1``)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {value!r}.{_h(hint)}")
    return value


def check_choice(name: str, value: Any, allowed: Collection[str], *, hint: str = "") -> str:
    """Return ``value`` after checking it is one of ``allowed``."""
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"`{name}` must be one of {{{options}}}, got {value!r}.{_h(hint)}")
    return value


def check_labels(
    name: str, labels: Any, *, num_classes: int | None = None, length: int | None = None
) -> np.ndarray:
    """Return ``labels`` as a 1-D ``int64`` array of class ids in ``[0, num_classes)``.

    Raises:
        ValueError: the array is not 1-D, has the wrong length, holds non-integers, or holds a
            class id outside ``[0, num_classes)``. The message names the first offending position.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array of integers, got shape {arr.shape}.")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"`{name}` must have length {length}, got {arr.shape[0]}.")
    whole_floats = np.issubdtype(arr.dtype, np.floating) and bool(np.all(np.mod(arr, 1) == 0))
    if arr.size and not np.issubdtype(arr.dtype, np.integer) and not whole_floats:
        raise ValueError(
            f"`{name}` must hold integers, got dtype {arr.dtype} (first values: {arr[:5].tolist()})."
        )
    arr = arr.astype(np.int64, copy=False)
    if num_classes is not None and arr.size:
        bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"`{name}` holds {bad.size} value(s) outside [0, num_classes={num_classes}), "
                f"first at position {i}: {int(arr[i])}. Check `num_classes` or the labels."
            )
    return arr


def check_mask(name: str, values: Any, length: int, *, default: bool) -> np.ndarray:
    """Return ``values`` as a ``(length,)`` bool array; ``None`` gives one filled with ``default``."""
    if values is None:
        return np.full(length, default)
    arr = np.asarray(values)
    if arr.shape != (length,):
        raise ValueError(f"`{name}` must be a bool array of shape ({length},), got {arr.shape}.")
    return arr.astype(bool)


def _h(hint: str) -> str:
    return f" {hint}" if hint else ""
