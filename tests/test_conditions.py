"""Pose-condition renders (comovi_core.conditions): OpenPose skeleton, depth, normal and mesh of a SMPL motion."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from smplx.lbs import batch_rodrigues

from comovi_core.body.camera import PinholeCamera
from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import SMPLMotion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.conditions.keypoints import COCO18_NAMES, HEAD_FACE_OFFSETS, SMPL_FACE_VERTICES, project_keypoints
from comovi_core.conditions.render import render_pose_conditions
from comovi_core.conditions.skeleton import COLORS, LIMBS, limb_color, skeleton_style, stick_scale
from comovi_core.errors import CoMoViError
from comovi_core.motion_map.raster_torch import render_depth
from comovi_core.motion_map.render import render_motion
from comovi_core.recovery.estimate import keypoints_from_pose_json

HEIGHT, WIDTH = 480, 640
FACING_CAMERA = (math.pi, 0.0, 0.0)  # SMPL y-up, facing +z -> camera y-down, facing the camera
FACE = [COCO18_NAMES.index(n) for n in ("nose", "right_eye", "left_eye", "right_ear", "left_ear")]


@pytest.fixture(scope="module")
def mannequin():
    return load_body_model(None)


def still_motion(frames: int = 1, *, orient=FACING_CAMERA, pose: dict | None = None, transl=(0.0, 0.05, 2.3)):
    """A body standing still ``frames`` times; pose: {SMPL joint index: axis-angle}."""
    body_pose = np.zeros((frames, 23, 3), np.float32)
    for joint, rotvec in (pose or {}).items():
        body_pose[:, joint - 1] = rotvec
    return SMPLMotion(
        np.tile(np.float32(orient), (frames, 1)),
        body_pose.reshape(frames, 69),
        np.zeros(10),
        np.tile(np.float32(transl), (frames, 1)),
        16.0,
        PinholeCamera.default_for(HEIGHT, WIDTH),
    )


def reference_points(model, motion) -> torch.Tensor:
    """(T, 18, 3) camera-space keypoints made independently: smplx's joints and Rodrigues, the head frame chained by
    hand from SMPL's parents."""
    out = camera_vertices(model, motion)
    joints = out.joints
    name = {n: i for i, n in enumerate(COCO18_NAMES)}
    smpl = {"shoulder": (17, 16), "elbow": (19, 18), "wrist": (21, 20), "hip": (2, 1), "knee": (5, 4), "ankle": (8, 7)}
    ref = torch.zeros(joints.shape[0], 18, 3)
    for part, (right, left) in smpl.items():
        ref[:, name[f"right_{part}"]], ref[:, name[f"left_{part}"]] = joints[:, right], joints[:, left]
    ref[:, name["neck"]] = (joints[:, 16] + joints[:, 17]) / 2
    rotations = batch_rodrigues(torch.from_numpy(motion.full_pose).reshape(-1, 3)).reshape(-1, 24, 3, 3)
    head = rotations[:, 0]
    for joint in (3, 6, 9, 12, 15):  # pelvis -> spine1 -> spine2 -> spine3 -> neck -> head
        head = head @ rotations[:, joint]
    for k, offset in zip(FACE, HEAD_FACE_OFFSETS):
        ref[:, k] = joints[:, 15] + (head @ torch.tensor(offset))
    return ref


def colour_centroid(image: np.ndarray, colour) -> tuple[np.ndarray, int]:
    """Mean pixel centre (u, v) of the pixels of exactly ``colour`` in an (H, W, 3) uint8 image, and their count."""
    rows, cols = np.nonzero((image == np.array(colour, np.uint8)).all(-1))
    return np.array([cols.mean() + 0.5, rows.mean() + 0.5]) if len(rows) else np.full(2, np.nan), len(rows)


def as_uint8(images: torch.Tensor) -> np.ndarray:
    return (images * 255).round().to(torch.uint8).numpy()


def test_openpose_limbs_and_colours_are_the_published_ones():
    one_based = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13]]
    one_based += [[13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18]]
    assert [list(limb) for limb in LIMBS] == [[a - 1, b - 1] for a, b in one_based]
    assert COLORS[:6] == ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0))
    assert COLORS[12:] == ((0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
    assert len(set(COLORS)) == 18 and limb_color(1) == (153, 51, 0) and limb_color(9) == (0, 153, 153)
    assert COCO18_NAMES[:2] == ("nose", "neck") and COCO18_NAMES[14:] == (
        "right_eye",
        "left_eye",
        "right_ear",
        "left_ear",
    )
    # comfyui_controlnet_aux's xinsr stick scaling: 1 below 500 px, then 2 + longer side // 1000, at most 7
    assert [stick_scale(h, w) for h, w in ((352, 480), (480, 640), (704, 1280), (2160, 3840), (8192, 8192))] == [
        1,
        2,
        3,
        5,
        7,
    ]
    assert skeleton_style(704, 1280).stick_width == 12 and skeleton_style(704, 1280, 0.5).stick_width == 2


def test_keypoints_land_within_a_pixel_of_the_projected_joints(mannequin):
    """The issue's acceptance: each keypoint's circle, found by its colour in the picture, is centred within 1 px of
    the camera projection of its 3D point (made independently of the library's keypoint code)."""
    pose = {
        18: (0.0, 0.0, 0.6),
        19: (0.0, -0.9, 0.0),
        15: (0.0, 0.5, 0.0),
    }  # left arm down, right elbow bent, head turned
    motion = still_motion(2, pose=pose)
    out = render_pose_conditions(mannequin, motion, kinds=("skeleton",), backend="torch")
    assert out.depth is None and out.skeleton.shape == (2, HEIGHT, WIDTH, 3)
    expected = motion.camera.project(reference_points(mannequin, motion))  # (T, 18, 2)
    kept = out.keypoints.confidence == 1
    left_ear = COCO18_NAMES.index("left_ear")
    assert kept[:, left_ear].sum() == 0 and kept.sum() == 2 * 17  # the head turns its left ear away from the camera
    torch.testing.assert_close(out.keypoints.points[kept], expected[kept], atol=1e-3, rtol=0)
    radius = skeleton_style(HEIGHT, WIDTH).keypoint_radius
    for frame, image in enumerate(as_uint8(out.skeleton)):
        assert colour_centroid(image, COLORS[left_ear])[1] == 0
        for k, colour in enumerate(COLORS[:left_ear]):
            centre, count = colour_centroid(image, colour)
            assert np.abs(centre - expected[frame, k].numpy()).max() < 1.0, COCO18_NAMES[k]
            assert abs(count - math.pi * radius**2) < 12, (COCO18_NAMES[k], count)  # a whole circle, not covered
    # the face points are apart from each other, in the head's turned frame (nose toward the body's left)
    nose, neck = expected[0, 0], expected[0, 1]
    assert nose[1] < neck[1] - 20 and nose[0] > neck[0] + 3  # above the neck, turned to image right (body's left)


def test_limb_midpoints_have_the_limb_colours(mannequin):
    motion = still_motion(pose={18: (0.0, 0.0, 0.6), 19: (0.0, 0.0, -0.6)})  # arms down, away from the face
    out = render_pose_conditions(mannequin, motion, kinds=("skeleton",), line_scale=0.5, backend="torch")
    image, points = as_uint8(out.skeleton)[0], out.keypoints.points[0]
    for limb, (a, b) in enumerate(LIMBS):
        u, v = ((points[a] + points[b]) / 2).tolist()
        assert tuple(image[int(v), int(u)]) == limb_color(limb), (limb, COCO18_NAMES[a], COCO18_NAMES[b])
    assert (image[:5] == 0).all() and (image[:, :5] == 0).all()  # black background


def test_limb_width_scales_with_the_image(mannequin):
    """A vertical shin at 1280 px wide is 2 x 12 px across (stick width 4 x 3), at 480 px 2 x 4 px."""
    for (height, width), across in (((704, 1280), 24), ((360, 480), 8)):
        motion = still_motion()
        motion.camera = PinholeCamera.default_for(height, width)
        out = render_pose_conditions(mannequin, motion, kinds=("skeleton",), backend="torch")
        image, points = as_uint8(out.skeleton)[0], out.keypoints.points[0]
        knee, ankle = points[COCO18_NAMES.index("right_knee")], points[COCO18_NAMES.index("right_ankle")]
        u, v = ((knee + ankle) / 2).tolist()
        row = (image[int(v)] == np.array(limb_color(8), np.uint8)).all(-1)
        assert abs(int(row.sum()) - across) <= 2, (width, int(row.sum()))


def test_face_keypoints_on_smpl_topology_are_the_smpl_vertices(tmp_path):
    """A body with SMPL's 6890-vertex topology that is not the stand-in takes nose, eyes and ears from SMPL's
    vertex ids; the stand-in takes them from its head joint."""
    from synthetic_smpl import write_npz

    smpl_like = load_body_model(write_npz(tmp_path / "SMPL_NEUTRAL.npz"))
    assert not smpl_like.is_standin
    motion = still_motion()
    out = render_pose_conditions(smpl_like, motion, kinds=("skeleton",), backend="torch")
    vertices = camera_vertices(smpl_like, motion).vertices
    torch.testing.assert_close(out.keypoints.camera_points[:, FACE], vertices[:, list(SMPL_FACE_VERTICES)])
    standin = render_pose_conditions(load_body_model(None), motion, kinds=("skeleton",), backend="torch")
    assert not torch.allclose(standin.keypoints.camera_points[:, FACE], out.keypoints.camera_points[:, FACE])
    torch.testing.assert_close(standin.keypoints.camera_points[:, 1:14], out.keypoints.camera_points[:, 1:14])


def test_nose_and_eyes_are_skipped_on_a_body_seen_from_behind(mannequin):
    from_behind = still_motion(orient=(0.0, 0.0, math.pi))  # rotated about z by pi: y down, facing away
    out = render_pose_conditions(mannequin, from_behind, kinds=("skeleton",), backend="torch")
    confidence = out.keypoints.confidence[0]
    assert confidence[FACE[:3]].tolist() == [0, 0, 0] and confidence[1:14].tolist() == [1] * 13
    image = as_uint8(out.skeleton)[0]
    assert colour_centroid(image, COLORS[0])[1] == 0  # no nose drawn
    # right and left swap sides in the picture: the right shoulder is now on the image's right
    points = out.keypoints.points[0]
    assert points[COCO18_NAMES.index("right_shoulder"), 0] > points[COCO18_NAMES.index("left_shoulder"), 0]


def test_off_image_keypoints_are_skipped_and_the_json_is_openpose(mannequin):
    motion = still_motion(transl=(0.0, 1.4, 2.3))  # lowered: the legs leave the image
    out = render_pose_conditions(mannequin, motion, kinds=("skeleton",), backend="torch")
    confidence, points = out.keypoints.confidence[0], out.keypoints.points[0]
    ankle = COCO18_NAMES.index("right_ankle")
    assert confidence[ankle] == 0 and confidence[0] == 1
    frames = json.loads(json.dumps(out.keypoints.openpose_frames()))
    assert frames[0]["canvas_width"] == WIDTH and frames[0]["canvas_height"] == HEIGHT
    flat = frames[0]["people"][0]["pose_keypoints_2d"]
    assert len(flat) == 54 and flat[3 * ankle : 3 * ankle + 3] == [0, 0, 0]
    # the start-pose estimator reads them back as it reads DWPose's (comovi_core.recovery.estimate), in our camera
    # convention again: the image points, 0 where skipped
    read, size = keypoints_from_pose_json(frames[0])
    want = torch.cat((points, confidence[:, None]), -1).numpy()
    assert size == (HEIGHT, WIDTH) and np.allclose(read, want, atol=1e-3)
    # OpenPose counts pixels from their centres: x = u - 0.5
    assert flat[:3] == pytest.approx([float(points[0, 0]) - 0.5, float(points[0, 1]) - 0.5, 1.0], abs=1e-3)


def test_depth_is_brighter_nearer_and_black_behind(mannequin):
    """The right arm held forward toward the camera: its hand is brighter than the belly; the grey of every body
    pixel is the per-clip normalised inverse depth of the rasteriser's own depth."""
    motion = still_motion(pose={17: (0.0, math.pi / 2, 0.0)})  # right shoulder: arm points forward
    out = render_pose_conditions(mannequin, motion, kinds=("depth", "skeleton"), backend="torch")
    depth = out.depth[0]
    assert torch.equal(depth[..., 0], depth[..., 2])  # grey
    points = out.keypoints.points[0]
    wrist = points[COCO18_NAMES.index("right_wrist")]
    belly = (points[COCO18_NAMES.index("right_hip")] + points[COCO18_NAMES.index("left_hip")]) / 2
    grey_at = lambda p: float(depth[int(p[1]), int(p[0]), 0])  # noqa: E731
    assert grey_at(wrist) > grey_at(belly) + 0.1 and grey_at(belly) > 0.2
    vertices = camera_vertices(mannequin, motion).vertices
    z = render_depth(vertices, mannequin.faces, motion.camera)[0]
    near, far = float(vertices[..., 2].min()), float(vertices[..., 2].max())
    expected = 0.2 + 0.8 * (1 / z - 1 / far) / (1 / near - 1 / far)
    torch.testing.assert_close(depth[..., 0][z > 0], expected[z > 0], atol=1e-5, rtol=0)
    assert (depth[z == 0] == 0).all() and float(depth.max()) <= 1.0


def test_normals_face_the_camera_in_blue_and_decode_to_unit_vectors(mannequin):
    motion = still_motion()
    out = render_pose_conditions(mannequin, motion, kinds=("normal", "mesh", "skeleton"), backend="torch")
    normal, mesh = out.normal[0], out.mesh[0]
    body = mesh[..., 0] > 0
    assert (normal[~body] == torch.tensor([0.5, 0.5, 1.0])).all()  # neutral background, a surface facing the camera
    decoded = 1 - 2 * normal[body]  # back to the OpenCV camera frame
    torch.testing.assert_close(decoded.norm(dim=-1), torch.ones(int(body.sum())), atol=2e-3, rtol=0)
    points = out.keypoints.points[0]
    joints = camera_vertices(mannequin, motion).joints[0]
    chest = motion.camera.project((joints[9] + joints[12]) / 2)  # the centre of the chest's ellipsoid
    colour = normal[int(chest[1]), int(chest[0])]
    assert colour[2] > 0.98 and abs(colour[0] - 0.5) < 0.1 and abs(colour[1] - 0.5) < 0.1
    # the body's right flank (image left) faces left: red above 0.5; the top of the head faces up: green above 0.5
    row, column = int(chest[1]), int(chest[0])
    flank = column - int(torch.nonzero(~body[row, :column].flip(0))[0])  # the torso's first pixel left of the chest
    assert normal[row, flank, 0] > 0.75 and normal[row, column, 0] < normal[row, flank, 0] - 0.25
    top = int(torch.nonzero(body[:, int(points[0, 0])])[0])
    assert normal[top + 1, int(points[0, 0]), 1] > 0.75
    # mesh: grey, brightest where the surface faces the camera
    assert torch.equal(mesh[..., 0], mesh[..., 1]) and float(mesh[body].min()) >= 0.2 - 1e-6
    assert float(mesh[int(chest[1]), int(chest[0]), 0]) > 0.85


def test_mesh_silhouette_is_the_motion_map_mask(mannequin):
    motion = demo_motion(3, 176, 320)
    out = render_pose_conditions(mannequin, motion, kinds=("mesh", "depth", "normal"), backend="torch")
    mask = render_motion(mannequin, motion, backend="torch").mask
    assert out.skeleton is None and out.mesh.shape == (3, 176, 320, 3)
    assert torch.equal(out.mesh[..., 0] > 0, mask)
    assert torch.equal(out.depth[..., 0] > 0, mask)
    assert 0.02 < float(mask.float().mean()) < 0.5


def test_chunks_join_to_the_whole_clip(mannequin):
    motion = demo_motion(5, 88, 160)
    whole = render_pose_conditions(mannequin, motion, backend="torch")
    chunked = render_pose_conditions(mannequin, motion, backend="torch", frames_per_chunk=2)
    for kind in ("skeleton", "depth", "normal", "mesh"):
        assert torch.equal(whole.image(kind), chunked.image(kind)), kind
    assert torch.equal(whole.keypoints.points, chunked.keypoints.points)


def test_bad_inputs_say_what_to_fix(mannequin):
    motion = still_motion(3)
    with pytest.raises(CoMoViError, match="need a SMPL motion"):
        render_pose_conditions(mannequin, None)
    with pytest.raises(CoMoViError, match="need a SMPL body model"):
        render_pose_conditions(None, motion)
    with pytest.raises(CoMoViError, match="unknown pose-condition kinds"):
        render_pose_conditions(mannequin, motion, kinds=("openpose",))
    with pytest.raises(CoMoViError, match="line_scale"):
        render_pose_conditions(mannequin, motion, line_scale=-1.0)
    motion.transl[1:, 2] = -3.0  # edited after loading: frames 1 and 2 put the body behind the camera
    with pytest.raises(CoMoViError, match=r"behind the camera in 2 of 3 frames \(1, 2\)"):
        render_pose_conditions(mannequin, motion, backend="torch")


def test_node_renders_every_kind_and_reports_progress(ext):
    import comfy.utils

    nodes = ext["nodes"]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    motion = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    skeleton, depth, normal, mesh, keypoints = (
        nodes["CoMoViRenderPoseConditions"].execute(model, motion, 160, 88, 0.0, "torch").args
    )
    bar = comfy.utils.ProgressBar.instances[-1]
    assert bar.current == bar.total == motion.num_frames == 33
    for images in (skeleton, depth, normal, mesh):
        assert images.shape == (33, 88, 160, 3) and images.dtype == torch.float32
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    from comovi_ext.comovi_core.conditions.render import render_pose_conditions as ext_render  # the host's copy

    ref = ext_render(model, motion, camera=motion.camera.resized(88, 160), backend="torch")
    assert torch.equal(skeleton, ref.skeleton) and torch.equal(normal, ref.normal)
    assert len(keypoints) == 33 and keypoints[0]["canvas_width"] == 160
    with pytest.raises(ValueError, match="need a SMPL motion"):
        nodes["CoMoViRenderPoseConditions"].execute(model, None, 0, 0, 0.0, "torch")
    import comfy.model_management as mm

    mm.INTERRUPT["flag"] = True
    with pytest.raises(mm.InterruptProcessingException):
        nodes["CoMoViRenderPoseConditions"].execute(model, motion, 64, 36, 0.0, "torch")
    assert comfy.utils.ProgressBar.instances[-1].current == 0  # stopped at the first chunk, not after all 33 frames


def test_command_writes_the_videos_keypoints_and_picture(tmp_path):
    from comovi_core.conditions.__main__ import main
    from comovi_core.files.video import probe_video

    out = tmp_path / "conditions"
    assert main(["--out", str(out), "--height", "88", "--width", "160", "--kinds", "skeleton", "depth"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["depth.mp4", "keypoints.json", "skeleton.mp4"]
    assert probe_video(out / "skeleton.mp4") == (33, 88, 160)
    frames = json.loads((out / "keypoints.json").read_text())
    assert len(frames) == 33 and len(frames[0]["people"][0]["pose_keypoints_2d"]) == 54
    picture = tmp_path / "picture.png"
    assert main(["--picture", str(picture), "--height", "88", "--width", "160"]) == 0
    width, height = Image.open(picture).size
    assert width % 4 == 0 and 30 < height <= 88  # four panels, cropped to the body
    assert main([]) == 2  # neither --out nor --picture


def test_opengl_backend_draws_the_same_surfaces(mannequin):
    """Depth, normal and mesh through pyrender (OpenGL) match the torch rasteriser's: the same silhouette but for a
    few edge pixels, and on common pixels the same colours to the 8-bit read-back of the interpolated normals."""
    from comovi_core.motion_map import render_gl

    if not render_gl.is_available():
        pytest.skip("no off-screen OpenGL context: " + render_gl.unavailable_reason())
    motion = demo_motion(2, 88, 160)
    kinds = ("depth", "normal", "mesh")
    torch_out = render_pose_conditions(mannequin, motion, kinds=kinds, backend="torch")
    gl_out = render_pose_conditions(mannequin, motion, kinds=kinds, backend="pyrender")
    torch_mask, gl_mask = torch_out.mesh[..., 0] > 0, gl_out.mesh[..., 0] > 0
    assert float((torch_mask != gl_mask).float().sum()) <= 0.01 * float(torch_mask.sum())
    both = torch_mask & gl_mask
    for kind in kinds:
        difference = (torch_out.image(kind)[both] - gl_out.image(kind)[both]).abs()
        assert float(difference.max()) < 2 / 255, kind  # measured: at most 0.8 / 255


def test_keypoints_behind_the_camera_are_skipped():
    camera = PinholeCamera.default_for(HEIGHT, WIDTH)
    points = torch.tensor([[0.0, 0.0, 2.0], [0.1, 0.0, -1.0], [0.0, 0.2, 0.0]]).repeat(1, 6, 1)  # (1, 18, 3)
    face_normals = torch.tensor([0.0, 0.0, -1.0]).expand(1, 5, 3)  # every face point faces the camera
    keypoints = project_keypoints(points, face_normals, camera)
    assert keypoints.confidence[0, :3].tolist() == [1.0, 0.0, 0.0]
    assert torch.isfinite(keypoints.points).all() and keypoints.points[0, 1:3].abs().sum() == 0
    assert keypoints.points[0, 0].tolist() == [WIDTH / 2, HEIGHT / 2]
