"""Pictures a person looks at (lgcvd_runtime/media/pictures.py): the labelled, wrapped grid of a
result, the frame step rule, the built-in font, the label row of side-by-side videos and PNG
files."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from lgcvd_runtime.errors import OutputExistsError, VideoError
from lgcvd_runtime.media.pictures import (
    BACKGROUND,
    EMPTY,
    GAP,
    INK,
    SEPARATOR,
    Row,
    grid,
    panel_labels,
    shown_frames,
    side_by_side,
    text,
    write_png,
)
from lgcvd_runtime.media.video import read_frames


def numbered(t: int, h: int = 16, w: int = 16) -> np.ndarray:
    """(t, h, w, 3): frame i is filled with 10 * (i + 1)."""
    values = 10 * np.arange(1, t + 1, dtype=np.uint8)
    return np.broadcast_to(values[:, None, None, None], (t, h, w, 3)).copy()


def test_the_font_draws_a_one_as_a_stem_with_a_flag_and_a_foot():
    one = text("1").astype(int)
    assert one.shape == (7, 5)
    assert one.tolist() == [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
    ]
    assert text("ab", scale=2).shape == (14, 2 * (5 + 1 + 5))  # one blank column between


def test_a_frame_step_keeps_the_given_frames_and_every_kth_made_one():
    known = [True, True] + [False] * 28
    assert shown_frames(known, 1) == list(range(30))
    assert shown_frames(known, 3) == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29]
    assert shown_frames([False] * 10, 5) == [4, 9]


def cell(picture: np.ndarray, top: int, left: int, band: int, row: int, col: int, h=16, w=16):
    """The frame cell of `row`, `col` in `band`, given the label width `left` and the header
    height `top` (computed in the test from the layout rule: cells h x w with GAP between)."""
    rows = 3
    band_h = top + rows * (h + GAP)
    y = band * (band_h + GAP) + top + row * (h + GAP)
    x = left + col * (w + GAP)
    return picture[y : y + h, x : x + w]


def test_a_grid_puts_each_frame_in_its_time_column_and_wraps_long_clips():
    known = [True, True] + [False] * 6  # 2 given, 6 made
    truth, made = numbered(8), numbered(8) + 100
    rows = [
        Row("given", truth, known),
        Row("truth", truth, [True] * 8),
        Row("prediction", made, [not k for k in known]),
    ]
    label_w = len("prediction") * 6 - 1 + 2 * GAP  # widest label, 5 px glyphs 1 px apart
    width = label_w + 3 * (16 + GAP)  # room for three columns per band
    picture = grid(rows, list(range(8)), width=width)
    top = 7 + 2  # header: the 7-px font and 2 px
    bands = 3  # 8 columns, 3 per band
    assert picture.shape == (bands * (top + 3 * 18) + (bands - 1) * GAP, width, 3)
    for index in range(8):
        band, col = divmod(index, 3)
        given = cell(picture, top, label_w, band, 0, col)
        assert (given == (truth[index] if known[index] else EMPTY)).all()
        assert (cell(picture, top, label_w, band, 1, col) == truth[index]).all()
        prediction = cell(picture, top, label_w, band, 2, col)
        assert (prediction == (EMPTY if known[index] else made[index])).all()
    labels = picture[top : top + 16, :label_w]
    assert (labels == INK).any()  # the "given" label is drawn


def test_side_by_side_adds_a_two_pixel_separator():
    a, b = numbered(3, 4, 5), numbered(3, 4, 6)
    both = side_by_side(a, b)
    assert both.shape == (3, 4, 13, 3)
    assert (both[:, :, 5:7] == SEPARATOR).all()
    np.testing.assert_array_equal(both[:, :, 7:], b)


def test_panel_labels_write_each_name_over_its_own_panel_and_cut_it_at_the_edge():
    row = panel_labels(["truth", "sample 1"], 64, 32)  # 29 and 47 px of text, 2 px in
    assert row.shape == (10, 32 + 2 + 32, 3)
    ink = (row == INK).all(-1)  # (10, 66)
    truth, sample = text("truth"), text("sample 1")
    np.testing.assert_array_equal(ink[1:8, 2:31], truth)
    np.testing.assert_array_equal(ink[1:8, 36:66], sample[:, :30])  # cut at its panel's edge
    assert ink.sum() == truth.sum() + sample[:, :30].sum()  # nothing else drawn
    assert (row[~ink] == BACKGROUND).all()
    assert panel_labels(["truth", "x"], 96, 40).shape == (20, 82, 3)  # twice the text for 96 px


def test_write_png_round_trips_refuses_to_overwrite_and_uses_the_umask(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    path = tmp_path / "grid.png"
    old = os.umask(0o027)
    try:
        write_png(path, image)
    finally:
        os.umask(old)
    np.testing.assert_array_equal(read_frames(path)[0], image)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    with pytest.raises(OutputExistsError):
        write_png(path, image)
    with pytest.raises(VideoError) as err:
        write_png(tmp_path / "grid.jpg", image)
    assert str(err.value) == (
        f"cannot write {tmp_path / 'grid.jpg'}: a picture is a .png file; use a .png path"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
