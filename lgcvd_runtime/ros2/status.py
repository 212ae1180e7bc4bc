"""The node's status as `diagnostic_msgs/DiagnosticArray`, one `DiagnosticStatus` per camera,
published once a second on /diagnostics (rqt_robot_monitor and diagnostic_aggregator read it):

    level    STALE  no forecast yet (waiting for the camera's first p frames, or the first one)
             WARN   the newest input score is beyond the model's calibrated range (the one-line
                    warning is the message), or the camera sent unreadable messages
             OK     forecasting
    values   forecast age (s): now on the cameras' clock (`ForecastNode.now_s`) - the stamp
             of the newest frame its newest forecast used; skipped frames (all cameras: frames
             no forecast used); input score: the newest forecast's that was scored (with
             --score-every K not every forecast is), "none" before one or uncalibrated; input
             score age (s): that forecast's age, as the forecast age; frames received;
             unreadable messages; forecasts published; latency (s): a frame's arrival to its
             forecast published, for the newest forecast

Knows the message types and what the node counts; nothing of DDS entities or models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lgcvd_runtime.ros2.messages import (
    OK,
    STALE,
    WARN,
    DiagnosticArray,
    DiagnosticStatus,
    Header,
    KeyValue,
    Time,
)

NAME = "lgcvd"


@dataclass(frozen=True)
class CameraState:
    """What the status says of one camera at one moment (see the module header)."""

    topic: str
    received: int
    needed: int  # frames a forecast starts from (p)
    published: int
    unreadable: str | None  # the last unreadable message's line
    unreadable_count: int
    age_s: float | None
    input_score: float | None  # the newest score (module header)
    score_age_s: float | None
    latency_s: float | None


def camera_status(
    state: CameraState, skipped: int, warning: Callable[[float | None], str | None]
) -> DiagnosticStatus:
    """One camera's `DiagnosticStatus`; `warning(score)` is the model's input warning."""
    line = warning(state.input_score) if state.age_s is not None else None
    if state.age_s is None:
        level = STALE
        message = (
            f"waiting for frames: {state.received} of {state.needed} received"
            if state.received < state.needed
            else "waiting for the first forecast"
        )
    elif line is not None:
        level, message = WARN, line
    elif state.unreadable is not None:
        level, message = WARN, state.unreadable
    else:
        level, message = OK, "forecasting"
    values = {
        "forecast age (s)": _number(state.age_s),
        "skipped frames": str(skipped),
        "input score": _number(state.input_score),
        "input score age (s)": _number(state.score_age_s),
        "frames received": str(state.received),
        "unreadable messages": str(state.unreadable_count),
        "forecasts published": str(state.published),
        "latency (s)": _number(state.latency_s),
    }
    return DiagnosticStatus(
        level,
        f"{NAME}: {state.topic}",
        message,
        NAME,
        [KeyValue(k, v) for k, v in values.items()],
    )


def status_array(statuses: list[DiagnosticStatus], stamp_ns: int) -> DiagnosticArray:
    return DiagnosticArray(Header(Time.of(stamp_ns), ""), statuses)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"
