"""The lgcvd ROS 2 node: camera topics in, forecasts and status out, over DDS.

    with ForecastNode(model, ["/front/image_raw", "/wrist/image_raw"], Settings(p=2)) as node:
        node.serve()                 # until Ctrl-C / SIGTERM (KeyboardInterrupt) or an error

Three threads and the live stream's worker (`live.LiveStream`), none waiting for another:
  - intake: wakes on any camera reader (a DDS WaitSet), takes the messages, decodes them and
    `push`es each frame with its camera index and header stamp; a push returns at once, so the
    readers are drained however long a forecast takes. The live stream takes frames by stamp
    at the model's period, forecasts all due cameras as one batch, latest wins.
  - outlet: publishes each camera's newest finished forecast (`live.latest`) once, and the
    status once a second (`status.py`). It looks for forecasts every `POLL_S` while one is due,
    and sleeps until the next frame or status otherwise.
  - the caller's (`serve`): waits for a stop or the first error of the other two.

Topics of camera topic T (as `media.bag_writer` lays out a bag): `T/forecast` carries the made
frames as rgb8 Images (`T/forecast/sample_K` for K = 1.. with several samples), each stamped at
the future time it shows, with the camera's frame_id; `T/forecast/origin`, a std_msgs/Header per
forecast stamped at its origin (the header stamp of the newest camera frame it was made from),
is published just before that forecast's frames. Frame k (1..n) is stamped origin + k periods:
the model's period, or, for a model that records none, the camera's (the median step of its
recent stamps), so a subscriber can also group frames by stamp. Stamps come from the camera
headers only, so the node follows simulated time and `ros2 bag play`. Live forecasts overlap in time (one per camera frame, each n frames long),
unlike a bag's. A camera whose header stamps are zero gets the wall clock's time on arrival.
What the node remembers of frames and forecasts stays bounded however long it runs
(`ledger.py`: the arrivals a forecast may still need, latencies as running quantiles).

Knows the api façade's `Model`, the live stream and cyclonedds; no engine package or torch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cyclonedds.core import DDSException, GuardCondition, ReadCondition, WaitSet
from cyclonedds.core import InstanceState as Instances
from cyclonedds.core import SampleState as Samples
from cyclonedds.core import ViewState as Views
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from lgcvd_runtime.api import Model
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.framing import period_ns
from lgcvd_runtime.live import Forecast, ForecastFailed
from lgcvd_runtime.media.bag_writer import forecast_topics
from lgcvd_runtime.media.stamps import frame_period
from lgcvd_runtime.ros2 import dds
from lgcvd_runtime.ros2.images import Decoder, UnreadableImage, forecast_image, is_compressed_topic
from lgcvd_runtime.ros2.ledger import Arrival, Arrivals, Latencies, Latency
from lgcvd_runtime.ros2.messages import NS, CompressedImage, DiagnosticArray, Header, Image, Time
from lgcvd_runtime.ros2.status import CameraState, camera_status, status_array

POLL_S = 0.002  # how often the outlet looks for a forecast that is due
STATUS_TOPIC = "/diagnostics"
ANY = Samples.Any | Views.Any | Instances.Any


@dataclass(frozen=True)
class Settings:
    """Forecast the n frames after the newest p of each camera (n None: one window of new
    frames), `samples` each, noise from `seed` (None: drawn), the input scored on each camera's
    first forecast and every `score_every`-th after (0: the first only; `live` module header);
    status every `status_s` seconds."""

    p: int = 2
    n: int | None = None
    samples: int = 1
    seed: int | None = None
    status_s: float = 1.0
    score_every: int = 1


class _Camera:
    """One camera topic: its reader, its forecast writers and what the node counts of it."""

    def __init__(self, index: int, topic: str, participant, n: int, samples: int):
        self.index, self.topic = index, dds.ros_topic(topic)
        kind = CompressedImage if is_compressed_topic(self.topic) else Image
        source = Topic(participant, dds.dds_topic(self.topic), kind)
        self.reader = DataReader(participant, source, qos=dds.camera_qos())
        self.decode = Decoder(self.topic)
        qos = dds.forecast_qos(n)
        origin = Topic(participant, dds.dds_topic(f"{self.topic}/forecast/origin"), Header)
        self.origin = DataWriter(participant, origin, qos=qos)
        self.writers = [
            DataWriter(participant, Topic(participant, dds.dds_topic(t), Image), qos=qos)
            for t in forecast_topics(self.topic, samples)
        ]
        self.arrivals = Arrivals()
        self.received = self.published = self.unreadable_count = 0
        self.unreadable: str | None = None
        self.last: Forecast | None = None
        self.scored: Forecast | None = None  # the newest forecast with an input score
        self.latency: Latency | None = None

    def is_new(self, forecast: Forecast | None) -> bool:
        """`live.latest` gives a copy each call: a forecast is new where its frame is."""
        last = -1 if self.last is None else self.last.frame_index
        return forecast is not None and forecast.frame_index != last

    def due(self, p: int) -> bool:
        """A forecast of its newest frame is still to come."""
        newest = self.received - 1
        return self.received >= p and (self.last is None or self.last.frame_index < newest)


class ForecastNode:
    """See the module header. `network`: where to join (None: domain 0 as CYCLONEDDS_URI
    says); `log` gets one-line notes (None: quiet)."""

    def __init__(
        self,
        model: Model,
        topics: Sequence[str],
        settings: Settings = Settings(),
        network: dds.Network | None = None,
        log: Callable[[str], None] | None = None,
    ):
        names = [dds.ros_topic(t) for t in topics]
        if len(set(names)) < len(names) or not names:
            raise LgcvdError(f"camera topics {', '.join(names) or 'none'}: give each one once")
        self.model, self.settings, self.log = model, settings, log or (lambda line: None)
        self.n = settings.n or model.manifest.model.new_frames
        self.participant, self._domain = dds.join(network or dds.Network())
        try:
            self._open(names)
        except BaseException:
            dds.close([self.participant])
            raise
        self.latencies = Latencies()
        self._stop, self._wake = threading.Event(), threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._zero_stamps_noted = False
        self._newest = (0, 0.0)  # the last frame's header stamp (ns) and when it was taken

    def _open(self, names: list[str]) -> None:
        part, s = self.participant, self.settings
        self.cameras = [_Camera(i, t, part, self.n, s.samples) for i, t in enumerate(names)]
        status = Topic(part, dds.dds_topic(STATUS_TOPIC), DiagnosticArray)
        self.status_writer = DataWriter(part, status, qos=dds.default_qos())
        self._guard = GuardCondition(part)
        self._waitset = WaitSet(part)
        self._waitset.attach(self._guard)
        for cam in self.cameras:
            self._waitset.attach(ReadCondition(cam.reader, ANY))
        self.live = self.model.live(
            s.p, self.n, len(names), s.samples, s.seed, score_every=s.score_every
        )

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        for name, run in (("lgcvd-ros2-intake", self._intake), ("lgcvd-ros2-outlet", self._outlet)):
            thread = threading.Thread(target=self._guarded(run), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def serve(self) -> None:
        """Run until a stop (KeyboardInterrupt, which the caller handles) or an error (raised)."""
        self.start()
        while not self._stop.wait(0.5):
            pass
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the threads and the live stream (after the forecast it runs), leave the domain."""
        self._stop.set()
        self._guard.set(True)
        self._wake.set()
        for thread in self._threads:
            thread.join()
        self.live.close()
        dds.close([self.participant])

    def __enter__(self) -> ForecastNode:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _guarded(self, run: Callable[[], None]) -> Callable[[], None]:
        def thread() -> None:
            try:
                run()
            except BaseException as err:  # raised by `serve`
                self._error = self._error or err
                self._stop.set()

        return thread

    # ------------------------------------------------------------------ intake

    def _intake(self) -> None:
        while not self._stop.is_set():
            self._waitset.wait(duration(seconds=1))
            for cam in self.cameras:
                for msg in cam.reader.take(dds.CAMERA_DEPTH):
                    if msg.sample_info.valid_data and not self._stop.is_set():
                        self._accept(cam, msg)

    def _accept(self, cam: _Camera, msg: Image | CompressedImage) -> None:
        taken = time.monotonic()
        try:
            frame = cam.decode(msg)
        except UnreadableImage as err:
            cam.unreadable, cam.unreadable_count = str(err), cam.unreadable_count + 1
            return
        stamp = msg.header.stamp.ns()
        if stamp == 0:  # a driver that never sets stamps
            stamp = time.time_ns()
            if not self._zero_stamps_noted:
                self.log(f"note: {cam.topic} has zero header stamps; using the wall clock")
                self._zero_stamps_noted = True
        arrival = Arrival(cam.received, stamp, msg.header.frame_id, taken, time.monotonic())
        cam.arrivals.add(arrival)
        self._newest = (stamp, taken)
        try:
            self.live.push(frame, cam.index, stamp / NS)
        except ForecastFailed as err:  # reported once; this push did nothing else
            self.log(f"note: {err}")
            self.live.push(frame, cam.index, stamp / NS)
        cam.received += 1
        self._wake.set()

    def now_s(self) -> float | None:
        """Now on the cameras' clock (seconds; None before any frame): the last frame's header
        stamp plus the time since it arrived, so simulated time and bags played (looped too)
        are followed."""
        stamp, taken = self._newest
        return None if not taken else stamp / NS + time.monotonic() - taken

    # ------------------------------------------------------------------ outlet

    def _outlet(self) -> None:
        next_status = time.monotonic()
        while not self._stop.is_set():
            self._wake.clear()
            for cam in self.cameras:
                try:
                    forecast = self.live.latest(cam.index)
                except ForecastFailed as err:  # reported once; the stream goes on
                    self.log(f"note: {err}")
                    continue
                if cam.is_new(forecast):
                    cam.last = forecast
                    cam.scored = cam.scored if forecast.input_score is None else forecast
                    self._publish(cam, forecast)
            now = time.monotonic()
            if now >= next_status:
                self._publish_status()
                next_status = now + self.settings.status_s
            due = any(cam.due(self.settings.p) for cam in self.cameras)
            self._wake.wait(POLL_S if due else max(0.0, next_status - now))

    def period_ns(self, cam: _Camera) -> int | None:
        """Nanoseconds between forecast frames: the model's period, else the camera's."""
        model = period_ns(self.model.period_s)
        return model if model is not None else frame_period(cam.arrivals.stamps())

    def _publish(self, cam: _Camera, forecast: Forecast) -> None:
        """The origin, then frame k of every sample, k = 1..n (module header)."""
        origin, period = cam.arrivals.get(forecast.frame_index), self.period_ns(cam)
        cam.arrivals.forget_before(forecast.frame_index)
        if origin is None or period is None:  # a lone first frame gives no period yet
            return
        try:
            cam.origin.write(Header(Time.of(origin.stamp_ns), origin.frame_id))
            for k in range(forecast.frames.shape[1]):
                stamp = origin.stamp_ns + (k + 1) * period
                for writer, frames in zip(cam.writers, forecast.frames, strict=True):
                    writer.write(forecast_image(frames[k], stamp, origin.frame_id))
        except DDSException as err:  # a reliable reader that stopped acknowledging
            self.log(f"note: {cam.topic}: a forecast was not sent ({err.msg or err})")
            return
        done = time.monotonic()
        cam.latency = Latency(forecast.made_at - origin.pushed, done - origin.taken)
        self.latencies.add(cam.latency)
        cam.published += 1

    def states(self) -> list[CameraState]:
        """Each camera's counts and newest forecast, for the status (or a soak test)."""
        now = self.now_s()
        return [
            CameraState(
                cam.topic,
                cam.received,
                self.settings.p,
                cam.published,
                cam.unreadable,
                cam.unreadable_count,
                _age(now, cam.last),
                None if cam.scored is None else cam.scored.input_score,
                _age(now, cam.scored),
                None if cam.latency is None else cam.latency.node_s,
            )
            for cam in self.cameras
        ]

    def _publish_status(self) -> None:
        skipped, warn = self.live.skipped, self.model.input_warning
        statuses = [camera_status(s, skipped, warn) for s in self.states()]
        try:
            self.status_writer.write(status_array(statuses, time.time_ns()))
        except DDSException as err:
            self.log(f"note: the status was not sent ({err.msg or err})")


def _age(now: float | None, forecast: Forecast | None) -> float | None:
    """Seconds from the newest frame `forecast` used to `now` (None: either is missing)."""
    return None if forecast is None or now is None else now - forecast.frame_time
