"""EFHQ binning rules (docs/efhq.md "Stage 2": binning and smallbin) on the project's convention."""

from __future__ import annotations

import numpy as np
import pytest

from efhq_assets.core.bins import (
    BINS,
    bin_pose,
    bin_pose_array,
    hardbin,
    hardbin_rows,
    smallbin,
    softbin,
    softbin_rows,
)

NAN = float("nan")

BIN_CASES = [
    # rule 1: frontal
    (0, 0, "frontal"),
    (44.9, 29.9, "frontal"),
    (-44.9, -29.9, "frontal"),
    # yaw > 0 is the subject's own left
    (45.1, 0, "profile_left"),
    (60, 29.9, "profile_left"),
    (179.9, -29.9, "profile_left"),
    (-45.1, 0, "profile_right"),
    (-179.9, 10, "profile_right"),
    # pitch > 0 looks up
    (0, 30.1, "profile_up"),
    (44.9, 179.9, "profile_up"),
    (0, -30.1, "profile_down"),
    (-44.9, -179.9, "profile_down"),
    # exact boundaries 45 and 30 fall through to profile_extreme
    (45, 0, "profile_extreme"),
    (-45, 0, "profile_extreme"),
    (0, 30, "profile_extreme"),
    (0, -30, "profile_extreme"),
    (45, 30, "profile_extreme"),
    # both axes large
    (60, 40, "profile_extreme"),
    (-60, -40, "profile_extreme"),
    # rule 2: |yaw| > 90 and |pitch| > 90
    (91, 91, "profile_extreme"),
    (-120, -100, "profile_extreme"),
    (90, 90, "profile_extreme"),
    # 180 is outside the open intervals
    (180, 0, "profile_extreme"),
    (-180, 0, "profile_extreme"),
    (0, 180, "profile_extreme"),
    (0, -180, "profile_extreme"),
    (150, 0, "profile_left"),
    (-150, 0, "profile_right"),
    # NaN / None -> no bin
    (NAN, 0, None),
    (0, NAN, None),
    (NAN, NAN, None),
    (None, 0, None),
]


@pytest.mark.parametrize("yaw,pitch,expected", BIN_CASES)
def test_bin_pose(yaw, pitch, expected):
    assert bin_pose(yaw, pitch) == expected


def test_bin_pose_ignores_roll():
    assert bin_pose(0, 0, roll=170) == "frontal"
    assert bin_pose(0, 0, roll=NAN) == "frontal"


def test_bin_pose_array_matches_scalar():
    ys = np.array([c[0] if c[0] is not None else NAN for c in BIN_CASES], dtype=float)
    ps = np.array([c[1] for c in BIN_CASES], dtype=float)
    out = bin_pose_array(ys, ps)
    assert list(out) == [c[2] for c in BIN_CASES]
    rng = np.random.default_rng(0)
    y = rng.uniform(-200, 200, 2000)
    p = rng.uniform(-200, 200, 2000)
    y[rng.integers(0, 2000, 50)] = np.nan
    y[:20] = rng.choice([45, -45, 90, 180, -180], 20)
    p[20:40] = rng.choice([30, -30, 90, 180, -180], 20)
    assert list(bin_pose_array(y, p)) == [bin_pose(a, b) for a, b in zip(y, p)]
    assert bin_pose_array(np.zeros((2, 3)), 0.0).shape == (2, 3)


def test_bins_cover_every_label():
    assert {bin_pose(y, p) for y, p, _ in BIN_CASES} - {None} == set(BINS)


HARD_CASES = [
    (["frontal"], "frontal"),
    (["profile_left"], "profile_left"),
    (["frontal", "frontal"], "frontal"),
    (["frontal", "profile_left"], "confused"),
    (["profile_up", "profile_up", "profile_up"], "profile_up"),
    (["profile_up", "profile_up", "profile_down"], "confused"),
    (["profile_left", None, "profile_left"], "profile_left"),  # unavailable estimators are ignored
    (["profile_left", NAN, None], "profile_left"),
    ([None, None, None], "confused"),
    ([], "confused"),
]


@pytest.mark.parametrize("bins,expected", HARD_CASES)
def test_hardbin(bins, expected):
    assert hardbin(bins) == expected


SOFT_CASES = [
    # one estimator
    (["frontal"], "frontal"),
    (["profile_left"], "profile_horizontal"),
    (["profile_right"], "profile_horizontal"),
    (["profile_extreme"], "profile_horizontal"),  # horizontal is tested first, as in the original
    (["profile_up"], "profile_vertical"),
    (["profile_down"], "profile_vertical"),
    # two estimators
    (["profile_left", "profile_left"], "profile_left"),
    (["frontal", "frontal"], "frontal"),
    (["profile_left", "profile_right"], "profile_horizontal"),
    (["profile_left", "profile_extreme"], "profile_horizontal"),
    (["profile_up", "profile_extreme"], "profile_vertical"),
    (["profile_up", "profile_down"], "profile_vertical"),
    (["profile_left", "profile_up"], "confused"),
    (["frontal", "profile_left"], "confused"),
    # three estimators
    (["profile_left", "profile_left", "frontal"], "profile_left"),
    (["frontal", "profile_up", "frontal"], "frontal"),
    (["profile_extreme", "profile_extreme", "profile_left"], "profile_extreme"),
    (["profile_left", "profile_right", "profile_extreme"], "profile_horizontal"),
    (["profile_up", "profile_down", "profile_extreme"], "profile_vertical"),
    (["profile_left", "profile_up", "profile_extreme"], "confused"),
    (["frontal", "profile_left", "profile_up"], "confused"),
    (["frontal", "profile_left", "profile_right"], "confused"),
    # unavailable estimators are ignored
    (["profile_left", None, None], "profile_horizontal"),
    ([None, "profile_up", NAN], "profile_vertical"),
    (["profile_down", None, "profile_down"], "profile_down"),
    ([None, None, None], "confused"),
    ([], "confused"),
]


@pytest.mark.parametrize("bins,expected", SOFT_CASES)
def test_softbin(bins, expected):
    assert softbin(bins) == expected


def test_rows_helpers():
    a = ["frontal", "profile_left", None]
    b = ["frontal", "profile_up", "profile_up"]
    c = ["frontal", "profile_left", None]
    assert hardbin_rows(a, b, c) == ["frontal", "confused", "profile_up"]
    assert softbin_rows(a, b, c) == ["frontal", "profile_left", "profile_vertical"]


SMALL_CASES = [
    # (yaws, pitches, softbin or None, expected)
    ([50, 55, 60], [0, 0, 0], None, "left_50_60"),  # mean |yaw| = 55
    ([-50, -55, -60], [0, 0, 0], None, "right_50_60"),
    ([0, 0, 0], [35, 38, 32], None, "up_30_40"),
    ([0, 0, 0], [-70, -75, -80], None, "down_70_80"),
    ([40, 10, 20], [0, 0, 0], "profile_left", "frontal"),  # mean < 30 -> frontal
    ([30, 30], [0, 0], "profile_left", "left_30_40"),  # 30 is in 30_40
    ([40, 40], [0, 0], "profile_left", "left_40_50"),  # lower edge inclusive
    ([89.9], [0], "profile_left", "left_80_90"),
    ([90], [0], "profile_left", "left_80_90"),  # exactly 90 (the original crashed)
    ([150, 170], [0, 0], "profile_left", "left_80_90"),  # > 90 clamped
    # horizontal / vertical: EFHQ's vote, left / up when n_positive > len // 2 (positive = left / up)
    ([60, -50], [0, 0], "profile_horizontal", "right_50_60"),  # a tie goes right (EFHQ's poseizer_stepbin)
    ([60, 0], [0, 0], "profile_horizontal", "right_30_40"),  # a zero is not positive
    ([50, -60], [0, 0], "profile_horizontal", "right_50_60"),
    ([60, 50, -40], [0, 0, 0], "profile_horizontal", "left_50_60"),
    ([0, 0], [-40, 35], "profile_vertical", "down_30_40"),
    ([0, 0, 0], [45, 45, -40], "profile_vertical", "up_40_50"),
    # profile_extreme -> the axis with the larger mean |angle|
    ([70, 80], [40, 35], "profile_extreme", "left_70_80"),
    ([-50, -55], [60, 70], "profile_extreme", "up_60_70"),
    ([-100, -120], [100, 95], "profile_extreme", "right_80_90"),
    ([50], [-50], "profile_extreme", "down_50_60"),  # equal means -> pitch (strict >, as the original)
    # NaN estimators are ignored
    ([50, NAN, 70], [0, NAN, 0], None, "left_60_70"),
    ([NAN, NAN], [NAN, NAN], None, "confused"),
    # frontal / confused pass through
    ([0, 1, 2], [0, 1, 2], None, "frontal"),
    ([60, 0, 0], [0, 40, 0], None, "confused"),
    ([0], [0], "frontal", "frontal"),
]


@pytest.mark.parametrize("yaws,pitches,soft,expected", SMALL_CASES)
def test_smallbin(yaws, pitches, soft, expected):
    assert smallbin(yaws, pitches, soft) == expected


def test_smallbin_no_angle_on_axis():
    assert smallbin([NAN], [10.0], "profile_left") is None


def test_smallbin_one_estimator_profile_left_is_horizontal():
    # one estimator saying profile_left -> softbin profile_horizontal -> direction by sign
    assert softbin([bin_pose(65, 0)]) == "profile_horizontal"
    assert smallbin([65], [0]) == "left_60_70"
    assert smallbin([-65], [0]) == "right_60_70"
