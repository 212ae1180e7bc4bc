"""The video-prediction evaluation protocol (paper §4.1, Tables 1 and 3): who predicts, what is
measured on which frames, and how it is averaged. `evaluate.py` is its command line and report.

Frame numbering: the frames of a test clip are numbered from 1, given frames included. Frames
1..p are given, p+1..p+n are predicted; a `FrameRange` (first, last; inclusive) picks some of
the predicted ones, e.g. frames 3-28 of a p=2, n=28 clip are 0-based video indices 2..27.

Per clip, sample and predicted frame: PSNR, SSIM (scikit-image) and LPIPS. Over a frame range,
per clip: the mean over frames, then the best of the S samples (max PSNR, max SSIM, min LPIPS,
each metric picking its own sample, as the paper does) and the mean over samples; then mean and
std (ddof 0) over clips (`metrics.aggregate`). FVD compares the C real clips (all p+n frames, each clip once) with
the C·S fake ones (given frames + prediction) on I3D logits.

Unlike the reference code's eva.py (docs/design.md): best-of groups are exactly one clip's
samples, LPIPS gets [-1, 1] input, real clips are not repeated per sample in FVD, and the given
frames stay as given. Models are loaded here (a bundle through `lgcvd_runtime.load`, a checkpoint
through the torch reference pipeline) and measured only through `Candidate.predict`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lgcvd_runtime.api import load as runtime_load
from lgcvd_runtime.bundle import MANIFEST
from lgcvd_runtime.conditioning import to_model, to_uint8
from lgcvd_runtime.errors import LgcvdError, plural
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.resize import CROP
from lgcvd_runtime.pipeline import Pipeline, SamplerSettings, clip_seeds, row_generators
from lgcvd_runtime.plans import PlanChoice, checked_choice
from lgcvd_runtime.timeline import Timeline

from .checkpoint import load_model, resolve
from .data import load_dataset
from .data.robot_logs import bag_clips, bags_in
from .init_weights import checkpoint_plan
from .metrics import LPIPS, frechet_distance, lpips_frames, psnr, ssim
from .metrics.feature_cache import I3DFeatures
from .torch_backend import TorchBackend

# given (p, H, W, 3) uint8, n, samples S -> prediction (S, n, H, W, 3) uint8
PredictFn = Callable[[np.ndarray, int, int], np.ndarray]


class EvalError(LgcvdError):
    """Evaluation settings that cannot work: no model, clips too short, mixed frame sizes."""


@dataclass(frozen=True)
class FrameRange:
    """Video frames first..last (numbered from 1, given frames included, inclusive)."""

    first: int
    last: int

    @property
    def label(self) -> str:
        return f"frames {self.first}-{self.last}"

    def predicted(self, p: int) -> slice:
        """The range as a slice of the predicted frames (index 0 = video frame p+1)."""
        return slice(self.first - 1 - p, self.last - p)


@dataclass(frozen=True)
class Protocol:
    """Given frames p, predicted frames n, and the video frames scored."""

    p: int
    n: int
    scored: FrameRange


# The protocol of the paper's BAIR results (§4.1) that every evaluation here follows (lgcvd-eval's
# -p and -n, the research scripts): 2 given frames, 28 predicted, video frames 3-28 scored.
PROTOCOL = Protocol(p=2, n=28, scored=FrameRange(3, 28))


def frame_range(p: int, n: int, first_last: tuple[int, int] | None) -> FrameRange:
    """The chosen range (default: all predicted frames), checked against p and n."""
    if first_last is None:
        return FrameRange(p + 1, p + n)
    first, last = first_last
    if not p + 1 <= first <= last <= p + n:
        raise EvalError(
            f"--frame-range {first} {last} is outside the predicted frames {p + 1}..{p + n} "
            "(frames numbered from 1, given frames included); pass A B with "
            f"{p + 1} <= A <= B <= {p + n}"
        )
    return FrameRange(first, last)


@dataclass(frozen=True)
class Candidate:
    """One predictor under evaluation: a bundle, a checkpoint or a built-in baseline."""

    label: str
    kind: str  # "bundle" | "checkpoint" | "baseline"
    path: Path | None
    image_size: int | None  # None: works at any size
    new_frames: int | None  # k, new frames per window (None for baselines)
    predict: PredictFn
    framing: Framing | None = None  # period, fit and region of its frames; None: any (baselines)
    plan: PlanChoice | None = None  # the sampler plan it runs (`plans.choose`); None: baselines


def copy_last() -> Candidate:
    """The baseline that repeats the last given frame n times."""

    def predict(given: np.ndarray, n: int, samples: int) -> np.ndarray:
        return np.broadcast_to(given[-1], (samples, n, *given.shape[1:])).copy()

    return Candidate("copy-last", "baseline", None, None, None, predict)


@dataclass(frozen=True)
class SamplerChoice:
    """The sampler settings every model is run with (None: each model's plan, else the
    default, `plans.choose`), and its seed."""

    sampler: str | None
    steps: int | None
    seed: int
    backend: str = "auto"  # bundles only
    device: str = "cpu"  # checkpoints only
    threads: int | None = None  # onnxruntime CPU threads (bundles); None: one per core
    spacing: str | None = None  # the steps' grid (`schedule.SPACINGS`); None: as sampler


def load_candidate(
    label: str, path: Path, choice: SamplerChoice, log: Callable[[str], None] | None = None
) -> Candidate:
    """A bundle folder (NAME.lgcvd) or a checkpoint (run folder or checkpoint.safetensors)."""
    if path.suffix == ".lgcvd" or (path / MANIFEST).is_file():
        return _bundle_candidate(label, path, choice, log)
    if resolve(path).is_file():
        return _checkpoint_candidate(label, path, choice, log)
    raise EvalError(
        f"{path} is neither a bundle (NAME.lgcvd folder) nor a checkpoint (run folder or "
        "checkpoint.safetensors); pass one of those to --model"
    )


def _bundle_candidate(label: str, path: Path, choice: SamplerChoice, log) -> Candidate:
    model = runtime_load(
        path,
        choice.backend,
        choice.sampler,
        choice.steps,
        choice.seed,
        log=log,
        threads=choice.threads,
        warn=None if log is None else (lambda line: log(f"{label}: {line}")),
        spacing=choice.spacing,
    )
    spec = model.manifest.model

    def predict(given: np.ndarray, n: int, samples: int) -> np.ndarray:
        timeline = Timeline.prediction(np.broadcast_to(given, (samples, *given.shape)), n, spec)
        for w in model.predict(given, n, samples):
            timeline.write(w.start, w.frames)
        return timeline.video[:, len(given) :]

    return Candidate(
        label, "bundle", path, spec.image_size, spec.new_frames, predict, model.framing, model.plan
    )


def _checkpoint_candidate(label: str, path: Path, choice: SamplerChoice, log) -> Candidate:
    """The torch reference pipeline on the checkpoint's EMA weights, with its own schedule and
    the plan a distilled student's checkpoint records (state "plan")."""
    model, ckpt = load_model(path)
    schedule = ckpt.schedule
    recorded = checkpoint_plan(path, ckpt.state, schedule.T, EvalError)
    plan = checked_choice(
        choice.sampler, choice.steps, choice.spacing, recorded, schedule, EvalError
    )
    if plan.warning is not None and log is not None:
        log(f"{label}: {plan.warning}")
    settings = SamplerSettings(plan.plan.over(schedule), plan.plan.sampler)
    pipeline = Pipeline(TorchBackend(model, choice.device), model.cfg, settings)
    seeds = np.random.default_rng(choice.seed)  # one seed per clip, as the runtime draws them

    def predict(given: np.ndarray, n: int, samples: int) -> np.ndarray:
        x = to_model(given)  # (p, 3, H, W)
        batch = np.ascontiguousarray(np.broadcast_to(x, (samples, *x.shape)))  # (S, p, 3, H, W)
        rngs = row_generators(clip_seeds(None, 1, seeds)[0], samples)
        timeline = Timeline.prediction(batch, n, pipeline.spec)
        for _ in pipeline.fill(timeline, rngs):
            pass
        return to_uint8(timeline.video[:, len(given) :])

    cfg = model.cfg
    return Candidate(
        label, "checkpoint", path, cfg.image_size, cfg.new_frames, predict, ckpt.framing, plan
    )


def parse_model(spec: str) -> tuple[str, Path]:
    """Split `LABEL=PATH` (or a bare `PATH`, labelled with its file or folder name)."""
    label, sep, rest = spec.partition("=")
    if sep and label and "/" not in label:
        return label, Path(rest)
    path = Path(spec)
    if path.name == "checkpoint.safetensors":
        return path.parent.name, path
    return path.stem, path


def load_candidates(specs: tuple[str, ...], choice: SamplerChoice, k: int | None, log) -> list:
    """The --model candidates; they must share one frame size (and k, if -k is given)."""
    if not specs:
        raise EvalError(
            "no model to evaluate: copy-last alone has nothing to compare with; pass --model "
            "PATH (a bundle NAME.lgcvd or a checkpoint)"
        )
    labels = [parse_model(s) for s in specs]
    names = [label for label, _ in labels] + ["copy-last"]
    for name in names:
        if names.count(name) > 1:
            raise EvalError(f"two models are labelled {name}; name them with --model LABEL=PATH")
    candidates = [load_candidate(label, path, choice, log) for label, path in labels]
    sizes = {c.label: c.image_size for c in candidates}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{label}: {size}" for label, size in sizes.items())
        raise EvalError(
            f"models work at different frame sizes ({listed}); evaluate one size at a time"
        )
    for c in candidates:
        if k is not None and c.new_frames != k:
            raise EvalError(
                f"{c.label} predicts {c.new_frames} new frames per window but -k is {k}; "
                f"drop -k or pass -k {c.new_frames}"
            )
    return candidates


def shared_framing(candidates: list[Candidate]) -> Framing:
    """The framing every model takes its frames with: the test clips are read with it (its
    period, fit and region), so models that disagree on one are refused."""
    framings = {c.label: c.framing for c in candidates if c.framing is not None}
    for what, key in (("frame periods", "period_s"), ("fits", "fit"), ("regions", "roi")):
        values = {label: getattr(f, key) for label, f in framings.items()}
        if len(set(values.values())) > 1:
            listed = ", ".join(f"{label}: {value}" for label, value in values.items())
            raise EvalError(
                f"models take their frames with different {what} ({listed}); evaluate them "
                f"apart, one {what[:-1]} at a time"
            )
    return next(iter(framings.values()), CROP)


def load_clips(
    source: str,
    size: int,
    clips: int,
    frames: int,
    seed: int,
    framing: Framing = CROP,
    topic: str | None = None,
) -> np.ndarray:
    """The first `clips` videos of `source`, frames 0..frames-1, fitted as `framing` says; of a
    folder, its first `clips` clips (`videos.first_clips`: each video's non-overlapping clips,
    video after video, decoded no further than needed); of a bag or a folder of bags, camera
    `topic`'s first `clips` clips (`robot_logs.bag_clips`: by time at `framing.period_s`, by
    index without one, never across a break). -> (C, frames, H, W, 3) uint8."""
    bags = bags_in(Path(source).expanduser())
    if topic is not None and not bags:
        raise EvalError(f"--topic applies to bags and {source} holds none: drop --topic")
    if bags or Path(source).expanduser().is_dir():
        if bags:
            found = bag_clips(bags, size, frames, topic, framing)[:clips]
        else:
            from .data.videos import first_clips  # decoding needs PyAV

            found = list(first_clips(Path(source).expanduser(), size, frames, clips, framing))
        start = "unbroken run of each bag" if bags else "video"
        if len(found) < clips:
            raise EvalError(
                f"{source} holds {plural(len(found), 'clip')} of p + n = {frames} frames "
                f"(non-overlapping, from the start of each {start}) but --clips is {clips}; "
                f"pass --clips {len(found)} or lower -n"
                if found
                else f"{source} holds no video of p + n = {frames} frames; lower -n"
            )
        return np.stack(found)
    videos = load_dataset(
        source, size, num_videos=clips, frames=frames, seed=seed, min_frames=1, framing=framing
    )
    if len(videos) < clips:
        raise EvalError(
            f"{source} holds {plural(len(videos), 'video')} but --clips is {clips}; "
            f"pass --clips {len(videos)}"
        )
    for i, video in enumerate(videos[:clips]):
        if len(video) < frames:
            raise EvalError(
                f"clip {i} of {source} has {plural(len(video), 'frame')} but p + n = {frames}; "
                f"lower -n or use clips of at least {frames} frames"
            )
    return np.stack([video[:frames] for video in videos[:clips]])


def clip_metrics(real: np.ndarray, fakes: np.ndarray, lpips: LPIPS | None) -> dict[str, np.ndarray]:
    """Per-frame metrics of S predictions of one clip. real (n, H, W, 3), fakes (S, n, H, W, 3)
    uint8 -> metric -> (S, n)."""
    out = {
        "psnr": np.stack([psnr(real, fake) for fake in fakes]),
        "ssim": np.stack([ssim(real, fake) for fake in fakes]),
    }
    if lpips is not None:  # all S·n frame pairs in one call
        frame = real.shape[1:]  # (H, W, 3)
        reals = np.broadcast_to(real, fakes.shape).reshape(-1, *frame)  # (S·n, H, W, 3)
        values = lpips_frames(lpips, reals, fakes.reshape(-1, *frame))
        out["lpips"] = values.reshape(fakes.shape[:2])
    return out


@dataclass
class Result:
    """What one candidate produced: per-frame metrics (C, S, n) per metric, FVD, timings."""

    per_frame: dict[str, np.ndarray]
    fvd: float | None
    wall_s: float
    predict_s: float


def evaluate_candidate(
    candidate: Candidate,
    videos: np.ndarray,
    p: int,
    samples: int,
    lpips: LPIPS | None = None,
    fvd_nets: tuple[I3DFeatures, np.ndarray] | None = None,
    progress: bool = False,
) -> Result:
    """Run one candidate on every clip of `videos` (C, p+n, H, W, 3) uint8, S samples per clip.

    `fvd_nets`: the I3D features function and the real clips' features (C, 400), to compute FVD.
    """
    started, predict_s = time.perf_counter(), 0.0
    n = videos.shape[1] - p
    per_frame: dict[str, list[np.ndarray]] = {}
    fake_feats = []
    for video in tqdm(videos, desc=candidate.label, unit="clip", disable=not progress):
        given, real = video[:p], video[p:]
        t = time.perf_counter()
        fakes = candidate.predict(given, n, samples)  # (S, n, H, W, 3)
        predict_s += time.perf_counter() - t
        for metric, values in clip_metrics(real, fakes, lpips).items():
            per_frame.setdefault(metric, []).append(values)
        if fvd_nets is not None:
            given_s = np.broadcast_to(given, (samples, *given.shape))
            fake_feats.append(fvd_nets[0](np.concatenate([given_s, fakes], axis=1)))
    fvd = None
    if fvd_nets is not None:
        fvd = frechet_distance(fvd_nets[1], np.concatenate(fake_feats))
    stacked = {metric: np.stack(values) for metric, values in per_frame.items()}  # (C, S, n)
    return Result(stacked, fvd, time.perf_counter() - started, predict_s)


def real_features(
    features: I3DFeatures, videos: np.ndarray, progress: bool = False, batch: int = 4
) -> np.ndarray:
    """I3D features of the real clips, each once. (C, T, H, W, 3) uint8 -> (C, 400)."""
    starts = tqdm(range(0, len(videos), batch), desc="I3D real", unit="batch", disable=not progress)
    return np.concatenate([features(videos[i : i + batch], batch) for i in starts])
