"""The window bookkeeping (`timeline.Timeline`), per-row noise (`pipeline.row_generators`), the
finite-output check and the backend registry, on fake backends: no graph, no torch."""

from __future__ import annotations

import numpy as np
import pytest

from lgcvd_runtime import backends
from lgcvd_runtime.backends.base import BackendEntry
from lgcvd_runtime.conditioning import ABSENT
from lgcvd_runtime.errors import BackendError, LgcvdError, NonFiniteError
from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.pipeline import Pipeline, SamplerSettings, clip_seeds, row_generators
from lgcvd_runtime.schedule import ScheduleSpec, respace
from lgcvd_runtime.timeline import Timeline, interpolation_known, prediction_known

SPEC = ModelSpec(image_size=4, channels=3, frames=8, cond_slots=2, parameterization="v")


def plans(known: list[bool]) -> list[tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """(start, condition positions, new frames) of every window, filling each in turn."""
    timeline = Timeline(np.zeros((1, len(known), 3, 4, 4), np.float32), known, SPEC)
    ahead = timeline.plans()  # the dry run, before any window is filled
    out = []
    while (plan := timeline.next_window()) is not None:
        out.append((plan.start, plan.positions, plan.new))
        timeline.fill(plan, np.ones((1, SPEC.frames, 3, 4, 4), np.float32))
    assert [(p.start, p.positions, p.new) for p in ahead] == out
    assert timeline.plans() == []
    return out


def test_prediction_windows_condition_on_the_two_frames_before_each():
    assert plans(prediction_known(2, 13)) == [
        (0, (0, 1), (2, 3, 4, 5, 6, 7)),
        (6, (0, 1), (8, 9, 10, 11, 12, 13)),
        (12, (0, 1), (14,)),
    ]


def test_interpolation_windows_condition_on_the_keyframes_at_both_ends():
    known = interpolation_known(2, SPEC.frames)
    assert [i for i, k in enumerate(known) if k] == [0, 7, 14]
    assert plans(known) == [(0, (0, 7), (1, 2, 3, 4, 5, 6)), (7, (0, 7), (8, 9, 10, 11, 12, 13))]


def test_a_window_with_given_frames_on_both_sides_sees_the_nearest_before_and_after():
    known = [True, True, False, False, False, True, False, False, False, False]
    # frame 1 is the nearest given frame before the first unknown one (2), frame 5 after it
    assert plans(known) == [(0, (1, 5), (2, 3, 4, 6, 7)), (6, (0, 1), (8, 9))]


def test_a_given_frame_beyond_a_long_gap_is_reached_by_the_second_window():
    known = [True] + [False] * 9 + [True]
    # window 2 starts at 6 and covers 6..10: nearest before 8 is 7, nearest after is 10
    assert plans(known) == [(0, (0, ABSENT), (1, 2, 3, 4, 5, 6, 7)), (6, (1, 4), (8, 9))]


def test_generation_windows_have_empty_condition_slots():
    assert plans([False] * 9) == [
        (0, (ABSENT, ABSENT), tuple(range(8))),
        (6, (0, 1), (8,)),
    ]


def test_final_frames_are_handed_out_once_in_order_and_given_frames_stay_as_given():
    given = np.full((2, 2, 4, 4, 3), 7, np.uint8)  # (S, p, H, W, 3)
    timeline = Timeline.prediction(given, 4, SPEC)
    assert timeline.take_final().shape == (2, 2, 4, 4, 3)  # the given frames are final at once
    timeline.write(3, np.full((2, 3, 4, 4, 3), 9, np.uint8))  # frames 3..5 before frame 2
    assert timeline.take_final().shape[1] == 0 and timeline.final == 2
    timeline.write(1, np.full((2, 2, 4, 4, 3), 5, np.uint8))  # frame 1 is given: kept
    out = timeline.take_final()
    assert out.shape[1] == 4 and timeline.done
    assert [int(f[0, 0, 0, 0]) for f in np.moveaxis(out, 1, 0)] == [5, 9, 9, 9]
    assert int(timeline.video[0, 1, 0, 0, 0]) == 7


def test_a_sample_s_generator_depends_on_the_seed_and_s_alone():
    draw = [g.standard_normal(3) for g in row_generators(5, 3)]
    assert np.array_equal(draw[1], row_generators(5, 2)[1].standard_normal(3))
    assert not np.array_equal(draw[0], draw[1])
    assert not np.array_equal(draw[0], row_generators(6, 1)[0].standard_normal(3))
    row_generators(2**63 - 1, 1)  # the last seed the Triton request's int64 holds


@pytest.mark.parametrize("seed", [-1, 2**63, np.uint64(2**63), 2**70, True, 1.0, "3"])
def test_a_seed_outside_0_to_2_63_is_the_one_line_error_naming_the_range(seed):
    line = f"a seed must be a whole number 0 <= seed < 2**63, got {seed!r}; pass one in that range"
    rng = np.random.default_rng(0)
    for call in (lambda: row_generators(seed, 1), lambda: clip_seeds(seed, 2, rng)):
        with pytest.raises(LgcvdError) as err:
            call()
        assert str(err.value) == line
    with pytest.raises(LgcvdError) as err:
        clip_seeds([0, seed], 2, rng)  # one per clip
    assert str(err.value) == line


def test_seeds_drawn_for_calls_given_none_are_in_range():
    drawn = clip_seeds(None, 1000, np.random.default_rng(0))
    assert all(0 <= s < 2**63 for s in drawn) and max(drawn) > 2**62


class FakeBackend:
    """Row-wise arithmetic instead of graphs; `bad` = (graph, call number) returning NaN."""

    name = "fake"

    def __init__(self, bad: tuple[str, int] | None = None):
        self.calls = {"encode": 0, "denoise": 0}
        self.bad, self.batches = bad, []

    def _out(self, graph: str, x: np.ndarray) -> np.ndarray:
        self.calls[graph] += 1
        self.batches.append(len(x))
        if self.bad == (graph, self.calls[graph]):
            x = x.copy()
            x[0, 0, 0, 0] = np.nan
        return x

    def encode(self, prev):
        return (self._out("encode", prev.mean(axis=1, keepdims=True)),)

    def denoise(self, x_t, t, cond, context):
        return self._out("denoise", 0.3 * x_t + cond[:, :1] + context[0])

    def close(self):
        pass


def pipeline(backend, max_batch=None, steps=4):
    settings = SamplerSettings(respace(ScheduleSpec(), steps), "ddpm")
    return Pipeline(backend, SPEC, settings, max_batch)


def test_each_row_draws_its_noise_from_its_own_generator_whatever_its_batch():
    given = np.random.default_rng(0).uniform(-1, 1, (4, 2, 3, 4, 4)).astype(np.float32)
    seeds = [11, 12, 13, 14]
    rngs = [row_generators(s, 1)[0] for s in seeds]
    batched = [w.frames for w in pipeline(FakeBackend(), max_batch=3).predict(given, 9, rngs)]
    for row in (0, 3):
        alone = pipeline(FakeBackend()).predict(
            given[row : row + 1], 9, row_generators(seeds[row], 1)
        )
        for a, b in zip(alone, batched, strict=True):
            assert np.array_equal(a.frames[0], b[row])


def test_calls_larger_than_the_max_batch_are_split_into_chunks():
    backend = FakeBackend()
    given = np.zeros((5, 2, 3, 4, 4), np.float32)
    list(pipeline(backend, max_batch=2, steps=2).predict(given, 6, row_generators(0, 5)))
    assert backend.batches == [2, 2, 1] * 3  # one encode and two denoiser calls, each in 3 chunks


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        (
            ("denoise", 7),
            r"^the denoiser graph returned NaN or Inf at step 3/4 of window 2 on fake; the ",
        ),
        (
            ("encode", 1),
            r"^the context graph returned NaN or Inf in window 1 on fake; the bundle or engine ",
        ),
    ],
)
def test_a_non_finite_graph_output_is_an_error_naming_the_graph_and_step(bad, where):
    given = np.zeros((1, 2, 3, 4, 4), np.float32)
    with pytest.raises(NonFiniteError, match=where) as err:
        list(pipeline(FakeBackend(bad)).predict(given, 12, row_generators(0, 1)))
    assert "\n" not in str(err.value)


def _entry(name, reason=None, fails=False):
    def create(bundle, manifest, log, threads):
        if fails:
            raise BackendError(f"{name} failed to start")
        return FakeBackend()

    return BackendEntry(name, "test", f"pip install {name}", lambda: reason, create)


def test_auto_tries_registry_entries_fastest_first_and_says_what_it_skipped(monkeypatch):
    registry = (_entry("fast", reason="no GPU"), _entry("medium", fails=True), _entry("slow"))
    monkeypatch.setattr(backends, "REGISTRY", registry)
    monkeypatch.setattr(backends, "ENTRIES", {e.name: e for e in registry})
    notes = []
    assert isinstance(backends.load_backend("auto", ".", None, notes.append), FakeBackend)
    assert notes == ["backend: slow (auto; not usable here: fast, medium (see lgcvd-run info))"]
    assert backends.availability() == {"fast": "no GPU", "medium": None, "slow": None}


def test_with_three_slots_a_window_sees_the_two_nearest_before_and_the_nearest_after():
    spec = ModelSpec(image_size=4, channels=3, frames=8, cond_slots=3, parameterization="v")
    known = [True, True, True, False, False, True, False, False]
    (plan,) = Timeline(np.zeros((1, 8, 3, 4, 4)), known, spec).plans()
    assert (plan.start, plan.positions, plan.new) == (0, (1, 2, 5), (3, 4, 6, 7))
