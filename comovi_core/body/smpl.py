"""SMPL kinematics through ``smplx`` on arrays we loaded safely (smplx never unpickles anything here)."""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import numpy as np
import smplx
import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues, blend_shapes, vertices2joints
from smplx.utils import Struct

from .model_file import BodyModelData
from ..errors import CoMoViError

log = logging.getLogger(__name__)

NUM_BETAS = 10


@dataclass
class BodyOutput:
    vertices: torch.Tensor  # (T, V, 3)
    joints: torch.Tensor  # (T, 24, 3)


class BodyModel(torch.nn.Module):
    """SMPL (or the stand-in mannequin) as a module: parameters in, vertices and 24 joints out."""

    def __init__(self, data: BodyModelData, num_betas: int = NUM_BETAS):
        super().__init__()
        struct = Struct(
            v_template=data.v_template, shapedirs=data.shapedirs, posedirs=data.posedirs,
            J_regressor=data.J_regressor, weights=data.weights, kintree_table=data.kintree_table, f=data.f,
        )
        # smplx prints a note about 10-component models; keep our stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            self.smpl = smplx.SMPL(
                model_path=data.source, data_struct=struct, num_betas=num_betas, create_betas=False,
                create_global_orient=False, create_body_pose=False, create_transl=False,
            )
        self.register_buffer("part_ids", torch.from_numpy(data.part_ids), persistent=False)
        self.source = data.source
        self.is_standin = data.is_standin
        self.num_betas = num_betas

    @property
    def faces(self) -> torch.Tensor:
        return self.smpl.faces_tensor  # (F, 3) int64

    def forward(
        self,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        betas: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        """Axis-angle poses: global_orient (T, 3), body_pose (T, 69); betas (10,) or (T, 10); transl (T, 3)."""
        dev, dt = self.smpl.shapedirs.device, self.smpl.shapedirs.dtype
        global_orient = torch.as_tensor(global_orient, device=dev, dtype=dt)
        body_pose = torch.as_tensor(body_pose, device=dev, dtype=dt)
        t = global_orient.shape[0]
        if global_orient.shape != (t, 3) or body_pose.shape != (t, 69):
            raise CoMoViError(
                f"SMPL poses must be axis-angle global_orient (T, 3) and body_pose (T, 69), "
                f"got {tuple(global_orient.shape)} and {tuple(body_pose.shape)}"
            )
        betas = torch.zeros(self.num_betas, device=dev, dtype=dt) if betas is None else torch.as_tensor(betas, device=dev, dtype=dt)
        betas = betas.reshape(-1, betas.shape[-1])[:, : self.num_betas]  # (1 or T, B): one shape is computed once
        transl = None if transl is None else torch.as_tensor(transl, device=dev, dtype=dt).reshape(t, 3)
        vertices, joints = self._skin(betas, torch.cat((global_orient, body_pose), dim=1))
        if transl is not None:
            vertices, joints = vertices + transl[:, None], joints + transl[:, None]
        return BodyOutput(vertices, joints)

    def _skin(self, betas: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear blend skinning with smplx's buffers and helpers, as ``smplx.lbs.lbs`` computes it.

        The last step applies the per-vertex 4x4 transforms with three broadcast multiply-adds
        instead of smplx's per-vertex batched matmul, which is several times faster on CPU for long clips.
        betas (1 or T, B), pose (T, 72) -> vertices (T, V, 3), joints (T, 24, 3).
        """
        smpl, t = self.smpl, pose.shape[0]
        v_shaped = smpl.v_template + blend_shapes(betas, smpl.shapedirs)  # (1 or T, V, 3)
        rest_joints = vertices2joints(smpl.J_regressor, v_shaped).expand(t, -1, -1)  # (T, 24, 3)
        rot_mats = batch_rodrigues(pose.reshape(-1, 3)).view(t, -1, 3, 3)  # (T, 24, 3, 3)
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        pose_feature = (rot_mats[:, 1:] - eye).reshape(t, -1)  # (T, 207)
        v_posed = v_shaped + (pose_feature @ smpl.posedirs).view(t, -1, 3)  # (T, V, 3)
        joints, rel_transforms = batch_rigid_transform(rot_mats, rest_joints, smpl.parents, dtype=pose.dtype)
        # per-vertex transforms laid out (T, 4, 4, V) so the last step runs on contiguous rows
        rel = rel_transforms.reshape(t, 24, 16).transpose(1, 2).reshape(t * 16, 24)  # (T*16, 24)
        per_vertex = (rel @ smpl.lbs_weights.T).view(t, 4, 4, -1)  # (T, 4, 4, V)
        rest = v_posed.transpose(1, 2)  # (T, 3, V)
        posed = per_vertex[:, :3, 3] + sum(per_vertex[:, :3, k] * rest[:, k : k + 1] for k in range(3))  # (T, 3, V)
        vertices = posed.transpose(1, 2)
        return vertices, joints


def load_body_model(path=None, gender: str = "neutral", device="cpu") -> BodyModel:
    """Load SMPL from ``path`` (file or folder). ``path=None`` gives the built-in stand-in mannequin."""
    if path is None:
        from .mannequin import mannequin_model_data

        log.warning("no SMPL model given: using the built-in stand-in mannequin (NOT SMPL; for demos and tests only)")
        data = mannequin_model_data()
    else:
        from .model_file import load_model_data

        data = load_model_data(path, gender)
    return BodyModel(data).to(device)


def camera_vertices(model: BodyModel, motion) -> BodyOutput:
    """Pose a ``SMPLMotion`` into OpenCV camera space (vertices = SMPL(...) + transl)."""
    return model(
        torch.from_numpy(np.asarray(motion.global_orient, np.float32)),
        torch.from_numpy(np.asarray(motion.body_pose, np.float32)),
        torch.from_numpy(np.asarray(motion.betas, np.float32)),
        torch.from_numpy(np.asarray(motion.transl, np.float32)),
    )
