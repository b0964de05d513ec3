"""The colour data term of the motion fit (comovi_core.recovery.splat): splat arithmetic, parity with the renderer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.motion_map.colors import vertex_normals
from comovi_core.motion_map.degrade import WAN22_VAE, degrade_motion_map
from comovi_core.motion_map.render import render_motion_map
from comovi_core.recovery.fitting import visible_vertices
from comovi_core.recovery.splat import blur_to, body_splat, projected_vertex_area, splat, splat_cost, splat_targets


def test_one_splat_is_a_unit_gaussian_over_white():
    uv = torch.tensor([[[10.3, 7.6]]], requires_grad=True)
    color = torch.tensor([[[0.2, 0.4, 0.6]]])
    image = splat(uv, color, torch.tensor([[1.0]]), 20, 30, sigma=1.0)

    def g(d):
        return math.exp(-0.5 * d * d) / math.sqrt(2 * math.pi)  # 1D unit Gaussian, sigma 1

    # centre (9.8, 7.1) in pixel-centre units: bilinear shares to (9, 7), (10, 7), (9, 8), (10, 8), each blurred
    shares = {(9, 7): 0.2 * 0.9, (10, 7): 0.8 * 0.9, (9, 8): 0.2 * 0.1, (10, 8): 0.8 * 0.1}
    weight = sum(w * g(10 - x) * g(7 - y) for (x, y), w in shares.items())  # coverage of pixel (row 7, col 10)
    expected = weight * color[0, 0] + (1 - weight)
    torch.testing.assert_close(image[0, 7, 10], expected, atol=1e-6, rtol=0)
    mass = float((1 - image.detach()[..., 0]).sum() / (1 - 0.2))  # coverage summed over the image
    assert abs(mass - 1) < 0.03  # a unit-mass Gaussian, cut at 2.5 sigma
    assert image.shape == (1, 20, 30, 3) and float(image[0, 0, 0].min()) == 1.0  # white far away
    image[0, 7, 10, 0].backward()
    assert float(uv.grad.abs().sum()) > 0  # positions receive gradients


def test_projected_area_sums_to_the_facing_area():
    uv = torch.tensor([[[0.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 2.0]]])
    facing, away = torch.tensor([[0, 2, 1]]), torch.tensor([[0, 1, 2]])  # image y down: (0,2,1) is clockwise on screen
    areas = [float(projected_vertex_area(uv, f).sum()) for f in (facing, away)]
    assert sorted(areas) == [0.0, 2.0]


def _scene(height=192, width=320, frames=3):
    body = load_body_model(None)
    truth = demo_motion(num_frames=frames, height=height, width=width)
    with torch.no_grad():
        posed = camera_vertices(body, truth)
    maps = render_motion_map(posed.vertices, body.faces, body.part_ids, truth.camera, "comovi_v1", "torch").images
    return body, truth, posed, maps


def _splat_of(body, vertices, camera, sigma):
    visible = visible_vertices(vertices, body.faces, body.part_ids, camera)
    area = projected_vertex_area(camera.project(vertices), body.faces) * visible
    return body_splat(vertices, vertex_normals(vertices, body.faces), area, body.part_ids, camera, "comovi_v1", sigma)


def test_splat_of_a_pose_matches_the_rendered_map_blurred_alike():
    """Parity with the rasteriser: the splat of the posed body against its rendered map blurred by the
    same sigma, 192x320 demo frames (measured: mean |difference| 0.017 per channel over body pixels,
    against 0.22 for the map of the next frame's pose)."""
    body, truth, posed, maps = _scene()
    targets, camera = splat_targets(maps, truth.camera, 320, (1.5,))
    with torch.no_grad():
        image = _splat_of(body, posed.vertices, camera, 1.5)
    body_px = (targets[1.5] < 0.98).any(-1)
    same = float((image - targets[1.5]).abs()[body_px].mean())
    other = float((image[:-1] - targets[1.5][1:]).abs()[body_px[1:]].mean())
    assert same < 0.02 and other > 2 * same, (same, other)


def test_colour_cost_is_lowest_at_the_true_pose_on_a_degraded_map():
    """On a VAE-like degraded map (blur, noise, colour shift, mislabelled borders) the colour cost still
    ranks the true pose below nearby wrong ones (an elbow or a shoulder off by 0.3 rad, 5 cm of depth).
    Measured costs: 0.0841 at the truth; 0.0865 (elbow), 0.172 (shoulder), 0.104 (depth)."""
    body, truth, posed, maps = _scene(frames=1)
    degraded = torch.round(degrade_motion_map(maps, WAN22_VAE, seed=0) * 255) / 255
    targets, camera = splat_targets(degraded, truth.camera, 320, (1.5,))
    q = np.concatenate([truth.global_orient, truth.body_pose, truth.transl], -1)[:1]
    costs = []
    for index, change in ((None, 0), (3 + 3 * 17 + 1, 0.3), (3 + 3 * 15 + 2, 0.3), (74, 0.05)):
        moved = torch.tensor(q, dtype=torch.float32).clone()
        if index is not None:
            moved[0, index] += change
        with torch.no_grad():
            vertices = body(
                moved[:, :3], moved[:, 3:72], torch.as_tensor(truth.betas, dtype=torch.float32), moved[:, 72:]
            ).vertices
            costs.append(float(splat_cost(_splat_of(body, vertices, camera, 1.5), targets[1.5])[0]))
    assert costs[0] < min(costs[1:]), costs


def test_blur_keeps_flat_images_and_spreads_an_edge():
    flat = torch.full((1, 9, 9, 3), 0.3)
    torch.testing.assert_close(blur_to(flat, 1.2), flat)
    edge = torch.zeros(1, 1, 21, 1)
    edge[..., 10:, :] = 1
    out = blur_to(edge, 1.0)[0, 0, :, 0]
    assert abs(float(out[10]) - 0.69) < 0.02 and abs(float(out[9]) - 0.31) < 0.02  # Phi(0.5), Phi(-0.5)


@pytest.mark.slow  # minutes on 2 cores: run by the CI's second step (pytest -m slow)
def test_colour_stage_improves_the_fit_on_a_degraded_map():
    """End to end on the VAE-like degraded ``arms`` map (4 frames, 144x256, 8-bit): the colour stage
    brings the fit closer to the truth than the label summaries alone (measured: MPJPE 129 mm -> 92 mm;
    at 5 frames, 176x320 and more steps: 187 mm -> 106 mm)."""
    import sys
    from pathlib import Path

    from comovi_core.body.motion_file import SMPLMotion
    from comovi_core.evaluation.metrics import motion_errors
    from comovi_core.recovery.fitting import FitOptions, fit_motion

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_fit_motion import arms_motion

    torch.manual_seed(0)
    body = load_body_model(None)
    truth = arms_motion(4, 144, 256)
    with torch.no_grad():
        posed = camera_vertices(body, truth)
    maps = render_motion_map(posed.vertices, body.faces, body.part_ids, truth.camera, "comovi_v1", "torch").images
    degraded = torch.round(degrade_motion_map(maps, WAN22_VAE, seed=0) * 255) / 255
    start = SMPLMotion(
        truth.global_orient[:1], truth.body_pose[:1], truth.betas, truth.transl[:1], truth.fps, truth.camera
    )
    errors = []
    for splat_steps in (0, 40):
        options = FitOptions(iterations=60, track_steps=20, splat_steps=splat_steps)
        fitted = fit_motion(body, degraded, start=start, camera=truth.camera, fps=truth.fps, options=options)
        with torch.no_grad():
            errors.append(motion_errors(camera_vertices(body, fitted).joints, posed.joints)["mpjpe_mm"])
    assert errors[1] < 0.8 * errors[0], errors


def _reference_normals(vertices, faces):  # the vertex normals as written before face_corners/to_vertices
    tri = vertices[:, faces]
    face_normals = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals.index_add_(1, faces[:, corner], face_normals)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-6)


def _reference_area(uv, faces):  # the projected area as written before face_corners/to_vertices
    tri = uv[:, faces]
    e1, e2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    face_area = torch.relu(-0.5 * (e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]))
    area = uv.new_zeros(uv.shape[:2])
    for corner in range(3):
        area = area.index_add(1, faces[:, corner], face_area / 3)
    return area


@pytest.mark.parametrize("frames", [1, 3, 5])
def test_vertex_major_mesh_sums_are_bit_identical_to_the_gather_forms(frames):
    """The fit amplifies a change of one rounding unit in a gradient (a rewrite that only summed a vertex's face
    gradients in another order moved a 9-frame fit from 21 to 86 mm): values AND gradients must be bit-identical,
    on the real mesh (a vertex is a corner of several faces, at several corners) and on non-contiguous inputs."""
    body = load_body_model(None)
    generator = torch.Generator().manual_seed(frames)
    points = torch.randn(frames, int(body.faces.max()) + 1, 4, generator=generator)
    threads = torch.get_num_threads()

    def value_and_grad(fn, width, scale, num_threads):
        torch.set_num_threads(num_threads)
        leaf = (scale * points).requires_grad_(True)
        out = fn(leaf[..., :width], body.faces)  # a strided view of a tensor that requires grad, as in the fit
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
        (grad,) = torch.autograd.grad(out, leaf, upstream)
        return out.detach(), grad

    try:
        for ours, reference, width, scale in (
            (vertex_normals, _reference_normals, 3, 1),
            (projected_vertex_area, _reference_area, 2, 100),
        ):
            # on one thread (the fit's benchmarks run so): the reference forms' gradients change with the thread count
            # (measured: 1 against 2 threads), ours do not
            new, old = value_and_grad(ours, width, scale, 1), value_and_grad(reference, width, scale, 1)
            assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1]), ours.__name__
            two = value_and_grad(ours, width, scale, 2)
            assert torch.equal(new[0], two[0]) and torch.equal(new[1], two[1]), f"{ours.__name__}: thread count"
    finally:
        torch.set_num_threads(threads)


def _reference_splat(uv, colors, area, height, width, sigma):  # splat as written before the unmasked scatter
    frames, _, channels = colors.shape
    centre = uv - 0.5
    corner = centre.detach().floor()
    frac = centre - corner
    corner = corner.long()
    values = torch.cat([area[..., None], area[..., None] * colors], -1)
    grid = values.new_zeros(frames * height * width, 1 + channels)
    frame = torch.arange(frames)[:, None]
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        col, row = corner[..., 0] + dx, corner[..., 1] + dy
        weight = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
        inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        index = ((frame * height + row) * width + col)[inside]
        grid = grid.index_add(0, index, (weight[..., None] * values)[inside])
    radius = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=values.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
    c = 1 + channels
    out = grid.view(frames, height, width, c).permute(0, 3, 1, 2)
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c)
    out = out.permute(0, 2, 3, 1)
    total, summed = out[..., :1], out[..., 1:]
    coverage = total.clamp(max=1)
    return coverage * summed / total.clamp_min(1e-6) + (1 - coverage)


@pytest.mark.parametrize("frames", [1, 3])
def test_unmasked_splat_scatter_is_bit_identical_to_the_masked_one(frames):
    """One scatter into a bordered grid: the same image and the same gradients, bit for bit (points off screen)."""
    generator = torch.Generator().manual_seed(frames)
    height, width = 40, 64
    uv = torch.rand(frames, 3000, 2, generator=generator) * torch.tensor([width + 16.0, height + 16.0]) - 8
    colors, area = torch.rand(frames, 3000, 3, generator=generator), torch.rand(frames, 3000, generator=generator)
    upstream = torch.randn(frames, height, width, 3, generator=generator)
    results = []
    for fn in (splat, _reference_splat):
        leaves = [t.clone().requires_grad_(True) for t in (uv, colors, area)]
        image = fn(*leaves, height, width, sigma=1.5)
        results.append([image.detach(), *torch.autograd.grad(image, leaves, upstream)])
    assert all(torch.equal(a, b) for a, b in zip(*results))
