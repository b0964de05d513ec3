"""CameraHMR (Patel and Black, 3DV 2025; research licence): HMR 2.0's network with a CLIFF head that knows where
the crop lies in the full picture and the picture's focal length, paired with FLNet, which estimates that focal.

The head's query token is [bbox info (3), mean pose (144), mean betas (10), mean camera (3)], bbox info being
the crop's centre relative to the image centre and its side, all divided by the focal length in pixels
(``bbox_info``). The release crops the detector box's longer side as a square (no margin, no blur) and slices 32
columns off each side of the 256-pixel crop, as HMR 2.0 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .backbone import ViTBackbone
from .config import CameraHMRConfig
from .fl_net import FLNet
from .head import HMR2Output, HMRDecoderHead


class CameraHMR(nn.Module):
    """(B, 3, S, S) crop normalised with ``config.image_mean``/``image_std``, (B, 3) ``bbox_info`` -> HMR2Output."""

    def __init__(self, config: CameraHMRConfig):
        super().__init__()
        self.config = config
        self.backbone = ViTBackbone(config)
        self.head = HMRDecoderHead(config, token_dim=config.token_dim)

    def forward(self, crop: torch.Tensor, bbox_info: torch.Tensor) -> HMR2Output:
        margin = (self.config.image_size - self.config.crop_width) // 2
        tokens = self.backbone(crop[..., margin : crop.shape[-1] - margin])  # (B, N, C)
        b, head = crop.shape[0], self.head
        means = (head.init_body_pose, head.init_betas, head.init_cam)
        token = torch.cat([bbox_info.to(tokens), *(m.expand(b, -1) for m in means)], -1)  # (B, 160)
        return head(tokens, token[:, None])


def crop_window(box: np.ndarray) -> tuple[float, float, float]:
    """(4,) x0, y0, x1, y1 -> (centre x, centre y, side) of CameraHMR's square crop: the box's longer side."""
    return float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2, float(max(box[2] - box[0], box[3] - box[1]))


def bbox_info(window: tuple[float, float, float], image_size: tuple[int, int], focal_length: float) -> torch.Tensor:
    """(cx, cy, side) of the crop in a (H, W) picture seen at ``focal_length`` pixels -> (3,) the head's box
    information: ((cx - W / 2) / f, (cy - H / 2) / f, side / f)."""
    cx, cy, side = window
    h, w = image_size
    return torch.tensor([(cx - w / 2) / focal_length, (cy - h / 2) / focal_length, side / focal_length])


@dataclass
class CameraHMREstimator:
    """What a CameraHMR estimate needs: the network and, when found, FLNet for the picture's focal length."""

    model: CameraHMR
    focal_net: FLNet | None = None
