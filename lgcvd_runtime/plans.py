"""Sampler plans: which reverse-diffusion sampler runs, with how many denoising steps per window
and at which timesteps. The one home of the defaults every command line, the library and the
tools read, and of the rule that picks a run's plan.

    DEFAULT_PLAN  ddpm, 12 steps on the trailing grid: the cheapest plan measured within 0.005
                  of ddpm 50's SSIM and LPIPS (64 clips) and 10 % of its FVD (256 clips: 975
                  against 902), at 4.2x fewer denoiser calls; ddpm 50 on the even grid
                  (the former default) matched the paper's 100-step ddpm
    FAST_PLAN     dpmpp, 10 steps: faster still, the same per-frame quality, a worse FVD; the plan
                  of the int8 gate and of Table 5's recorded numbers

Both were chosen by measurement (docs/results.md, "A fast default" and the sampler study). A plan's steps lie on a grid
(`spacing`, `schedule.spaced_timesteps`: "even" from t = 0, "trailing" ending above it, or
"log-snr"), or at exact timesteps: a distilled student records the plan it was distilled for
(sampler, steps, the exact timesteps, the teacher's provenance) in its checkpoint and bundle
manifest (key "plan", `read_plan`). Where a run's plan comes from (`choose`), field by field
(sampler, steps, spacing), first match wins: an option given explicitly, then the plan its bundle
records, then DEFAULT_PLAN. The base plan's grid (a student's recorded timesteps, the default's
spacing) goes with its step count: it is kept while the steps are the base's and no spacing is
given; other step counts lie on the even grid unless a spacing is given. Knows sampler names
and the schedule's timestep grids; nothing about networks, bundles or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lgcvd_runtime.checks import check_sampler, check_steps
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.samplers import SAMPLERS
from lgcvd_runtime.schedule import SPACINGS, Plan, ScheduleSpec, plan_at, spaced_timesteps

PLAN_KEYS = ("sampler", "steps", "timesteps", "teacher")  # of a recorded plan, all required


class PlanError(ValueError):
    """A recorded plan that cannot be run; the message says what is wrong, the caller where."""


@dataclass(frozen=True)
class SamplerPlan:
    sampler: str  # a name of `samplers.SAMPLERS`
    steps: int  # denoising steps per window, 1..the schedule's T
    timesteps: tuple[int, ...] | None = None  # original indices, ascending; None: on `spacing`
    teacher: dict | None = field(default=None, compare=False)  # a student's teacher provenance
    spacing: str = "even"  # the grid of `schedule.spaced_timesteps` where no timesteps are given

    def over(self, spec: ScheduleSpec) -> Plan:
        """The schedule plan this runs: exactly `timesteps` where recorded, else the `spacing`
        grid of `steps` (ValueError where that grid cannot have so many steps)."""
        if self.timesteps is None:
            return plan_at(spec, spaced_timesteps(spec, self.steps, self.spacing))
        return plan_at(spec, self.timesteps)

    def to_record(self) -> dict:
        """The checkpoint's and manifest's "plan" record (a plan with its timesteps)."""
        return {
            "sampler": self.sampler,
            "steps": self.steps,
            "timesteps": list(self.timesteps or ()),
            "teacher": self.teacher or {},
        }

    def bound(self) -> dict:
        """What the student's graphs were trained for: the record without its provenance."""
        return {k: v for k, v in self.to_record().items() if k != "teacher"}


DEFAULT_PLAN = SamplerPlan("ddpm", 12, spacing="trailing")
FAST_PLAN = SamplerPlan("dpmpp", 10)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_plan(record, T: int) -> SamplerPlan | None:
    """A recorded plan (None: none recorded) checked against a schedule of T steps; PlanError
    names the first fault: a missing or unknown key, an unknown sampler, timesteps that are not
    whole, ascending, in 0..T-1 and as many as the steps, a teacher that is not a mapping."""
    if record is None:
        return None
    if not isinstance(record, dict):
        raise PlanError(f"a plan is a JSON object, got {type(record).__name__}")
    if sorted(record) != sorted(PLAN_KEYS):
        raise PlanError(f"a plan has exactly the keys {', '.join(PLAN_KEYS)}, got {list(record)}")
    sampler, steps, timesteps = record["sampler"], record["steps"], record["timesteps"]
    if sampler not in SAMPLERS:
        raise PlanError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
    if not _whole(steps) or not 1 <= steps <= T:
        raise PlanError(f"steps must be a whole number in 1..{T}, got {steps!r}")
    if not isinstance(timesteps, list) or not all(_whole(t) for t in timesteps):
        raise PlanError(f"timesteps must be a list of whole numbers, got {timesteps!r}")
    if len(timesteps) != steps:
        raise PlanError(f"steps is {steps} but {len(timesteps)} timesteps are given")
    if any(b <= a for a, b in zip(timesteps, timesteps[1:], strict=False)):
        raise PlanError(f"timesteps must be strictly ascending, got {timesteps}")
    if timesteps[0] < 0 or timesteps[-1] > T - 1:
        raise PlanError(f"timesteps must lie in 0..{T - 1}, got {timesteps}")
    if not isinstance(record["teacher"], dict):
        raise PlanError(f"teacher must be a JSON object, got {record['teacher']!r}")
    return SamplerPlan(sampler, steps, tuple(timesteps), record["teacher"])


@dataclass(frozen=True)
class PlanChoice:
    """The plan a run uses, where it came from ("options", "bundle" or "default"), and the
    one-line warning where it departs from the plan the bundle was distilled for."""

    plan: SamplerPlan
    source: str
    recorded: SamplerPlan | None = None
    warning: str | None = None

    def record(self) -> dict:
        """The plan as a report records it: its name, the timesteps a student recorded (else
        null) and the grid of the others (else null: `schedule.spaced_timesteps`)."""
        plan, timesteps = self.plan, list(self.plan.timesteps or ()) or None
        return {"sampler": plan.sampler, "steps": plan.steps, "name": plan_name(plan),
                "spacing": None if timesteps else plan.spacing, "timesteps": timesteps,
                "source": self.source}  # fmt: skip

    def origin(self) -> str:
        """Where the plan came from, in words, e.g. for `lgcvd-run info`."""
        if self.source == "bundle":
            return "the plan the bundle was distilled for"
        if self.source == "default":
            return "the default: the bundle records no plan"
        if self.recorded is None:
            return "as given; the bundle records no plan"
        return f"as given; the bundle was distilled for {plan_name(self.recorded)}"


def teacher_name(plan: SamplerPlan) -> str | None:
    """Where a student's teacher was read from: the "path" lgcvd-distill records (older records
    may say "bundle" or "checkpoint"), or None where the plan names no teacher."""
    teacher = plan.teacher or {}
    return teacher.get("path") or teacher.get("bundle") or teacher.get("checkpoint")


def plan_name(plan: SamplerPlan) -> str:
    """e.g. "ddim 4 steps", "ddpm 2 trailing steps" (recorded timesteps: no grid is named)."""
    grid = f"{plan.spacing} " if plan.timesteps is None and plan.spacing != "even" else ""
    return f"{plan.sampler} {plan.steps} {grid}step{'s' if plan.steps != 1 else ''}"


def choose(
    sampler: str | None,
    steps: int | None,
    recorded: SamplerPlan | None,
    spacing: str | None = None,
) -> PlanChoice:
    """The plan of a run given the options (None: not given) and the bundle's recorded plan
    (module header); the warning where a distilled plan is overridden."""
    base = recorded or DEFAULT_PLAN
    count = steps if steps is not None else base.steps
    kept = count == base.steps and spacing is None  # the base's grid goes with its step count
    plan = SamplerPlan(
        sampler if sampler is not None else base.sampler,
        count,
        base.timesteps if kept else None,
        spacing=spacing if spacing is not None else base.spacing if kept else "even",
    )
    if sampler is None and steps is None and spacing is None:
        return PlanChoice(plan, "bundle" if recorded else "default", recorded)
    warning = None
    if recorded is not None and (plan.sampler, plan.steps, plan.timesteps) != (
        recorded.sampler,
        recorded.steps,
        recorded.timesteps,
    ):
        name = plan_name(plan)
        name += f" on the {plan.spacing} grid" if name == plan_name(recorded) else ""
        warning = (
            f"warning: sampling with {name}, not the {plan_name(recorded)} this model was "
            "distilled for: its forecasts may be worse (leave sampler, steps and spacing unset "
            "to use its plan)"
        )
    return PlanChoice(plan, "options", recorded, warning)


def checked_choice(
    sampler: str | None,
    steps: int | None,
    spacing: str | None,
    recorded: SamplerPlan | None,
    spec: ScheduleSpec,
    error: type[LgcvdError] = LgcvdError,
) -> PlanChoice:
    """`choose` for a model of schedule `spec`, each given value checked first and the chosen
    grid built once: `error`, one line, names what cannot run."""
    if sampler is not None:
        check_sampler(sampler)
    if steps is not None:
        check_steps(steps, spec.T, error)
    if spacing is not None and spacing not in SPACINGS:
        raise error(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    choice = choose(sampler, steps, recorded, spacing)
    try:
        choice.plan.over(spec)
    except ValueError as err:  # e.g. more log-snr steps than the schedule has distinct values
        raise error(str(err)) from None
    return choice
