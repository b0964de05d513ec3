"""Person detection for the start image: RT-DETR (Apache-2.0) through transformers, loaded on first use.

Only the network comes from transformers; pre- and post-processing are the few lines RT-DETR needs (resize to
640 x 640, 0..1 pixels, sigmoid class scores, centre-size boxes), so no image-processor backend is required.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import CoMoViError

log = logging.getLogger(__name__)

DETECTOR_REPO = "PekingU/rtdetr_r50vd"  # COCO, Apache-2.0, 172 MB
MIN_SCORE = 0.5


def select_person(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    person_label: int,
    min_score: float = MIN_SCORE,
    rule: str = "largest",
) -> np.ndarray:
    """Detections (N, 4) x0 y0 x1 y1, (N,), (N,) -> the (4,) box of one person: the largest (area) or the most
    confident of those labelled ``person_label`` with score >= ``min_score``."""
    keep = (labels == person_label) & (scores >= min_score)
    if not keep.any():
        best = float(scores[labels == person_label].max()) if (labels == person_label).any() else 0.0
        raise CoMoViError(
            f"no person detected in the start image (best person score {best:.2f} < {min_score}): "
            "give body keypoints or a MASK of the person"
        )
    boxes, scores = boxes[keep], scores[keep]
    if rule == "largest":
        key = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    elif rule == "confident":
        key = scores
    else:
        raise CoMoViError(f"unknown person rule {rule!r}: choose 'largest' or 'confident'")
    return boxes[int(np.argmax(key))].astype(np.float32)


class PersonDetector:
    """An RT-DETR ``RTDetrForObjectDetection`` (any config) -> person boxes in image pixels."""

    def __init__(self, model, size: int = 640):
        self.model = model.eval()
        labels = {v.lower(): int(k) for k, v in model.config.id2label.items()}
        self.person_label = labels.get("person", 0)
        self.size = size

    @classmethod
    def from_pretrained(cls, source: str | Path = DETECTOR_REPO, allow_download: bool = False) -> PersonDetector:
        """A local folder, or the Hugging Face repo (cached; fetched only with ``allow_download``)."""
        from transformers import RTDetrForObjectDetection

        try:
            model = RTDetrForObjectDetection.from_pretrained(str(source), local_files_only=not allow_download)
        except OSError as exc:
            raise CoMoViError(
                f"person detector {source} is not available offline ({exc.__class__.__name__}): allow "
                f"the download, or fetch https://huggingface.co/{DETECTOR_REPO} into a folder and "
                "give its path; or give keypoints / a MASK so no detector is needed"
            ) from exc
        return cls(model)

    def __call__(self, image: torch.Tensor, min_score: float = MIN_SCORE, rule: str = "largest") -> np.ndarray:
        """(H, W, 3) RGB in [0, 1] -> (4,) the chosen person's box x0, y0, x1, y1 in pixels."""
        boxes, scores, labels = self._detections(image)
        return select_person(boxes, scores, labels, self.person_label, min_score, rule)

    def detect(self, image: torch.Tensor, min_score: float = MIN_SCORE) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) RGB in [0, 1] -> every person detected: boxes (N, 4) x0, y0, x1, y1 in pixels, scores (N,)
        >= ``min_score`` (N may be 0). The form ``comovi_core.capture`` tracks a person through a video with."""
        boxes, scores, labels = self._detections(image)
        keep = (labels == self.person_label) & (scores >= min_score)
        return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)

    @torch.no_grad()
    def _detections(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(H, W, 3) -> boxes (Q, 4) in pixels, scores (Q,), labels (Q,) of all the network's queries."""
        h, w = image.shape[:2]
        pixels = F.interpolate(
            image.permute(2, 0, 1)[None].float(),
            size=(self.size, self.size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        param = next(self.model.parameters())
        out = self.model(pixel_values=pixels.to(param))
        probs = out.logits[0].float().sigmoid()  # (Q, classes)
        scores, labels = probs.max(-1)
        cxcywh = out.pred_boxes[0].float() * torch.tensor([w, h, w, h])
        boxes = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], -1)
        return boxes.cpu().numpy(), scores.cpu().numpy(), labels.cpu().numpy()
