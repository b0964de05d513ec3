"""Depth-mirrored limbs (``comovi_core.recovery.flip``): the joints keep their pixels, their depths swap sides."""

from __future__ import annotations

import numpy as np
import torch

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.smpl import load_body_model
from comovi_core.recovery.flip import LIMBS, global_rotations, mirrored_limb


def _joints(body, q):
    return body(q[None, :3], q[None, 3:72], None, q[None, 72:]).joints[0]


def test_a_mirrored_arm_keeps_its_pixels_and_swaps_its_depth():
    body = load_body_model(None)
    start = demo_motion(num_frames=1)
    q = torch.tensor(np.concatenate([start.global_orient[0], start.body_pose[0], start.transl[0]]), dtype=torch.float32)
    q[3 * 17 + 1] = 0.7  # right shoulder (17) swings the arm about y: out of the image plane
    q[3 * 19 + 1] = 1.0  # right elbow (19) bends
    parents = body.smpl.parents.tolist()
    with torch.no_grad():
        joints = _joints(body, q)
        mirrored = mirrored_limb(parents, joints, q, LIMBS[1])
        new = _joints(body, mirrored)
    shoulder, elbow, wrist = 17, 19, 21
    for child, parent in ((elbow, shoulder), (wrist, elbow)):
        before, after = joints[child] - joints[parent], new[child] - new[parent]
        ray = joints[shoulder] / joints[shoulder].norm()
        assert float(before @ ray) * float(after @ ray) < 0  # the segment now points to the other side in depth
        assert abs(float(before @ ray) + float(after @ ray)) < 0.02  # by the same amount (metres)
    pixels = start.camera.project(torch.stack([joints, new]))  # (2, 24, 2)
    # near their pixels: exact for an orthographic camera; through a pinhole 3 m away, moving 0.2-0.4 m in depth
    # scales the limb's offsets by ~10%, and the refinement after a flip absorbs that
    arm = float((pixels[0, wrist] - pixels[0, shoulder]).norm())
    moved = (pixels[1] - pixels[0]).norm(dim=-1)
    assert float(moved[elbow]) < 0.12 * arm and float(moved[wrist]) < 0.3 * arm  # measured: 0.10 and 0.23
    untouched = [j for j in range(24) if j not in (elbow, wrist, 23)]  # joints outside the arm stay put
    torch.testing.assert_close(new[untouched], joints[untouched], atol=1e-5, rtol=0)
    twice = mirrored_limb(parents, new, mirrored, LIMBS[1])  # mirroring twice gives the arm back
    torch.testing.assert_close(_joints(body, twice), joints, atol=2e-3, rtol=0)


def test_global_rotations_follow_the_kinematic_chain():
    body = load_body_model(None)
    parents = body.smpl.parents.tolist()
    pose = torch.zeros(72)
    pose[0:3] = torch.tensor([np.pi, 0.0, 0.0])  # root turned 180 degrees about x
    pose[3 * 16 + 2] = 0.5  # left shoulder (16) about z
    rotations = global_rotations(parents, pose)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    torch.testing.assert_close(rotations[3], flip, atol=1e-6, rtol=0)  # spine: only the root's turn
    c, s = float(np.cos(0.5)), float(np.sin(0.5))
    about_z = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(rotations[18], flip @ about_z, atol=1e-6, rtol=0)  # elbow inherits the shoulder
