"""SMPL kinematics through ``smplx`` on arrays we loaded safely (smplx never unpickles anything here)."""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import numpy as np
import smplx
import torch
from smplx.utils import Struct

from ..errors import CoMoViError
from .model_file import BodyModelData

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
            v_template=data.v_template,
            shapedirs=data.shapedirs,
            posedirs=data.posedirs,
            J_regressor=data.J_regressor,
            weights=data.weights,
            kintree_table=data.kintree_table,
            f=data.f,
        )
        # smplx prints a note about 10-component models; keep our stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            self.smpl = smplx.SMPL(
                model_path=data.source,
                data_struct=struct,
                num_betas=num_betas,
                create_betas=False,
                create_global_orient=False,
                create_body_pose=False,
                create_transl=False,
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
        betas = (
            torch.zeros(self.num_betas, device=dev, dtype=dt)
            if betas is None
            else torch.as_tensor(betas, device=dev, dtype=dt)
        )
        betas = betas.reshape(-1, betas.shape[-1])[:, : self.num_betas]  # (1 or T, B)
        transl = None if transl is None else torch.as_tensor(transl, device=dev, dtype=dt).reshape(t, 3)
        out = self.smpl(betas=betas.expand(t, -1), global_orient=global_orient, body_pose=body_pose, transl=transl)
        return BodyOutput(out.vertices, out.joints[:, :24])


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
