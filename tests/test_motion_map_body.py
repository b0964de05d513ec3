"""The motion map of the stand-in body in a known pose, against an independent ray caster of the
formula of docs/motion_map.md (tests/_raycast_reference.py), for both shadings and both backends; and the decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _raycast_reference import raycast_motion_map

from comovi_core.body.camera import PinholeCamera
from comovi_core.body.mannequin import demo_motion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.motion_map import render_gl
from comovi_core.motion_map.decode import decode_motion_map
from comovi_core.motion_map.render import iter_motion, render_motion, render_motion_map

FRAME = 5  # arms half raised, knees slightly bent, body turned a little
CAMERA = PinholeCamera((105.0, 105.0), (36.0, 36.0), (72, 72))  # the body fills most of the frame height
TOL = 2 / 255


@pytest.fixture(scope="module")
def scene():
    model = load_body_model(None)
    verts = camera_vertices(model, demo_motion(num_frames=12)).vertices[FRAME : FRAME + 1]
    faces, parts = model.faces, model.part_ids
    refs = {
        s: raycast_motion_map(
            verts[0].double().numpy(),
            faces.numpy(),
            parts.numpy(),
            *CAMERA.focal_length,
            *CAMERA.principal_point,
            *CAMERA.image_size,
            s,
        )
        for s in ("comovi_v1", "flat")
    }
    return verts, faces, parts, refs


def _backends():
    return [
        "torch",
        pytest.param("pyrender", marks=pytest.mark.skipif(not render_gl.is_available(), reason="no OpenGL context")),
    ]


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("shading", ["comovi_v1", "flat"])
def test_colours_match_independent_formula(scene, backend, shading):
    verts, faces, parts, refs = scene
    ref_img, ref_depth, _ = refs[shading]
    out = render_motion_map(verts, faces, parts, CAMERA, shading, backend)
    img, mask = out.images[0].double().numpy(), out.mask[0].numpy()
    ref_mask = ref_depth > 0
    both = mask & ref_mask
    assert both.sum() > 450  # a thin T-posed figure: about a ninth of the 72x72 pixels
    assert np.abs(img[both] - ref_img[both]).max() <= TOL
    differ = mask ^ ref_mask
    assert differ.sum() <= 0.01 * ref_mask.sum()  # pixel centres exactly on a silhouette edge
    assert (img[~mask] == 1.0).all()
    if shading == "comovi_v1":
        assert img[mask].min() >= 0.2 - TOL and img[mask].max() <= 1.0


def _gt_labels(scene):
    """Part and facing where the visible triangle's three corners agree on both (no blending)."""
    verts, faces, parts, refs = scene
    _, _, face_index = refs["flat"]
    from _raycast_reference import reference_vertex_normals

    normals = reference_vertex_normals(verts[0].double().numpy(), faces.numpy())
    hit = face_index >= 0
    corners = faces.numpy()[face_index[hit]]
    corner_parts = parts.numpy()[corners]
    corner_facing = normals[corners][..., 2] < 0
    clean = (corner_parts == corner_parts[:, :1]).all(1) & (corner_facing == corner_facing[:, :1]).all(1)
    return hit, clean, corner_parts[:, 0], corner_facing[:, 0]


def test_flat_decoding_recovers_parts_facing_and_normals(scene):
    verts, faces, parts, refs = scene
    out = render_motion_map(verts, faces, parts, CAMERA, "flat", "torch")
    dec = decode_motion_map(out.images, "flat")
    hit, clean, gt_part, gt_facing = _gt_labels(scene)
    assert torch.equal(dec.mask[0], torch.from_numpy(hit)) or (dec.mask[0].numpy() ^ hit).sum() <= 0.01 * hit.sum()
    part, facing = dec.part[0].numpy()[hit], dec.facing[0].numpy()[hit]
    assert (part[clean] == gt_part[clean]).all() and (facing[clean] == gt_facing[clean]).all()
    assert clean.mean() > 0.7
    # normals: decoded (nx, ny) are the interpolated vertex normal's; nz from unit length
    ref_img = refs["flat"][0]
    nxy = 2 * ref_img[hit][:, [2, 1]] - 1
    np.testing.assert_allclose(dec.normal[0].numpy()[hit][:, :2], nxy, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(dec.normal[0].numpy()[hit], axis=-1), 1.0, atol=1e-5)


def _agreement(dec, ref, where):
    return float((dec.part[0][where] == ref.part[0][where]).float().mean())


def test_shaded_decoding_agrees_with_flat(scene):
    verts, faces, parts, _ = scene
    flat = decode_motion_map(render_motion_map(verts, faces, parts, CAMERA, "flat", "torch").images, "flat")
    shaded = render_motion_map(verts, faces, parts, CAMERA, "comovi_v1", "torch")
    where = flat.mask[0] & shaded.mask[0]
    exact = decode_motion_map(shaded.images, "comovi_v1", CAMERA, shaded.depth)
    # measured on this scene: 0.94 of part labels, 0.99 of facing signs (see decode.py on ambiguity)
    assert _agreement(exact, flat, where) >= 0.92
    assert float((exact.facing[0][where] == flat.facing[0][where]).float().mean()) >= 0.98
    cos = (exact.normal[0][where] * flat.normal[0][where]).sum(-1)
    assert float(cos.median()) > 0.9999 and float(cos.quantile(0.1)) > 0.99
    # one distance for the whole body (the motion's transl z), as a generated video would give
    distance = float(verts[0, :, 2].mean())
    approx = decode_motion_map(shaded.images, "comovi_v1", CAMERA, distance)
    assert _agreement(approx, flat, where) >= 0.9
    # 8-bit PNG round trip with exact depth
    quantised = torch.round(shaded.images * 255) / 255
    png = decode_motion_map(quantised, "comovi_v1", CAMERA, shaded.depth)
    assert _agreement(png, flat, where) >= 0.9


@pytest.mark.parametrize("backend", _backends())
def test_backends_work_under_inference_mode(scene, backend):
    """Hosts (ComfyUI, our CLIs) render under torch.inference_mode; outputs equal those of a plain call."""
    verts, faces, parts, _ = scene
    plain = render_motion_map(verts, faces, parts, CAMERA, "comovi_v1", backend)
    with torch.inference_mode():
        inside = render_motion_map(verts, faces, parts, CAMERA, "comovi_v1", backend)
    assert torch.equal(plain.images, inside.images) and torch.equal(plain.depth, inside.depth)


def test_render_motion_poses_and_draws_the_chosen_frames():
    """The motion-level helper equals posing by hand and drawing the same frames; chunks add up to the whole."""
    model = load_body_model(None)
    motion = demo_motion(num_frames=12, height=40, width=72)
    index = torch.tensor([0, 5, 11])
    by_hand = render_motion_map(
        camera_vertices(model, motion).vertices[index], model.faces, model.part_ids, motion.camera, "comovi_v1", "torch"
    )
    helper = render_motion(model, motion, backend="torch", frames=index)
    torch.testing.assert_close(helper.images, by_hand.images, rtol=0, atol=0)
    assert float(helper.mask.float().mean()) > 0.02  # the body is drawn (3% of this small, wide frame)
    chunks = list(iter_motion(model, motion, CAMERA, "flat", "torch", frames=4, frames_per_chunk=3))
    assert [c.first_frame for c in chunks] == [0, 3] and sum(c.images.shape[0] for c in chunks) == 4
    whole = render_motion(model, motion, CAMERA, "flat", "torch", frames=4)
    torch.testing.assert_close(torch.cat([c.images for c in chunks]), whole.images, rtol=0, atol=0)
    assert whole.images.shape[1:3] == (72, 72)  # the given camera, not the motion's own
