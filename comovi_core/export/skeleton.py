"""What every export shares: the y-up world the files are written in, and the shaped rest skeleton.

The camera frame of a motion file (OpenCV: y down, z forward) is turned 180 degrees about x, so the camera sits
at the origin looking down -z, as Blender, Maya and Houdini expect. Units: metres.
"""

from __future__ import annotations

import numpy as np
import torch

from ..body.smpl import BodyModel

CAMERA_TO_WORLD = np.diag([1.0, -1.0, -1.0])  # 180 degrees about x: OpenCV camera -> y-up world


def rest_joints(model: BodyModel, betas: np.ndarray) -> np.ndarray:
    """(24, 3) joints of the shaped body in the T-pose, SMPL model space (y up)."""
    with torch.no_grad():
        return model(torch.zeros(1, 3), torch.zeros(1, 69), torch.from_numpy(betas)).joints[0].double().numpy()
