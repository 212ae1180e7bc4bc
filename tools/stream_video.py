"""Send a video as a live MPEG-TS stream, at its own frame rate, looping: a camera stand-in for
trying `lgcvd-run live` without a camera, and for its tests.

    python tools/stream_video.py /work/shared/data/bair-real/clip0.mkv udp://127.0.0.1:5000
    lgcvd-run live udp://127.0.0.1:5000 --duration 10 -o forecasts.mkv      # in another shell

The frames are decoded once, then encoded as MPEG-2 video (a keyframe every 5 frames, so a
reader that joins late starts within a quarter of a second) and muxed by PyAV to the URL PyAV
(FFmpeg) opens for writing: `udp://`, `tcp://HOST:PORT?listen`, or a file. It runs until
`--seconds` pass or it is stopped (Ctrl-C, SIGTERM: exit 0, like any camera).
"""

from __future__ import annotations

import time

import av
import click

from lgcvd_runtime.cli.chassis import Service
from lgcvd_runtime.media.video import read_frames


@click.command(cls=Service)
@click.argument("video", type=click.Path(exists=True, dir_okay=False))
@click.argument("url")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True, max=1000), default=20.0,
              show_default=True, help="Frames per second sent.")  # fmt: skip
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds (default: until stopped).")  # fmt: skip
def main(video: str, url: str, fps: float, seconds: float | None) -> None:
    """Send VIDEO's frames, looped, to URL as MPEG-TS at --fps."""
    frames = read_frames(video)  # (T, H, W, 3) uint8
    out = av.open(url, "w", format="mpegts")
    try:
        stream = out.add_stream("mpeg2video", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.gop_size = 5
        start, sent = time.monotonic(), 0
        while seconds is None or time.monotonic() - start < seconds:
            picture = av.VideoFrame.from_ndarray(frames[sent % len(frames)], format="rgb24")
            picture.pts = sent
            out.mux(stream.encode(picture))
            sent += 1
            time.sleep(max(0.0, start + sent / fps - time.monotonic()))
    finally:
        out.close()


if __name__ == "__main__":
    main()
