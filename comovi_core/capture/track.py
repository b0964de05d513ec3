"""One person through a clip: per-frame person detections -> the subject's box in every frame.

Detections are linked frame to frame into tracks. A track predicts its next box from its last two (constant
velocity of the centre, its last size); a detection may join it when the two overlap (IoU) or their centres lie
close relative to the box's size, and the pairs of least cost are taken first (Hungarian assignment): the cost is
``1 - IoU`` plus the centre distance in box heights plus the log size ratio, so a passer-by of another size that
crosses the subject does not take its place. A detection no track takes starts a track; a track unseen for more
than ``max_gap`` frames ends. The subject is one track, chosen by a rule (``RULES``); its gaps of at most
``max_gap`` frames are bridged by linear interpolation of the box, longer ones are lost (the last known box is
kept there, the first known before the first detection).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CoMoViError
from ..recovery.hmr.crop import box_from_mask, box_from_points

RULES = {
    "largest": "the track with the largest mean box area times frames present",
    "longest": "the track present in the most frames",
}
MIN_IOU = 0.1  # a detection overlapping a track's predicted box at least this much may join it
MAX_CENTRE_DISTANCE = 0.6  # ... or one whose centre lies within this many box heights of the predicted centre


@dataclass
class PersonTrack:
    boxes: np.ndarray  # (T, 4) float32 x0, y0, x1, y1 of the subject (interpolated over gaps, last known where lost)
    scores: np.ndarray  # (T,) detection score of the subject, 0 where not detected
    detected: np.ndarray  # (T,) bool, the subject's box came from a detection this frame
    interpolated: np.ndarray  # (T,) bool, bridged by interpolation (gap <= max_gap)
    lost: np.ndarray  # (T,) bool, neither detected nor bridged
    people: np.ndarray  # (T,) int, persons detected in the frame (score >= min_score)
    rule: str  # how the subject was chosen, in words


def boxes_from_masks(masks) -> list[np.ndarray | None]:
    """(T, H, W) masks (nonzero = the person) -> per frame its (4,) box, None where the mask is empty or tiny."""
    return [_or_none(box_from_mask, m) for m in masks]


def boxes_from_keypoints(keypoints, height: int, width: int) -> list[np.ndarray | None]:
    """(T, K, 3) keypoints (x, y, confidence in pixels) -> per frame the person's (4,) box (``box_from_points``),
    None where fewer than 2 keypoints are confident."""
    return [_or_none(box_from_points, np.asarray(k, np.float32), height, width) for k in keypoints]


def _or_none(fn, *args) -> np.ndarray | None:
    try:
        return fn(*args)
    except CoMoViError:
        return None


def detections_of(boxes: list[np.ndarray | None]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-frame boxes (None: no person) -> ``track_person``'s detections, score 1 for each box."""
    return [
        (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        if b is None
        else (np.asarray(b, np.float32)[None], np.ones(1, np.float32))
        for b in boxes
    ]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) boxes -> (N, M) intersection over union."""
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(-1), (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


class _Track:
    def __init__(self, frame: int, box: np.ndarray, score: float):
        self.frames, self.boxes, self.scores = [frame], [box], [score]

    def predicted(self, frame: int) -> np.ndarray:
        """The box expected at ``frame``: the last box moved by the centre's last velocity per frame."""
        if len(self.frames) < 2:
            return self.boxes[-1]
        step = (self.boxes[-1] - self.boxes[-2]) / (self.frames[-1] - self.frames[-2])
        velocity = (step[:2] + step[2:]) / 2
        return self.boxes[-1] + np.tile(velocity, 2) * (frame - self.frames[-1])

    def value(self, rule: str) -> float:
        if rule == "longest":
            return len(self.frames)
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in self.boxes]
        return float(np.mean(areas)) * len(self.frames)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1.0)


def _costs(predicted: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 4) predicted track boxes, (M, 4) detections -> (N, M) linking costs, inf where they may not link."""
    overlap = iou(predicted, boxes)
    height = np.maximum(predicted[:, 3] - predicted[:, 1], 1.0)[:, None]
    distance = np.linalg.norm(_centres(predicted)[:, None] - _centres(boxes)[None], axis=-1) / height
    size = np.abs(np.log(_areas(predicted)[:, None] / _areas(boxes)[None]))
    cost = (1 - overlap) + distance + size
    return np.where((overlap >= MIN_IOU) | (distance <= MAX_CENTRE_DISTANCE), cost, np.inf)


def track_person(
    detections: list[tuple[np.ndarray, np.ndarray]],
    *,
    min_score: float = 0.5,
    max_gap: int = 8,
    rule: str = "largest",
    link_gap: int | None = None,
) -> PersonTrack:
    """detections[t] = (boxes (N, 4) x0 y0 x1 y1 in pixels, scores (N,)) of the persons in frame t (maybe none)
    -> the track of one person through the clip (see the module's docstring; ``rule``: one of ``RULES``).
    ``link_gap``: frames a track may miss and still be continued (default ``max_gap``; a clip known to show one
    person, as given boxes or masks, links across any gap). Only gaps of at most ``max_gap`` are interpolated."""
    from scipy.optimize import linear_sum_assignment  # on use: scipy costs ~0.4 s at ComfyUI start-up

    if rule not in RULES:
        raise CoMoViError(f"unknown subject rule {rule!r}: choose one of {sorted(RULES)}")
    frames = len(detections)
    if frames == 0:
        raise CoMoViError("no frames to track a person in")
    link_gap = max_gap if link_gap is None else link_gap
    people = np.zeros(frames, np.int64)
    active: list[_Track] = []
    ended: list[_Track] = []
    for t, (boxes, scores) in enumerate(detections):
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        keep = scores >= min_score
        boxes, scores = boxes[keep], scores[keep]
        people[t] = len(boxes)
        ended += [k for k in active if t - k.frames[-1] > link_gap + 1]
        active = [k for k in active if t - k.frames[-1] <= link_gap + 1]
        taken = set()
        if active and len(boxes):
            cost = _costs(np.stack([k.predicted(t) for k in active]), boxes)
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
            for r, c in zip(rows, cols):
                if np.isfinite(cost[r, c]):
                    active[r].frames.append(t)
                    active[r].boxes.append(boxes[c])
                    active[r].scores.append(float(scores[c]))
                    taken.add(c)
        active += [_Track(t, boxes[c], float(scores[c])) for c in range(len(boxes)) if c not in taken]
    tracks = ended + active
    if not tracks:
        return PersonTrack(
            np.zeros((frames, 4), np.float32),
            np.zeros(frames, np.float32),
            np.zeros(frames, bool),
            np.zeros(frames, bool),
            np.ones(frames, bool),
            people,
            f"no person detected (score >= {min_score})",
        )
    subject = max(tracks, key=lambda k: k.value(rule))
    return _filled(subject, frames, max_gap, people, f"{RULES[rule]} ({len(tracks)} tracks)")


def _filled(track: _Track, frames: int, max_gap: int, people: np.ndarray, rule: str) -> PersonTrack:
    """The subject's detections -> boxes in every frame: gaps of <= ``max_gap`` interpolated, others held."""
    seen = np.array(track.frames)
    known = np.stack(track.boxes).astype(np.float32)
    boxes = np.zeros((frames, 4), np.float32)
    scores = np.zeros(frames, np.float32)
    detected = np.zeros(frames, bool)
    boxes[seen], scores[seen], detected[seen] = known, track.scores, True
    interpolated = np.zeros(frames, bool)
    for a, b, box_a, box_b in zip(seen[:-1], seen[1:], known[:-1], known[1:]):
        if 1 < b - a <= max_gap + 1:  # a gap of b - a - 1 <= max_gap frames
            w = (np.arange(a + 1, b) - a)[:, None] / (b - a)
            boxes[a + 1 : b] = (1 - w) * box_a + w * box_b
            interpolated[a + 1 : b] = True
        elif b - a > 1:
            boxes[a + 1 : b] = box_a
    boxes[: seen[0]] = known[0]
    boxes[seen[-1] + 1 :] = known[-1]
    lost = ~(detected | interpolated)
    return PersonTrack(boxes, scores, detected, interpolated, lost, people, rule)
