"""Procedural driving-like video clips with exact labels and exact backward optical flow.

Every pixel is ray cast against analytic surfaces (ground plane, two facade planes, fronto-parallel poles,
persons and car faces, car side planes) with a z-buffer, so the 3-D point behind each pixel is known exactly.
Backward flow moves that point back by the camera's and the object's own motion and projects it again.

The layout is generated lazily in blocks along the street, each seeded by (seed, block): it depends on the
seed only, never on the domain or the clip length, so both domains render the very same labels and flows.
Appearance (see synthetic_textures) is the only thing the domain changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from stpl.data.synthetic_textures import LOOKS, SurfaceBuffers, finish, shade, value_noise

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "sky", "building", "road", "sidewalk", "vegetation", "pole", "car", "person",
)  # fmt: skip
DOMAINS = ("source", "target")
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, POLE, CAR, PERSON = range(8)

_FAR = 140.0  # rays travelling further than this see sky (bounds the layout that must be generated)
_BLOCK = 50.0  # layout block length along Z, m
_NEAR = 0.5  # surfaces closer than this to the camera plane are not drawn (degenerate projection)
_PERSON_VZ = 0.05  # max walking speed along Z, m/frame (bounds which blocks can hold visible persons)
_ID_BASE = 1 << 20  # keeps block indices of the seed sequence non-negative
# vz, sway amplitude, sway frequency, sway phase of pedestrians
_WALK_LO, _WALK_HI = (-_PERSON_VZ, 0.0, 0.05, 0.0), (_PERSON_VZ, 0.4, 0.2, 2 * math.pi)


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


_Pair = tuple[float, float]
_Box = tuple[slice, slice]  # rows, columns of an image window
_Shape = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | int]]  # local (a, b) -> mask, part
# label, surface id, part (map or constant), surface coordinates a and b, object motion (dx, dz) since t - gap
_What = tuple[int, int, np.ndarray | int, np.ndarray, np.ndarray, _Pair]


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
        self.road_hw = float(rng.uniform(6.0, 7.5))
        self.wall_x = (-self.road_hw - rng.uniform(3.0, 6.0), self.road_hw + rng.uniform(3.0, 6.0))
        # a 2 m parking strip on each side, two driving lanes per direction; the camera keeps right (lane 3)
        self.lane_w = (self.road_hw - 2.0) / 2
        self.lane_x = (-1.5 * self.lane_w, -0.5 * self.lane_w, 0.5 * self.lane_w, 1.5 * self.lane_w)
        speed = float(rng.uniform(0.2, 0.5))
        # one speed per lane keeps cars of a lane from driving through each other; the camera's lane only
        # holds cars ahead that are at least as fast, so nothing ever drives through the camera
        oncoming = rng.uniform(0.3, 0.7, size=2)
        same_way = (speed * rng.uniform(0.3, 1.6), speed + rng.uniform(0.0, 0.15))
        self.lane_speed = (-oncoming[0], -oncoming[1], *same_way)
        self.car_gap = (float(rng.uniform(7.0, 15.0)), float(rng.uniform(20.0, 45.0)))
        self.parked_rate = float(rng.uniform(0.2, 0.8))
        self.person_rate = float(rng.uniform(0.5, 0.9))
        # camera height, focal / width, horizon / height, speed, lateral position, sway amplitude/freq/phase
        lo = (1.3, 0.65, 0.37, 0.0, -0.3, 0.0, 0.1, 0.0)
        hi = (1.8, 0.85, 0.43, 0.0, 0.3, 0.15, 0.3, 2 * math.pi)
        self.cam_rel = rng.uniform(lo, hi) + np.array([0, 0, 0, speed, self.lane_x[3], 0, 0, 0])
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
                x = side * (self.road_hw + rng.uniform(0.3, 0.7))
                width, height = rng.uniform(0.1, 0.18), rng.uniform(3.5, 7.0)
                sign_y, sign_round = rng.uniform(2.3, height - 0.3), rng.random() < 0.5
                sign = {"sign": size, "sign_y": sign_y, "sign_round": sign_round}
                blk.static.append(_Sprite(POLE, next(ids), x, z, width, height, **sign))
                z += rng.uniform(12.0, 30.0)
            z = z0 + rng.uniform(0.0, 15.0)
            while z < z1:  # parked cars in the parking strips
                if rng.random() < self.parked_rate:
                    front = rng.random() < 0.5
                    blk.static.append(self._car(rng, next(ids), side * (self.road_hw - 1.0), z, 0.0, front))
                z += rng.uniform(5.5, 14.0)
            z = z0 + rng.uniform(0.0, 8.0)
            while z < z1:  # pedestrians strolling along (and a little across) the sidewalks
                if rng.random() < self.person_rate:
                    x = side * rng.uniform(self.road_hw + 0.8, abs(self.wall_x[side > 0]) - 0.6)
                    vz, sway, freq, phase = rng.uniform(_WALK_LO, _WALK_HI)
                    walk = {"vz": vz, "sway": sway, "sway_freq": freq, "sway_phase": phase}
                    blk.persons.append(_Sprite(PERSON, next(ids), x, z, 0.0, rng.uniform(1.5, 1.95), **walk))
                z += rng.uniform(2.0, 8.0)
        for lane, (x, v) in enumerate(zip(self.lane_x, self.lane_speed, strict=True)):
            z = z0 + rng.uniform(0.0, self.car_gap[1])
            while z < z1:  # moving cars; the camera's lane (3) only gets cars starting well ahead
                if lane != 3 or z > 10.0:
                    blk.lanes[lane].append(self._car(rng, next(ids), x, z, v, v < 0))
                z += rng.uniform(*self.car_gap)
        return blk

    @staticmethod
    def _car(rng: np.random.Generator, inst: int, x: float, z: float, vz: float, front: bool) -> _Sprite:
        height = rng.uniform(1.8, 2.1) if rng.random() < 0.25 else rng.uniform(1.35, 1.55)  # van or sedan
        width, length = rng.uniform(1.7, 1.95), rng.uniform(3.9, 4.8)
        return _Sprite(CAR, inst, x, z, width, height, vz=vz, length=length, front=front)

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


def _person_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head, torso with arms, two legs; a, b in units of the person's height. Parts: skin, top, bottom."""
    aa = np.abs(a)
    head = (a / 0.07) ** 2 + ((b - 0.925) / 0.075) ** 2 < 1.0
    upper = (b >= 0.5) & (b < 0.85) & ((aa < 0.125) | ((aa < 0.165) & (b > 0.53) & (b < 0.83)))
    legs = (b >= 0.0) & (b < 0.5) & (aa < 0.11) & ((aa > 0.015) | (b > 0.45))
    part = np.where(head, 0, np.where(b >= 0.5, 1, 2)).astype(np.uint8)
    return head | upper | legs, part


def _car_face(a: np.ndarray, b: np.ndarray, part: int) -> tuple[np.ndarray, int]:
    """Rear/front silhouette: a in half-widths, b in heights; the road shows between the wheels."""
    aa = np.abs(a)
    body = (b >= 0.0) & (b < 0.58) & (aa <= 1.0) & ((b >= 0.12) | ((aa > 0.55) & (aa < 0.95)))
    cabin = (b >= 0.58) & (b < 1.0) & (aa < 0.84 - 0.22 * (b - 0.58) / 0.42)
    return body | cabin, part


def _pole_shape(sp: _Sprite, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pole (part 0) with an optional round or square sign plate (part 1); a, b in metres."""
    r, dy = sp.sign / 2, b - sp.sign_y
    plate = a * a + dy * dy < r * r if sp.sign_round else (np.abs(a) < r) & (np.abs(dy) < r)
    pole = (np.abs(a) < sp.width / 2) & (b >= 0.0) & (b < sp.height)
    return pole | plate, plate.astype(np.uint8)


def _car_side(along: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Side silhouette: `along` in car lengths from the front end, b in heights."""
    r = (b - 0.58) / 0.42
    wheels = (b >= 0.12) | (np.abs(along - 0.2) < 0.09) | (np.abs(along - 0.8) < 0.09)
    body = (b >= 0.0) & (b < 0.58) & (along >= 0.0) & (along <= 1.0) & wheels
    cabin = (b >= 0.58) & (b < 1.0) & (along > 0.22 + 0.12 * r) & (along < 0.8 - 0.1 * r)
    return body | cabin


class _Canvas:
    """Z-buffered per-pixel buffers of one frame plus the camera motion since frame t - gap."""

    def __init__(self, cam: _Camera, t: int, gap: int, height: int, width: int):
        self.cam, self.t, self.gap = cam, t, gap
        self.cx, self.cz = cam.position(t)
        px, pz = cam.position(t - gap)
        self.ex, self.ez = self.cx - px, self.cz - pz
        self.du = (np.arange(width) - cam.u0) / cam.focal  # ray slopes per column / row
        self.dv = (np.arange(height) - cam.v0) / cam.focal
        shape = (height, width)
        self.depth = np.full(shape, np.inf)
        self.label = np.zeros(shape, np.uint8)
        self.inst = np.zeros(shape, np.int64)
        self.part = np.zeros(shape, np.uint8)
        self.ta, self.tb = np.zeros(shape), np.zeros(shape)
        self.fx, self.fy = np.zeros(shape), np.zeros(shape)

    def flow_of(self, depth: np.ndarray, du: np.ndarray, dv: np.ndarray, dx: float, dz: float):
        """Backward flow of points at `depth` on rays (du, dv) that moved by (-dx, -dz) since t - gap.

        Point P = C + depth * (du, -dv, 1) sat at P + (dx, 0, dz) in frame t - gap, seen from camera C'; its
        projection minus the current one simplifies to the expressions below (exactly 0 at infinite depth).
        """
        ex, ez = self.ex + dx, self.ez + dz
        rz = np.maximum(depth + ez, 1e-2)  # a point behind the old camera: flow leaves the image
        return self.cam.focal * (ex - du * ez) / rz, -self.cam.focal * dv * ez / rz

    def static_flow(self) -> tuple[np.ndarray, np.ndarray]:
        """Flow every pixel would have if its surface were static (used to tell movers apart in tests)."""
        return self.flow_of(self.depth, self.du[None, :], self.dv[:, None], 0.0, 0.0)

    def background(self, layout: _Layout) -> None:
        """Ground plane, the two facade planes with their segments, and sky."""
        h, far2 = self.cam.height, 2 * _FAR
        with np.errstate(divide="ignore"):
            s_g = np.where(self.dv > 0, h / self.dv, np.inf)
            right = self.du > 0
            s_w = np.where(right, layout.wall_x[1] - self.cx, layout.wall_x[0] - self.cx) / self.du
        s_w = np.where(np.isfinite(s_w) & (s_w > 0), s_w, np.inf)
        wall_ok = s_w < _FAR
        s_wc, s_gc = np.minimum(s_w, far2), np.minimum(s_g, far2)  # finite copies keep the arithmetic clean
        z_w = self.cz + s_wc
        top, kind, inst = np.zeros_like(z_w), np.full(z_w.shape, SKY), np.zeros(z_w.shape, np.int64)
        for side, (start, end, kinds, heights, ids) in enumerate(layout.walls(self.cz)):
            cols = np.flatnonzero(wall_ok & (right == bool(side)))
            i = np.clip(np.searchsorted(start, z_w[cols], side="right") - 1, 0, len(start) - 1)
            hit = (z_w[cols] >= start[i]) & (z_w[cols] < end[i])
            top[cols] = np.where(hit, heights[i], 0.0)
            kind[cols] = np.where(hit, kinds[i], SKY)
            inst[cols] = np.where(hit, ids[i], 0)
        veg = kind == VEGETATION  # blobby tree-line top edge, fixed to the world
        top[veg] += 1.6 * (value_noise(z_w[veg] * 0.6, np.zeros(veg.sum()), inst[veg]) - 0.5)
        y_w = h - self.dv[:, None] * s_wc[None, :]
        wall = (y_w < top) & (s_wc < s_gc[:, None]) & wall_ok
        ground = ~wall & (s_g < _FAR)[:, None]
        x_g = self.cx + s_gc[:, None] * self.du[None, :]
        self.depth = np.where(wall, s_wc, np.where(ground, s_g[:, None], np.inf))
        floor = np.where(np.abs(x_g) < layout.road_hw, ROAD, SIDEWALK)
        self.label = np.where(wall, kind, np.where(ground, floor, SKY)).astype(np.uint8)
        self.inst = np.where(wall, inst, 0)
        self.ta = np.where(wall, z_w, x_g)  # facades: (Z, Y); ground: (X, Z)
        self.tb = np.where(wall, y_w, self.cz + s_gc[:, None])
        self.fx, self.fy = self.static_flow()

    def _write(self, box: _Box, mask: np.ndarray, depth: np.ndarray | float, what: _What) -> None:
        """Z-test and store one surface patch; `what` carries its label, id, part, coordinates and motion."""
        rs, cs = box
        label, inst, part, ta, tb, (dx, dz) = what
        view = self.depth[rs, cs]
        depth = np.broadcast_to(depth, view.shape)
        mask = mask & (depth < view)
        if not mask.any():
            return
        np.copyto(view, depth, where=mask)
        self.label[rs, cs][mask] = label
        self.inst[rs, cs][mask] = inst
        np.copyto(self.part[rs, cs], part, where=mask)
        np.copyto(self.ta[rs, cs], ta, where=mask)
        np.copyto(self.tb[rs, cs], tb, where=mask)
        fx, fy = self.flow_of(depth, self.du[None, cs], self.dv[rs, None], dx, dz)
        np.copyto(self.fx[rs, cs], fx, where=mask)
        np.copyto(self.fy[rs, cs], fy, where=mask)

    def _window(self, u_a: float, u_b: float, v_a: float, v_b: float) -> _Box | None:
        """Pixel slices covering the image-space box [u_a, u_b] x [v_a, v_b], or None if it is empty."""
        h, w = self.depth.shape
        c0, c1 = max(0, math.ceil(u_a)), min(w - 1, math.floor(u_b))
        r0, r1 = max(0, math.ceil(v_a)), min(h - 1, math.floor(v_b))
        return None if c0 > c1 or r0 > r1 else (slice(r0, r1 + 1), slice(c0, c1 + 1))

    def _place(self, sp: _Sprite) -> tuple[float, float, _Pair]:
        """Position at frame t and the motion back to t - gap (where its material points were, relative)."""
        x, z = sp.position(self.t)
        xp, zp = sp.position(self.t - self.gap)
        return x, z, (xp - x, zp - z)

    def front(self, sp: _Sprite, extent: _Pair, scale: _Pair, shape: _Shape) -> None:
        """A fronto-parallel face through the sprite's reference point spanning X +- extent[0] and Y in
        [0, extent[1]]; `shape` gets local coordinates divided by `scale` and returns a mask and a part."""
        x, z, motion = self._place(sp)
        s = z - self.cz
        if not _NEAR < s < _FAR:
            return
        cam, f = self.cam, self.cam.focal
        u_a, u_b = cam.u0 + f * (x - extent[0] - self.cx) / s, cam.u0 + f * (x + extent[0] - self.cx) / s
        box = self._window(u_a, u_b, cam.v0 + f * (cam.height - extent[1]) / s, cam.v0 + f * cam.height / s)
        if box is None:
            return
        a = (self.cx + self.du[None, box[1]] * s - x) / scale[0]
        b = (cam.height - self.dv[box[0], None] * s) / scale[1]
        mask, part = shape(a, b)
        self._write(box, np.broadcast_to(mask, (b.size, a.size)), s, (sp.kind, sp.inst, part, a, b, motion))

    def sprite(self, sp: _Sprite) -> None:
        if sp.kind == CAR:
            self._car(sp)
        elif sp.kind == PERSON:
            self.front(sp, (0.17 * sp.height, sp.height), (sp.height, sp.height), _person_shape)
        else:
            extent = (max(sp.width, sp.sign) / 2, max(sp.height, sp.sign_y + sp.sign / 2))
            self.front(sp, extent, (1.0, 1.0), partial(_pole_shape, sp))

    def _car(self, sp: _Sprite) -> None:
        """Near face (rear, or front when `sp.front`) plus the side plane that faces the camera."""
        face = partial(_car_face, part=int(sp.front))
        self.front(sp, (sp.width / 2, sp.height), (sp.width / 2, sp.height), face)
        x, z, motion = self._place(sp)
        s = z - self.cz
        if abs(self.cx - x) <= sp.width / 2:
            return
        xs = x - sp.width / 2 if self.cx < x else x + sp.width / 2
        s_a, s_b = max(s, _NEAR), min(s + sp.length, _FAR)  # clip the side against the near/far planes
        if s_a >= s_b:
            return
        cam, f = self.cam, self.cam.focal
        u_a, u_b = sorted((cam.u0 + f * (xs - self.cx) / s_a, cam.u0 + f * (xs - self.cx) / s_b))
        v_top = min(cam.v0 + f * (cam.height - sp.height) / s_a, cam.v0 + f * (cam.height - sp.height) / s_b)
        box = self._window(u_a, u_b, v_top, cam.v0 + f * cam.height / s_a)
        if box is None:
            return
        with np.errstate(divide="ignore"):
            depth = np.abs((xs - self.cx) / self.du[None, box[1]])  # ray / plane X = xs intersection
        along = (self.cz + depth - z) / sp.length
        b = (cam.height - self.dv[box[0], None] * depth) / sp.height
        along = 1.0 - along if sp.front else along  # silhouette is drawn from the car's front end
        mask = _car_side(along, b) & (depth >= s_a) & (depth <= s_b)
        self._write(box, mask, depth, (CAR, sp.inst, 2, along, b, motion))

    def surfaces(self, layout: _Layout) -> SurfaceBuffers:
        buffers = (self.label, self.inst, self.part, self.ta, self.tb, self.depth, self.du, self.dv)
        return SurfaceBuffers(*buffers, layout.road_hw, layout.lane_w)


def _render(layout: _Layout, cam: _Camera, t: int, gap: int, height: int, width: int) -> _Canvas:
    canvas = _Canvas(cam, t, gap, height, width)
    canvas.background(layout)
    for sp in layout.sprites(t, canvas.cz):
        canvas.sprite(sp)
    return canvas


def generate_clip(
    seed: int, domain: str, height: int, width: int, num_frames: int, flow_gap: int = 1
) -> SyntheticClip:  # fmt: skip
    """Render a clip; (seed, height, width, num_frames) fix labels and flows; the domain only the looks."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    if height < 16 or width < 16:
        raise ValueError(f"image size must be at least 16x16, got {height}x{width}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if flow_gap < 1:
        raise ValueError(f"flow_gap must be >= 1, got {flow_gap}")
    key = int(seed) % (1 << 63)  # SeedSequence wants non-negative entropy
    layout = _Layout(key)
    cam = layout.camera(height, width)
    look = LOOKS[domain]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    labels = np.empty((num_frames, height, width), np.uint8)
    flows = np.zeros((num_frames, height, width, 2), np.float32)
    for t in range(num_frames):
        canvas = _render(layout, cam, t, flow_gap, height, width)
        labels[t] = canvas.label
        if t >= flow_gap:
            flows[t, ..., 0], flows[t, ..., 1] = canvas.fx, canvas.fy
        noise = np.random.default_rng([key, 3, DOMAINS.index(domain), t])
        frames[t] = finish(shade(canvas.surfaces(layout), look), canvas.depth, look, noise)
    return SyntheticClip(frames, labels, flows)
