"""The pyrender (OpenGL) motion-map backend against the independent numpy ray caster.

Runs wherever an off-screen OpenGL context can be made (CI installs libosmesa6); elsewhere the GL
tests are skipped with the reason. Scenes are small (48 x 64) meshes built here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _raycast_reference import raycast_motion_map

from comovi_core.body.camera import PinholeCamera
from comovi_core.errors import BackendUnavailableError
from comovi_core.motion_map import render_gl
from comovi_core.motion_map.colors import vertex_colors, vertex_normals

ROOT = Path(__file__).resolve().parents[1]
COLOR_TOL = 2.0 / 255.0  # 8-bit read-back (<= 0.5/255) plus float32 vs float64 shading
DEPTH_RTOL = 1e-3
MAX_COVERAGE_MISMATCH = 0.01  # fraction of the image, silhouette pixels only
SHADINGS = ("comovi_v1", "flat")
# Deliberately asymmetric intrinsics: fx != fy and an off-centre principal point.
CAMERA = PinholeCamera((70.0, 64.0), (33.3, 22.6), (48, 64))


def _gl_skip_reason() -> str | None:
    """Why the GL tests cannot run here, or None. Never imports OpenGL before render_gl chooses a platform."""
    for module in ("pyrender", "OpenGL"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install pyrender-maintained PyOpenGL)"
    if not render_gl.is_available():
        return "no off-screen OpenGL context can be made: " + render_gl.unavailable_reason()
    return None


def test_platform_preference():
    """EGL on a GPU, else OSMesa, else EGL on a software rasteriser (no GL needed for this test)."""
    hw, sw, failed = (True, "NVIDIA H100/PCIe/SSE2"), (True, "llvmpipe (LLVM 15.0.6, 256 bits)"), (False, "no EGL")
    assert render_gl._pick({"egl": hw, "osmesa": sw}) == "egl"
    assert render_gl._pick({"egl": sw, "osmesa": sw}) == "osmesa"
    assert render_gl._pick({"egl": failed, "osmesa": sw}) == "osmesa"
    assert render_gl._pick({"egl": sw, "osmesa": failed}) == "egl"
    assert render_gl._pick({"egl": failed, "osmesa": failed}) is None


def test_unavailable_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(render_gl, "_probe", lambda: (False, "no EGL, no OSMesa"))
    assert not render_gl.is_available() and render_gl.unavailable_reason() == "no EGL, no OSMesa"
    with pytest.raises(BackendUnavailableError) as info:
        render_gl.require_available()
    message = str(info.value)
    for needed in (
        "no EGL, no OSMesa",
        "pip install pyrender-maintained PyOpenGL",
        "apt install libosmesa6",
        "--backend torch",
    ):
        assert needed in message


@pytest.fixture(scope="module")
def gl():
    """Skips the test, saying why, when no off-screen OpenGL context can be made."""
    reason = _gl_skip_reason()
    if reason is not None:
        pytest.skip(reason)


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def uv_sphere(center, radius: float, rings: int = 14, segments: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Closed UV sphere with outward winding: (V, 3) float64 vertices, (F, 3) int64 faces."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]  # interior latitudes
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring_pts = np.stack((np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)), -1).reshape(-1, 3)
    verts = np.concatenate(([[0, 1, 0]], ring_pts, [[0, -1, 0]])) * radius + np.asarray(center, float)
    top, bottom = 0, len(verts) - 1

    def ring(i: int, j: int) -> int:  # vertex index of latitude i, longitude j
        return 1 + i * segments + j % segments

    faces = []
    for j in range(segments):
        faces.append((top, ring(0, j + 1), ring(0, j)))
        faces.append((bottom, ring(rings - 2, j), ring(rings - 2, j + 1)))
        for i in range(rings - 2):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [(a, b, d), (a, d, c)]
    return verts, np.asarray(faces, dtype=np.int64)


def merge(*meshes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate meshes -> vertices (V, 3), faces (F, 3), object id per face (F,)."""
    verts, faces, objects, offset = [], [], [], 0
    for k, (v, f) in enumerate(meshes):
        verts.append(v)
        faces.append(f + offset)
        objects.append(np.full(len(f), k))
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(objects)


def scene(name: str, frame: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """vertices (V, 3) OpenCV camera space, faces (F, 3), part_ids (V,), object id per face (F,)."""
    rng = np.random.default_rng(7)
    shift = np.array([0.04, -0.03, 0.05]) * frame
    if name == "sphere":
        verts, faces, objects = merge(uv_sphere(np.array([0.05, -0.1, 2.5]) + shift, 0.6))
    elif name == "two_spheres":  # the nearer, smaller sphere hides part of the farther one
        verts, faces, objects = merge(
            uv_sphere(np.array([-0.25, 0.1, 3.2]) + shift, 0.7), uv_sphere(np.array([0.35, -0.15, 2.2]) - shift, 0.35)
        )
    else:
        raise ValueError(name)
    return verts, faces, rng.integers(0, 24, len(verts)), objects


def render_gl_frames(
    frames: list[np.ndarray],
    faces: np.ndarray,
    part_ids: np.ndarray,
    shading: str,
    camera: PinholeCamera = CAMERA,
    backend=render_gl,
):
    """Colours and normals from comovi_core.motion_map.colors, then one render_frames call."""
    vertices = torch.as_tensor(np.stack(frames), dtype=torch.float32)
    faces_t = torch.as_tensor(faces)
    normals = vertex_normals(vertices, faces_t)
    colors = vertex_colors(normals, torch.as_tensor(part_ids))
    return backend.render_frames(vertices, faces_t, colors, normals, camera, shading)


def reference(verts, faces, part_ids, shading, camera: PinholeCamera = CAMERA):
    (fx, fy), (cx, cy) = camera.focal_length, camera.principal_point
    return raycast_motion_map(verts, faces, part_ids, fx, fy, cx, cy, camera.height, camera.width, shading)


# --------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------


def neighbourhood_any(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> True where mask holds anywhere in the 3 x 3 neighbourhood."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.any([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def assert_same_picture(image, depth, ref_image, ref_depth, ref_face, objects, what: str) -> None:
    """image (H, W, 3), depth (H, W) of the backend under test vs the reference's.

    Coverage may differ only on silhouette pixels (<= 1 %); where both cover, colour must agree within
    2/255 and depth within 1e-3 relative. The only exceptions allowed are a few pixels on an occlusion
    boundary between two objects, where a pixel centre lying on the front object's outline can be
    given to either object.
    """
    image, depth = np.asarray(image, np.float64), np.asarray(depth, np.float64)
    covered, ref_covered = depth > 0, ref_depth > 0
    assert image.shape == ref_image.shape and depth.shape == ref_depth.shape

    assert np.all(image[~covered] == 1.0), f"{what}: background must be exactly white"
    assert np.all((image >= 0) & (image <= 1)), f"{what}: values outside [0, 1]"

    mismatch = covered ^ ref_covered
    on_silhouette = neighbourhood_any(ref_covered) & neighbourhood_any(~ref_covered)
    assert mismatch.mean() <= MAX_COVERAGE_MISMATCH, f"{what}: coverage differs on {mismatch.sum()} pixels"
    assert np.all(on_silhouette[mismatch]), (
        f"{what}: coverage differs away from the silhouette at {np.argwhere(mismatch & ~on_silhouette)[:5].tolist()}"
    )

    both = covered & ref_covered
    assert both.sum() > 0.5 * ref_covered.sum(), f"{what}: too little overlap to compare"
    color_err = np.abs(image - ref_image).max(-1)
    depth_err = np.abs(depth - ref_depth) / np.maximum(ref_depth, 1e-9)
    bad = both & ((color_err > COLOR_TOL) | (depth_err > DEPTH_RTOL))
    object_map = np.where(ref_face >= 0, objects[np.maximum(ref_face, 0)], -1)
    occlusion_edge = np.zeros_like(bad)
    for k in np.unique(objects):
        occlusion_edge |= neighbourhood_any(object_map == k) & neighbourhood_any((object_map != k) & ref_covered)
    where = np.argwhere(bad & ~occlusion_edge)[:5].tolist()
    assert not np.any(bad & ~occlusion_edge), (
        f"{what}: pixels differ (max colour error {color_err[both].max() * 255:.2f}/255, "
        f"max depth error {depth_err[both].max():.2e}) at {where}"
    )
    assert bad.sum() <= max(2, 0.005 * both.sum()), f"{what}: {bad.sum()} occlusion-edge pixels differ"


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def test_import_does_no_io_and_no_env_change():
    """Importing the module must not import OpenGL/pyrender nor touch os.environ (runs without GL too)."""
    code = (
        "import os, sys; before = dict(os.environ); import comovi_core.motion_map.render_gl; "
        "assert 'OpenGL' not in sys.modules and 'pyrender' not in sys.modules, 'OpenGL imported'; "
        "assert dict(os.environ) == before, 'environment changed'"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("shading", SHADINGS)
@pytest.mark.parametrize("name", ("sphere", "two_spheres"))
def test_matches_raycast_reference(gl, name, shading):
    frames = [scene(name, t) for t in range(3)]  # three frames: geometry is replaced per frame
    _, faces, part_ids, objects = frames[0]
    images, depth = render_gl_frames([f[0] for f in frames], faces, part_ids, shading)
    assert images.shape == (3, 48, 64, 3) and images.dtype == torch.float32
    assert depth.shape == (3, 48, 64) and depth.dtype == torch.float32
    for t, (verts, *_rest) in enumerate(frames):
        ref_image, ref_depth, ref_face = reference(verts, faces, part_ids, shading)
        assert_same_picture(
            images[t].numpy(), depth[t].numpy(), ref_image, ref_depth, ref_face, objects, f"{name}/{shading}/frame {t}"
        )


def test_pixel_centres_at_half_integers(gl):
    """Pixel (r, c) samples (c + 0.5, r + 0.5) to within 0.1 px: screen-aligned rectangles whose edges lie
    0.1 px outside, then 0.1 px inside, the centres of the outermost covered pixels must cover exactly
    columns 10..40 and rows 5..30."""
    (fx, fy), (cx, cy), z = CAMERA.focal_length, CAMERA.principal_point, 2.0
    expected = np.zeros((48, 64), dtype=bool)
    expected[5:31, 10:41] = True
    for u0, u1, v0, v1 in ((10.4, 40.6, 5.4, 30.6), (9.6, 41.4, 4.6, 31.4)):
        x0, x1, y0, y1 = (u0 - cx) / fx * z, (u1 - cx) / fx * z, (v0 - cy) / fy * z, (v1 - cy) / fy * z
        verts = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])
        faces = np.array([[0, 1, 2], [0, 2, 3]])
        _, depth = render_gl_frames([verts], faces, np.zeros(4, dtype=np.int64), "flat")
        np.testing.assert_array_equal(depth[0].numpy() > 0, expected, err_msg=f"edges at u {u0}..{u1}, v {v0}..{v1}")
        np.testing.assert_allclose(depth[0].numpy()[expected], z, rtol=DEPTH_RTOL)


def test_two_sided_and_closest_surface(gl):
    """A triangle seen from its back is drawn; of two overlapping squares the nearer one wins."""
    near, far = 2.0, 3.0

    def square(z):
        return np.array([[-0.5, -0.5, z], [0.5, -0.5, z], [0.5, 0.5, z], [-0.5, 0.5, z]])

    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 6, 5], [4, 7, 6]])  # far square wound the other way
    verts = np.concatenate((square(far), square(near) * [0.3, 0.3, 1]))
    _, depth = render_gl_frames([verts], faces, np.zeros(8, dtype=np.int64), "flat")
    d = depth[0].numpy()
    r, c = int(CAMERA.principal_point[1]), int(CAMERA.principal_point[0])
    assert abs(d[r, c] - near) < 1e-3 * near  # the nearer, smaller square covers the centre
    assert abs(d[r, c + 8] - far) < 1e-3 * far  # the farther one shows around it (5 vs 12 px radius)
    for flipped in (faces, faces[:, ::-1].copy()):
        _, depth = render_gl_frames([verts], flipped, np.zeros(8, dtype=np.int64), "flat")
        assert (depth[0].numpy() > 0).sum() == (d > 0).sum()


def test_no_antialiasing_on_a_flat_colour(gl):
    """Flat shading of one colour: every covered pixel has exactly that colour (no edge blended with the
    background or with the sphere behind, as pyrender's 4x multisampling would do on EGL)."""
    verts, faces, _, _ = scene("two_spheres")
    normals = torch.zeros(1, len(verts), 3)
    normals[..., 2] = -1.0
    colors = torch.tensor([0.2, 0.6, 0.4]).expand(1, len(verts), 3).contiguous()
    images, depth = render_gl.render_frames(
        torch.as_tensor(verts[None], dtype=torch.float32), torch.as_tensor(faces), colors, normals, CAMERA, "flat"
    )
    covered = depth[0] > 0
    expected = torch.round(torch.tensor([0.2, 0.6, 0.4]) * 255) / 255
    assert covered.sum() > 100
    torch.testing.assert_close(images[0][covered], expected.expand(int(covered.sum()), 3), atol=0.5 / 255, rtol=0)
    assert torch.all(images[0][~covered] == 1.0)


def test_require_available_and_errors(gl):
    render_gl.require_available()  # no error where the GL tests run
    with pytest.raises(ValueError, match="shading"):
        render_gl_frames([scene("sphere")[0]], scene("sphere")[1], scene("sphere")[2], "phong")


@pytest.mark.parametrize("shading", SHADINGS)
def test_matches_torch_backend(gl, shading):
    """Both backends draw the same picture (same tolerances as against the ray caster)."""
    if importlib.util.find_spec("comovi_core.motion_map.raster_torch") is None:
        pytest.skip("comovi_core.motion_map.raster_torch is not written yet")
    from comovi_core.motion_map import raster_torch

    frames = [scene("two_spheres", t) for t in range(2)]
    _, faces, part_ids, objects = frames[0]
    gl_images, gl_depth = render_gl_frames([f[0] for f in frames], faces, part_ids, shading)
    torch_images, torch_depth = render_gl_frames([f[0] for f in frames], faces, part_ids, shading, backend=raster_torch)
    for t, (verts, *_rest) in enumerate(frames):
        # the reference's face map tells which object is where, for the occlusion-edge allowance
        _, _, ref_face = reference(verts, faces, part_ids, shading)
        assert_same_picture(
            gl_images[t].numpy(),
            gl_depth[t].numpy(),
            torch_images[t].numpy(),
            torch_depth[t].numpy(),
            ref_face,
            objects,
            f"gl vs torch/{shading}/frame {t}",
        )
