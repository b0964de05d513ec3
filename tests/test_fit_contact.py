"""Planted feet (``fit_contact``): found from the map's pixels, kept still by the fit's term."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from comovi_core.body.motion_file import SMPLMotion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.motion_map.degrade import WAN22_VAE, degrade_motion_map
from comovi_core.motion_map.render import render_motion_map
from comovi_core.recovery.contact import CONTACT_WEIGHT, Contacts, foot_centres, foot_masks, planted_feet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_fit_motion import MOTIONS, plant_foot  # noqa: E402


@pytest.fixture(scope="module")
def body():
    return load_body_model(None)


def _scene(body, name: str, frames: int = 9, height: int = 176, width: int = 320):
    truth = MOTIONS[name](frames, height, width)
    if name == "kick":
        truth = plant_foot(body, truth, 0)
    with torch.no_grad():
        vertices = camera_vertices(body, truth).vertices
    maps = render_motion_map(vertices, body.faces, body.part_ids, truth.camera, "comovi_v1", "torch").images
    return truth, vertices, maps


@pytest.mark.parametrize("condition", ["float", "degraded"])
def test_the_standing_foot_is_found_and_the_kicking_one_is_not(body, condition):
    """Kick: the left foot stands through all 9 frames (anchor 0), the right one moves 5-38 cm a frame."""
    truth, vertices, maps = _scene(body, "kick")
    if condition == "degraded":
        maps = degrade_motion_map(maps, WAN22_VAE, seed=0)
    anchors = planted_feet(maps, vertices, foot_masks(body.part_ids), truth.camera)
    assert anchors[:, 0].tolist() == [-1] + [0] * 8
    assert anchors[:, 1].tolist() == [-1] * 9


def test_moving_feet_are_not_planted(body):
    """Demo motion: frames where a foot moves 6 cm or more are never planted (degraded map)."""
    truth, vertices, maps = _scene(body, "demo")
    maps = degrade_motion_map(maps, WAN22_VAE, seed=0)
    masks = foot_masks(body.part_ids)
    anchors = planted_feet(maps, vertices, masks, truth.camera)
    centres = foot_centres(vertices, masks)
    moved = (centres[1:] - centres[:-1]).norm(dim=-1) > 0.06  # (T-1, 2)
    assert int(moved.sum()) >= 10 and not bool((anchors[1:] >= 0)[moved].any())


def test_a_foot_outside_the_picture_is_never_planted(body):
    truth, vertices, maps = _scene(body, "kick", frames=3)
    away = vertices + torch.tensor([5.0, 0, 0])  # 5 m to the side: out of the picture
    anchors = planted_feet(maps, away, foot_masks(body.part_ids), truth.camera)
    assert anchors.tolist() == [[-1, -1]] * 3


def test_the_term_is_zero_at_the_truth_and_counts_only_planted_feet(body):
    truth, vertices, maps = _scene(body, "kick", frames=5)
    masks = foot_masks(body.part_ids)
    contacts = Contacts(torch.tensor([[-1, -1], [0, -1], [0, -1], [2, -1], [2, -1]]), masks)
    assert contacts.planted == 4
    torch.testing.assert_close(contacts.term(vertices), torch.zeros(5), atol=1e-9, rtol=0)  # the left foot stands
    shifted = vertices.clone()
    shifted[3:] += torch.tensor([0.02, 0.0, 0.0])  # frames 3, 4 two centimetres to the side
    # frames 3, 4: the left foot is 2 cm from its anchor (frame 2): 4 cm^2; the moving right foot counts nothing
    expected = torch.tensor([0, 0, 0, 4 * CONTACT_WEIGHT, 4 * CONTACT_WEIGHT])
    torch.testing.assert_close(contacts.term(shifted), expected, atol=1e-6, rtol=1e-4)
    kicking = Contacts(torch.tensor([[-1, -1], [0, -1], [0, -1], [2, -1], [2, 3]]), masks)  # says the right stands
    right = foot_centres(vertices, masks)[[3, 4], 1]
    torch.testing.assert_close(
        kicking.term(vertices)[4], CONTACT_WEIGHT * 1e4 * (right[1] - right[0]).square().sum(), atol=0, rtol=1e-4
    )


def test_standing_frames_include_the_first_frame_of_each_run(body):
    contacts = Contacts(torch.tensor([[-1, -1], [0, -1], [0, -1], [-1, 2], [3, 2]]), foot_masks(body.part_ids))
    assert contacts.standing().tolist() == [[True, False], [True, False], [True, True], [True, True], [True, True]]


def test_foot_contact_travels_with_the_motion_file(tmp_path):
    from comovi_core.body.mannequin import demo_motion
    from comovi_core.body.motion_file import concat_motions, load_motion, save_motion
    from comovi_core.errors import CoMoViError

    motion = demo_motion(num_frames=4, height=64, width=96)
    contact = np.array([[True, False], [True, False], [False, False], [False, True]])
    planted = SMPLMotion(
        *(getattr(motion, f) for f in ("global_orient", "body_pose", "betas", "transl", "fps")),
        motion.camera,
        motion.gender,
        contact,
    )
    back = load_motion(save_motion(tmp_path / "m.npz", planted))
    assert back.foot_contact.dtype == np.bool_ and back.foot_contact.tolist() == contact.tolist()
    assert load_motion(save_motion(tmp_path / "n.npz", motion)).foot_contact is None  # unknown stays unknown
    assert planted.frame(-1).foot_contact.tolist() == [[False, True]]
    assert concat_motions(planted, planted).foot_contact.tolist() == contact.tolist() + contact[1:].tolist()
    assert concat_motions(planted, motion).foot_contact is None
    with pytest.raises(CoMoViError, match=r"'foot_contact' must be a \(T, 2\) = \(4, 2\) bool array"):
        SMPLMotion(
            motion.global_orient,
            motion.body_pose,
            motion.betas,
            motion.transl,
            motion.fps,
            motion.camera,
            foot_contact=np.zeros((4, 2)),
        )


@pytest.mark.slow  # about a minute on 2 cores: run by the CI's second step (pytest -m slow)
def test_the_fit_locks_the_standing_foot(body):
    """Kick, 5 frames at 176x320, the VAE-like degraded map, quick fit settings: with the last stage the left foot's
    drift (mm over frames 1-4) falls; the fit reports it standing in every frame and the kicking foot nowhere."""
    from conftest import QUICK_FIT

    from comovi_core.recovery.fitting import fit_motion

    truth, vertices, maps = _scene(body, "kick", frames=5)
    maps = degrade_motion_map(maps, WAN22_VAE, seed=0)
    start = SMPLMotion(
        truth.global_orient[:1], truth.body_pose[:1], truth.betas, truth.transl[:1], truth.fps, truth.camera
    )
    masks = foot_masks(body.part_ids)
    drift = {}
    for steps in (0, 30):
        options = dataclasses.replace(QUICK_FIT, contact_steps=steps)
        fitted = fit_motion(body, maps, start=start, camera=truth.camera, fps=truth.fps, options=options)
        with torch.no_grad():
            left = foot_centres(camera_vertices(body, fitted).vertices, masks)[:, 0]
        drift[steps] = float((left[1:] - left[:1]).norm(dim=-1).mean()) * 1000
        assert (fitted.foot_contact is None) == (steps == 0)
    assert fitted.foot_contact.tolist() == [[True, False]] * 5
    print("left foot drift mm without / with locking:", drift)
    assert drift[30] < 0.5 * drift[0], drift
