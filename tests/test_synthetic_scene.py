"""The synthetic driving-scene generator: API contract, determinism, domain split, exactness of the flow."""

from __future__ import annotations

import numpy as np
import pytest

from stpl.data.synthetic_scene import (
    CAR,
    DOMAINS,
    PERSON,
    ROAD,
    SIDEWALK,
    SYNTHETIC_CLASSES,
    SyntheticClip,
    _Layout,
    _render,
    generate_clip,
)


def _warp_agreement(clip: SyntheticClip, gap: int) -> float:
    """Fraction of pixels whose label equals the label at round(p + flow) in frame t - gap (inside only)."""
    _, h, w = clip.labels.shape
    ys, xs = np.mgrid[0:h, 0:w]
    same = total = 0
    for t in range(gap, clip.labels.shape[0]):
        tx = np.rint(xs + clip.flows[t, ..., 0]).astype(np.int64)
        ty = np.rint(ys + clip.flows[t, ..., 1]).astype(np.int64)
        inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
        same += int((clip.labels[t - gap][ty[inside], tx[inside]] == clip.labels[t][inside]).sum())
        total += int(inside.sum())
    return same / total


@pytest.mark.parametrize(("height", "width"), [(33, 47), (61, 83)])
def test_shapes_and_dtypes(height: int, width: int) -> None:
    clip = generate_clip(3, "source", height, width, 4)
    assert clip.frames.shape == (4, height, width, 3) and clip.frames.dtype == np.uint8
    assert clip.labels.shape == (4, height, width) and clip.labels.dtype == np.uint8
    assert clip.flows.shape == (4, height, width, 2) and clip.flows.dtype == np.float32
    assert clip.labels.max() < len(SYNTHETIC_CLASSES)
    assert np.isfinite(clip.flows).all()
    assert SYNTHETIC_CLASSES == ("sky", "building", "road", "sidewalk", "vegetation", "pole", "car", "person")
    assert DOMAINS == ("source", "target")


def test_deterministic_per_seed() -> None:
    a = generate_clip(7, "target", 33, 47, 3)
    b = generate_clip(7, "target", 33, 47, 3)
    for x, y in zip((a.frames, a.labels, a.flows), (b.frames, b.labels, b.flows), strict=True):
        np.testing.assert_array_equal(x, y)
    c = generate_clip(8, "target", 33, 47, 3)
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(a.frames, c.frames)


def test_layout_is_independent_of_clip_length() -> None:
    short = generate_clip(5, "source", 33, 47, 2)
    long = generate_clip(5, "source", 33, 47, 5)
    np.testing.assert_array_equal(short.labels, long.labels[:2])
    np.testing.assert_array_equal(short.flows, long.flows[:2])


def test_domains_share_geometry_but_not_appearance() -> None:
    src = generate_clip(11, "source", 61, 83, 3)
    tgt = generate_clip(11, "target", 61, 83, 3)
    np.testing.assert_array_equal(src.labels, tgt.labels)
    np.testing.assert_array_equal(src.flows, tgt.flows)
    diff = np.abs(src.frames.astype(np.int16) - tgt.frames.astype(np.int16))
    assert diff.mean() > 20  # measured ~55 grey levels
    # target is dusk: darker on average, but not black (measured 0.66 of the source's mean)
    assert 0.3 * src.frames.mean() < tgt.frames.mean() < 0.9 * src.frames.mean()


def test_all_classes_appear() -> None:
    seen = np.zeros(len(SYNTHETIC_CLASSES), np.int64)
    for seed in range(4):
        clip = generate_clip(seed, "source", 96, 128, 2)
        seen += np.bincount(clip.labels.ravel(), minlength=len(SYNTHETIC_CLASSES))
    assert (seen > 0).all(), dict(zip(SYNTHETIC_CLASSES, seen.tolist(), strict=True))


@pytest.mark.parametrize("gap", [1, 2])
def test_labels_follow_the_flow(gap: int) -> None:
    # measured agreement per clip (seeds 0-7, 6 frames, sizes 33x47 to 120x160): 0.963-0.987 (mean 0.975)
    # for gap 1, 0.936-0.983 (mean 0.963) for gap 2; the rest are occlusions/disocclusions and pixels on
    # label boundaries after rounding
    for seed, size in ((0, (61, 83)), (1, (33, 47)), (2, (96, 128))):
        clip = generate_clip(seed, "source", *size, 5, flow_gap=gap)
        assert _warp_agreement(clip, gap) > 0.92


def test_flow_zero_before_gap_and_nontrivial_after() -> None:
    clip = generate_clip(4, "source", 61, 83, 5, flow_gap=3)
    assert not clip.flows[:3].any()
    magnitude = np.linalg.norm(clip.flows[3:], axis=-1)
    assert magnitude.mean() > 1.0  # measured 2.0 px mean, 9.5 px max at this size over 3 frames
    assert magnitude.max() > 5.0


def test_static_flow_is_exact_and_movers_differ() -> None:
    """Static surfaces get exactly the flow of the camera motion; cars and persons add their own motion."""
    moving = 0
    for seed in range(4):
        layout = _Layout(seed)
        cam = layout.camera(96, 128)
        canvas = _render(layout, cam, 6, 1, 96, 128)
        sx, sy = canvas.static_flow()
        deviation = np.hypot(canvas.fx - sx, canvas.fy - sy)
        movers = np.isin(canvas.label, (CAR, PERSON))
        # float64 flows of ~10 px from the same camera formulas (measured 0): 1e-9 allows ~1e5 ulps and still
        # fails any real motion; the movers' own motion is checked against 0.2 px below
        assert deviation[~movers].max() < 1e-9  # sky, ground, facades and poles are static
        moving += int((deviation[movers] > 0.2).sum())
        # ground points: flow maps each pixel onto the projection of the same ground point one frame earlier
        x0, z0 = cam.position(5)
        x1, z1 = cam.position(6)
        v, u = np.nonzero(canvas.depth < np.inf)
        ground = np.isin(canvas.label[v, u], (ROAD, SIDEWALK))
        v, u = v[ground], u[ground]
        depth = canvas.depth[v, u]
        px = x1 + depth * (u - cam.u0) / cam.focal  # world X of the ground point, Z = z1 + depth
        u_prev = cam.u0 + cam.focal * (px - x0) / (z1 + depth - z0)
        v_prev = cam.v0 + cam.focal * cam.height / (z1 + depth - z0)
        # float64 projections of pixel coordinates < 200 (ulp 3e-14): 1e-6 is loose for rounding, tight for geometry
        np.testing.assert_allclose(u + canvas.fx[v, u], u_prev, atol=1e-6)
        np.testing.assert_allclose(v + canvas.fy[v, u], v_prev, atol=1e-6)
    assert moving > 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domain": "night"}, "domain"),
        ({"height": 15}, "16"),
        ({"width": 8}, "16"),
        ({"num_frames": 0}, "num_frames"),
        ({"flow_gap": 0}, "flow_gap"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"seed": 0, "domain": "source", "height": 32, "width": 32, "num_frames": 2, "flow_gap": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        generate_clip(**args)
