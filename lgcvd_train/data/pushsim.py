"""A BAIR-like robot-pushing scene rendered with pybullet: training data that needs no download.

A Kuka iiwa arm stands behind a tray holding 2-6 random objects. Its end effector follows smooth
random waypoints in the tray plane, biased towards the objects (each "push" aims through an
object, as BAIR's random pushing does), solved with inverse kinematics and driven by position
control, so the objects are really pushed by the physics. A fixed oblique camera in front of
the tray renders each frame with pybullet's CPU renderer (no OpenGL needed).

Clip i of a dataset is a function of (seed, i) alone: every clip resets the simulation and draws
from its own random generator, so datasets can be rendered in chunks or by several processes
(`first_index`) and still match a single call.

This file knows pybullet and numpy only; it knows nothing about models or training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pybullet as p
import pybullet_data

# Physics: 1/240 s steps, STEPS_PER_FRAME of them between rendered frames (20 frames per sim s).
STEPS_PER_FRAME = 12
SETTLE_STEPS = 300  # objects drop into the tray before the first frame

# Scene layout (metres). The tray's floor is centred at the origin; the robot stands behind it.
TRAY_FLOOR_Z = 0.015
ROBOT_BASE = (0.0, 0.62, 0.0)
REACH_LOW = np.array([-0.17, -0.15])  # end-effector waypoints stay in this box (x, y)
REACH_HIGH = np.array([0.17, 0.17])
OBJECT_HALF = 0.11  # objects start within |x|, |y| <= this
OBJECT_SPACING = 0.10  # minimum distance between object starts
OBJECT_MASS = 0.2  # kilograms
MAX_TRIES = 500  # rejection-sampling budget; a crowded draw keeps fewer objects
PUSH_Z = 0.035  # flange height above the floor while pushing
LIFT_Z = (0.12, 0.20)  # flange height range when the arm moves over the objects
EFFECTOR_LINK = 6
ARM_JOINTS = 7
MOTOR_FORCE = 300.0

# Look-down orientation of the flange (its z axis points at the floor).
DOWN = p.getQuaternionFromEuler([0.0, np.pi, 0.0])

# Colours: light tray, dark floor, dark-red arm (like BAIR's Sawyer), saturated objects.
TRAY_RGBA = (0.88, 0.80, 0.64, 1.0)
FLOOR_RGBA = (0.22, 0.22, 0.24, 1.0)
ARM_RGBA = ((0.55, 0.08, 0.08, 1.0), (0.15, 0.15, 0.15, 1.0))  # alternating link colours

# Camera in front of the tray, looking down at it at about 55 degrees, the robot at the top.
CAMERA_EYE = (0.0, -0.45, 0.72)
CAMERA_TARGET = (0.0, 0.04, 0.0)
CAMERA_FOV = 42.0
LIGHT_DIRECTION = (0.4, -0.6, 1.0)


@dataclass(frozen=True)
class PushClip:
    """One rendered clip with the ground-truth motion that produced it."""

    video: np.ndarray  # (T, H, W, 3) uint8
    object_paths: np.ndarray  # (T, n_objects, 3) object positions at each frame, metres
    effector_path: np.ndarray  # (T, 3) flange position at each frame, metres

    @property
    def object_travel(self) -> np.ndarray:
        """How far each object ended from where it started, metres, (n_objects,)."""
        return np.linalg.norm(self.object_paths[-1] - self.object_paths[0], axis=-1)

    @property
    def effector_travel(self) -> float:
        """Length of the flange's path over the clip, metres."""
        return float(np.linalg.norm(np.diff(self.effector_path, axis=0), axis=-1).sum())


def generate(
    num_videos: int, frames: int, image_size: int, seed: int, *, first_index: int = 0
) -> np.ndarray:
    """Render clips first_index .. first_index+num_videos-1 as uint8 (N, T, H, W, 3)."""
    clips = render_clips(num_videos, frames, image_size, seed, first_index=first_index)
    return np.stack([clip.video for clip in clips])


def render_clips(
    num_videos: int, frames: int, image_size: int, seed: int, *, first_index: int = 0
) -> list[PushClip]:
    """Render clips with their object and effector paths, using one physics client."""
    with _physics() as client:
        return [
            _render_clip(client, _clip_rng(seed, first_index + i), frames, image_size)
            for i in range(num_videos)
        ]


def _clip_rng(seed: int, index: int) -> np.random.Generator:
    """Clip `index`'s own random stream: its scene, then its arm's moves."""
    return np.random.default_rng([seed, index])


@contextmanager
def _physics() -> Iterator[int]:
    """A headless pybullet client that finds pybullet_data's models, disconnected afterwards."""
    client = p.connect(p.DIRECT)
    try:
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
        yield client
    finally:
        p.disconnect(client)


def _render_clip(client: int, rng: np.random.Generator, frames: int, size: int) -> PushClip:
    """Build a fresh scene, then alternate physics steps and renders for `frames` frames."""
    robot, objects = _build_scene(client, rng)
    view = p.computeViewMatrix(CAMERA_EYE, CAMERA_TARGET, (0, 0, 1), physicsClientId=client)
    proj = p.computeProjectionMatrixFOV(CAMERA_FOV, 1.0, 0.05, 3.0, physicsClientId=client)
    pusher = _Pusher(rng, _effector(client, robot))
    video = np.empty((frames, size, size, 3), np.uint8)
    object_paths = np.empty((frames, len(objects), 3))
    effector_path = np.empty((frames, 3))
    for t in range(frames):
        video[t] = _render(client, size, view, proj)
        object_paths[t] = [p.getBasePositionAndOrientation(o, client)[0] for o in objects]
        effector_path[t] = _effector(client, robot)
        target = pusher.next_target(object_paths[t][:, :2])
        _drive_arm(client, robot, target)
        for _ in range(STEPS_PER_FRAME):
            p.stepSimulation(physicsClientId=client)
    return PushClip(video, object_paths, effector_path)


def _build_scene(client: int, rng: np.random.Generator) -> tuple[int, list[int]]:
    """Reset the world: floor, tray, arm posed above a random spot, objects settled in the tray."""
    p.resetSimulation(physicsClientId=client)
    p.setGravity(0, 0, -9.81, physicsClientId=client)
    floor = p.loadURDF("plane.urdf", physicsClientId=client)
    tray = p.loadURDF("tray/traybox.urdf", useFixedBase=True, physicsClientId=client)
    p.changeVisualShape(floor, -1, rgbaColor=FLOOR_RGBA, physicsClientId=client)
    p.changeVisualShape(tray, -1, rgbaColor=TRAY_RGBA, textureUniqueId=-1, physicsClientId=client)
    robot = p.loadURDF(
        "kuka_iiwa/model.urdf",
        ROBOT_BASE,
        p.getQuaternionFromEuler([0, 0, -np.pi / 2]),
        useFixedBase=True,
        physicsClientId=client,
    )
    for link in range(-1, ARM_JOINTS):
        rgba = ARM_RGBA[(link + 1) % 2]
        p.changeVisualShape(robot, link, rgbaColor=rgba, physicsClientId=client)
    start = np.array([*rng.uniform(REACH_LOW, REACH_HIGH), TRAY_FLOOR_Z + rng.uniform(*LIFT_Z)])
    for joint, angle in enumerate(_solve_ik(client, robot, start)):
        p.resetJointState(robot, joint, angle, physicsClientId=client)
    _drive_arm(client, robot, start)
    objects = [_spawn_object(client, rng, xy) for xy in _object_spots(rng, rng.integers(2, 7))]
    for _ in range(SETTLE_STEPS):
        p.stepSimulation(physicsClientId=client)
    return robot, objects


def _object_spots(rng: np.random.Generator, count: int) -> np.ndarray:
    """Up to `count` tray positions OBJECT_SPACING apart (rejection sampling), (count, 2)."""
    spots: list[np.ndarray] = []
    for _ in range(MAX_TRIES):
        xy = rng.uniform(-OBJECT_HALF, OBJECT_HALF, 2)
        if all(np.linalg.norm(xy - s) > OBJECT_SPACING for s in spots):
            spots.append(xy)
        if len(spots) == count:
            break
    return np.array(spots)


def _spawn_object(client: int, rng: np.random.Generator, xy: np.ndarray) -> int:
    """Load one of pybullet's 1,000 random objects at `xy` with a random yaw and bright colour."""
    index = int(rng.integers(1000))
    body = p.loadURDF(
        f"random_urdfs/{index:03d}/{index:03d}.urdf",
        [xy[0], xy[1], TRAY_FLOOR_Z + 0.06],
        p.getQuaternionFromEuler([0, 0, rng.uniform(0, 2 * np.pi)]),
        globalScaling=float(rng.uniform(0.9, 1.25)),
        physicsClientId=client,
    )
    _set_dynamics(client, body)
    hue = rng.uniform(0, 1)
    p.changeVisualShape(body, -1, rgbaColor=(*_bright_colour(hue), 1.0), physicsClientId=client)
    return body


def _set_dynamics(client: int, body: int) -> None:
    """Give an object a box-like inertia and rolling friction so that it rests until pushed.

    The shipped URDFs declare an inertia of 1 kg m^2 for a 0.1 kg object and no rolling
    friction, which makes round objects roll across the tray on their own.
    """
    low, high = p.getAABB(body, physicsClientId=client)
    a, b, c = np.subtract(high, low)  # box extents, metres
    mass = OBJECT_MASS
    inertia = mass / 12.0 * np.array([b * b + c * c, a * a + c * c, a * a + b * b])
    p.changeDynamics(
        body,
        -1,
        mass=mass,
        localInertiaDiagonal=inertia.tolist(),
        lateralFriction=0.8,
        rollingFriction=0.002,
        spinningFriction=0.002,
        linearDamping=0.2,
        angularDamping=0.2,
        physicsClientId=client,
    )


def _bright_colour(hue: float) -> tuple[float, float, float]:
    """A saturated RGB colour for a hue in [0, 1) (HSV with S=0.85, V=0.95)."""
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    rgb = 0.95 - 0.95 * 0.85 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return tuple(float(c) for c in rgb)


class _Pusher:
    """Smooth random end-effector motion: eased moves between waypoints biased towards objects.

    Each move goes from the current waypoint to the next over a few frames with smoothstep
    easing (zero velocity at the waypoints). 70% of moves are pushes: they aim through a randomly
    chosen object and end some centimetres beyond it, at pushing height.
    """

    def __init__(self, rng: np.random.Generator, start: np.ndarray) -> None:
        self.rng = rng
        self.start = self.end = np.asarray(start, float)
        self.frame = self.length = 0

    def next_target(self, objects_xy: np.ndarray) -> np.ndarray:
        """The flange target for the coming frame; objects_xy is (n_objects, 2)."""
        if self.frame >= self.length:
            self.start, self.end = self.end, self._next_waypoint(objects_xy)
            speed = self.rng.uniform(0.4, 0.7)  # metres per simulated second
            seconds = np.linalg.norm(self.end - self.start) / speed
            self.length = max(3, int(np.ceil(seconds * 240 / STEPS_PER_FRAME)))
            self.frame = 0
        self.frame += 1
        u = self.frame / self.length
        return self.start + (self.end - self.start) * (u * u * (3.0 - 2.0 * u))

    def _next_waypoint(self, objects_xy: np.ndarray) -> np.ndarray:
        here = self.end[:2]
        if self.rng.uniform() < 0.7:
            target = objects_xy[self.rng.integers(len(objects_xy))]
            direction = target - here
            direction /= max(float(np.linalg.norm(direction)), 1e-6)
            xy = target + direction * self.rng.uniform(0.04, 0.12)
            z = PUSH_Z
        else:
            xy = self.rng.uniform(REACH_LOW, REACH_HIGH)
            z = PUSH_Z if self.rng.uniform() < 0.5 else self.rng.uniform(*LIFT_Z)
        xy = np.clip(xy, REACH_LOW, REACH_HIGH)
        return np.array([xy[0], xy[1], TRAY_FLOOR_Z + z])


def _solve_ik(client: int, robot: int, target: np.ndarray) -> list[float]:
    """Joint angles placing the flange at `target`, pointing down."""
    angles = p.calculateInverseKinematics(
        robot, EFFECTOR_LINK, target, DOWN, maxNumIterations=50, physicsClientId=client
    )
    return list(angles[:ARM_JOINTS])


def _drive_arm(client: int, robot: int, target: np.ndarray) -> None:
    """Set position-control targets so the flange moves towards `target`."""
    p.setJointMotorControlArray(
        robot,
        list(range(ARM_JOINTS)),
        p.POSITION_CONTROL,
        targetPositions=_solve_ik(client, robot, target),
        forces=[MOTOR_FORCE] * ARM_JOINTS,
        physicsClientId=client,
    )


def _effector(client: int, robot: int) -> np.ndarray:
    """World position of the flange, (3,)."""
    return np.array(p.getLinkState(robot, EFFECTOR_LINK, physicsClientId=client)[4])


def _render(client: int, size: int, view: list[float], proj: list[float]) -> np.ndarray:
    """One (size, size, 3) uint8 frame from the fixed camera, CPU renderer."""
    _, _, rgba, _, _ = p.getCameraImage(
        size,
        size,
        view,
        proj,
        lightDirection=LIGHT_DIRECTION,
        shadow=1,
        renderer=p.ER_TINY_RENDERER,
        physicsClientId=client,
    )
    return np.asarray(rgba, np.uint8).reshape(size, size, 4)[..., :3]
