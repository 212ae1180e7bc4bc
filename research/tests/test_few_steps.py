"""research/few_steps.py: plans are parsed or refused in one line, and the table pairs every
plan against the reference clip by clip (a hand-computed mean and standard error)."""

from __future__ import annotations

import math

import pytest

from few_steps import label, parse_plan, table
from lgcvd_runtime.errors import LgcvdError
from lgcvd_train.eval_protocol import PROTOCOL

pytestmark = pytest.mark.research


def report(psnr, ssim, lpips, fvd=None) -> dict:
    rows = {"psnr": psnr, "ssim": ssim, "lpips": lpips}
    copy = {m: [0.0] * len(psnr) for m in rows}

    def model(per_clip):
        return {"aggregates": {PROTOCOL.scored.label: {"per_clip": {"best": per_clip}}}}

    return {"models": {"model": {**model(rows), "fvd": fvd}, "copy-last": model(copy)}}


def test_a_plan_is_sampler_colon_steps_then_a_spacing_and_anything_else_is_one_line():
    assert parse_plan("ddim:4") == ("ddim", 4, "even")
    assert parse_plan("dpmpp-sde:3:trailing") == ("dpmpp-sde", 3, "trailing")
    assert (
        label(("ddim", 4, "even")) == "ddim 4" and label(("ddim", 4, "log-snr")) == "ddim 4 log-snr"
    )
    for bad in ("ddim", "ddim:0", "ddim:x", "4", "ddim:4:karras", "ddim:4:"):
        with pytest.raises(LgcvdError) as err:
            parse_plan(bad)
        assert str(err.value) == (
            f"plan {bad!r} is not SAMPLER:STEPS[:SPACING] with SPACING one of even, trailing, "
            "log-snr; write e.g. ddim:4 or ddim:4:trailing"
        )


def test_the_table_pairs_each_plan_with_the_reference_clip_by_clip():
    ref = report([10.0, 12.0, 14.0], [0.5, 0.6, 0.7], [0.3, 0.2, 0.1], fvd=900.0)
    fast = report([11.0, 12.0, 16.0], [0.5, 0.5, 0.5], [0.3, 0.3, 0.3])
    ref_plan, plan = ("dpmpp", 10, "even"), ("ddim", 2, "trailing")
    text = table([plan], {ref_plan: ref, plan: fast}, ref_plan)
    # psnr differences 1, 0, 2: mean 1, std (ddof 1) 1, standard error 1 / sqrt(3)
    assert f"+1.0000 ± {1 / math.sqrt(3):.4f}" in text
    # ssim differences 0, -0.1, -0.2: mean -0.1, std 0.1, standard error 0.1 / sqrt(3)
    assert f"-0.1000 ± {0.1 / math.sqrt(3):.4f}" in text
    row = next(line for line in text.splitlines() if line.startswith("| ddim 2 trailing | 2 |"))
    assert row.endswith("| — |")  # no FVD for the plan
    assert "reference dpmpp 10: psnr 12.0000, ssim 0.6000, lpips 0.2000" in text
