"""Priors of the motion fit: joint limits and temporal smoothness; the crop window of the fit."""

from __future__ import annotations

import torch

from comovi_core.body.camera import PinholeCamera
from comovi_core.body.mannequin import demo_motion
from comovi_core.recovery.fitting import _crop_to_body
from comovi_core.recovery.prior import joint_limits, smoothness, stillness


def test_joint_limits_are_zero_on_natural_poses_and_grow_past_a_limit():
    demo = demo_motion(num_frames=9, height=96, width=160)
    assert float(joint_limits(torch.as_tensor(demo.body_pose)).abs().max()) == 0.0
    pose = torch.zeros(3, 69)
    pose[0, 3 * 3 + 0] = -0.5  # left knee (joint 4) bent forwards by 0.5 rad: 0.25 rad^2 over
    pose[1, 3 * 17 + 1] = 0.3  # left elbow (joint 18) bent backwards by 0.3 rad
    pose[2, 3 * 2 + 2] = 1.5  # spine1 (joint 3) twisted 1.5 rad, its range is 1.0
    torch.testing.assert_close(joint_limits(pose), torch.tensor([0.25, 0.09, 0.25]))
    pose.requires_grad_(True)
    joint_limits(pose).sum().backward()
    assert pose.grad[0, 9] < 0 and pose.grad[1, 52] > 0 and pose.grad[2, 8] > 0  # a descent step moves back into range


def test_knees_and_elbows_are_hinges():
    """Bent about their axis they cost nothing; turned about the other axes beyond a few degrees they do."""
    pose = torch.zeros(4, 69)
    pose[0, 3 * 4 + 0], pose[0, 3 * 18 + 1] = 1.5, 1.5  # right knee and right elbow flexed the right way: free
    pose[1, 3 * 4 + 1] = 0.5  # right knee (joint 5) turned 0.5 rad about y, range +-0.2: 0.09 over
    pose[2, 3 * 18 + 2] = -0.5  # right elbow (joint 19) bent sideways about z, range +-0.3: 0.04 over
    pose[3, 3 * 17 + 0] = 1.5  # left elbow (joint 18) forearm twisted 1.5 rad about x, range +-1.0: 0.25 over
    torch.testing.assert_close(joint_limits(pose), torch.tensor([0.0, 0.09, 0.04, 0.25]))
    pose.requires_grad_(True)
    joint_limits(pose).sum().backward()
    assert pose.grad[1, 13] > 0 and pose.grad[2, 56] < 0 and pose.grad[3, 51] > 0  # descent turns each back


def test_smoothness_ignores_constant_velocity_and_penalises_a_jump():
    t = torch.arange(6.0)[:, None]
    g, p, tr = 0.1 * t.repeat(1, 3), 0.2 * t.repeat(1, 69), 0.05 * t.repeat(1, 3)
    assert float(smoothness(g, p, tr)) < 1e-10
    p_jump = p.clone()
    p_jump[3, 0] += 1.0  # one frame jumps by 1 rad on one channel: second differences 1, -2, 1 over 4 windows
    torch.testing.assert_close(smoothness(g, p_jump, tr), torch.tensor(6.0 / 4))
    tr_jump = tr.clone()
    tr_jump[2, 1] += 0.1  # a 10 cm jump in height weighs 10x its squared second differences: 10 * 0.06 / 4
    torch.testing.assert_close(smoothness(g, p, tr_jump), torch.tensor(0.15))
    assert float(smoothness(g[:2], p[:2], tr[:2])) == 0.0  # fewer than 3 frames: no prior


def test_cropped_camera_projects_to_the_window():
    camera = PinholeCamera((500.0, 520.0), (320.0, 176.0), (352, 640))
    window = camera.cropped(40, 100, 200, 300)
    points = torch.tensor([[0.1, -0.2, 3.0], [-0.4, 0.3, 2.5]])
    torch.testing.assert_close(window.project(points), camera.project(points) - torch.tensor([100.0, 40.0]))
    assert window.image_size == (200, 300)


def test_crop_window_holds_every_body_pixel_and_the_start_pose():
    camera = PinholeCamera.default_for(100, 200)
    images = torch.ones(3, 100, 200, 3)
    images[1, 30:50, 60:70] = 0.4  # body pixels in frame 1
    images[2, 45:60, 120:125] = torch.tensor([0.9, 0.5, 0.5])  # and frame 2 (one channel darker is enough)
    start_uv = torch.tensor([[80.0, 20.0], [90.0, 40.0]])  # the start pose reaches above the drawn pixels
    cropped, window = _crop_to_body(images, camera, start_uv)
    # box x 60..125, y 20..60; margin 0.15 * 65 + 4 = 13.75 pixels
    (cx, cy), (wx, wy) = camera.principal_point, window.principal_point
    top, left = round(cy - wy), round(cx - wx)
    assert (top, left) == (6, 46) and window.image_size == (68, 93) and cropped.shape == (3, 68, 93, 3)
    torch.testing.assert_close(cropped, images[:, 6:74, 46:139])
    empty, same = _crop_to_body(torch.ones(2, 100, 200, 3), camera, torch.tensor([[-50.0, -50.0], [-40.0, -45.0]]))
    assert same == camera and empty.shape == (2, 100, 200, 3)  # body off screen: the whole frame is kept


def test_stillness_is_the_squared_rotation_away_from_the_start():
    start = torch.zeros(69)
    start[5] = 0.4
    pose = start.repeat(2, 1)
    pose[1, 5], pose[1, 60] = 0.1, -0.2  # 0.3 and 0.2 rad away: 0.09 + 0.04
    torch.testing.assert_close(stillness(pose, start), torch.tensor([0.0, 0.13]))
