"""Procedural driving-like video clips with exact labels and exact backward optical flow.

Every pixel is ray cast against analytic surfaces (ground plane, two facade planes, fronto-parallel poles,
persons and car faces, car side planes) with a z-buffer, so the 3-D point behind each pixel is known exactly.
Backward flow moves that point back by the camera's and the object's own motion and projects it again.

The layout is generated lazily in blocks along the street, each seeded by (seed, block): it depends on the seed
only, never on the domain or the clip length, so both domains render the very same labels and flows.
Appearance (see synthetic_textures) is the only thing the domain changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stpl.data.synthetic_textures import LOOKS, SurfaceBuffers, finish, shade, value_noise

SYNTHETIC_CLASSES: tuple[str, ...] = ("sky", "building", "road", "sidewalk", "vegetation", "pole", "car", "person")
DOMAINS = ("source", "target")
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, POLE, CAR, PERSON = range(8)

_FAR = 140.0  # rays travelling further than this see sky (bounds the layout that must be generated)
_BLOCK = 50.0  # layout block length along Z, m
_NEAR = 0.5  # surfaces closer than this to the camera plane are not drawn (degenerate projection)
_PERSON_VZ = 0.05  # max walking speed along Z, m/frame (bounds which blocks can hold visible persons)
_ID_BASE = 1 << 20  # keeps block indices of the seed sequence non-negative


@dataclass(frozen=True)
class SyntheticClip:
    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    labels: np.ndarray  # [T, H, W] uint8 class index into SYNTHETIC_CLASSES
    flows: np.ndarray  # [T, H, W, 2] float32 backward flow (dx, dy): p in frame t sits at p + flow in t - gap


@dataclass(frozen=True)
class _Camera:
    height: float
    focal: float
    u0: float
    v0: float
    speed: float  # m/frame along +Z
    x0: float
    sway: float  # lateral sway amplitude, m
    sway_freq: float
    sway_phase: float

    def position(self, t: int) -> tuple[float, float]:
        return self.x0 + self.sway * math.sin(self.sway_freq * t + self.sway_phase), self.speed * t


@dataclass(frozen=True)
class _Sprite:
    """A pole, car or person; position(t) is its reference point (car: near face centre, others: base)."""

    kind: int
    inst: int
    x: float
    z: float
    width: float
    height: float
    vz: float = 0.0
    sway: float = 0.0  # lateral oscillation (persons strolling), m
    sway_freq: float = 0.0
    sway_phase: float = 0.0
    length: float = 0.0  # cars
    front: bool = False  # cars: the near face is the front (oncoming or parked nose-first)
    sign: float = 0.0  # poles: sign plate size, 0 = none
    sign_y: float = 0.0
    sign_round: bool = False

    def position(self, t: int) -> tuple[float, float]:
        return self.x + self.sway * math.sin(self.sway_freq * t + self.sway_phase), self.z + self.vz * t


@dataclass
class _Block:
    walls: list[tuple[np.ndarray, ...]]  # per side (left, right): start, end, kind, height, inst arrays
    static: list[_Sprite] = field(default_factory=list)
    lanes: list[list[_Sprite]] = field(default_factory=list)
    persons: list[_Sprite] = field(default_factory=list)


class _Layout:
    """Street parameters drawn from the seed, plus a cache of lazily generated blocks."""

    def __init__(self, seed: int):
        self.seed = seed
        rng = np.random.default_rng([seed, 1])
        self.road_hw = float(rng.uniform(6.0, 8.0))
        self.wall_x = (-self.road_hw - rng.uniform(2.5, 5.0), self.road_hw + rng.uniform(2.5, 5.0))
        # a 2 m parking strip on each side, two driving lanes per direction; the camera drives in lane 2
        self.lane_w = (self.road_hw - 2.0) / 2
        self.lane_x = (-1.5 * self.lane_w, -0.5 * self.lane_w, 0.5 * self.lane_w, 1.5 * self.lane_w)
        speed = float(rng.uniform(0.2, 0.5))
        # one speed per lane keeps cars of a lane from driving through each other; the camera's lane only
        # holds cars ahead that are at least as fast, so nothing ever drives through the camera
        self.lane_speed = (-rng.uniform(0.3, 0.7), -rng.uniform(0.3, 0.7), speed + rng.uniform(0.0, 0.15),
                           speed * rng.uniform(0.3, 1.6))
        self.car_gap = (float(rng.uniform(7.0, 15.0)), float(rng.uniform(20.0, 45.0)))
        self.parked_rate = float(rng.uniform(0.2, 0.8))
        self.person_rate = float(rng.uniform(0.3, 0.8))
        self.cam_rel = (rng.uniform(1.3, 1.8), rng.uniform(0.8, 1.0), rng.uniform(0.37, 0.43), speed,
                        0.5 * self.lane_w + rng.uniform(-0.3, 0.3), rng.uniform(0.0, 0.15),
                        rng.uniform(0.1, 0.3), rng.uniform(0, 2 * math.pi))
        self._blocks: dict[int, _Block] = {}

    def camera(self, height: int, width: int) -> _Camera:
        h, focal, horizon, speed, x0, sway, freq, phase = self.cam_rel
        return _Camera(h, focal * width, (width - 1) / 2, horizon * height, speed, x0, sway, freq, phase)

    def block(self, k: int) -> _Block:
        if k not in self._blocks:
            self._blocks[k] = self._make_block(k)
        return self._blocks[k]

    def _make_block(self, k: int) -> _Block:
        rng = np.random.default_rng([self.seed, 2, k + _ID_BASE])
        z0, z1 = k * _BLOCK, (k + 1) * _BLOCK
        ids = iter(range((k + _ID_BASE) << 10, (k + _ID_BASE + 1) << 10))  # unique surface ids per clip
        walls = []
        for _side in (0, 1):
            rows = []
            z = z0
            while z < z1:
                end = min(z + rng.uniform(6.0, 24.0), z1)
                kind = int(rng.choice([BUILDING, VEGETATION, SKY], p=[0.55, 0.3, 0.15]))
                # vegetation stays taller than the camera so rays never see the ground over it
                height = {BUILDING: rng.uniform(7.0, 26.0), VEGETATION: rng.uniform(3.0, 6.5), SKY: 0.0}[kind]
                rows.append((z, end, kind, height, next(ids)))
                z = end
            walls.append(tuple(np.array(col) for col in zip(*rows, strict=True)))
        blk = _Block(walls=walls, lanes=[[] for _ in self.lane_x])
        for side in (-1.0, 1.0):
            z = z0 + rng.uniform(0.0, 25.0)
            while z < z1:  # poles near the curb, some carrying a sign plate
                size = rng.uniform(0.45, 0.8) if rng.random() < 0.45 else 0.0
                height = rng.uniform(3.5, 7.0)
                blk.static.append(_Sprite(POLE, next(ids), side * (self.road_hw + rng.uniform(0.3, 0.7)), z,
                                          rng.uniform(0.1, 0.18), height, sign=size,
                                          sign_y=rng.uniform(2.3, height - 0.3), sign_round=rng.random() < 0.5))
                z += rng.uniform(12.0, 30.0)
            z = z0 + rng.uniform(0.0, 15.0)
            while z < z1:  # parked cars in the parking strips
                if rng.random() < self.parked_rate:
                    blk.static.append(self._car(rng, next(ids), side * (self.road_hw - 1.0), z, 0.0,
                                                rng.random() < 0.5))
                z += rng.uniform(5.5, 14.0)
            z = z0 + rng.uniform(0.0, 8.0)
            while z < z1:  # pedestrians strolling along (and a little across) the sidewalks
                if rng.random() < self.person_rate:
                    walk = self.wall_x[side > 0] * 1.0
                    x = side * rng.uniform(self.road_hw + 0.8, abs(walk) - 0.6)
                    blk.persons.append(_Sprite(PERSON, next(ids), x, z, 0.0, rng.uniform(1.5, 1.95),
                                               vz=rng.uniform(-_PERSON_VZ, _PERSON_VZ), sway=rng.uniform(0, 0.4),
                                               sway_freq=rng.uniform(0.05, 0.2),
                                               sway_phase=rng.uniform(0, 2 * math.pi)))
                z += rng.uniform(3.0, 12.0)
        for lane, (x, v) in enumerate(zip(self.lane_x, self.lane_speed, strict=True)):
            z = z0 + rng.uniform(0.0, self.car_gap[1])
            while z < z1:  # moving cars; the camera's lane (2) only gets cars starting well ahead
                if lane != 2 or z > 10.0:
                    blk.lanes[lane].append(self._car(rng, next(ids), x, z, v, v < 0))
                z += rng.uniform(*self.car_gap)
        return blk

    @staticmethod
    def _car(rng: np.random.Generator, inst: int, x: float, z: float, vz: float, front: bool) -> _Sprite:
        height = rng.uniform(1.8, 2.1) if rng.random() < 0.25 else rng.uniform(1.35, 1.55)  # van or sedan
        return _Sprite(CAR, inst, x, z, rng.uniform(1.7, 1.95), height, vz=vz, length=rng.uniform(3.9, 4.8),
                       front=front)

    def _blocks_for(self, lo: float, hi: float) -> list[_Block]:
        return [self.block(k) for k in range(math.floor(lo / _BLOCK), math.floor(hi / _BLOCK) + 1)]

    def walls(self, cz: float) -> list[tuple[np.ndarray, ...]]:
        blocks = self._blocks_for(cz, cz + _FAR)
        return [tuple(np.concatenate([b.walls[s][i] for b in blocks]) for i in range(5)) for s in (0, 1)]

    def sprites(self, t: int, cz: float) -> list[_Sprite]:
        """All sprites whose t=0 position could put them in view at frame t."""
        out = [s for b in self._blocks_for(cz - 6.0, cz + _FAR) for s in b.static]
        for lane, v in enumerate(self.lane_speed):
            out += [s for b in self._blocks_for(cz - 6.0 - v * t, cz + _FAR - v * t) for s in b.lanes[lane]]
        reach = _PERSON_VZ * t + 1.0
        out += [s for b in self._blocks_for(cz - reach, cz + _FAR + reach) for s in b.persons]
        return out
