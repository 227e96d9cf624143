"""Small raster renderings for TensorBoard images (PIL only; no plotting library needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_FONT = ImageFont.load_default()
_RED, _BLUE, _GREY, _BLACK, _WHITE = (214, 39, 40), (31, 119, 180), (200, 200, 200), (0, 0, 0), (255, 255, 255)


def as_image(x: Any, image_shape: Sequence[int] | None = None) -> np.ndarray | None:
    """``x`` as an ``(H, W, 3)`` uint8 image scaled to its own min/max, or ``None`` if not image-like.

    Accepts ``(C, H, W)`` with C in {1, 3}, ``(H, W)``, ``(H, W, 3)`` (uint8 PIL-style), a PIL image,
    or any array that reshapes to ``image_shape``.
    """
    if isinstance(x, Image.Image):
        return np.asarray(x.convert("RGB"))
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if image_shape is not None:
        if arr.size != int(np.prod(image_shape)):
            return None
        arr = arr.reshape(tuple(image_shape))
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3) or min(arr.shape[:2]) < 2:
        return None
    lo, hi = np.nanmin(arr), np.nanmax(arr)
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    arr = np.nan_to_num(arr) * 255
    return np.repeat(arr, 3 // arr.shape[-1], axis=-1).astype(np.uint8)


def grid(images: Sequence[np.ndarray], captions: Sequence[str], *, tile: int = 72, columns: int = 8) -> np.ndarray:
    """Tiles of ``images`` (each ``(H, W, 3)`` uint8), each with its caption below, as one image."""
    rows = max(1, -(-len(images) // columns))
    caption_h = 14
    canvas = Image.new("RGB", (columns * tile, rows * (tile + caption_h)), _WHITE)
    draw = ImageDraw.Draw(canvas)
    for k, (img, caption) in enumerate(zip(images, captions)):
        r, c = divmod(k, columns)
        thumb = Image.fromarray(img).resize((tile - 4, tile - 4), Image.NEAREST)
        canvas.paste(thumb, (c * tile + 2, r * (tile + caption_h) + 2))
        draw.text((c * tile + 2, r * (tile + caption_h) + tile), caption, fill=_BLACK, font=_FONT)
    return np.asarray(canvas)


def heatmap(matrix: np.ndarray, *, row_label: str, col_label: str, cell: int = 28) -> np.ndarray:
    """A counts matrix as an image: darker = more, the count written in each non-empty cell."""
    m = np.asarray(matrix, dtype=np.float64)
    n_rows, n_cols = m.shape
    margin = 40
    canvas = Image.new("RGB", (margin + n_cols * cell + 4, margin + n_rows * cell + 4), _WHITE)
    draw = ImageDraw.Draw(canvas)
    top = m.max() if m.max() > 0 else 1.0
    for i in range(n_rows):
        draw.text((margin - 14, margin + i * cell + cell // 3), str(i), fill=_BLACK, font=_FONT)
        for j in range(n_cols):
            shade = int(255 - 200 * m[i, j] / top)
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1)
            draw.rectangle(box, fill=(shade, shade, 255), outline=_GREY)
            if m[i, j]:
                draw.text((box[0] + 3, box[1] + cell // 3), f"{int(m[i, j])}",
                          fill=_WHITE if shade < 128 else _BLACK, font=_FONT)
    for j in range(n_cols):
        draw.text((margin + j * cell + cell // 3, margin - 14), str(j), fill=_BLACK, font=_FONT)
    draw.text((2, 2), f"rows: {row_label}; columns: {col_label}", fill=_BLACK, font=_FONT)
    return np.asarray(canvas)


def scatter(x: np.ndarray, y: np.ndarray, highlight: np.ndarray, *, xlabel: str, ylabel: str,
            size: int = 360) -> np.ndarray:
    """Points ``(x, y)`` in [0, max] x [0, 1]; ``highlight`` points in red, drawn last."""
    margin = 30
    canvas = Image.new("RGB", (size + margin + 10, size + margin + 10), _WHITE)
    draw = ImageDraw.Draw(canvas)
    x = np.asarray(x, dtype=np.float64)
    y = np.clip(np.asarray(y, dtype=np.float64), 0, 1)
    x_top = max(float(x.max(initial=0.0)), 1e-6)
    px = margin + (x / x_top) * size
    py = 5 + (1 - y) * size
    draw.rectangle((margin, 5, margin + size, 5 + size), outline=_BLACK)
    for mask, colour in ((~highlight, _BLUE), (highlight, _RED)):
        for a, b in zip(px[mask], py[mask]):
            draw.rectangle((a - 1, b - 1, a + 1, b + 1), fill=colour)
    draw.text((margin, size + 12), f"{xlabel} (0 .. {x_top:.2f})", fill=_BLACK, font=_FONT)
    draw.text((2, 2), ylabel, fill=_BLACK, font=_FONT)
    return np.asarray(canvas)
