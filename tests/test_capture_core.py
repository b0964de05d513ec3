"""The capture core: the person tracker, rotation-space smoothing, foot locking and ``capture_motion`` end to end on
a rendered stand-in body with a tiny random HMR 2.0."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from comovi_core.body.camera import PinholeCamera
from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import SMPLMotion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.capture.smooth import lock_feet, smooth_motion
from comovi_core.capture.track import boxes_from_keypoints, boxes_from_masks, track_person
from comovi_core.capture.video import (
    CaptureOptions,
    capture_from_graph,
    capture_motion,
    clip_camera,
    with_body_shape,
)
from comovi_core.errors import CoMoViError
from comovi_core.motion_map.render import render_motion
from comovi_core.recovery.contact import foot_centres, foot_masks
from comovi_core.recovery.hmr.config import FLNET_PRESETS, PRESETS
from comovi_core.recovery.hmr.estimator import estimate_body
from comovi_core.recovery.hmr.model import HMR2

H, W = 96, 160


@pytest.fixture(scope="module")
def body():
    return load_body_model(None)


@pytest.fixture(scope="module")
def clip(body):
    truth = demo_motion(num_frames=6, height=H, width=W)
    return truth, render_motion(body, truth, backend="torch")


def _box(cx: float, cy: float, w: float, h: float) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _frames(boxes: list[list[list[float]]], scores=None) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (np.array(b, np.float32).reshape(-1, 4), np.full(len(b), 0.9, np.float32) if scores is None else scores[t])
        for t, b in enumerate(boxes)
    ]


# --- the tracker -------------------------------------------------------------------------------------------------


def test_the_subject_keeps_its_identity_when_a_smaller_person_crosses_it():
    """The subject walks right, a smaller passer-by walks left through it (detections listed in either order),
    and a still bystander stands nearby: the track follows the subject's boxes in every frame."""
    frames = []
    for t in range(20):
        subject = _box(100 + 10 * t, 200, 80, 240)
        passer = _box(300 - 10 * t, 210, 60, 180)
        bystander = _box(420, 200, 70, 220)
        frames.append([passer, subject, bystander] if t % 2 else [bystander, subject, passer])
    track = track_person(_frames(frames))
    truth = np.array([_box(100 + 10 * t, 200, 80, 240) for t in range(20)], np.float32)
    np.testing.assert_allclose(track.boxes, truth)
    assert track.detected.all() and not track.lost.any() and (track.people == 3).all()
    assert track.rule.startswith("the track with the largest mean box area") and "(3 tracks)" in track.rule
    late = [[b for b in f if t >= 10 or b[0] != 385] for t, f in enumerate(frames)]  # the bystander from frame 10
    longest = track_person(_frames(late), rule="longest")
    assert longest.detected.all() and longest.people.tolist() == [2] * 10 + [3] * 10
    assert longest.boxes[0, 0] in (60, 270)  # one of the walkers, present in all 20 frames


def test_a_short_gap_is_interpolated_a_long_one_is_lost_and_low_scores_do_not_count():
    frames = [[_box(100 + 10 * t, 200, 80, 240)] for t in range(30)]
    for t in (5, 6, 7):
        frames[t] = []  # a 3-frame gap
    for t in range(15, 27):
        frames[t] = []  # a 12-frame gap: more than max_gap
    scores = [np.full(len(f), 0.9, np.float32) for f in frames]
    scores[20] = np.full(0, 0.9, np.float32)
    frames[3], scores[3] = frames[3] + [_box(400, 200, 50, 100)], np.array([0.9, 0.2], np.float32)  # weak: ignored
    track = track_person(_frames(frames, scores), max_gap=8)
    assert track.interpolated.tolist() == [5 <= t <= 7 for t in range(30)]
    np.testing.assert_allclose(track.boxes[6], _box(160, 200, 80, 240), atol=1e-4)  # linear in between
    assert track.lost.tolist() == [t >= 15 for t in range(30)]  # who comes back after 12 frames is someone else
    assert track.rule.endswith("(2 tracks)")
    relinked = track_person(_frames(frames, scores), max_gap=8, link_gap=30)  # one person: link across any gap
    assert relinked.lost.tolist() == [15 <= t < 27 for t in range(30)] and relinked.detected[27:].all()
    np.testing.assert_allclose(track.boxes[20], _box(240, 200, 80, 240))  # the last known box
    assert (
        track.people[3] == 1 and track.people[5] == 0 and track.scores[6] == 0 and track.scores[8] == pytest.approx(0.9)
    )
    with pytest.raises(CoMoViError, match="unknown subject rule"):
        track_person(_frames(frames[:2]), rule="tallest")


def test_boxes_from_masks_and_keypoints_say_none_where_there_is_no_person():
    masks = np.zeros((2, 40, 60), np.float32)
    masks[0, 5:35, 10:30] = 1
    boxes = boxes_from_masks(masks)
    np.testing.assert_allclose(boxes[0], [10, 5, 30, 35])
    assert boxes[1] is None
    keypoints = np.zeros((2, 18, 3), np.float32)
    keypoints[0, [1, 10, 13]] = [[30, 5, 1], [25, 35, 1], [35, 35, 1]]
    boxes = boxes_from_keypoints(keypoints, 40, 60)
    assert boxes[0] is not None and boxes[1] is None


# --- smoothing -----------------------------------------------------------------------------------------------------


def _motion(global_orient, body_pose, transl, fps=30.0) -> SMPLMotion:
    return SMPLMotion(global_orient, body_pose, np.zeros(10), transl, fps, PinholeCamera.default_for(H, W))


def test_a_constant_motion_is_unchanged_and_strength_zero_is_the_identity():
    frames = 20
    rng = np.random.default_rng(0)
    pose = np.repeat(rng.normal(0, 0.4, (1, 69)), frames, 0)
    orient = np.repeat([[math.pi - 0.1, 0.2, 0.0]], frames, 0)
    transl = np.repeat([[0.1, 0.2, 3.0]], frames, 0)
    motion = _motion(orient, pose, transl)
    smoothed = smooth_motion(motion)
    np.testing.assert_allclose(smoothed.body_pose, pose, atol=1e-5)
    np.testing.assert_allclose(smoothed.global_orient, orient, atol=1e-5)
    np.testing.assert_allclose(smoothed.transl, transl, atol=1e-6)
    noisy = _motion(orient, pose + rng.normal(0, 0.05, pose.shape), transl)
    same = smooth_motion(noisy, strength=0)
    np.testing.assert_array_equal(same.body_pose, noisy.body_pose)
    np.testing.assert_array_equal(same.transl, noisy.transl)


def test_smoothing_removes_jitter_without_lag():
    """A knee bending as a 1 Hz sine at 30 fps plus 3 degrees of noise: the error drops, and the cross-correlation
    of the smoothed angle with the true one peaks at 0 frames."""
    frames = 120
    t = np.arange(frames) / 30
    angle = 0.6 * np.sin(2 * np.pi * t)
    rng = np.random.default_rng(1)
    pose = np.zeros((frames, 69))
    pose[:, 3 * 3] = angle + rng.normal(0, math.radians(3), frames)  # left knee (joint 4), x axis
    transl = np.stack([0.3 * np.sin(2 * np.pi * t), 0 * t, 3.0 + rng.normal(0, 0.02, frames)], -1)
    motion = _motion(np.zeros((frames, 3)), pose, transl)
    smoothed = smooth_motion(motion)
    raw_error = np.abs(pose[:, 9] - angle).mean()
    error = np.abs(smoothed.body_pose[:, 9] - angle).mean()
    assert error < 0.4 * raw_error
    assert np.abs(smoothed.transl[:, 2] - 3.0).mean() < 0.4 * np.abs(transl[:, 2] - 3.0).mean()
    corr = [np.dot(angle[10:-10], np.roll(smoothed.body_pose[:, 9], -k)[10:-10]) for k in range(-4, 5)]
    assert int(np.argmax(corr)) - 4 == 0


def test_rotations_near_half_a_turn_are_smoothed_through_the_sign_flip():
    """The root turns through 180 degrees, where the axis-angle jumps from +pi to -pi about the same axis and the
    quaternion's sign flips: the smoothed rotation stays next to the true one."""
    frames = 30
    angles = np.linspace(math.pi - 0.3, math.pi + 0.3, frames)
    wrapped = np.where(angles > math.pi, angles - 2 * math.pi, angles)
    orient = np.stack([0 * angles, wrapped, 0 * angles], -1)  # about y
    motion = _motion(orient, np.zeros((frames, 69)), np.repeat([[0, 0, 3.0]], frames, 0))
    smoothed = smooth_motion(motion).global_orient
    import roma

    true = roma.rotvec_to_rotmat(torch.from_numpy(orient))
    got = roma.rotvec_to_rotmat(torch.from_numpy(smoothed).double())
    error = torch.rad2deg(roma.rotmat_geodesic_distance(true, got))
    assert float(error.max()) < 0.5


def test_a_planted_foot_stays_still_after_foot_locking(body):
    """A standing body whose root slides 4 cm sideways and jitters: the feet skate. After lock_feet they stay put
    and foot_contact says so."""
    frames = 30
    base = demo_motion(num_frames=frames, height=H, width=W)
    orient = np.repeat(base.global_orient[:1], frames, 0)
    pose = np.zeros((frames, 69))
    pose[:, 15 * 3 + 2] = -0.4 * np.sin(np.linspace(0, np.pi, frames))  # the arm moves; the legs do not
    rng = np.random.default_rng(0)
    slide = np.stack([np.linspace(0, 0.04, frames), rng.normal(0, 0.002, frames), np.zeros(frames)], -1)
    motion = SMPLMotion(orient, pose, np.zeros(10), np.array([0, 0.05, 3.0]) + slide, 30.0, base.camera)
    masks = foot_masks(body.part_ids)

    def drift_mm(m):
        with torch.no_grad():
            feet = foot_centres(camera_vertices(body, m).vertices, masks)
        return 1000 * float((feet - feet.mean(0)).norm(dim=-1).max())

    locked = lock_feet(body, motion)
    assert drift_mm(motion) > 15 and drift_mm(locked) < 2
    assert locked.foot_contact.shape == (frames, 2) and locked.foot_contact.all()
    np.testing.assert_array_equal(locked.body_pose, motion.body_pose)


# --- capture_motion ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_hmr2():
    torch.manual_seed(0)
    return HMR2(PRESETS["tiny"]).eval()


def test_capture_end_to_end_with_a_tiny_hmr2(body, clip, tiny_hmr2):
    truth, maps = clip
    boxes = np.stack(boxes_from_masks(maps.mask))
    result = capture_motion(
        maps.images, truth.fps, estimator=tiny_hmr2, body=body, boxes=boxes, options=CaptureOptions(batch_size=4)
    )
    motion = result.motion
    assert motion.num_frames == 6 and motion.body_pose.shape == (6, 69) and motion.betas.shape == (10,)
    assert motion.camera == PinholeCamera.default_for(H, W, 50.0) and motion.fps == truth.fps
    assert result.confidence.shape == (6,) and ((result.confidence >= 0) & (result.confidence <= 1)).all()
    assert result.verdict == "ok" and result.reasons == []
    assert result.info["estimator"] == "HMR 2.0" and result.info["focal_source"] == "field of view 50 degrees"
    assert motion.foot_contact is not None and motion.foot_contact.shape == (6, 2)
    # batching gives the estimate of one frame at a time; the raw motion keeps the network's poses
    raw = capture_motion(
        maps.images,
        truth.fps,
        estimator=tiny_hmr2,
        body=body,
        boxes=boxes,
        options=CaptureOptions(batch_size=4, smoothing=0.0, lock_feet=False),
    )
    for t in range(6):
        one = estimate_body(tiny_hmr2, maps.images[t], boxes[t], motion.camera, "unused")
        np.testing.assert_allclose(raw.motion.body_pose[t], one.body_pose.numpy(), atol=1e-5)
        np.testing.assert_allclose(raw.motion.global_orient[t], one.global_orient.numpy(), atol=1e-5)
    # one shape per clip: each frame's translation re-solved for it puts the joints where the network saw them
    with torch.no_grad():
        ones = [estimate_body(tiny_hmr2, maps.images[t], boxes[t], motion.camera, "") for t in range(6)]
        seen = body(
            torch.stack([o.global_orient for o in ones]),
            torch.stack([o.body_pose for o in ones]),
            torch.stack([o.betas for o in ones]),
            torch.stack([o.transl for o in ones]),
        ).joints
        placed = camera_vertices(body, raw.motion).joints
    pixels = (motion.camera.project(placed) - motion.camera.project(seen)).norm(dim=-1)
    assert float(pixels.mean()) < 1.0  # of a 96-pixel-high picture


class _FakeFLNet(torch.nn.Module):
    """FLNet's interface, answering the given vertical fields of view (degrees) in turn."""

    def __init__(self, degrees: list[float]):
        super().__init__()
        self.config = FLNET_PRESETS["tiny"]
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.answers = iter(degrees)

    def forward(self, pixels):
        return torch.tensor([[0.0, math.radians(next(self.answers))]])


@dataclasses.dataclass
class _WithFocal:
    focal_net: torch.nn.Module


def test_one_focal_length_per_clip_the_median_of_flnet_else_the_field_of_view():
    frames = torch.zeros(5, H, W, 3)
    camera, source = clip_camera(_WithFocal(_FakeFLNet([40, 60, 55, 300, 50])), frames, focal_frames=5)
    focals = sorted(H / (2 * math.tan(math.radians(v) / 2)) for v in (40, 60, 55, 50))  # 300 degrees: left out
    assert camera.focal_length[1] == pytest.approx((focals[1] + focals[2]) / 2)  # the median of the four
    assert source.startswith("estimated by CameraHMR (median of 4 frames")
    camera, source = clip_camera(_WithFocal(_FakeFLNet([300, 200, 1, 50])), frames[:4], fov_degrees=40)
    assert camera == PinholeCamera.default_for(H, W, 40) and "implausible" in source


def test_a_rejection_names_its_reason(body, clip, tiny_hmr2):
    truth, maps = clip
    boxes = np.stack(boxes_from_masks(maps.mask))
    boxes[2:5] = np.nan  # the person is not seen in 3 of 6 frames: more than max_gap 1 bridges
    lost = capture_motion(
        maps.images, truth.fps, estimator=tiny_hmr2, body=body, boxes=boxes, options=CaptureOptions(max_gap=1)
    )
    assert lost.verdict == "rejected" and "person lost in 50% of frames (> 20%)" in lost.reasons
    assert lost.track.lost.tolist() == [False, False, True, True, True, False]
    assert lost.confidence[2:5].max() == 0
    small = capture_motion(
        maps.images,
        truth.fps,
        estimator=tiny_hmr2,
        body=body,
        boxes=np.stack(boxes_from_masks(maps.mask)),
        options=CaptureOptions(min_box_fraction=0.9),
    )
    assert small.verdict == "rejected" and any(r.startswith("person too small (") for r in small.reasons)
    with pytest.raises(CoMoViError, match="no person found in any of the 6 frames"):
        capture_motion(maps.images, truth.fps, estimator=tiny_hmr2, body=body, boxes=np.full((6, 4), np.nan))


# --- capture_from_graph: what the ComfyUI node calls -------------------------------------------------------------


def test_capture_from_graph_demo_is_reproducible_and_needs_no_detector(body, clip):
    truth, maps = clip
    state = torch.random.get_rng_state()
    first = capture_from_graph(body, maps.images, 16.0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the demo's fixed seed leaves the caller's RNG alone
    second = capture_from_graph(body, maps.images, 16.0)
    np.testing.assert_array_equal(first.motion.body_pose, second.motion.body_pose)
    np.testing.assert_allclose(first.track.boxes, np.tile([0, 0, W, H], (6, 1)))  # the whole frame is the person
    assert first.info["boxes"].startswith("the whole frame") and "noise" in first.info["estimator"]
    assert first.motion.num_frames == 6 and first.motion.fps == 16.0 and first.verdict == "ok"
    lines = first.summary().splitlines()
    assert lines[0] == "ok: 6 frames at 16 fps" and lines[-1].startswith("mean confidence ")
    masked = capture_from_graph(body, maps.images, 16.0, masks=maps.mask.float())
    np.testing.assert_allclose(masked.track.boxes, np.stack(boxes_from_masks(maps.mask)))


def test_capture_from_graph_with_an_estimator_file_uses_the_cached_estimator_and_detector(
    body, clip, tiny_hmr2, monkeypatch
):
    import comovi_core.recovery.estimate as estimate

    truth, maps = clip
    calls = []
    person = np.stack(boxes_from_masks(maps.mask))

    class _Detector:
        def detect(self, image, min_score=0.5):
            t = next(i for i in range(6) if torch.equal(maps.images[i], image))
            return np.stack([person[t], [0, 0, 8, 8]]).astype(np.float32), np.array([0.9, 0.3], np.float32)

    monkeypatch.setattr(estimate, "cached_estimator", lambda path, focal: calls.append((path, focal)) or tiny_hmr2)
    monkeypatch.setattr(estimate, "cached_detector", lambda allow: calls.append(allow) or _Detector())
    result = capture_from_graph(
        body, maps.images, 16.0, estimator_path="hmr2.ckpt", focal_net=None, allow_download=True
    )
    assert calls == [("hmr2.ckpt", None), True] and result.info["boxes"] == "detector"
    np.testing.assert_allclose(result.track.boxes, person)  # the 0.3-score box is below min_score
    assert result.info["estimator"] == "HMR 2.0"
    calls.clear()
    capture_from_graph(body, maps.images, 16.0, estimator_path="hmr2.ckpt", masks=maps.mask.float())
    assert calls == [("hmr2.ckpt", "auto")]  # a mask: no detector loaded


def test_capture_from_graph_refuses_what_it_cannot_capture(body, clip):
    truth, maps = clip
    with pytest.raises(CoMoViError, match="at least 2"):
        capture_from_graph(body, maps.images[:1], 16.0)
    with pytest.raises(CoMoViError, match="fps must be"):
        capture_from_graph(body, maps.images, float("nan"))
    with pytest.raises(CoMoViError, match="smoothing must be in 0..3"):
        capture_from_graph(body, maps.images, 16.0, smoothing=4.0)
    with pytest.raises(CoMoViError, match="IMAGE batch"):
        capture_from_graph(body, maps.images[0], 16.0)


def test_a_known_camera_is_kept_and_a_camera_of_another_size_refused(body, clip, tiny_hmr2):
    truth, maps = clip
    boxes = np.stack(boxes_from_masks(maps.mask))
    options = CaptureOptions(smoothing=0.0, lock_feet=False)
    result = capture_motion(
        maps.images, truth.fps, estimator=tiny_hmr2, body=body, boxes=boxes, options=options, camera=truth.camera
    )
    assert result.motion.camera == truth.camera and result.info["focal_source"] == "given with the video"
    one = estimate_body(tiny_hmr2, maps.images[2], boxes[2], truth.camera, "")  # placed for that camera's focal
    np.testing.assert_allclose(result.motion.body_pose[2], one.body_pose.numpy(), atol=1e-5)
    with pytest.raises(CoMoViError, match=r"the camera is for \(192, 320\) pictures but the frames are \(96, 160\)"):
        capture_motion(
            maps.images, truth.fps, estimator=tiny_hmr2, body=body, boxes=boxes, camera=truth.camera.resized(192, 320)
        )


def test_another_body_shape_is_placed_where_the_joints_are_seen(body, clip):
    """``with_body_shape``: the rotations stay, the translation is solved again; a bigger body stands further away
    and its joints project where the smaller one's did; back to the first shape, the motion is the first one."""
    truth, _ = clip
    bigger = with_body_shape(body, truth, truth.betas + 1.0)
    back = with_body_shape(body, bigger, truth.betas)
    with torch.no_grad():
        joints = {name: camera_vertices(body, m).joints for name, m in (("truth", truth), ("bigger", bigger))}
        joints["back"] = camera_vertices(body, back).joints
    np.testing.assert_array_equal(bigger.full_pose, truth.full_pose)
    np.testing.assert_array_equal(bigger.betas, truth.betas + 1.0)
    pixels = (truth.camera.project(joints["bigger"]) - truth.camera.project(joints["truth"])).norm(dim=-1)
    assert float(pixels.mean()) < 0.5 and (bigger.transl[:, 2] > truth.transl[:, 2] + 0.1).all()  # measured 0.19 px
    assert float((joints["back"] - joints["truth"]).norm(dim=-1).mean()) < 1e-3  # metres; measured 0.4 mm
