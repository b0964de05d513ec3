"""What every export shares: the y-up world the files are written in (``body.world.CAMERA_TO_WORLD``), and the
shaped rest skeleton. Units: metres.
"""

from __future__ import annotations

import numpy as np
import torch

from ..body.smpl import BodyModel
from ..body.world import CAMERA_TO_WORLD

__all__ = ["CAMERA_TO_WORLD", "rest_joints"]


def rest_joints(model: BodyModel, betas: np.ndarray) -> np.ndarray:
    """(24, 3) joints of the shaped body in the T-pose, SMPL model space (y up)."""
    with torch.no_grad():
        return model(torch.zeros(1, 3), torch.zeros(1, 69), torch.from_numpy(betas)).joints[0].double().numpy()
