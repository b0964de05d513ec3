"""The 18 OpenPose COCO keypoints of a posed SMPL body, projected by the motion's camera.

Keypoint k (``COCO18_NAMES[k]``) in camera space (OpenCV frame, metres):

* neck: the midpoint of the two SMPL shoulder joints (as DWPose makes its neck from COCO's two shoulders);
* shoulders, elbows, wrists, hips, knees, ankles: the SMPL joints of the same name;
* nose, eyes, ears on real SMPL topology (6890 vertices, not the stand-in): the SMPL vertices 332 (nose), 6260 and
  2800 (right and left eye), 4071 and 583 (right and left ear), the vertex ids smplx and the OpenPose-fitting
  literature use for these points;
* nose, eyes, ears on any other body (the stand-in mannequin, other topologies): fixed offsets from the head joint
  in the head's own frame (``HEAD_FACE_OFFSETS``: x the body's left, y up, z forward, metres; they lie on the
  stand-in's head, an ellipsoid 18 cm wide, 20 cm deep and 24 cm tall whose centre is 10 cm above the head joint),
  turned by the head joint's rotation in the camera frame.

A keypoint is kept (confidence 1) when it is in front of the camera, its image point lies inside the image and, for
the five face points, the head surface there faces the camera (``FACE_VISIBLE_COS``): as OpenPose and DWPose find
no nose or eyes on a person seen from behind. Otherwise its confidence is 0 and drawers skip it.

Image points follow ``body.camera``: (u, v) with pixel (row r, column c) centred at (c + 0.5, r + 0.5). OpenPose
JSON counts pixels from their centres (pixel c at x = c), so ``openpose_frames`` writes x = u - 0.5, y = v - 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..body.camera import PinholeCamera
from ..body.parts import SMPL_JOINT_NAMES
from ..body.rotations import axis_angle_to_matrix
from ..body.smpl import BodyModel, BodyOutput
from ..motion_map.colors import vertex_normals

COCO18_NAMES: tuple[str, ...] = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
NUM_KEYPOINTS = len(COCO18_NAMES)  # 18
NECK = COCO18_NAMES.index("neck")
FACE_KEYPOINTS = ("nose", "right_eye", "left_eye", "right_ear", "left_ear")
FACE_INDICES = tuple(COCO18_NAMES.index(name) for name in FACE_KEYPOINTS)
# keypoint index -> SMPL joint index, for the 12 limb keypoints that are SMPL joints
JOINT_KEYPOINTS: dict[int, int] = {
    COCO18_NAMES.index(name): SMPL_JOINT_NAMES.index(name)
    for name in COCO18_NAMES
    if name not in FACE_KEYPOINTS and name != "neck"
}
SHOULDER_JOINTS = (SMPL_JOINT_NAMES.index("left_shoulder"), SMPL_JOINT_NAMES.index("right_shoulder"))
# the 13 keypoints a skeleton alone gives (the 12 limb joints and the neck between the shoulders), COCO-18 order
BODY_KEYPOINTS: tuple[int, ...] = tuple(sorted((NECK, *JOINT_KEYPOINTS)))
HEAD_JOINT = SMPL_JOINT_NAMES.index("head")

SMPL_NUM_VERTICES = 6890
# SMPL vertex of each face keypoint (FACE_KEYPOINTS order), for real SMPL topology
SMPL_FACE_VERTICES = (332, 6260, 2800, 4071, 583)
# Offsets from the head joint in the head's frame (x body's left, y up, z forward), metres, FACE_KEYPOINTS order,
# and the centre of the head they lie on (its outward directions decide which face points face the camera).
HEAD_FACE_OFFSETS = (
    (0.0, 0.09, 0.10),
    (-0.035, 0.12, 0.09),
    (0.035, 0.12, 0.09),
    (-0.09, 0.10, 0.0),
    (0.09, 0.10, 0.0),
)
HEAD_CENTRE_OFFSET = (0.0, 0.10, 0.0)
# A face point is drawn when the cosine between its outward direction and the direction to the camera exceeds this
# (a little past 90 degrees, so both ears of a face seen from the front count).
FACE_VISIBLE_COS = -0.1


@dataclass
class PoseKeypoints:
    """COCO-18 keypoints of T frames (order ``COCO18_NAMES``)."""

    camera_points: torch.Tensor  # (T, 18, 3) float32 camera space, metres
    points: torch.Tensor  # (T, 18, 2) float32 image points (u, v), pixel centres at +0.5; 0 where skipped
    confidence: torch.Tensor  # (T, 18) float32, 1 where the keypoint is drawn, 0 where it is skipped
    image_size: tuple[int, int]  # (H, W) of the image the points belong to

    @property
    def num_frames(self) -> int:
        return self.points.shape[0]

    def openpose_frames(self) -> list[dict]:
        """One OpenPose JSON dict per frame, as ComfyUI's POSE_KEYPOINT carries them: ``{"people":
        [{"pose_keypoints_2d": [x, y, c] * 18}], "canvas_height", "canvas_width"}``; skipped keypoints are 0, 0, 0."""
        height, width = self.image_size
        xyc = torch.cat((self.points - 0.5, self.confidence[..., None]), -1) * self.confidence[..., None]
        return [
            {
                "people": [{"pose_keypoints_2d": [round(float(v), 3) for v in frame.reshape(-1)]}],
                "canvas_height": height,
                "canvas_width": width,
            }
            for frame in xyc.cpu()
        ]


def joint_keypoints(joints: torch.Tensor) -> torch.Tensor:
    """SMPL joints (..., 24, 3) -> the ``BODY_KEYPOINTS`` made from them (..., 13, 3), in that order: the limb
    keypoints are joints, the neck is the midpoint of the shoulders."""
    rows = [
        joints[..., list(SHOULDER_JOINTS), :].mean(-2) if k == NECK else joints[..., JOINT_KEYPOINTS[k], :]
        for k in BODY_KEYPOINTS
    ]
    return torch.stack(rows, -2)


def uses_smpl_face_vertices(model: BodyModel) -> bool:
    """Whether the face keypoints come from SMPL vertex ids (real SMPL topology) or from the head joint."""
    return not model.is_standin and model.smpl.v_template.shape[0] == SMPL_NUM_VERTICES


def joint_rotations(model: BodyModel, full_pose: torch.Tensor) -> torch.Tensor:
    """(T, 72) axis-angle of the 24 joints -> (T, 24, 3, 3) rotation of each joint's frame in the camera frame."""
    local = axis_angle_to_matrix(full_pose.reshape(full_pose.shape[0], 24, 3))  # (T, 24, 3, 3)
    parents = model.smpl.parents.tolist()
    world = [local[:, 0]]
    for joint in range(1, 24):  # parents come before their children in SMPL's order
        world.append(world[parents[joint]] @ local[:, joint])
    return torch.stack(world, 1)


def camera_keypoints(model: BodyModel, body: BodyOutput, full_pose: torch.Tensor, faces: torch.Tensor):
    """The 18 keypoints in camera space and the outward direction at the five face points.

    body: the posed body (camera-space vertices (T, V, 3) and joints (T, 24, 3)); full_pose: (T, 72) axis-angle.
    Returns points (T, 18, 3) and face_normals (T, 5, 3) unit, both float32."""
    joints, vertices = body.joints.to(torch.float32), body.vertices.to(torch.float32)
    points = torch.zeros(joints.shape[0], NUM_KEYPOINTS, 3, dtype=torch.float32, device=joints.device)
    points[:, list(BODY_KEYPOINTS)] = joint_keypoints(joints)
    face = list(FACE_INDICES)
    if uses_smpl_face_vertices(model):
        ids = torch.tensor(SMPL_FACE_VERTICES, device=vertices.device)
        points[:, face] = vertices[:, ids]
        face_normals = vertex_normals(vertices, faces.to(vertices.device))[:, ids]
    else:
        head = joint_rotations(model, full_pose.to(joints.device, torch.float32))[:, HEAD_JOINT]  # (T, 3, 3)
        offsets = torch.tensor(HEAD_FACE_OFFSETS, dtype=torch.float32, device=joints.device)  # (5, 3)
        points[:, face] = joints[:, HEAD_JOINT, None] + offsets @ head.transpose(1, 2)
        outward = offsets - torch.tensor(HEAD_CENTRE_OFFSET, dtype=torch.float32, device=joints.device)
        face_normals = F.normalize(outward @ head.transpose(1, 2), dim=-1)
    return points, face_normals


def project_keypoints(points: torch.Tensor, face_normals: torch.Tensor, camera: PinholeCamera) -> PoseKeypoints:
    """Camera-space keypoints (T, 18, 3) and face outward directions (T, 5, 3) -> ``PoseKeypoints`` (module docstring
    for which are kept)."""
    in_front = points[..., 2] > 0
    safe = torch.where(in_front[..., None], points, torch.ones_like(points))
    uv = camera.project(safe)  # (T, 18, 2)
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < camera.width) & (uv[..., 1] >= 0) & (uv[..., 1] < camera.height)
    keep = in_front & inside & torch.isfinite(uv).all(-1)
    to_camera = F.normalize(-points[:, list(FACE_INDICES)], dim=-1)
    keep[:, list(FACE_INDICES)] &= (face_normals * to_camera).sum(-1) > FACE_VISIBLE_COS
    uv = torch.where(keep[..., None], uv, torch.zeros_like(uv))
    return PoseKeypoints(points, uv, keep.to(torch.float32), camera.image_size)
