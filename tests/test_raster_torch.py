"""The pure-PyTorch rasterizer against the independent numpy ray caster (``_raycast_reference``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _raycast_reference import raycast_motion_map

from comovi_core.body.camera import PinholeCamera
from comovi_core.body.mannequin import uv_sphere_faces
from comovi_core.errors import CoMoViError
from comovi_core.motion_map import raster_torch
from comovi_core.motion_map.colors import vertex_colors, vertex_normals
from comovi_core.motion_map.raster_torch import NEAR_PLANE, render_depth, render_frames
from comovi_core.motion_map.render import render_motion_map

COLOR_TOL = 2 / 255
DEPTH_RTOL = 1e-4
SHADINGS = ("comovi_v1", "flat")


# ---------------------------------------------------------------- meshes


def uv_sphere(rings: int, segs: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit UV sphere: vertices (rings * segs + 2, 3), outward faces (2 * rings * segs, 3)."""
    theta = np.pi * np.arange(1, rings + 1) / (rings + 1)
    phi = 2 * np.pi * np.arange(segs) / segs
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring_pts = np.stack((np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)), -1).reshape(-1, 3)
    verts = np.concatenate(([[0.0, 1.0, 0.0]], ring_pts, [[0.0, -1.0, 0.0]]))
    return verts, uv_sphere_faces(rings, segs)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def random_rotation_about(rng: np.random.Generator, angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about a random axis (Rodrigues)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def sphere(rng, centre, radius, rings=14, segs=22) -> tuple[np.ndarray, np.ndarray]:
    """A randomly rotated UV sphere (so no vertex normal has an exactly zero z)."""
    verts, faces = uv_sphere(rings, segs)
    return verts @ random_rotation(rng).T * radius + np.asarray(centre), faces


def merge(*meshes) -> tuple[np.ndarray, np.ndarray]:
    verts, faces, offset = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def big_tent() -> tuple[np.ndarray, np.ndarray]:
    """Four large triangles meeting at an apex, spanning much more than the image, from z 1.5 to 6."""
    verts = np.array([[-9.0, -7.0, 6.0], [9.0, -6.0, 5.5], [8.0, 7.0, 1.5], [-8.5, 6.5, 2.0], [0.3, 0.2, 2.5]])
    faces = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    return verts, faces


CAMERA = PinholeCamera((55.0, 52.0), (33.3, 23.7), (48, 64))
CAMERA_2 = PinholeCamera((47.0, 49.5), (27.1, 21.4), (40, 56))


# ---------------------------------------------------------------- helpers


def torch_render(vertices: np.ndarray, faces: np.ndarray, part_ids: np.ndarray, camera, shading, normal_faces=None):
    """One frame through ``render_frames``; colours and normals from ``colors`` (from ``normal_faces``)."""
    verts = torch.from_numpy(np.asarray(vertices, np.float32))[None]  # (1, V, 3)
    tri = torch.from_numpy(faces)
    normals = vertex_normals(verts, torch.from_numpy(faces if normal_faces is None else normal_faces))
    colors = vertex_colors(normals, torch.from_numpy(part_ids))
    images, depth = render_frames(verts, tri, colors, normals, camera, shading)
    return images[0].numpy(), depth[0].numpy()


def reference(vertices: np.ndarray, faces: np.ndarray, part_ids: np.ndarray, camera, shading):
    (fx, fy), (cx, cy) = camera.focal_length, camera.principal_point
    verts = np.asarray(vertices, np.float32).astype(np.float64)  # the very numbers the backend sees
    return raycast_motion_map(verts, faces, part_ids, fx, fy, cx, cy, camera.height, camera.width, shading)


def touches_background(pixels: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """(K, 2) pixel (row, col) -> (K,) True where the pixel or one of its 8 neighbours is uncovered."""
    padded = np.pad(covered, 1, constant_values=False)
    rows, cols = pixels[:, 0] + 1, pixels[:, 1] + 1
    near = np.zeros(len(pixels), dtype=bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            near |= ~padded[rows + dr, cols + dc]
    return near


def assert_matches_reference(vertices, faces, part_ids, camera, shading, reference_faces=None) -> int:
    """Compare one frame with the ray caster; returns the number of pixels covered in the reference.

    ``reference_faces``: the faces the backend is expected to draw (default: all of them); the
    backend gets all faces and colours from the normals of ``reference_faces``.
    """
    ref_faces = faces if reference_faces is None else reference_faces
    image, depth = torch_render(vertices, faces, part_ids, camera, shading, normal_faces=ref_faces)
    ref_image, ref_depth, ref_face = reference(vertices, ref_faces, part_ids, camera, shading)
    covered, ref_covered = depth > 0, ref_face >= 0

    assert np.all(image[~covered] == 1.0), "background must be exactly white"
    assert np.all(depth[~covered] == 0.0)
    assert np.all((image[covered] >= 0) & (image[covered] <= 1))

    both = covered & ref_covered
    color_err = np.abs(image[both] - ref_image[both]).max(initial=0.0)
    assert color_err <= COLOR_TOL, f"colour differs from the reference by {color_err * 255:.2f}/255"
    depth_err = np.abs(depth[both] / ref_depth[both] - 1).max(initial=0.0)
    assert depth_err <= DEPTH_RTOL, f"depth differs from the reference by {depth_err:.2e} (relative)"

    differ = np.argwhere(covered != ref_covered)  # (K, 2)
    assert len(differ) <= max(2, 0.01 * ref_covered.sum()), f"{len(differ)} pixels differ in coverage"
    on_silhouette = touches_background(differ, covered) & touches_background(differ, ref_covered)
    assert on_silhouette.all(), f"coverage differs away from silhouettes at {differ[~on_silhouette].tolist()}"
    return int(ref_covered.sum())


# ---------------------------------------------------------------- against the reference


@pytest.mark.parametrize("shading", SHADINGS)
@pytest.mark.parametrize("camera", [CAMERA, CAMERA_2], ids=["48x64", "40x56"])
def test_sphere_matches_reference(shading, camera):
    rng = np.random.default_rng(1)
    verts, faces = sphere(rng, (0.15, -0.1, 3.0), 0.9)
    covered = assert_matches_reference(verts, faces, rng.integers(0, 24, len(verts)), camera, shading)
    assert covered > 0.15 * camera.height * camera.width


@pytest.mark.parametrize("shading", SHADINGS)
def test_overlapping_spheres_nearest_wins(shading):
    rng = np.random.default_rng(2)
    back = sphere(rng, (-0.3, 0.1, 4.0), 1.0)
    front = sphere(rng, (0.5, -0.2, 2.8), 0.6)
    verts, faces = merge(back, front)
    part_ids = rng.integers(0, 24, len(verts))
    assert_matches_reference(verts, faces, part_ids, CAMERA, shading)
    # the front sphere really hides part of the back one
    _, depth = torch_render(verts, faces, part_ids, CAMERA, shading)
    _, back_depth = torch_render(*back, part_ids[: len(back[0])], CAMERA, shading)
    hidden = (depth > 0) & (back_depth > 0) & (depth < back_depth - 0.5)
    assert hidden.sum() > 50


@pytest.mark.parametrize("shading", SHADINGS)
def test_triangles_larger_than_the_image_are_perspective_correct(shading):
    """A tent of 4 huge, steeply slanted triangles (depth 1.5-6) plus a small sphere in front of it."""
    rng = np.random.default_rng(3)
    verts, faces = merge(big_tent(), sphere(rng, (-0.2, 0.1, 2.0), 0.3, rings=8, segs=12))
    part_ids = rng.integers(0, 24, len(verts))
    covered = assert_matches_reference(verts, faces, part_ids, CAMERA, shading)
    assert covered == CAMERA.height * CAMERA.width  # the tent fills the picture


@pytest.mark.parametrize("shading", SHADINGS)
def test_mannequin_matches_reference(shading):
    """The stand-in body (13,684 small faces, overlapping ellipsoids) spanning most of a 64x48 picture's height.

    The body is turned a little about a random axis: its symmetric rest geometry has vertex normals with
    an exactly zero z, whose sign - and so the semantic colour - would come down to float rounding.
    """
    from comovi_core.body.mannequin import demo_motion
    from comovi_core.body.smpl import camera_vertices, load_body_model

    model = load_body_model(None)
    with torch.no_grad():
        verts = camera_vertices(model, demo_motion(2, 64, 48)).vertices[1].numpy().astype(np.float64)
    centre = (verts.min(0) + verts.max(0)) / 2
    verts = (verts - centre) @ random_rotation_about(np.random.default_rng(7), 0.15).T + (0.0, 0.0, 4.0)
    camera = PinholeCamera((128.0, 126.0), (24.3, 31.6), (64, 48))
    covered = assert_matches_reference(verts, model.faces.numpy(), model.part_ids.numpy(), camera, shading)
    assert covered > 300


def test_sphere_behind_the_near_plane_draws_only_faces_in_front():
    """The camera sits inside a sphere; faces reaching z <= NEAR_PLANE are skipped whole."""
    rng = np.random.default_rng(4)
    inner = sphere(rng, (0.1, 0.05, 0.25), 0.6, rings=16, segs=24)
    verts, faces = merge(inner, sphere(rng, (0.3, 0.2, 0.6), 0.15, rings=8, segs=12))
    kept = faces[(verts[faces][..., 2] > NEAR_PLANE).all(-1)]
    assert 0 < len(kept) < len(faces)
    part_ids = rng.integers(0, 24, len(verts))
    for shading in SHADINGS:
        assert_matches_reference(verts, faces, part_ids, CAMERA, shading, reference_faces=kept)


def test_degenerate_and_behind_camera_faces_draw_nothing():
    verts = np.array(
        [
            [0.0, 0.0, 3.0],
            [1.0, 0.0, 3.0],
            [2.0, 0.0, 3.0],
            [0.0, 1.0, -2.0],
            [1.0, 1.0, -2.0],
            [0.0, 0.0, 0.0],
        ]
    )
    faces = np.array([[0, 1, 2], [3, 4, 0], [0, 1, 5]])  # collinear; partly behind; through the camera centre
    image, depth = torch_render(verts, faces, np.zeros(len(verts), np.int64), CAMERA, "comovi_v1")
    assert np.all(depth == 0) and np.all(image == 1.0)


# ---------------------------------------------------------------- batching and chunking


def moving_spheres(num_frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(5)
    verts, faces = merge(sphere(rng, (0.0, 0.0, 0.0), 0.8), sphere(rng, (0.6, 0.3, -0.7), 0.4), big_tent())
    frames = []
    for t in range(num_frames):
        moved = verts.copy()
        moved[:-5] += (0.15 * math.sin(t), 0.1 * math.cos(t), 3.2 + 0.2 * t)  # spheres move; tent stays
        frames.append(moved)
    vertices = torch.tensor(np.stack(frames), dtype=torch.float32)  # (T, V, 3)
    tri = torch.from_numpy(faces)
    normals = vertex_normals(vertices, tri)
    colors = vertex_colors(normals, torch.from_numpy(rng.integers(0, 24, len(verts))))
    return vertices, tri, colors, normals


@pytest.mark.parametrize("shading", SHADINGS)
def test_batched_frames_equal_single_frames(shading):
    vertices, faces, colors, normals = moving_spheres(5)
    images, depth = render_frames(vertices, faces, colors, normals, CAMERA, shading)
    assert images.shape == (5, 48, 64, 3) and images.dtype == torch.float32
    assert depth.shape == (5, 48, 64) and depth.dtype == torch.float32
    for t in range(5):
        one = slice(t, t + 1)
        one_image, one_depth = render_frames(vertices[one], faces, colors[one], normals[one], CAMERA, shading)
        assert torch.equal(images[t], one_image[0]) and torch.equal(depth[t], one_depth[0])
    assert not torch.equal(images[0], images[4])  # the frames really differ


def test_small_work_chunks_give_identical_pictures(monkeypatch):
    """Frame chunks of one frame, row groups of a few rows and pair groups of a few pixels change nothing."""
    vertices, faces, colors, normals = moving_spheres(3)
    images, depth = render_frames(vertices, faces, colors, normals, CAMERA_2, "comovi_v1")
    monkeypatch.setattr(raster_torch, "MAX_BUFFER_PIXELS", CAMERA_2.height * CAMERA_2.width)
    monkeypatch.setattr(raster_torch, "MAX_ROWS", 40)
    monkeypatch.setattr(raster_torch, "MAX_PAIRS", 500)
    split_into, real_ranges = [], raster_torch._ranges

    def counting_ranges(sizes, budget):
        found = real_ranges(sizes, budget)
        split_into.append(len(found))
        return found

    monkeypatch.setattr(raster_torch, "_ranges", counting_ranges)
    chunked_images, chunked_depth = render_frames(vertices, faces, colors, normals, CAMERA_2, "comovi_v1")
    assert torch.equal(images, chunked_images) and torch.equal(depth, chunked_depth)
    assert max(split_into) > 3  # the work really was split


def test_depth_alone_is_bit_identical_to_the_rendered_depth(monkeypatch):
    """``render_depth`` (the fit's visibility test) draws the same depth as ``render_frames`` (checked against the
    ray caster above), also in small chunks of frames, rows and shaded pixels, and from float64 vertices."""
    vertices, faces, colors, normals = moving_spheres(3)
    _, depth = render_frames(vertices, faces, colors, normals, CAMERA_2, "comovi_v1")
    assert int((depth > 0).sum()) > 1000
    assert torch.equal(render_depth(vertices, faces, CAMERA_2), depth)
    assert torch.equal(render_depth(vertices.double(), faces.int(), CAMERA_2), depth)
    monkeypatch.setattr(raster_torch, "MAX_BUFFER_PIXELS", CAMERA_2.height * CAMERA_2.width)
    monkeypatch.setattr(raster_torch, "MAX_ROWS", 40)
    monkeypatch.setattr(raster_torch, "MAX_SHADE_PIXELS", 700)
    assert torch.equal(render_depth(vertices, faces, CAMERA_2), depth)
    with pytest.raises(CoMoViError, match=r"vertices must be \(T, V, 3\)"):
        render_depth(vertices[0], faces, CAMERA_2)


@pytest.mark.parametrize("focal", [64.0, 50.0], ids=["vertices-on-centres", "vertices-near-centres"])
def test_watertight_where_edges_pass_through_pixel_centres(focal):
    """A grid whose vertices project onto (or within rounding of) pixel centres, so that shared edges run
    through pixel centres, in front of a back plane: no pixel inside the grid may show the back plane."""
    camera = PinholeCamera((focal, focal), (32.0, 24.0), (48, 64))
    z_front, z_back = 2.0, 4.0
    cols, rows = np.arange(4, 60, 3) + 0.5, np.arange(4, 44, 3) + 0.5  # pixel centres
    gy, gx = np.meshgrid((rows - 24) / focal * z_front, (cols - 32) / focal * z_front, indexing="ij")
    grid = np.stack((gx, gy, np.full_like(gx, z_front)), -1).reshape(-1, 3)
    faces = []
    for i in range(len(rows) - 1):
        for j in range(len(cols) - 1):
            a, b, c, d = i * len(cols) + j, i * len(cols) + j + 1, (i + 1) * len(cols) + j, (i + 1) * len(cols) + j + 1
            faces += [(a, b, d), (a, d, c)] if (i + j) % 2 else [(a, b, c), (b, d, c)]  # both diagonal directions
    back = np.array([[-20.0, -20.0, z_back], [20.0, -20.0, z_back], [20.0, 20.0, z_back], [-20.0, 20.0, z_back]])
    verts = np.concatenate((grid, back))
    faces = np.array(faces + [(len(grid), len(grid) + 1, len(grid) + 2), (len(grid), len(grid) + 2, len(grid) + 3)])
    _, depth = torch_render(verts, faces, np.zeros(len(verts), np.int64), camera, "flat")
    centre_r, centre_c = np.meshgrid(np.arange(48) + 0.5, np.arange(64) + 0.5, indexing="ij")
    inside = (centre_r > rows[0]) & (centre_r < rows[-1]) & (centre_c > cols[0]) & (centre_c < cols[-1])
    assert inside.sum() > 1500
    assert np.allclose(depth[inside], z_front, rtol=1e-6), f"{(np.abs(depth[inside] - z_front) > 1e-4).sum()} holes"
    assert np.all(depth > 0)  # the back plane fills the rest


# ---------------------------------------------------------------- contract and errors


def test_render_motion_map_with_torch_backend():
    vertices, faces, _, _ = moving_spheres(4)
    part_ids = torch.zeros(vertices.shape[1], dtype=torch.int64)
    frames = render_motion_map(vertices, faces, part_ids, CAMERA, backend="torch", frames_per_chunk=3)
    assert frames.backend == "torch"
    assert frames.images.shape == (4, 48, 64, 3)
    assert torch.equal(frames.mask, frames.depth > 0)
    assert frames.mask.all()  # the tent fills the picture
    assert float(frames.images.min()) >= 0.2 and float(frames.images.max()) <= 1.0  # comovi_v1 range


def test_bad_inputs_raise_clear_errors():
    vertices, faces, colors, normals = moving_spheres(2)
    with pytest.raises(CoMoViError, match="colors must have the shape"):
        render_frames(vertices, faces, colors[:1], normals, CAMERA, "flat")
    with pytest.raises(CoMoViError, match=r"faces must have shape \(F, 3\)"):
        render_frames(vertices, faces[:, :2], colors, normals, CAMERA, "flat")
    with pytest.raises(CoMoViError, match="integer vertex indices"):
        render_frames(vertices, faces.float(), colors, normals, CAMERA, "flat")
    with pytest.raises(CoMoViError, match="faces index vertices outside"):
        render_frames(vertices, faces + 1, colors, normals, CAMERA, "flat")
    with pytest.raises(CoMoViError, match="unknown shading"):
        render_frames(vertices, faces, colors, normals, CAMERA, "phong")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    vertices, faces, colors, normals = moving_spheres(4)
    cpu_images, cpu_depth = render_frames(vertices, faces, colors, normals, CAMERA, "comovi_v1")
    cuda = [t.cuda() for t in (vertices, faces, colors, normals)]
    images, depth = render_frames(*cuda, CAMERA, "comovi_v1")
    assert images.device.type == "cuda" and depth.device.type == "cuda"
    images, depth = images.cpu(), depth.cpu()
    same = (depth > 0) == (cpu_depth > 0)
    assert (~same).sum() <= 4
    assert torch.allclose(images[same], cpu_images[same], atol=1e-4)
    assert torch.allclose(depth[same], cpu_depth[same], rtol=1e-5)
