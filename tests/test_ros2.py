"""`lgcvd-ros2` (lgcvd_runtime/ros2/): its messages against rosbags' ROS 2 CDR (an independent
serialiser), camera encodings against pixels computed here, the network options, and the node
end to end on loopback: a player process plays a real clip on two camera topics, the node
forecasts, a listener process records the raw payloads, and each forecast must be the
library's for the same frames and seed, stamped from the camera's header stamps. Each DDS test
has its own domain (free ports, from the pid) and topics; CYCLONEDDS_URI keeps DDS on lo
without multicast (conftest)."""

from __future__ import annotations

import os
import pickle
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import BAIR_REAL, error_line
from rosbags.typesys import Stores, get_typestore

import lgcvd_runtime
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.ros2 import dds
from lgcvd_runtime.ros2.images import Decoder, UnreadableImage
from lgcvd_runtime.ros2.messages import (
    CompressedImage,
    DiagnosticArray,
    DiagnosticStatus,
    Header,
    Image,
    KeyValue,
    Time,
)

TYPES = get_typestore(Stores.ROS2_HUMBLE)
T = TYPES.types
LISTEN = Path(__file__).with_name("ros2_listen.py")
FIRST_STAMP = 1_000 * 10**9 + 123  # a simulated clock's time, far from the wall clock's
PERIOD_NS = 50_000_000  # the shipped model's period, and the player's rate (20 Hz)


def _header(ns: int, frame_id: str):
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
        frame_id=frame_id,
    )


def _padded(cdr) -> bytes:
    """rosbags' CDR as it travels: RTPS pads a payload with zeros to a multiple of 4 bytes."""
    data = bytes(cdr)
    return data + bytes(-len(data) % 4)


# ----------------------------------------------------------------------------- messages


def test_messages_serialise_to_the_bytes_rosbags_writes_for_ros2():
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8)
    stamp = 1_700_000_000 * 10**9 + 5
    ours = [
        (Header(Time.of(stamp), "cam"), "std_msgs/msg/Header", _header(stamp, "cam")),
        (
            Image(Header(Time.of(stamp), "cam"), 2, 3, "rgb8", 0, 9, pixels.tobytes()),
            "sensor_msgs/msg/Image",
            T["sensor_msgs/msg/Image"](
                header=_header(stamp, "cam"),
                height=2,
                width=3,
                encoding="rgb8",
                is_bigendian=0,
                step=9,
                data=pixels,
            ),
        ),
        (
            CompressedImage(Header(Time.of(stamp), "c"), "jpeg", b"\xff\xd8\x01"),
            "sensor_msgs/msg/CompressedImage",
            T["sensor_msgs/msg/CompressedImage"](
                header=_header(stamp, "c"), format="jpeg", data=np.array([255, 216, 1], np.uint8)
            ),
        ),
        (
            DiagnosticArray(
                Header(Time.of(stamp), ""),
                [DiagnosticStatus(1, "lgcvd: /c", "hm", "lgcvd", [KeyValue("a", "1")])],
            ),
            "diagnostic_msgs/msg/DiagnosticArray",
            T["diagnostic_msgs/msg/DiagnosticArray"](
                header=_header(stamp, ""),
                status=[
                    T["diagnostic_msgs/msg/DiagnosticStatus"](
                        level=1,
                        name="lgcvd: /c",
                        message="hm",
                        hardware_id="lgcvd",
                        values=[T["diagnostic_msgs/msg/KeyValue"](key="a", value="1")],
                    )
                ],
            ),
        ),
    ]
    for message, msgtype, theirs in ours:
        cdr = bytes(TYPES.serialize_cdr(theirs, msgtype))
        assert message.serialize() == cdr, msgtype
        assert type(message).deserialize(cdr) == message, msgtype


# ----------------------------------------------------------------------------- images

RGB = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)  # (H, W, 3)


def _image(encoding: str, pixels: np.ndarray, pad: int = 0, bigendian: int = 0) -> Image:
    """A message of (H, W, C) `pixels` whose rows are padded with `pad` bytes."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    rows = np.concatenate([rows, np.full((height, pad), 7, np.uint8)], axis=1)
    header = Header(Time.of(1), "cam")
    return Image(header, height, width, encoding, bigendian, rows.shape[1], rows.tobytes())


def test_each_image_encoding_decodes_to_the_rgb_the_camera_sent():
    decode = Decoder("/cam")
    alpha = np.full((3, 4, 1), 9, np.uint8)
    grey = RGB[..., :1]
    sixteen = (grey.astype(np.uint16) * 256 + 200).astype(">u2")  # the low byte is dropped
    cases = {
        "rgb8": (RGB, RGB),
        "bgr8": (RGB[..., ::-1], RGB),
        "rgba8": (np.concatenate([RGB, alpha], axis=2), RGB),
        "bgra8": (np.concatenate([RGB[..., ::-1], alpha], axis=2), RGB),
        "mono8": (grey, np.repeat(grey, 3, axis=2)),
    }
    for encoding, (sent, expected) in cases.items():
        assert np.array_equal(decode(_image(encoding, sent, pad=5)), expected), encoding
    big = _image("mono16", sixteen.view(np.uint8).reshape(3, 4, 2), pad=2, bigendian=1)
    assert np.array_equal(decode(big), np.repeat(grey, 3, axis=2))


def _compressed(codec: str, pixels: np.ndarray, fmt: str) -> CompressedImage:
    context = av.CodecContext.create(codec, "w")
    context.width, context.height = pixels.shape[1], pixels.shape[0]
    context.pix_fmt = "rgb24" if codec == "png" else "yuvj444p"
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=context.pix_fmt)
    data = b"".join(bytes(p) for p in context.encode(frame))
    return CompressedImage(Header(Time.of(1), "cam"), fmt, data)


def test_png_and_jpeg_compressed_images_decode_to_their_pixels():
    decode = Decoder("/cam/compressed")
    smooth = np.repeat(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], 16, 0)
    smooth = np.repeat(smooth, 3, axis=2)  # (16, 16, 3): a ramp jpeg keeps closely
    assert np.array_equal(decode(_compressed("png", RGB, "rgb8; png compressed rgb8")), RGB)
    jpeg = decode(_compressed("mjpeg", smooth, "jpeg"))
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).max() <= 8


def test_every_encoding_a_refusal_names_decodes_and_one_it_does_not_name_is_refused():
    decode = Decoder("/cam/compressed")
    with pytest.raises(LgcvdError) as err:
        decode(CompressedImage(Header(Time.of(1), "cam"), "webp", b"RIFF"))
    named = re.search(r"Images \((.*)\) and CompressedImages \((.*)\):", str(err.value))
    assert named is not None, err.value
    raw = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"]  # each decoded in a test above
    assert named[1].split(", ") == raw
    for fmt in named[2].split(", "):
        pixels = decode(_compressed("png" if fmt == "png" else "mjpeg", RGB, fmt))
        assert pixels.shape == RGB.shape, fmt


def test_an_unread_encoding_stops_the_node_and_a_broken_message_is_skipped():
    decode = Decoder("/cam")
    with pytest.raises(LgcvdError) as err:
        decode(_image("bayer_rggb8", RGB[..., :1]))
    assert not isinstance(err.value, UnreadableImage)
    assert str(err.value) == (
        "/cam sends 'bayer_rggb8' images; lgcvd reads Images (rgb8, bgr8, rgba8, bgra8, "
        "mono8, mono16) and CompressedImages (png, jpeg, jpg): publish one of those"
    )
    short = Image(Header(Time.of(1), ""), 4, 4, "rgb8", 0, 12, bytes(10))
    with pytest.raises(UnreadableImage) as err:
        decode(short)
    assert str(err.value) == "/cam: a 4x4 rgb8 image with step 12 in 10 bytes; skipped"
    broken = CompressedImage(Header(Time.of(1), ""), "jpeg", b"\xff\xd8 not a jpeg")
    with pytest.raises(UnreadableImage):
        Decoder("/cam/compressed")(broken)


# ----------------------------------------------------------------------------- network


def test_network_options_come_after_cyclonedds_uri_so_that_they_win(monkeypatch):
    monkeypatch.setenv("CYCLONEDDS_URI", "file:///etc/robot.xml")
    network = dds.Network(3, "eth0", ("10.0.0.2", "robot"), multicast=False)
    assert network.config() == (
        'file:///etc/robot.xml,<CycloneDDS><Domain id="any"><General><Interfaces>'
        '<NetworkInterface name="eth0"/></Interfaces><AllowMulticast>false</AllowMulticast>'
        "</General><Discovery><ParticipantIndex>auto</ParticipantIndex><Peers>"
        '<Peer address="10.0.0.2"/><Peer address="robot"/></Peers></Discovery></Domain>'
        "</CycloneDDS>"
    )
    assert dds.Network(3).config() is None  # Cyclone reads CYCLONEDDS_URI itself


def test_bad_topics_and_domains_are_one_line_errors():
    assert dds.dds_topic("camera/image_raw") == "rt/camera/image_raw"
    with pytest.raises(LgcvdError) as err:
        dds.ros_topic("/cam era")
    assert str(err.value) == (
        "'/cam era' is not a ROS 2 topic name; use letters, digits, _ and /, each part "
        "starting with a letter or _, e.g. /camera/image_raw"
    )
    with pytest.raises(LgcvdError) as err:
        dds.join(dds.Network(233))
    assert str(err.value) == (
        "DDS domain id 233 is out of range; use 0..232 (the ROS_DOMAIN_ID of the ROS 2 system "
        "to join)"
    )


def test_an_interface_named_by_both_the_option_and_cyclonedds_uri_is_a_one_line_error():
    domain = free_domain(3)  # conftest's CYCLONEDDS_URI names lo already
    with pytest.raises(LgcvdError) as err:
        dds.join(dds.Network(domain, interface="lo"))
    assert str(err.value) == (
        f"cannot join DDS domain {domain}: Cyclone DDS refused its configuration (its line "
        "above says why); check --interface, --peer and CYCLONEDDS_URI, which must not name "
        "the same interface"
    )


def test_without_cyclonedds_the_command_says_which_extra_to_install(monkeypatch):
    from click.testing import CliRunner

    from lgcvd_runtime.ros2 import cli

    real = cli.importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util, "find_spec", lambda name: None if name == "cyclonedds" else real(name)
    )
    result = CliRunner().invoke(cli.main, ["--camera", "/cam"])
    assert error_line(result) == (
        "lgcvd-ros2 needs the ros extra (cyclonedds): pip install 'lgcvd[ros]'"
    )


# ----------------------------------------------------------------------------- end to end


def free_domain(salt: int) -> int:
    """A DDS domain id from the pid whose discovery and data ports (RTPS: 7400 + 250 d, and the
    unicast ports of the first participants) are free on this machine."""
    for attempt in range(200):
        domain = 1 + (os.getpid() * 7 + salt * 31 + attempt) % 230
        base = 7400 + 250 * domain
        try:
            for port in (base, base + 1, *range(base + 10, base + 20)):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", port))
            return domain
        except OSError:
            continue
    pytest.skip("no DDS domain with free ports")


def _lines(proc: subprocess.Popen) -> queue.Queue:
    """The process's stderr lines, read by a thread as they come."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)  # the process closed its stderr: it ended

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue, prefix: str, timeout: float = 90) -> list[str]:
    seen = []
    while True:
        line = lines.get(timeout=timeout)
        assert line is not None, f"ended before {prefix!r}: {''.join(seen)}"
        seen.append(line)
        if line.startswith(prefix):
            return seen


def _node(domain: int, cameras: list[str], *more: str, env=None) -> subprocess.Popen:
    args = [sys.executable, "-m", "lgcvd_runtime.ros2", "--domain-id", str(domain)]
    args += [a for c in cameras for a in ("--camera", c)]
    args += ["--steps", "2", "--seed", "7", "--threads", "1", "-n", "6", *more]
    return subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)


def test_sigint_stops_a_waiting_node_with_exit_0():
    domain = free_domain(1)
    node = _node(domain, [f"/t{os.getpid()}/idle"])
    try:
        _wait_for(_lines(node), "ready:")
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=60) == 0
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


def _expected(model, video: np.ndarray, index: int, stagger: int) -> np.ndarray:
    """The library's forecast from the two frames the player sent as frame `index`."""
    given = video[[(index - 1 + stagger) % 30, (index + stagger) % 30]]
    (window,) = model.predict(given, n=6, seed=7)
    return window.frames[0]  # (6, 64, 64, 3)


def _check_forecasts(got: dict, topic: str, model, video, stagger: int) -> None:
    origins = [
        TYPES.deserialize_cdr(raw, "std_msgs/msg/Header") for raw in got[f"{topic}/forecast/origin"]
    ]
    frames = got[f"{topic}/forecast"]
    whole = min(len(origins), len(frames) // 6)  # the last may still have been on its way
    assert whole >= 1
    for f, origin in enumerate(origins[:whole]):
        origin_ns = origin.stamp.sec * 10**9 + origin.stamp.nanosec
        index, rest = divmod(origin_ns - FIRST_STAMP, PERIOD_NS)
        assert rest == 0 and origin.frame_id == "camera"
        expected = _expected(model, video, index, stagger)
        for k, raw in enumerate(frames[6 * f : 6 * f + 6]):
            msg = TYPES.deserialize_cdr(raw, "sensor_msgs/msg/Image")
            assert raw == _padded(TYPES.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == (
                origin_ns + (k + 1) * PERIOD_NS
            )
            assert (msg.encoding, msg.height, msg.width, msg.step) == ("rgb8", 64, 64, 192)
            assert np.array_equal(msg.data.reshape(64, 64, 3), expected[k]), (topic, f, k)


def test_the_node_forecasts_two_played_cameras_as_the_library_does_then_stops_on_sigterm(
    tmp_path, bair
):
    domain, prefix = free_domain(2), f"/t{os.getpid()}"
    cameras = [f"{prefix}/front/image_raw", f"{prefix}/wrist/image_raw"]
    out = tmp_path / "heard.pkl"
    loopback = ("--interface", "lo", "--no-multicast", "--peer", "127.0.0.1")
    without_uri = {**os.environ, "CYCLONEDDS_URI": ""}  # the node's network: its options alone
    node = _node(domain, cameras, *loopback, env=without_uri)
    procs = [node]
    try:
        lines = _lines(node)
        _wait_for(lines, "ready:")
        listen = [sys.executable, str(LISTEN), str(out), str(domain), "6", "1", *cameras]
        procs.append(subprocess.Popen(listen, stdout=subprocess.PIPE, text=True))
        assert procs[1].stdout.readline() == "listening\n"
        play = [sys.executable, "-m", "lgcvd_runtime.ros2.play", str(BAIR_REAL / "clip0.mkv")]
        play += [a for c in cameras for a in ("--topic", c)]
        play += ["--rate", "20", "--stagger", "10", "--wait-for", "1"]
        play += ["--first-stamp", str(FIRST_STAMP), "--domain-id", str(domain)]
        procs.append(subprocess.Popen(play, stderr=subprocess.DEVNULL))
        assert procs[1].wait(timeout=120) == 0
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0
        assert _wait_for(lines, "stopped")[-1] == "stopped\n"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert all(proc.poll() is not None for proc in procs)
    got = pickle.loads(out.read_bytes())
    model = lgcvd_runtime.load(steps=2, seed=7, threads=1)
    for j, topic in enumerate(cameras):
        _check_forecasts(got, topic, model, bair, stagger=10 * j)
    raw = got["/diagnostics"][-1]
    status = TYPES.deserialize_cdr(raw, "diagnostic_msgs/msg/DiagnosticArray")
    assert raw == _padded(TYPES.serialize_cdr(status, "diagnostic_msgs/msg/DiagnosticArray"))
    assert [s.name for s in status.status] == [f"lgcvd: {c}" for c in cameras]
    for s in status.status:
        values = {v.key: v.value for v in s.values}
        assert int(values["forecasts published"]) >= 1 and int(values["frames received"]) >= 2
        assert float(values["forecast age (s)"]) >= 0 and float(values["input score"]) > 0
        assert "skipped frames" in values and s.level in (0, 1)
