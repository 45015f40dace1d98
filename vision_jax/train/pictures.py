"""PNG files of pictures drawn by a task: one file per picture and a contact sheet of them all."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from vision_jax.viz import BAND_RGB

SHEET_GAP = 16  # pixels between (and around) the cells of a contact sheet: wider than PANEL_GAP
MAX_SHEET_SIDE = 4096  # a larger sheet is scaled down to fit


def sheet_grid(num_pictures: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) of a contact sheet: `columns` if given, else the smallest square-ish grid."""
    columns = columns or max(1, int(np.ceil(np.sqrt(num_pictures))))
    return max(1, -(-num_pictures // columns)), columns


def contact_sheet(pictures: list[np.ndarray], columns: int | None = None) -> np.ndarray:
    """uint8 [H, W, 3] grid of uint8 [h_i, w_i, 3] pictures in reading order (row by row, as the files'
    numbers), each top-left in a cell as large as the largest picture, SHEET_GAP pixels apart and
    around: H = rows * max h_i + (rows + 1) * SHEET_GAP, W likewise, unless scaled down so that
    neither side exceeds MAX_SHEET_SIDE."""
    rows, columns = sheet_grid(len(pictures), columns)
    cell_h = max((p.shape[0] for p in pictures), default=1)
    cell_w = max((p.shape[1] for p in pictures), default=1)
    shape = (rows * cell_h + (rows + 1) * SHEET_GAP, columns * cell_w + (columns + 1) * SHEET_GAP, 3)
    sheet = np.full(shape, BAND_RGB, np.uint8)
    for index, picture in enumerate(pictures):
        row, column = divmod(index, columns)
        y, x = SHEET_GAP + row * (cell_h + SHEET_GAP), SHEET_GAP + column * (cell_w + SHEET_GAP)
        sheet[y : y + picture.shape[0], x : x + picture.shape[1]] = picture
    scale = MAX_SHEET_SIDE / max(sheet.shape[:2])
    if scale < 1:
        size = (max(1, round(sheet.shape[1] * scale)), max(1, round(sheet.shape[0] * scale)))
        sheet = np.asarray(Image.fromarray(sheet).resize(size, Image.Resampling.LANCZOS))
    return sheet


def sheet_path(directory: str, prefix: str = "eval") -> str:
    return os.path.join(directory, f"{prefix}_sheet.png")


def write_pictures(directory: str, pictures: list[np.ndarray], prefix: str = "eval") -> list[str]:
    """Writes uint8 [H, W, 3] pictures as `directory/{prefix}_{i:02d}.png` and, when there are any, their
    contact sheet as `sheet_path(directory, prefix)`; returns the paths of the pictures (not the sheet)."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, picture in enumerate(pictures):
        path = os.path.join(directory, f"{prefix}_{i:02d}.png")
        Image.fromarray(np.asarray(picture, np.uint8)).save(path)
        paths.append(path)
    if pictures:
        Image.fromarray(contact_sheet([np.asarray(p, np.uint8) for p in pictures])).save(sheet_path(directory, prefix))
    return paths
