"""Planted feet: where the motion map shows a foot standing still, keep the fitted foot still in 3D.

A motion map constrains the body's depth weakly (a body a little nearer and smaller draws almost the same
map), so a fit lets a standing foot slide along the view ray and sideways while it explains the rest of the
body (foot skating). The map itself shows when a foot stands: its pixels do not change. ``planted_feet``
looks at a window around each fitted foot (foot and toe parts, projected) in a run's anchor frame and in
the current frame; where less than ``CHANGED_FRACTION`` of the window's pixels changed colour by more than
``CHANGE`` (after a 3x3 box filter, which evens out the single mislabelled pixels of a generated map's part
borders), the foot is planted at the anchor's place. Comparing with the run's first frame, not the previous
one, also catches a slow slide that no single frame shows. Measured on benchmarks/bench_fit_motion.py maps
(9 frames, windows around the true feet, ``kick``/``arms``/``demo``): at 352x640 a planted foot changed at
most 8% of its window after the VAE-like degradation (10% with ``HARSH``), a moving one at least 28%; at
176x320 at most 13% against at least 20% (a foot 5 cm away). The fit looks at the map at its full resolution.

``slip`` is the term the fit adds: the squared distance of each planted foot's 3D centre from its place at
the run's anchor frame, in centimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..body.camera import PinholeCamera
from ..body.parts import PART_NAMES

FEET = (("leftFoot", "leftToeBase"), ("rightFoot", "rightToeBase"))  # parts of each foot: left, right
CONTACT_WEIGHT = 0.01  # weight of ``slip`` per squared centimetre a planted foot moved
CHANGE = 0.1  # a pixel changed when a channel differs by more than this (colours in [0, 1])
CHANGED_FRACTION = 0.15  # a foot is planted when less than this fraction of its window changed
WINDOW_MARGIN = 2  # pixels added around the union of the foot's boxes in the two frames compared


def foot_masks(part_ids: torch.Tensor) -> torch.Tensor:
    """(V,) part ids -> (2, V) bool: the vertices of the left and the right foot (foot and toe parts)."""
    ids = [torch.tensor([PART_NAMES.index(name) for name in foot], device=part_ids.device) for foot in FEET]
    return torch.stack([torch.isin(part_ids, i) for i in ids])


def foot_centres(vertices: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """vertices (T, V, 3), masks (2, V) -> (T, 2, 3) mean vertex of each foot."""
    weights = masks.to(vertices.dtype) / masks.sum(-1, keepdim=True)  # (2, V)
    return torch.einsum("fv,tvc->tfc", weights, vertices)


def _changed(images: torch.Tensor, a: int, b: int, boxes: torch.Tensor) -> float:
    """Fraction of pixels in the union of ``boxes`` (2, 4: x0, y0, x1, y1 at frames a, b) whose colour changed."""
    height, width = images.shape[1:3]
    x0, y0 = (boxes[:, :2].amin(0).floor() - WINDOW_MARGIN).clamp_min(0).long().tolist()
    x1, y1 = (boxes[:, 2:].amax(0).ceil() + WINDOW_MARGIN).long().tolist()
    x1, y1 = min(x1, width), min(y1, height)
    if x1 - x0 < 2 or y1 - y0 < 2:  # the foot is outside the picture: the map shows nothing of it
        return 1.0
    window = images[[a, b], y0:y1, x0:x1].permute(0, 3, 1, 2)  # (2, 3, h, w)
    window = torch.nn.functional.avg_pool2d(window, 3, 1, 1, count_include_pad=False).permute(0, 2, 3, 1)
    return float((window[1] - window[0]).abs().amax(-1).gt(CHANGE).float().mean())


@torch.no_grad()
def planted_feet(images: torch.Tensor, vertices: torch.Tensor, masks: torch.Tensor, camera: PinholeCamera):
    """images (T, H, W, 3) the map seen by ``camera``; vertices (T, V, 3) a fit of it -> (T, 2) long anchors.

    ``anchor[t, f]`` is the frame foot ``f`` (0 left, 1 right) has stood still since, or -1 where it moves
    (always -1 at frame 0). A run of planted frames shares one anchor: its first frame."""
    frames = images.shape[0]
    anchors = torch.full((frames, 2), -1, dtype=torch.long)
    for foot in range(2):
        uv = camera.project(vertices[:, masks[foot]].float().cpu())  # (T, N, 2)
        boxes = torch.cat([uv.amin(1), uv.amax(1)], -1)  # (T, 4)
        start = 0
        for t in range(1, frames):
            if _changed(images, start, t, boxes[[start, t]]) < CHANGED_FRACTION:
                anchors[t, foot] = start
            else:
                start = t
    return anchors


def slip(centres: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """centres (T, 2, 3) metres, anchors (T, 2) -> (T,) squared distance (cm^2) of planted feet from their anchors."""
    anchored = centres[anchors.clamp_min(0), torch.arange(2, device=centres.device)]  # (T, 2, 3)
    distance = (centres - anchored).square().sum(-1) * 1e4  # (T, 2)
    return (distance * (anchors >= 0)).sum(-1)


@dataclass(frozen=True)
class Contacts:
    """Planted feet of a clip (``planted_feet``) as the fit's term, ``CONTACT_WEIGHT * slip``."""

    anchors: torch.Tensor  # (T, 2) long: frame each foot stands still since, -1 where it moves
    masks: torch.Tensor  # (2, V) bool: vertices of the left and the right foot

    def term(self, vertices: torch.Tensor) -> torch.Tensor:
        """vertices (T, V, 3) of every frame -> (T,)."""
        return CONTACT_WEIGHT * slip(foot_centres(vertices, self.masks), self.anchors.to(vertices.device))

    def standing(self) -> torch.Tensor:
        """(T, 2) bool: the foot stands in this frame, including the first frame of each planted run."""
        standing = self.anchors >= 0
        frames, feet = standing.nonzero(as_tuple=True)
        standing[self.anchors[frames, feet], feet] = True
        return standing

    @property
    def planted(self) -> int:
        """Foot-frames planted (0..2T)."""
        return int((self.anchors >= 0).sum())
