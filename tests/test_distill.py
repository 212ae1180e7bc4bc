"""Progressive distillation (lgcvd_train.distill, distill_run, distill_cli): the one-step target
against two DDIM steps of the exact denoiser of Gaussian data, written out here; a per-timestep
linear student trained on it; the nested grid; exact resume; the command's one-line errors."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import error_line, export_tiny_bundle, random_model

from lgcvd_runtime import bundle
from lgcvd_runtime.schedule import ScheduleSpec, full_alphas_cumprod
from lgcvd_train.checkpoint import load_checkpoint, save_checkpoint
from lgcvd_train.config import TrainConfig
from lgcvd_train.diffusion import Schedule
from lgcvd_train.distill import ddim_coefficients, loss_weight, trailing_grid, two_step_target
from lgcvd_train.distill_cli import main
from lgcvd_train.distill_run import DistillConfig, Distiller, Round, load_teacher
from lgcvd_train.init_weights import InitError, checkpoint_plan, refuse_student

AB = full_alphas_cumprod(ScheduleSpec())  # (1000,) float64
D = 256  # dimensions of the Gaussian data
GEN = torch.Generator().manual_seed(0)
MU = torch.randn(D, generator=GEN, dtype=torch.float64) * 0.3
STD = 0.2 + torch.rand(D, generator=GEN, dtype=torch.float64)  # per-dimension s


def coeffs(t: int | None) -> tuple[float, float]:
    """(alpha, sigma) at original index t; None is the clean end."""
    return (1.0, 0.0) if t is None else (math.sqrt(AB[t]), math.sqrt(1.0 - AB[t]))


def exact_x0(z: torch.Tensor, t: int) -> torch.Tensor:
    """E[x0 | z_t] for x0 ~ N(MU, STD^2), z_t = a x0 + sigma eps: MU + a s^2 / (a^2 s^2 + sigma^2)
    (z - a MU), the posterior mean of a Gaussian."""
    a, s = coeffs(t)
    return MU + a * STD**2 / (a**2 * STD**2 + s**2) * (z - a * MU)


def exact_v(z: torch.Tensor, t) -> torch.Tensor:
    """The exact v: eps_hat = (z - a x0_hat) / sigma, v = a eps_hat - sigma x0_hat."""
    t = int(t) if not torch.is_tensor(t) else int(t.flatten()[0])
    a, s = coeffs(t)
    x0 = exact_x0(z, t)
    return a * (z - a * x0) / s - s * x0


def ddim(z, x0, t, t_next):
    """z_next = a' x0 + sigma' (z - a x0) / sigma: DDIM (eta = 0), written for the test."""
    a, s = coeffs(t)
    a1, s1 = coeffs(t_next)
    return a1 * x0 + s1 * (z - a * x0) / s


def teacher_two_steps(z, t, t_mid, t_end):
    z_mid = ddim(z, exact_x0(z, t), t, t_mid)
    return ddim(z_mid, exact_x0(z_mid, t_mid), t_mid, t_end)


def student_one_step(z, v, t, t_end):
    """One DDIM step from the student's v: x0 = a z - sigma v."""
    a, s = coeffs(t)
    return ddim(z, a * z - s * v, t, t_end)


def student_steps(students: int):
    """(t, t_mid, t_end) of every student step on the trailing grid of `students` steps."""
    teacher = [None, *[int(t) for t in trailing_grid(1000, 2 * students)]]
    return [
        (teacher[2 * k], teacher[2 * k - 1], teacher[2 * k - 2]) for k in range(1, students + 1)
    ]


def target_v(z, t, t_mid, t_end, denoise=exact_v):
    c = (*coeffs(t), *coeffs(t_mid), *coeffs(t_end))
    return two_step_target(denoise, z, t, t_mid, c, None).v


def test_the_trailing_grid_is_nested_and_ends_at_the_last_timestep():
    sixteen = [61, 124, 187, 249, 311, 374, 437, 499, 561, 624, 687, 749, 811, 874, 937, 999]
    assert trailing_grid(1000, 16).tolist() == sixteen
    for s in (8, 4, 2, 1):
        assert trailing_grid(1000, s).tolist() == sixteen[16 // s - 1 :: 16 // s]
    assert trailing_grid(1000, 1).tolist() == [999]


def test_the_coefficients_are_those_of_the_grid_points_and_the_clean_end():
    grid = trailing_grid(1000, 4)
    a, s = ddim_coefficients(Schedule(ScheduleSpec()), grid, torch.tensor([0, 1, 4]))
    want = [coeffs(None), coeffs(int(grid[0])), coeffs(999)]
    got = [x for pair in zip(a.flatten().tolist(), s.flatten().tolist(), strict=True) for x in pair]
    assert got == pytest.approx([x for pair in want for x in pair], abs=1e-6)


@pytest.mark.parametrize("students", [8, 4, 2, 1])
def test_one_student_step_on_the_target_reproduces_two_exact_teacher_steps(students):
    z = torch.randn(D, generator=GEN, dtype=torch.float64) * 1.5
    for t, t_mid, t_end in student_steps(students):
        v = target_v(z, t, t_mid, t_end)
        torch.testing.assert_close(
            student_one_step(z, v, t, t_end),
            teacher_two_steps(z, t, t_mid, t_end),
            rtol=0,
            atol=1e-9,
        )


def test_the_teachers_own_single_step_is_not_the_target():
    """The check above can fail: one teacher step over the whole interval (no distillation)
    lands elsewhere."""
    z = torch.randn(D, generator=GEN, dtype=torch.float64)
    t, t_mid, t_end = student_steps(2)[1]  # 999 -> 749 -> 499
    miss = student_one_step(z, exact_v(z, t), t, t_end) - teacher_two_steps(z, t, t_mid, t_end)
    assert miss.abs().max() > 1e-2


def test_the_weightings_are_snr_plus_one_and_truncated_snr_on_the_x0_error():
    z, v, v_hat = (torch.randn(D, generator=GEN, dtype=torch.float64) for _ in range(3))
    for t in (61, 499, 999):
        a, s = coeffs(t)
        snr = a**2 / s**2
        x0_err = ((a * z - s * v) - (a * z - s * v_hat)) ** 2
        for name, w in (("snr+1", snr + 1), ("truncated-snr", max(snr, 1.0))):
            weight = loss_weight(torch.tensor(a), torch.tensor(s), name)
            torch.testing.assert_close(weight * (v - v_hat) ** 2, w * x0_err)


class LinearStudent(torch.nn.Module):
    """v_hat = A[t] z + B[t] per dimension: the exact v of Gaussian data has this form, so the
    student starts as the teacher (A, B of exact_v) and can represent the target."""

    def __init__(self, times: list[int]):
        super().__init__()
        self.index = {t: i for i, t in enumerate(times)}
        a = torch.tensor([coeffs(t)[0] for t in times], dtype=torch.float64)[:, None]
        s = torch.tensor([coeffs(t)[1] for t in times], dtype=torch.float64)[:, None]
        gain = a * STD**2 / (a**2 * STD**2 + s**2)  # x0_hat = MU + gain (z - a MU)
        # v = (a z - x0_hat) / s  =>  A = (a - gain) / s,  B = -(MU - gain a MU) / s
        self.A = torch.nn.Parameter((a - gain) / s)
        self.B = torch.nn.Parameter(-(MU - gain * a * MU) / s)

    def forward(self, z, t):
        i = self.index[int(t)]
        return self.A[i] * z + self.B[i]


def test_a_linear_student_trained_on_the_target_moves_to_the_teachers_two_steps():
    steps = student_steps(2)
    student = LinearStudent([t for t, _, _ in steps])
    torch.testing.assert_close(
        student(torch.ones(D, dtype=torch.float64), 999),
        exact_v(torch.ones(D, dtype=torch.float64), 999),
    )
    opt = torch.optim.Adam(student.parameters(), lr=0.02)
    held_out = torch.randn(64, D, generator=GEN, dtype=torch.float64)

    def miss():
        with torch.no_grad():
            return sum(
                float(
                    (
                        (student_one_step(z, student(z, t), t, e) - teacher_two_steps(z, t, m, e))
                        ** 2
                    ).mean()
                )
                for t, m, e in steps
                for z in held_out
            )

    before = miss()
    for _ in range(60):
        opt.zero_grad()
        loss = torch.zeros((), dtype=torch.float64)
        for t, t_mid, t_end in steps:
            a, s = coeffs(t)
            x0 = MU + STD * torch.randn(32, D, generator=GEN, dtype=torch.float64)
            z = a * x0 + s * torch.randn(32, D, generator=GEN, dtype=torch.float64)
            v_tilde = target_v(z, t, t_mid, t_end)
            w = loss_weight(torch.tensor(a), torch.tensor(s), "snr+1")
            loss = loss + (w * (student(z, t) - v_tilde) ** 2).mean()
        loss.backward()
        opt.step()
    after = miss()
    print(f"linear student: one-step miss {before:.4g} -> {after:.4g}")
    assert after < 0.2 * before


@pytest.fixture
def teacher_run(tmp_path):
    model = random_model()
    opt = torch.optim.Adam(model.parameters())
    cfg = TrainConfig(
        task_weights={"prediction": 0.5, "unconditional": 0.25, "interpolation": 0.25}
    )
    save_checkpoint(tmp_path / "teacher", model, copy.deepcopy(model), opt, 7, cfg, {})
    return str(tmp_path / "teacher")


def videos() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8) for _ in range(2)]


def distil(teacher: str, out, quality: int = 0, save_every: int = 1) -> list[dict]:
    cfg = DistillConfig(
        source=teacher,
        data="random",
        rounds=(2, 1),
        round_steps=2,
        batch_size=1,
        lr=1e-3,
        save_every=save_every,
        quality_clips=quality,
    )
    return Distiller(cfg, load_teacher(teacher, 2), videos(), out, {"data": "random"}).run()


def test_a_bundle_teacher_s_manifest_is_read_and_its_graphs_hashed_once(
    tmp_path_factory, monkeypatch
):
    teacher = export_tiny_bundle(tmp_path_factory)
    manifest = bundle.load_manifest(Path(teacher))
    hashed = []
    verify = bundle.verify_graph

    def counted(path, graph):
        hashed.append(graph.file)
        verify(path, graph)

    monkeypatch.setattr(bundle, "verify_graph", counted)
    model, record, tcfg, framing = load_teacher(teacher, 2)
    assert sorted(hashed) == sorted(g.file for g in manifest.graphs.values())
    assert record["sha256"] == {name: g.sha256 for name, g in manifest.graphs.items()}
    assert (tcfg.schedule, framing) == (manifest.schedule, manifest.framing)


def test_each_round_writes_a_student_that_records_its_plan_and_teacher(teacher_run, tmp_path):
    reports = distil(teacher_run, tmp_path / "d", quality=1)
    assert [r["round"] for r in reports] == ["2 -> 1"]
    assert set(reports[0]) >= {
        "loss_last_fifth",
        "cpu_s",
        "rmse_student",
        "rmse_teacher_same_steps",
    }
    state = load_checkpoint(tmp_path / "d" / "steps-01").state
    teacher = state["plan"].pop("teacher")
    assert state["plan"] == {"sampler": "ddim", "steps": 1, "timesteps": [999]}
    assert teacher["path"] == teacher_run and teacher["step"] == 7
    assert (teacher["config"], teacher["steps"]) == ("tiny", 2)
    assert len(teacher["sha256"]) == 64


def stop_at_step_one(monkeypatch) -> Callable:
    """Make a round stop (as Ctrl-C) when it is about to take its second step; -> the update."""
    update = Round.update

    def stopping(self):
        if self.owner.step == 1:
            raise KeyboardInterrupt
        return update(self)

    monkeypatch.setattr(Round, "update", stopping)
    return update


def test_a_stopped_and_resumed_distillation_gives_the_uninterrupted_weights(
    teacher_run, tmp_path, monkeypatch
):
    distil(teacher_run, tmp_path / "full")
    update = stop_at_step_one(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        distil(teacher_run, tmp_path / "cut")
    assert load_checkpoint(tmp_path / "cut" / "steps-01").step == 1
    monkeypatch.setattr(Round, "update", update)
    distil(teacher_run, tmp_path / "cut")
    full = load_checkpoint(tmp_path / "full" / "steps-01").tensors
    cut = load_checkpoint(tmp_path / "cut" / "steps-01").tensors
    assert full.keys() == cut.keys()
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_a_stop_between_periodic_saves_saves_the_round_before_it_ends(
    teacher_run, tmp_path, monkeypatch
):
    stop_at_step_one(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        distil(teacher_run, tmp_path / "cut", save_every=100)  # no periodic save before the stop
    assert load_checkpoint(tmp_path / "cut" / "steps-01").step == 1


def test_a_distilled_student_is_refused_for_fine_tuning_naming_its_recorded_teacher(
    teacher_run, tmp_path
):
    distil(teacher_run, tmp_path / "d")
    student = tmp_path / "d" / "steps-01"
    plan = checkpoint_plan(student, load_checkpoint(student).state, 1000)
    with pytest.raises(InitError) as err:
        refuse_student(student, plan)
    assert f"pass {teacher_run} to --init-from and distil the result again" in str(err.value)


def test_rounds_that_do_not_halve_are_refused_in_one_line(teacher_run, tmp_path):
    args = ["--teacher", teacher_run, "--data", "shapes", "--out", str(tmp_path / "d")]
    result = CliRunner().invoke(main, [*args, "--rounds", "16:4:1"])
    assert error_line(result) == (
        "rounds 16:4:1 do not halve the steps each time; write e.g. 16:8:4:2:1"
    )
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "d"), "--resume"])
    assert error_line(result) == f"{tmp_path / 'd'} holds no distillation run; drop --resume"


def test_the_command_runs_every_round_refuses_a_rerun_and_resumes_longer(teacher_run, tmp_path):
    out = tmp_path / "d"
    args = ["--teacher", teacher_run, "--data", "shapes", "--num-videos", "2", "--out", str(out)]
    args += ["--rounds", "2:1", "--round-steps", "1", "--batch-size", "1", "--quality-clips", "0"]
    result = CliRunner().invoke(main, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"students: {out / 'steps-01'}"
    assert error_line(CliRunner().invoke(main, args)) == (
        f"{out} already holds a distillation run; pass --resume to continue it or --force to "
        "start over"
    )
    more = ["--out", str(out), "--resume", "--round-steps", "2", "--quiet"]
    assert CliRunner().invoke(main, more).exit_code == 0
    assert load_checkpoint(out / "steps-01").step == 2
    assert json.loads((out / "distill.json").read_text())["round_steps"] == 2
