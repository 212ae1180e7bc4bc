"""`lgcvd-run live SOURCE`: forecast a camera as it films, until stopped (README, "Live cameras").

SOURCE is anything PyAV opens (`video.LiveSource`): a device (/dev/video0, v4l2), a stream URL
(rtsp://, udp://, tcp://, http://), or a file, played at its own rate (real time). Its frames go
to the model's live stream (`live.LiveStream`, stamped with the wall clock as they are read,
taken at the model's period by stamp) and reading never waits for a forecast: each new
forecast is taken between two frames. Each forecast is one stdout line (the frame it follows,
its age: seconds from that frame to now, and its input score where it was scored:
--score-every, `live` module header; each time the score goes beyond the bundle's calibrated
range, the input warning once on stderr) and, with -o, goes to a video (its frames, one
forecast after another) or a robot log (`media.bag_writer`: frames stamped at the future times
they show; each forecast up to the next one's origin, the last whole, so the log plays the
newest forecast at every moment; held in memory until the end). A Service: Ctrl-C or SIGTERM
ends it with exit 0, the output complete; so does --duration. A source that stops sending for
--timeout s, or a live stream that ended (`live.StreamEnded`), ends it with one line and exit
1, the output so far written; a forecast that failed once is one line on stderr, and it goes
on. No engine package or torch is imported here.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from lgcvd_runtime.cli.chassis import Service
from lgcvd_runtime.cli.inputs import DEFAULT_FPS, period_ns
from lgcvd_runtime.cli.options import (
    count_option,
    load_model,
    model_options,
    positive_option,
    score_every_option,
)
from lgcvd_runtime.cli.outputs import is_bag_target
from lgcvd_runtime.errors import LgcvdError, VideoError, plural
from lgcvd_runtime.files import refuse_existing
from lgcvd_runtime.live import Forecast, ForecastFailed, LiveStream
from lgcvd_runtime.media import bag_writer
from lgcvd_runtime.media.video import TIMEOUT_S, LiveSource, is_stream
from lgcvd_runtime.media.writer import OUTPUTS, VideoWriter
from lgcvd_runtime.signals import signals_deferred


class VideoSink:
    """Each forecast's frames (sample 1), one forecast after another, at the model's rate."""

    def __init__(self, path: Path, fps: float, force: bool):
        self.writer, self.count = VideoWriter(path, fps, force=force), 0

    def add(self, forecast: Forecast) -> None:
        self.writer.write(forecast.frames[0])  # (n, size, size, 3)
        self.count += 1

    def close(self) -> None:
        if self.count:
            self.writer.close()
        else:
            self.writer.abort()

    def abort(self) -> None:
        self.writer.abort()


class BagSink:
    """The forecasts as a robot log of camera `topic`, written when closed (module header)."""

    def __init__(self, path: Path, topic: str, force: bool):
        refuse_existing(path, force)
        self.path, self.topic, self.force = path, topic, force
        self.forecasts: list[bag_writer.Forecast] = []

    def add(self, forecast: Forecast) -> None:
        assert forecast.times is not None  # refused at the start where the model has no period
        stamps = tuple(round(t * 1e9) for t in forecast.times)
        origin = round(forecast.frame_time * 1e9)
        self.forecasts.append(bag_writer.Forecast(origin, stamps, forecast.frames))

    @property
    def count(self) -> int:
        return len(self.forecasts)

    def close(self) -> None:
        kept = [f for f in _until_next(self.forecasts) if f.stamps_ns]
        if kept:
            bag_writer.write_forecast_bag(self.path, self.topic, kept, force=self.force)

    def abort(self) -> None:
        self.forecasts.clear()


def _until_next(forecasts: list[bag_writer.Forecast]) -> list[bag_writer.Forecast]:
    """Each forecast's frames stamped up to the next forecast's origin; the last one whole."""
    cut = []
    for f, after in zip(forecasts, forecasts[1:], strict=False):
        keep = sum(s <= after.origin_ns for s in f.stamps_ns)
        cut.append(bag_writer.Forecast(f.origin_ns, f.stamps_ns[:keep], f.frames[:, :keep]))
    return cut + forecasts[-1:]


def _sink(output: Path | None, period_s: float | None, topic: str, force: bool):
    """The output -o names (None: none), refusing in one line what cannot be written."""
    if output is None:
        return None
    if is_bag_target(output):
        if period_s is None:
            raise LgcvdError(
                f"the model records no frame period, so forecasts have no times for {output}; "
                "write a video (.mkv, .mp4, .gif)"
            )
        return BagSink(output, topic, force)
    if output.suffix.lower() not in OUTPUTS:
        raise VideoError(
            f"cannot write {output}: use a video ({', '.join(OUTPUTS)}), a .mcap or a folder"
        )
    return VideoSink(output, 1 / period_s if period_s else DEFAULT_FPS, force)


class Feed:
    """Reads SOURCE into the stream and writes each new forecast (module header)."""

    def __init__(self, source: LiveSource, stream: LiveStream, sink, warning=lambda score: None):
        self.source, self.stream, self.sink = source, stream, sink
        self.warning = warning  # score -> the input warning line, or None (`Model.input_warning`)
        self.read, self.seen, self.failed = 0, -1, 0
        self.ages: list[float] = []
        self.unlike = False  # the newest scored forecast's input was unlike the training data

    def run(self, duration: float | None, realtime: bool) -> BaseException | None:
        """Feed until the source ends or `duration` passes (None); a stop or an error that
        ends the feed is returned, for the outputs to be finished first."""
        start, first = time.monotonic(), None
        try:
            for pts, image in self.source:
                first = pts if first is None else first
                if realtime:  # a file: at its own rate
                    time.sleep(max(0.0, start + (pts - first) / 1e9 - time.monotonic()))
                self._step(image)
                if duration is not None and time.monotonic() - start >= duration:
                    return None
            self._step(None)  # SOURCE ended: its last forecast too
        except (KeyboardInterrupt, LgcvdError) as err:
            return err
        return None

    def _step(self, image: np.ndarray | None) -> None:
        """Push `image` (None: wait for the last forecast), then write the newest forecast if
        it is new."""
        try:
            if image is None:
                self.stream.wait()
            else:
                self.read += 1
                self.stream.push(image)
            forecast = self.stream.latest()
        except ForecastFailed as err:
            self.failed += 1
            click.echo(f"warning: {err}", err=True)
            return
        if forecast is None or forecast.frame_index == self.seen:
            return
        self.seen = forecast.frame_index
        self.ages.append(forecast.age)
        if self.sink is not None:
            self.sink.add(forecast)
        stale = " (stale)" if forecast.stale else ""
        score = "" if forecast.input_score is None else f", input score {forecast.input_score:.3g}"
        click.echo(
            f"forecast after frame {forecast.frame_index}: age {forecast.age:.3f} s{score}{stale}"
        )
        if forecast.input_score is not None:
            line = self.warning(forecast.input_score)
            if line is not None and not self.unlike:  # once each time the input turns unlike
                click.echo(line, err=True)
            self.unlike = line is not None

    def summary(self, output: Path | None) -> str:
        ages = np.asarray(self.ages)
        made = f"{plural(len(ages), 'forecast')} from {plural(self.read, 'frame')} read"
        if ages.size:
            made += f"; age median {np.median(ages):.3f} s, p99 {np.percentile(ages, 99):.3f} s"
        if self.failed:
            made += f"; {plural(self.failed, 'forecast')} failed"
        if output is None:
            return made
        return f"wrote {output}: {made}" if ages.size else f"{made}; nothing written to {output}"


@click.command(cls=Service)
@click.argument("source")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the forecasts: a video (.mkv, .mp4, .gif: one after another) or a robot log "
    "(.mcap or a folder: stamped at the times they show). Default: stdout lines only.",
)
@positive_option(
    "--duration",
    default=None,
    show_default=False,
    help="Stop after this many seconds (default: run until Ctrl-C, SIGTERM or the end of SOURCE).",
)
@positive_option(
    "--camera-rate",
    default=None,
    show_default=False,
    help="The camera's frames per second (default: SOURCE's, else measured from its frames).",
)
@positive_option(
    "--deadline",
    default=None,
    show_default=False,
    help="Seconds after which a forecast is stale, marked so in its line (default: never).",
)
@positive_option(
    "--timeout",
    default=TIMEOUT_S,
    help="Seconds SOURCE may take to open or to send a frame before the command gives up.",
)
@count_option("-p", "p", default=2, help="Given frames of each forecast: the newest ones.")
@count_option("-n", "n", default=None, help="Frames to forecast (default: one window's).")
@score_every_option
@click.option(
    "--topic",
    default="camera",
    show_default=True,
    help="Camera topic a robot-log output names (its forecasts: TOPIC/forecast).",
)
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
@click.option("--quiet", is_flag=True, help="No notes or summary on stderr.")
@model_options
def live(
    source,
    output,
    duration,
    camera_rate,
    deadline,
    timeout,
    p,
    n,
    score_every,
    topic,
    force,
    quiet,
    **load,
):
    """Forecast SOURCE (a camera device, an rtsp:// udp:// tcp:// stream, or a file played in
    real time) as its frames arrive, one line per forecast, until stopped."""
    period = period_ns(load["bundle"], None)
    sink = _sink(output, None if period is None else period / 1e9, topic, force)
    try:
        model = load_model(quiet=quiet, **load)
        reader = LiveSource(source, timeout)  # once the model is ready: no frames queue up
        try:
            feed, ended = _serve(
                model, reader, sink, (p, n, score_every, camera_rate, deadline, duration), quiet
            )
        finally:
            reader.close()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    with signals_deferred():
        if sink is not None:
            sink.close()
    if not quiet:
        click.echo(feed.summary(output), err=True)
    if ended is not None:
        raise ended


def _serve(model, reader: LiveSource, sink, settings, quiet: bool):
    """Feed `reader` to a live stream of `model` until the feed ends: (the feed, what ended it)."""
    p, n, score_every, camera_rate, deadline, duration = settings
    rate = camera_rate or reader.rate
    if not quiet:
        click.echo(
            f"reading {reader.source}: {reader.width}x{reader.height}, {_hz(rate)}", err=True
        )
    period = None if rate is None else 1 / rate
    stream = model.live(
        p, n, camera_period_s=period, deadline_s=deadline, clock=time.time, score_every=score_every
    )
    try:
        feed = Feed(reader, stream, sink, model.input_warning)
        return feed, feed.run(duration, realtime=not is_stream(reader.source))
    finally:
        with signals_deferred():
            stream.close()


def _hz(rate: float | None) -> str:
    return "rate unknown" if rate is None else f"{rate:.3g} frames/s"
