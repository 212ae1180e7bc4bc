"""Fuzzed recordings, property-based (hypothesis): a video (FFV1 .mkv, H.264 .mp4, .gif) or a lone
.mcap bag cut short, bit-flipped or with a span zeroed is read by the runtime's reader
(`media.source.stamped_frames`, which predict, interpolate and calibration use, and
`media.video.probe`) to a result or a one-line LgcvdError, never another exception, never a hang.

Decoding runs in FFmpeg's C code, which no signal interrupts: the reader runs in a worker
process, one case at a time, and a case that takes longer than `LIMIT` seconds (or kills the
worker) fails the test. Derandomized, no example database (`test_fuzz.fuzz`); the cases are
counted."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from bag_messages import camera_bag
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import fuzz

from lgcvd_runtime.errors import VideoError
from lgcvd_runtime.media.video import read_frames
from lgcvd_runtime.media.writer import VideoWriter
from lgcvd_train.data import shapes

CASES = {".mkv": 150, ".mp4": 150, ".gif": 100, ".mcap": 100}
LIMIT = 30.0  # seconds a case may take on a loaded 2-core machine; decoding one takes ~0.05 s

# The worker: for each path on stdin, one JSON line on stdout: what reading it gave.
WORKER = """
import json, sys, traceback
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.media.bags import is_bag
from lgcvd_runtime.media.source import stamped_frames
from lgcvd_runtime.media.video import probe
for line in sys.stdin:
    path = line.rstrip("\\n")
    try:
        if not is_bag(path):
            probe(path)
        answer = {"frames": sum(1 for _ in stamped_frames(path, size=16))}
    except LgcvdError as err:
        answer = {"error": str(err)}
    except BaseException as err:
        answer = {"crash": "".join(traceback.format_exception(err))}
    print(json.dumps(answer), flush=True)
"""


class Reader:
    """The worker process, restarted after a case that hung or killed it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # FFmpeg's warnings; a full pipe would block it
                text=True,
            )
        return self.process

    def read(self, path: Path) -> dict:
        """What the worker gave for `path`, or {"hang": ...} / {"died": ...}."""
        process = self.start()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(f"{path}\n")
        process.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(LIMIT)
        line = process.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        self.stop()
        return {"hang": f"no answer in {LIMIT} s"} if not ready else {"died": "worker exited"}

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def reader():
    worker = Reader()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    """Suffix -> the bytes of a whole recording: 12 frames of 32x24 moving shapes."""
    folder = tmp_path_factory.mktemp("originals")
    frames = shapes.generate(1, 12, 32, seed=1)[0][:, 4:28]  # (12, 24, 32, 3)
    found = {}
    for suffix in (".mkv", ".mp4", ".gif"):
        with VideoWriter(folder / f"clip{suffix}") as writer:
            writer.write(frames)
        found[suffix] = (folder / f"clip{suffix}").read_bytes()
    found[".mcap"] = (camera_bag(folder / "bag", frames) / "bag.mcap").read_bytes()
    return found


def damaged(data: bytes, how: str, where: int, span: int, bits: list[int]) -> bytes:
    """`data` cut at `where`, with bits flipped from `where` on, or with `span` bytes zeroed."""
    where %= len(data)
    if how == "cut":
        return data[:where]
    changed = bytearray(data)
    if how == "flip":
        for i, bit in enumerate(bits):
            changed[(where + i * 97) % len(data)] ^= 1 << bit
    else:
        changed[where : where + span] = bytes(len(changed[where : where + span]))
    return bytes(changed)


def check(answer: dict) -> None:
    """A result or a one-line LgcvdError; a crash, a hang or a dead worker fails."""
    assert set(answer) <= {"frames", "error"}, answer
    if "error" in answer:
        assert answer["error"] and "\n" not in answer["error"], answer


@pytest.mark.parametrize("suffix", list(CASES))
def test_a_damaged_recording_reads_or_is_one_line_and_never_hangs(
    suffix, originals, reader, tmp_path
):
    data, counted = originals[suffix], []
    header = min(len(data), 2048)  # where the containers keep what a damage there breaks most

    @fuzz(CASES[suffix])
    @given(
        how=st.sampled_from(["cut", "flip", "zero"]),
        where=st.integers(0, header - 1) | st.integers(0, len(data) - 1),
        span=st.integers(1, 512),
        bits=st.lists(st.integers(0, 7), min_size=1, max_size=16),
    )
    def case(how, where, span, bits):
        path = tmp_path / f"case{len(counted)}{suffix}"
        path.write_bytes(damaged(data, how, where, span, bits))
        counted.append(how)
        check(reader.read(path))

    whole = tmp_path / f"whole{suffix}"
    whole.write_bytes(data)
    assert reader.read(whole) == {"frames": 12}  # the worker reads: the errors are the damage's
    case()
    assert len(counted) == CASES[suffix]


def test_a_video_whose_metadata_is_not_utf8_is_one_line(tmp_path):
    """Found by the fuzzing: PyAV decodes a stream's metadata as UTF-8 when it opens a file."""
    path = tmp_path / "title.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 8, 8, "yuv420p"
        stream.metadata["title"] = "lgcvd-title"
        frame = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")
        out.mux([*stream.encode(frame), *stream.encode(None)])
    path.write_bytes(path.read_bytes().replace(b"lgcvd-title", b"\xc4gcvd-title"))
    with pytest.raises(VideoError) as err:
        read_frames(path)
    assert str(err.value) == (
        f"{path} is truncated or corrupt (its metadata is not UTF-8 text); re-encode or replace "
        "the file"
    )
