"""Appearance of the synthetic driving scenes: integer-hash value noise, per-domain looks and shading.

`synthetic_scene` produces the geometry (labels, flow, per-pixel surface coordinates); this module only turns
those surface buffers into RGB. Every texture is a function of coordinates fixed to the surface (world X/Z on
the ground, Z/Y on facades, object-local coordinates on movers), so a material point keeps its colour across
frames and the two domains share exactly the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]

# ---------------------------------------------------------------- hashing and noise
_K1, _K2, _K3 = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77), np.uint32(0xC2B2AE3D)
_S8, _S13, _S15, _S16 = np.uint32(8), np.uint32(13), np.uint32(15), np.uint32(16)


def hash01(ix: np.ndarray, iy: np.ndarray, salt: np.ndarray | int) -> np.ndarray:
    """Deterministic float32 in [0, 1) per integer lattice point (a pure function, unlike RNG streams)."""
    # int64 first: casting negative floats straight to uint32 is undefined, int64 -> uint32 wraps cleanly
    h = np.asarray(ix, dtype=np.int64).astype(np.uint32) * _K1
    h ^= np.asarray(iy, dtype=np.int64).astype(np.uint32) * _K2
    h ^= np.asarray(salt, dtype=np.int64).astype(np.uint32) * _K3
    h ^= h >> _S15
    h *= _K2
    h ^= h >> _S13
    h *= _K3
    h ^= h >> _S16
    return (h >> _S8).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise(x: np.ndarray, y: np.ndarray, salt: np.ndarray | int) -> np.ndarray:
    """Smooth lattice noise in [0, 1]: hashed corners, smoothstep-bilinear interpolation."""
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = (x - xf).astype(np.float32), (y - yf).astype(np.float32)
    ix, iy = xf.astype(np.int64), yf.astype(np.int64)
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    n00, n10 = hash01(ix, iy, salt), hash01(ix + 1, iy, salt)
    n01, n11 = hash01(ix, iy + 1, salt), hash01(ix + 1, iy + 1, salt)
    top = n00 + (n10 - n00) * sx
    bottom = n01 + (n11 - n01) * sx
    return top + (bottom - top) * sy


def fbm(x: np.ndarray, y: np.ndarray, salt: np.ndarray | int, octaves: int = 3) -> np.ndarray:
    """Fractal sum of value noise, normalised back to [0, 1]."""
    total, amp, norm = np.zeros(np.shape(x), np.float32), 1.0, 0.0
    for octave in range(octaves):
        total += np.float32(amp) * value_noise(x, y, np.asarray(salt, dtype=np.int64) + 101 * octave)
        norm += amp
        amp *= 0.5
        x, y = x * 2.03, y * 2.03  # non-integer ratio so octaves do not share lattice lines
    return total / np.float32(norm)


# ---------------------------------------------------------------- domain looks
@dataclass(frozen=True)
class Look:
    """Every appearance parameter of one domain (colours are linear RGB in [0, 1]; >1 means emissive)."""

    sky_top: RGB
    sky_horizon: RGB
    cloud: RGB
    cloud_cover: float  # fraction of sky covered by clouds
    road: RGB
    road_grain: float  # amplitude of asphalt grain (low = smooth/wet)
    road_grain_scale: float  # grain frequency, 1/m
    marking: RGB
    marking_wear: float  # fraction of lane-marking paint missing
    wet: float  # strength of specular streaks and puddles on road and sidewalk
    puddle_sky: RGB  # what puddles reflect
    sidewalk: RGB
    curb: RGB
    tile_size: float  # m
    tile_jitter: float
    grout_dark: float  # grout brightness factor
    facades: tuple[RGB, ...]
    window: RGB
    window_lit: float  # fraction of lit windows
    lit_window: RGB
    window_w: float  # window width as a fraction of its horizontal period
    window_h: float  # window height as a fraction of the storey height
    window_period: float  # m
    foliage_dark: RGB
    foliage_light: RGB
    leaf_scale: float  # 1/m
    pole: RGB
    signs: tuple[RGB, ...]
    cars: tuple[RGB, ...]
    car_glass: RGB
    tail_light: RGB
    head_light: RGB
    skins: tuple[RGB, ...]
    tops: tuple[RGB, ...]
    bottoms: tuple[RGB, ...]
    fog: RGB
    visibility: float  # m; haze = 1 - exp(-depth / visibility)
    gain: float
    contrast: float
    cast: RGB
    noise: float  # sensor noise std (fraction of full scale)
    blur: bool  # 5-tap binomial blur (optics / rain on the lens)


SOURCE_LOOK = Look(
    sky_top=(0.30, 0.50, 0.88),
    sky_horizon=(0.78, 0.86, 0.96),
    cloud=(0.96, 0.96, 0.98),
    cloud_cover=0.45,
    road=(0.36, 0.36, 0.38),
    road_grain=0.30,
    road_grain_scale=3.0,
    marking=(0.93, 0.93, 0.88),
    marking_wear=0.1,
    wet=0.0,
    puddle_sky=(0.7, 0.8, 0.9),
    sidewalk=(0.70, 0.67, 0.62),
    curb=(0.82, 0.81, 0.78),
    tile_size=0.5,
    tile_jitter=0.14,
    grout_dark=0.72,
    facades=(
        (0.82, 0.73, 0.60),
        (0.68, 0.40, 0.32),
        (0.76, 0.76, 0.76),
        (0.88, 0.84, 0.70),
        (0.56, 0.59, 0.63),
    ),
    window=(0.16, 0.22, 0.30),
    window_lit=0.0,
    lit_window=(1.0, 1.0, 1.0),
    window_w=0.45,
    window_h=0.5,
    window_period=2.6,
    foliage_dark=(0.08, 0.25, 0.06),
    foliage_light=(0.36, 0.64, 0.20),
    leaf_scale=1.6,
    pole=(0.56, 0.57, 0.59),
    signs=((0.10, 0.30, 0.80), (0.86, 0.10, 0.10), (0.95, 0.95, 0.95), (0.95, 0.80, 0.10)),
    cars=(
        (0.80, 0.08, 0.08),
        (0.10, 0.25, 0.70),
        (0.92, 0.92, 0.92),
        (0.60, 0.62, 0.65),
        (0.07, 0.07, 0.08),
        (0.95, 0.75, 0.10),
    ),
    car_glass=(0.12, 0.16, 0.21),
    tail_light=(0.85, 0.10, 0.10),
    head_light=(0.95, 0.95, 0.85),
    skins=((0.87, 0.69, 0.56), (0.62, 0.45, 0.33), (0.42, 0.29, 0.20)),
    tops=((0.86, 0.20, 0.20), (0.20, 0.50, 0.86), (0.95, 0.90, 0.30), (0.20, 0.70, 0.35), (0.95, 0.95, 0.95)),
    bottoms=((0.15, 0.20, 0.42), (0.20, 0.20, 0.22), (0.52, 0.46, 0.35)),
    fog=(0.80, 0.85, 0.92),
    visibility=600.0,
    gain=1.0,
    contrast=1.0,
    cast=(1.0, 1.0, 1.0),
    noise=0.012,
    blur=False,
)

# Dusk and rain: besides the global darkening/cast (which normalisation could undo), several classes change
# texture statistics or their colour relative to others, e.g. facades turn darker than the sky with bright
# windows, the road becomes smooth and reflective, foliage turns olive, cars and clothes lose their colours.
# Calibrated so that an ImageNet MobileNetV2 trained on source keeps ~45 % of its mIoU on target, and
# re-estimating batch-norm statistics on target recovers only part of the gap (to ~73 %).
TARGET_LOOK = Look(
    sky_top=(0.18, 0.14, 0.30),
    sky_horizon=(0.88, 0.52, 0.32),
    cloud=(0.40, 0.36, 0.42),
    cloud_cover=0.75,
    road=(0.22, 0.23, 0.26),
    road_grain=0.06,
    road_grain_scale=1.0,
    marking=(0.70, 0.70, 0.64),
    marking_wear=0.5,
    wet=0.8,
    puddle_sky=(0.85, 0.60, 0.45),
    sidewalk=(0.46, 0.31, 0.27),
    curb=(0.40, 0.38, 0.38),
    tile_size=0.22,
    tile_jitter=0.30,
    grout_dark=0.85,
    facades=((0.30, 0.28, 0.31), (0.22, 0.25, 0.31), (0.36, 0.30, 0.25), (0.17, 0.17, 0.20)),
    window=(0.07, 0.07, 0.09),
    window_lit=0.55,
    lit_window=(1.7, 1.3, 0.6),
    window_w=0.9,
    window_h=0.32,
    window_period=1.5,
    foliage_dark=(0.12, 0.15, 0.05),
    foliage_light=(0.52, 0.52, 0.16),
    leaf_scale=0.7,
    pole=(0.24, 0.24, 0.27),
    signs=((0.15, 0.35, 0.90), (0.95, 0.15, 0.12), (1.20, 1.20, 1.20), (1.10, 0.90, 0.15)),
    cars=((0.11, 0.11, 0.13), (0.30, 0.30, 0.32), (0.14, 0.17, 0.30), (0.38, 0.10, 0.10), (0.70, 0.70, 0.72)),
    car_glass=(0.05, 0.05, 0.07),
    tail_light=(1.9, 0.25, 0.15),
    head_light=(2.0, 1.9, 1.5),
    skins=((0.70, 0.52, 0.42), (0.48, 0.34, 0.26)),
    tops=((0.12, 0.12, 0.15), (0.26, 0.20, 0.18), (0.32, 0.10, 0.10), (0.10, 0.15, 0.26)),
    bottoms=((0.10, 0.10, 0.12), (0.22, 0.19, 0.16)),
    fog=(0.36, 0.35, 0.42),
    visibility=110.0,
    gain=0.9,
    contrast=0.85,
    cast=(0.95, 0.97, 1.08),
    noise=0.025,
    blur=True,
)

LOOKS: dict[str, Look] = {"source": SOURCE_LOOK, "target": TARGET_LOOK}


# ---------------------------------------------------------------- shading
@dataclass
class SurfaceBuffers:
    """Per-pixel geometry of one frame, as produced by the renderer in synthetic_scene."""

    label: np.ndarray  # [H, W] uint8 class index
    inst: np.ndarray  # [H, W] int64 id of the surface (varies colours between objects)
    part: np.ndarray  # [H, W] uint8 sub-part code (see the class shaders)
    ta: np.ndarray  # [H, W] float64 first surface coordinate
    tb: np.ndarray  # [H, W] float64 second surface coordinate
    depth: np.ndarray  # [H, W] float64 distance along the optical axis, inf for sky
    ray_x: np.ndarray  # [W] (u - u0) / f
    ray_y: np.ndarray  # [H] (v - v0) / f, positive below the horizon
    road_half_width: float
    lane_width: float


@dataclass
class _Px:
    """The pixels of one class, gathered into flat arrays."""

    ta: np.ndarray
    tb: np.ndarray
    inst: np.ndarray
    part: np.ndarray
    rows: np.ndarray
    cols: np.ndarray


def _c(rgb: RGB) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t[:, None]


def _pick(palette: tuple[RGB, ...], inst: np.ndarray, salt: int) -> np.ndarray:
    """One palette colour per object, chosen by hashing its id (same object -> same colour in every frame)."""
    k = (hash01(inst, 0, salt) * len(palette)).astype(np.int64)
    return np.asarray(palette, dtype=np.float32)[np.minimum(k, len(palette) - 1)]


def _sky(p: _Px, look: Look, buf: SurfaceBuffers) -> np.ndarray:
    # sky is at infinity: colour depends on the ray direction only, so it does not move under translation
    elev = np.maximum(-buf.ray_y[p.rows], 0.0)
    col = _mix(_c(look.sky_horizon), _c(look.sky_top), np.clip(elev / 0.6, 0, 1).astype(np.float32) ** 0.7)
    inv = 1.0 / np.maximum(elev, 0.04)  # clouds on a plane at "infinite" height
    cloud = fbm(buf.ray_x[p.cols] * inv * 0.9, inv * 1.3, 17, 3)
    amount = np.clip((cloud - (1.0 - look.cloud_cover)) * 3.0, 0, 1)
    return _mix(col, _c(look.cloud), amount)


def _wet_sheen(x: np.ndarray, z: np.ndarray, look: Look, col: np.ndarray) -> np.ndarray:
    if look.wet <= 0:
        return col
    puddle = np.clip((fbm(x * 0.35, z * 0.12, 29, 2) - 0.55) * 6.0, 0, 1) * look.wet
    # broken specular streaks along Z, like street lights mirrored in a wet surface
    streak = np.clip(np.cos(x * 1.7 + 2.0 * value_noise(z * 0.05, x * 0.0, 31)), 0, 1) ** 16
    glint = streak * np.clip(value_noise(z * 0.5, np.floor(x * 0.5), 37) * 2.0 - 0.8, 0, 1) * look.wet
    col = _mix(col, _c(look.puddle_sky), puddle)
    return col + glint[:, None] * np.float32(0.6)


def _road(p: _Px, look: Look, buf: SurfaceBuffers) -> np.ndarray:
    x, z = p.ta, p.tb
    s = look.road_grain_scale
    grain = fbm(x * s, z * s, 3, 2) - 0.5
    patch = value_noise(x * 0.15, z * 0.08, 5) - 0.5
    col = _c(look.road) * (1.0 + 2.0 * look.road_grain * grain + 0.25 * patch)[:, None]
    ax = np.abs(x)
    dash = np.mod(z, 9.0) < 3.5
    lane = (np.abs(ax - buf.lane_width) < 0.07) & dash
    centre = np.abs(ax - 0.12) < 0.06
    edge = np.abs(ax - (buf.road_half_width - 2.0)) < 0.07
    mark = (lane | centre | edge) & (value_noise(x * 4.0, z * 2.0, 7) > look.marking_wear)
    col[mark] = _c(look.marking) * (0.9 + 0.2 * grain[mark, None])
    return _wet_sheen(x, z, look, col)


def _sidewalk(p: _Px, look: Look, buf: SurfaceBuffers) -> np.ndarray:
    x, z = p.ta, p.tb
    gx, gz = x / look.tile_size, z / look.tile_size
    # staggered rows of tiles (bricks), per-tile brightness jitter, darker grout lines
    gx = gx + 0.5 * (np.floor(gz) % 2)
    tile = hash01(np.floor(gx), np.floor(gz), 11) - 0.5
    grout = (np.mod(gx, 1.0) < 0.08) | (np.mod(gz, 1.0) < 0.08)
    fine = fbm(x * 6.0, z * 6.0, 13, 2) - 0.5
    shade = 1.0 + 2.0 * look.tile_jitter * tile + 0.2 * fine
    shade = np.where(grout, shade * look.grout_dark, shade)
    col = _c(look.sidewalk) * shade[:, None]
    curb = np.abs(x) < buf.road_half_width + 0.25
    col[curb] = _c(look.curb) * (1.0 + 0.2 * fine[curb, None])
    return _wet_sheen(x, z, look, col) if look.wet > 0 else col


def _building(p: _Px, look: Look, buf: SurfaceBuffers) -> np.ndarray:
    z, y = p.ta, p.tb
    stain = fbm(z * 0.5, y * 0.5, p.inst, 2) - 0.5
    col = _pick(look.facades, p.inst, 41) * (1.0 + 0.35 * stain)[:, None]
    offset = hash01(p.inst, 1, 43) * look.window_period
    cz, cy = (z + offset) / look.window_period, (y - 0.4) / 3.0
    fz, fy = np.mod(cz, 1.0), np.mod(cy, 1.0)
    win = (np.abs(fz - 0.5) < look.window_w / 2) & (np.abs(fy - 0.55) < look.window_h / 2) & (y > 2.0)
    lit = hash01(np.floor(cz), np.floor(cy), p.inst) < look.window_lit
    glass = _c(look.window) * (0.8 + 0.5 * fy)[:, None]  # sky reflection brighter towards the top
    col[win] = np.where(lit[win, None], _c(look.lit_window), glass[win])
    return col


def _vegetation(p: _Px, look: Look, buf: SurfaceBuffers) -> np.ndarray:
    s = look.leaf_scale
    leaves = fbm(p.ta * s, p.tb * s, p.inst, 3)
    tone = np.clip((leaves - 0.25) * 2.0, 0, 1)
    col = _mix(_c(look.foliage_dark), _c(look.foliage_light), tone)
    return col * (0.8 + 0.4 * hash01(p.inst, 2, 47))[:, None]


def _pole(p: _Px, look: Look, buf: SurfaceBuffers) -> np.ndarray:
    metal = 0.75 + 0.5 * value_noise(p.tb * 2.0, p.ta, 53)
    col = _c(look.pole) * metal[:, None]
    sign = p.part == 1
    col[sign] = _pick(look.signs, p.inst[sign], 59)
    return col


def _car(p: _Px, look: Look, buf: SurfaceBuffers) -> np.ndarray:
    a, b = p.ta, p.tb  # near face: a in [-1, 1] across, b in [0, 1] up; side: a in [0, 1] along
    side, front = p.part == 2, p.part == 1
    col = _pick(look.cars, p.inst, 61) * np.where(side, 0.85, 1.0).astype(np.float32)[:, None]
    col = col * (0.9 + 0.2 * value_noise(a * 6.0, b * 6.0, 67))[:, None]
    rear_glass = (b > 0.62) & (np.abs(a) < 0.72 - 0.2 * (b - 0.6))
    glass = (b < 0.93) & np.where(side, b > 0.64, rear_glass)
    col[glass] = _c(look.car_glass) * (0.8 + 0.6 * (b[glass, None] - 0.6))
    tyre = b < 0.14
    col[tyre] = 0.06
    lamp = ~side & (b > 0.42) & (b < 0.52) & (np.abs(a) > 0.66) & (np.abs(a) < 0.95)
    col[lamp & ~front] = _c(look.tail_light)
    col[lamp & front] = _c(look.head_light)
    plate = ~side & (np.abs(a) < 0.22) & (b > 0.2) & (b < 0.3)
    col[plate] = 0.85
    return col


def _person(p: _Px, look: Look, buf: SurfaceBuffers) -> np.ndarray:
    col = np.where((p.part == 0)[:, None], _pick(look.skins, p.inst, 71), _pick(look.tops, p.inst, 73))
    col = np.where((p.part == 2)[:, None], _pick(look.bottoms, p.inst, 79), col)
    return col * (0.85 + 0.3 * value_noise(p.ta * 20.0, p.tb * 20.0, 83))[:, None]


# indexed by class: sky, building, road, sidewalk, vegetation, pole, car, person
_SHADERS = (_sky, _building, _road, _sidewalk, _vegetation, _pole, _car, _person)


def shade(buf: SurfaceBuffers, look: Look) -> np.ndarray:
    """Colour every pixel with its class shader -> [H, W, 3] float32 linear RGB (unclipped)."""
    h, w = buf.label.shape
    flat = buf.label.ravel()
    order = np.argsort(flat, kind="stable")  # one sort, then each class is a contiguous run of pixel indices
    counts = np.bincount(flat, minlength=len(_SHADERS))
    out = np.empty((h * w, 3), np.float32)
    start = 0
    for cls, n in enumerate(counts):
        idx = order[start : start + n]
        start += n
        if n == 0:
            continue
        gathered = [arr.ravel()[idx] for arr in (buf.ta, buf.tb, buf.inst, buf.part)]
        px = _Px(*gathered, idx // w, idx % w)
        out[idx] = _SHADERS[cls](px, look, buf)
    return out.reshape(h, w, 3)


def _blur(img: np.ndarray) -> np.ndarray:
    """Separable 5-tap binomial blur with edge replication (numpy only, deterministic)."""
    k = np.array([1, 4, 6, 4, 1], np.float32) / 16
    h, w = img.shape[:2]
    p = np.pad(img, ((2, 2), (0, 0), (0, 0)), mode="edge")
    img = sum(c * p[i : i + h] for i, c in enumerate(k))
    p = np.pad(img, ((0, 0), (2, 2), (0, 0)), mode="edge")
    return sum(c * p[:, i : i + w] for i, c in enumerate(k))


def finish(rgb: np.ndarray, depth: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Haze, global lighting, optics blur and sensor noise -> [H, W, 3] uint8."""
    haze = np.where(np.isfinite(depth), 1.0 - np.exp(-depth / look.visibility), 0.0).astype(np.float32)
    img = rgb + (_c(look.fog) - rgb) * haze[..., None]
    img = ((img - 0.5) * look.contrast + 0.5) * (look.gain * _c(look.cast))
    if look.blur:
        img = _blur(img)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(look.noise)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
