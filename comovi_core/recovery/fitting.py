"""Recover a SMPL motion from a motion-map video by fitting the body to it (when no 3D head is loaded).

The motion map tells, per pixel, which body part is seen and its surface normal. For every frame and
part we summarise the decoded pixels by their count, 2D centroid, 2D covariance and mean normal, and
fit the body so that the same summaries of its camera-facing vertices (soft-weighted by how much each
vertex faces the camera) match, with a smoothness prior over time. Frame 0 stays the given start pose
(shape, pose and camera are known there). Summaries instead of a differentiable rasteriser keep it
fast and dependency-free. Occlusion is handled without gradient: every ``VISIBILITY_EVERY`` steps the current
pose's depth is rendered and hidden vertices are dropped from the body's summaries: hidden surface would
otherwise pull a fit away from the true pose (docs/fitting.md, "Why it is built this way").

The fit works in the window the body moves in (``_crop_to_body``: the map's non-background pixels over
all frames and the start pose, plus a margin), so its pixels go to the body, not to empty background.
Maps are decoded at a reduced resolution of that window (``max_side``, nearest-neighbour so the colours
stay exact). Priors (``fit_prior``): a weak temporal smoothness (a strong one flattened fast motions) and
joint limits. Frame-by-frame passes visit at most ``TRACK_KEYFRAMES`` frames of a long clip (every k-th
frame, the rest interpolated) and the joint fits refine every frame.

Labels decoded from a generated map are wrong where the VAE blurred colours across part borders, and
those errors pull the summaries far off (on a VAE-like degraded map, further than holding the start pose). A
colour stage follows (``fit_splat``, ``splat_steps`` > 0): the
posed body is splatted with its motion-map colours and compared with the map colour by colour at
``SPLAT_SIDE``; it refines the summary fit and, separately, tracks the motion again from the start pose
coarse to fine; the one whose colours match better is returned.

Where it can, the fit works in batches rather than in sequence (fast on a GPU, and fewer calls on a CPU): the
colour stage's tracks run together, and every limb's mirror trial of every track is one batch.

    python -m comovi_core.fitting motion_map.mp4 --start start.npz --out motion.npz [--body-model models/smpl]

fits the body to a motion-map video (e.g. a generate run's ``motion_map.mp4``) from the start pose
(frame 0 of ``--start``, its camera padded to the video's size as ``generate`` does).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..body.camera import PinholeCamera
from ..body.motion_file import SMPLMotion
from ..body.parts import NUM_PARTS
from ..body.rotations import nearest_axis_angle
from ..errors import CoMoViError, run_cli
from ..motion_map.colors import vertex_normals
from ..motion_map.decode import DecodedMotionMap, decode_motion_map, levels_of
from ..motion_map.raster_torch import NEAR_PLANE, render_depth
from ..motion_map.render import render_motion_map
from .contact import Contacts, foot_masks, planted_feet
from .flip import LIMBS, mirrored_limb
from .prior import joint_limits, smoothness, stillness
from .splat import SPLAT_SIGMA, body_splat, projected_vertex_area, splat_cost, splat_targets

log = logging.getLogger("comovi_core.recovery.fitting")  # the same name when run as `python -m`
FIT_STEPS = 100  # default steps of the summary fit's joint refinement (after tracking: few are needed)
TRACK_STEPS = 30  # default steps per frame of the frame-by-frame pass (0: fit only from the start pose)
MIN_CONFIDENCE = 0.5  # decoded pixels below this confidence are ignored
VISIBILITY_TOLERANCE = 0.01  # metres behind the drawn surface a vertex still counts as visible
VISIBILITY_EVERY = 5  # steps between occlusion tests (a depth render) in a descent; the last step always tests
RELABEL_ROUNDS = 1  # times the map is decoded again with the fitted body as a prior, then refined
TRACK_KEYFRAMES = 17  # most frames a frame-by-frame pass visits (longer clips: every k-th frame, see keyframes)
SPLAT_STEPS = 60  # joint steps of each colour (splat) refinement (0: no colour stage)
SPLAT_TRACK_STEPS = 30  # steps per frame and per splat size of the colour stage's frame-by-frame pass
# splat sizes of each frame-by-frame pass of the colour stage, coarse to fine (pixels at SPLAT_SIDE); each pass is
# a candidate, and the one whose colours match best wins (a coarser start widens the basin: see _splat_stage)
SPLAT_SCHEDULES = ((3.0, SPLAT_SIGMA), (6.0, 3.0, SPLAT_SIGMA))
SPLAT_SIGMAS = tuple(sorted({s for schedule in SPLAT_SCHEDULES for s in schedule}, reverse=True))  # all of them
SPLAT_SIDE = 384  # longer image side the colour stage compares at (thin limbs need more pixels than labels do)
SPLAT_LR = 0.01  # Adam step of the colour stage's joint refinements
SMOOTH = 0.05  # weight of the temporal smoothness prior (``fit_prior``: a strong one flattens fast motions)
LIMIT_WEIGHT = 10.0  # weight of the joint limits (``fit_prior``), per squared radian beyond a limit
FLIP_STEPS = 10  # steps given to each depth-mirrored limb (and the current pose) per keyframe; 0: no flips
FLIP_MARGIN = 0.03  # a mirrored limb replaces the pose only if its objective is this fraction lower
STILL_WEIGHT = 0.01  # pull of every joint toward the start pose (``fit_prior.stillness``), per squared radian
MIN_DEPTH_FRACTION = 0.25  # the body stays at least this fraction of the start's depth away (``_too_near``)
NEAR_WEIGHT = 100.0  # weight of that bound, per squared metre nearer (0 where it holds: the fit is unchanged there)
CONTACT_STEPS = 30  # joint steps of the last stage, which keeps feet the map shows standing planted (0: off)
CROP = True  # fit in the window the body moves in (``_crop_to_body``), not the whole frame
CROP_MARGIN = 0.15  # margin around that window, a fraction of its longer side (+ 4 pixels)
BODY_THRESHOLD = 0.1  # a map pixel is body where a channel is this far below the white background


@dataclass
class PartStats:
    count: torch.Tensor  # (T, P) pixels (or projected vertex area) per part, in image units (see _image_units)
    centroid: torch.Tensor  # (T, P, 2) in image units
    covariance: torch.Tensor  # (T, P, 2, 2) in image units squared
    normal: torch.Tensor  # (T, P, 3) unit mean normal


def _stats(weights: torch.Tensor, points: torch.Tensor, normals: torch.Tensor, parts: torch.Tensor) -> PartStats:
    """weights (T, N), points (T, N, 2), normals (T, N, 3), parts (N,) in 0..P-1 -> per-part summaries."""
    frames = weights.shape[0]
    values = torch.cat(
        [
            weights[..., None],
            weights[..., None] * points,
            weights[..., None] * normals,
            weights[..., None] * (points[..., :, None] * points[..., None, :]).flatten(-2),
        ],
        -1,
    )  # (T, N, 10)
    rows = values.transpose(0, 1).reshape(values.shape[1], frames * 10)  # (N, T*10): index_add on dim 0 is fast
    sums = rows.new_zeros(NUM_PARTS, rows.shape[1]).index_add_(0, parts, rows).view(NUM_PARTS, frames, -1)
    sums = sums.transpose(0, 1)  # (T, P, 10)
    count = sums[..., 0]
    safe = count.clamp_min(1e-6)[..., None]
    centroid = sums[..., 1:3] / safe
    covariance = (sums[..., 6:10] / safe).unflatten(-1, (2, 2)) - centroid[..., :, None] * centroid[..., None, :]
    normal = torch.nn.functional.normalize(sums[..., 3:6], dim=-1, eps=1e-6)
    return PartStats(count, centroid, covariance, normal)


def _image_units(uv: torch.Tensor, camera: PinholeCamera) -> torch.Tensor:
    """Pixels -> centred units of the longer image side (keeps second moments well conditioned in float32)."""
    side = float(max(camera.height, camera.width))
    return (uv - uv.new_tensor([camera.width / 2, camera.height / 2])) / side


def _inliers(points: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """Per part, keep pixels within 3 robust deviations (median, MAD) of the part's median on both axes.

    Decoding mislabels a few percent of pixels (colour ambiguities, video coding); scattered far from
    the part they are given, they would drag its centroid and spread."""
    keep = torch.zeros_like(parts, dtype=torch.bool)
    for part in parts.unique():
        idx = (parts == part).nonzero().squeeze(1)
        xy = points[idx]
        median = xy.median(0).values
        mad = (xy - median).abs().median(0).values * 1.4826 + 1e-3
        keep[idx] = ((xy - median).abs() <= 3 * mad).all(-1)
    return keep


def map_stats(decoded: DecodedMotionMap, camera: PinholeCamera) -> PartStats:
    """Per-frame, per-part summaries of a decoded motion map (body pixels only, outliers dropped)."""
    frames, height, width = decoded.mask.shape
    v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    points = _image_units(torch.stack((u, v), -1).reshape(-1, 2).float(), camera)
    out = []
    for t in range(frames):  # pixels differ per frame: one scatter per frame
        body = decoded.mask[t].reshape(-1)
        if decoded.confidence is not None:  # drop pixels whose label most of their neighbourhood contradicts
            body = body & (decoded.confidence[t].reshape(-1) >= MIN_CONFIDENCE)
        xy, parts, normals = (
            points[body],
            decoded.part[t].reshape(-1)[body],
            decoded.normal[t].reshape(-1, 3)[body].float(),
        )
        keep = _inliers(xy, parts)
        pixel_area = torch.full((1, int(keep.sum())), 1 / float(max(height, width)) ** 2)
        out.append(_stats(pixel_area, xy[keep][None], normals[keep][None], parts[keep]))
    return PartStats(*(torch.cat([getattr(o, f) for o in out]) for f in ("count", "centroid", "covariance", "normal")))


def visible_vertices(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    part_ids: torch.Tensor,
    camera: PinholeCamera,
    tolerance: float = VISIBILITY_TOLERANCE,
) -> torch.Tensor:
    """vertices (T, V, 3) in camera space -> (T, V) float, 1 where a vertex is not hidden behind the body.

    Renders the body's depth alone at the camera's resolution (``render_depth``: no gradient, no colours, the
    depth of a rendered map bit for bit) and keeps vertices within ``tolerance`` metres of the drawn surface at
    their pixel (or on no drawn pixel: silhouette). ``part_ids`` is not needed for that; kept for callers."""
    with torch.no_grad():
        depth = render_depth(vertices.detach(), faces, camera)  # (T, H, W)
        uv = camera.project(vertices.detach())
        col = uv[..., 0].long().clamp(0, camera.width - 1)
        row = uv[..., 1].long().clamp(0, camera.height - 1)
        drawn = depth[torch.arange(depth.shape[0], device=depth.device)[:, None], row, col]  # (T, V)
        return ((drawn == 0) | (vertices[..., 2].detach() <= drawn + tolerance)).float()


def body_stats(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    part_ids: torch.Tensor,
    camera: PinholeCamera,
    visibility: torch.Tensor | None = None,
) -> PartStats:
    """The same summaries for a posed body: each vertex weighs a third of the projected area of its
    camera-facing faces, so vertex sums approximate pixel sums of the visible surface. ``visibility``
    (T, V) (see ``visible_vertices``) drops vertices hidden behind other parts; without it occluded
    surface still counts, and the data term at the true pose is no longer its minimum."""
    uv = _image_units(camera.project(vertices), camera)  # (T, V, 2)
    weights = projected_vertex_area(uv, faces)
    if visibility is not None:
        weights = weights * visibility
    return _stats(weights, uv, vertex_normals(vertices, faces), part_ids)


def _crop_to_body(
    images: torch.Tensor, camera: PinholeCamera, start_uv: torch.Tensor
) -> tuple[torch.Tensor, PinholeCamera]:
    """Cut the frames to the window the body moves in (map pixels away from the white background over all
    frames, and the start pose's projection ``start_uv`` (V, 2)), with a margin: the fit then spends its
    pixels on the body, not on empty background."""
    height, width = images.shape[1:3]
    drawn = ((1 - images).amax(-1) > BODY_THRESHOLD).any(0)  # (H, W)
    rows, cols = drawn.any(1).nonzero()[:, 0], drawn.any(0).nonzero()[:, 0]
    lo = start_uv.amin(0).floor()
    hi = start_uv.amax(0).ceil()
    if len(rows):
        lo = torch.minimum(lo, torch.stack((cols[0], rows[0])).float())
        hi = torch.maximum(hi, torch.stack((cols[-1], rows[-1])).float() + 1)
    margin = CROP_MARGIN * (hi - lo).amax() + 4
    left, top = (int(v) for v in (lo - margin).floor().clamp_min(0))
    right, bottom = int((hi[0] + margin).ceil().clamp(max=width)), int((hi[1] + margin).ceil().clamp(max=height))
    if right - left < 16 or bottom - top < 16:  # nothing sensible to crop to (a body off screen): keep the frame
        return images, camera
    return images[:, top:bottom, left:right], camera.cropped(top, left, bottom - top, right - left)


def _downsample(images: torch.Tensor, camera: PinholeCamera, max_side: int) -> tuple[torch.Tensor, PinholeCamera]:
    scale = max_side / max(camera.height, camera.width)
    if scale >= 1:
        return images, camera
    height, width = max(16, round(camera.height * scale)), max(16, round(camera.width * scale))
    rows = ((torch.arange(height) + 0.5) * camera.height / height).long()
    cols = ((torch.arange(width) + 0.5) * camera.width / width).long()
    return images[:, rows][:, :, cols], camera.resized(height, width)


@dataclass(frozen=True)
class FitOptions:
    """How hard ``fit_motion`` works: the steps of each stage and its tuning (defaults: the module's constants).

    Fewer steps fit faster and less closely; 0 turns an optional stage off (see ``fit_motion`` for the stages)."""

    iterations: int = FIT_STEPS  # Adam steps of the summary fit's joint refinement (relabel rounds: half of them)
    track_steps: int = TRACK_STEPS  # steps per keyframe of the frame-by-frame pass (0: fit only from the start pose)
    relabel_rounds: int = RELABEL_ROUNDS  # times the map is decoded again with the fitted body as the prior
    splat_steps: int = SPLAT_STEPS  # joint steps of each colour (splat) refinement (0: no colour stage)
    flip_steps: int = FLIP_STEPS  # steps for each depth-mirrored limb per tracked keyframe (0: no mirror tries)
    contact_steps: int = CONTACT_STEPS  # joint steps locking the feet the map shows standing (0: not looked for)
    max_side: int = 192  # longer image side the maps are decoded at (in the window the body moves in)
    smooth: float = SMOOTH  # weight of the temporal smoothness prior
    from_start: bool = False  # with tracking, also fit all frames jointly from the start pose; the better fit stays


def progress_steps(frames: int, options: FitOptions | None = None, init: bool = False) -> int:
    """How many times ``fit_motion`` calls its callback for a clip of ``frames`` frames (comovi_v1 shading) with
    ``options`` (default: ``FitOptions()``), started from per-frame estimates (``init``) or not."""
    o = FitOptions() if options is None else options
    tracked = len(keyframes(frames)) - 1 if frames > 1 and not init else 0
    first = (o.iterations + tracked if o.track_steps > 0 or init else 0) + (
        o.iterations if not init and (o.from_start or not o.track_steps) else 0
    )
    splat = 0
    if o.splat_steps > 0 and init:  # the estimates brought in coarse to fine, then both candidates refined as one
        splat = (len(SPLAT_SCHEDULES[-1]) - 1) * SPLAT_TRACK_STEPS + o.splat_steps
    elif o.splat_steps > 0:  # the tracks, then the summary fit and every track refined as one batch
        splat = tracked + o.splat_steps
    return first + o.relabel_rounds * (o.iterations // 2) + splat + o.contact_steps


def fit_motion(
    body,
    images: torch.Tensor,
    *,
    start: SMPLMotion,
    camera: PinholeCamera,
    fps: float,
    shading: str = "comovi_v1",
    options: FitOptions | None = None,
    device="cpu",
    callback=None,
    init: SMPLMotion | None = None,
    report: dict | None = None,
) -> SMPLMotion:
    """images (T, H, W, 3) in [0, 1] (frame 0 shows ``start``'s frame 0) -> a SMPLMotion of T frames.

    ``body``: the body model; ``images``: the motion-map video, drawn with ``shading``; the rest is keyword-only.
    ``start``: frame 0's pose and shape, ``camera``: the camera of ``images``, ``fps``: the result's frame rate.
    ``options`` (``FitOptions``, default ``FitOptions()``): the steps of each stage below.
    The summary fit tracks the motion frame by frame from the start pose (``track_steps`` steps each keyframe, from
    the previous one), then refines all frames jointly for ``iterations`` Adam steps; with ``track_steps`` 0, or
    with ``from_start``, all frames are also fitted jointly from the start pose (``iterations`` steps) and the
    lower loss wins. Both model occlusion (``visible_vertices``).
    ``callback(step, total)`` is called after each joint step and each tracked frame, ``total`` =
    ``progress_steps(T, options)`` times (progress, cancellation).
    Labels are decoded with the start pose drawn as a prior (``decode_motion_map(prior=...)``); then
    ``relabel_rounds`` times with the fitted body as the prior, each followed by ``iterations // 2`` joint steps.
    Then the colour stage (comovi_v1 only; see the module docstring): ``splat_steps`` joint steps refine the
    fit, and per ``SPLAT_SCHEDULES`` entry (splat sizes, coarse to fine) a frame-by-frame colour pass
    (``SPLAT_TRACK_STEPS`` per frame and splat size) with ``splat_steps`` joint steps tracks from the start (the
    passes run together); the best colour match wins. Each tracked
    keyframe also tries every limb mirrored in depth with ``flip_steps`` steps (``_track``; 0: no flips, faster
    and blind to depth mirrors).
    Last, feet the map shows standing still (``fit_contact``, looked for around the fit's feet) are locked where
    they stand by ``contact_steps`` joint steps of the last cost plus the planted feet's term; the result's
    ``foot_contact`` says which foot stands in which frame (all False when none does; None with ``contact_steps``
    0, not looked for).
    ``init``: per-frame estimates of the motion (T frames, the same camera and body as ``start``; e.g. an image
    estimator's on the generated RGB video, smoothed). The fit then starts from them instead of tracking the motion
    from the start pose: the labels are decoded with them as the prior, the summary fit and the colour stage refine
    them (the colour stage's candidates: the refined summary fit and the refined estimates, no tracks), and per frame
    the estimate replaces the fit where its colours match the map better (logged).
    ``report``: a dict this fills with ``frame_sources``, per frame where its pose came from: "start" (frame 0),
    "fit" (the fit's), "estimate" (``init``'s, kept by the per-frame choice; the feet may still be locked after).
    Works inside ``torch.inference_mode``/``no_grad`` (hosts such as ComfyUI run nodes that way): the
    optimisation uses its own grad-enabled copies of the body model and the maps.
    """
    options = FitOptions() if options is None else options
    if init is not None and init.num_frames != images.shape[0]:
        raise CoMoViError(
            f"the initial motion has {init.num_frames} frames, the motion map {images.shape[0]}: give one estimate per "
            "frame of the map"
        )
    with torch.inference_mode(False), torch.enable_grad():
        body = copy.deepcopy(body).to(device)
        motion, sources = _fit(body, images.clone(), start, camera, fps, options, shading, device, callback, init)
    if report is not None:
        report["frame_sources"] = sources
    return motion


def _data_terms(model: PartStats, target: PartStats, present: torch.Tensor) -> torch.Tensor:
    """Per-frame data term (T,): robust distance between the body's and the map's part summaries.

    present (T, P) in {0, 1}: parts seen in the map (and frames that move)."""
    # parts much smaller in the map than the body says are occluded there: trust them less
    weight = present * (target.count / model.count.detach().clamp_min(1e-6)).clamp(max=1).square()  # (T, P)
    centroid = (model.centroid - target.centroid).square().sum(-1) / 0.02**2
    size = target.covariance.diagonal(dim1=-2, dim2=-1).sum(-1, keepdim=True)[..., None]  # (T, P, 1, 1)
    spread = ((model.covariance - target.covariance) / (0.1 * size + 1e-4)).square().sum((-1, -2))
    normal = 1 - (model.normal * target.normal).sum(-1)
    robust = torch.log1p(centroid) + torch.log1p(spread) + normal  # Cauchy on the 2D terms: outliers saturate
    return (weight * robust).sum(-1) / weight.sum(-1).clamp_min(1)


def _slice(stats: PartStats, index) -> PartStats:
    return PartStats(stats.count[index], stats.centroid[index], stats.covariance[index], stats.normal[index])


def keyframes(frames: int, most: int | None = None) -> list[int]:
    """Frames the frame-by-frame passes visit: all of a short clip; of a longer one, every k-th frame and the
    last, at most ``most`` (default ``TRACK_KEYFRAMES``) in all (the joint fit then refines every frame)."""
    most = TRACK_KEYFRAMES if most is None else most
    stride = max(1, math.ceil((frames - 1) / max(most - 1, 1)))
    return sorted(set(range(0, frames, stride)) | {frames - 1})


def _track(body, base, betas, schedules, steps, smooth, on_step, flip_steps) -> torch.Tensor:
    """Frame by frame over ``keyframes``, fit each frame alone for ``steps`` steps per stage from the previous
    one's fit; frames between keyframes are interpolated linearly. Returns (C, T-1, 75): one track per schedule.

    ``schedules`` holds C sequences of ``_DataCost`` run one after the other (e.g. coarse to fine), one track each;
    the tracks run together, aligned at their last stage, and the tracks at the same cost descend as one batch
    (e.g. a 6-3-1.5 px and a 3-1.5 px colour schedule: the first stage alone, then both). The joint prior over the
    frame and the two before it is added. After the stages each limb is tried mirrored in depth (``fit_flip``): every
    track's pose and its limbs' mirrors descend together for ``flip_steps`` steps of the track's last cost
    (0: no flips), and the cheapest mirror replaces a track's pose only when it ends ``FLIP_MARGIN`` below that pose,
    so without a flip the track is what it was without the trial. base (T, 75) is the start pose every frame."""
    parents = body.smpl.parents.tolist()
    visit = keyframes(base.shape[0])
    depth = max(len(schedule) for schedule in schedules)
    full = base.new_zeros(len(schedules), base.shape[0], 75)  # (C, T, 75) change from the start; frame 0 stays

    def objective(cost, x, frame, done, visibility=None):
        """x (B, 75) candidates for ``frame`` after done (B, <= 2, 75) -> ((B,) objective, (B, V) visibility used)."""
        q = base[frame] + x  # (B, 75)
        vertices = body(q[:, :3], q[:, 3:72], betas, q[:, 72:]).vertices
        visibility = cost.visible(vertices) if visibility is None else visibility
        loss = cost(vertices, visibility, frame) + LIMIT_WEIGHT * joint_limits(q[:, 3:72])
        loss = loss + STILL_WEIGHT * stillness(q[:, 3:72], base[frame, 3:72]) + _too_near(q[:, 74], base[frame, 74])
        if done.shape[1] == 2:  # continue the motion smoothly
            seq = torch.cat([base[frame - 2 : frame] + done, q[:, None]], 1)  # (B, 3, 75)
            loss = loss + smooth * smoothness(seq[..., :3], seq[..., 3:72], seq[..., 72:])
        return loss, visibility

    def descend(cost, x, frame, done, n):
        """n Adam steps from candidates x (B, 75) -> (x, (B,) their objectives)."""
        x = x.detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=0.02)
        visibility = None
        for step in range(n):
            loss, visibility = objective(cost, x, frame, done, None if step % VISIBILITY_EVERY == 0 else visibility)
            optimiser.zero_grad()
            loss.sum().backward()  # the candidates are independent: one Adam over all of them is one per candidate
            optimiser.step()
        with torch.no_grad():
            return x.detach(), objective(cost, x, frame, done)[0]

    def batched(pairs):
        """[(track, cost)] -> {cost: the tracks at it}, in order (tracks at one cost descend as one batch)."""
        groups = {}
        for track, cost in pairs:
            groups.setdefault(cost, []).append(track)
        return groups.items()

    for i, frame in enumerate(visit[1:], 1):
        done = full[:, visit[max(0, i - 2) : i]].clone()  # (C, <= 2, 75) fitted before
        x = done[:, -1].clone()  # (C, 75) each track starts from its previous keyframe
        for stage in range(depth):
            at = [(c, s[stage - depth + len(s)]) for c, s in enumerate(schedules) if stage - depth + len(s) >= 0]
            for cost, tracks in batched(at):
                x[tracks], _ = descend(cost, x[tracks], frame, done[tracks], steps)
        for cost, tracks in batched([(c, s[-1]) for c, s in enumerate(schedules)] if flip_steps > 0 else []):
            with torch.no_grad():  # per track: its pose, then one mirror per limb
                q = base[frame] + x[tracks]  # (K, 75)
                joints = body(q[:, :3], q[:, 3:72], betas, q[:, 72:]).joints
                tries = (
                    torch.stack(
                        [
                            torch.stack([q[k]] + [mirrored_limb(parents, joints[k], q[k], limb) for limb in LIMBS])
                            for k in range(len(tracks))
                        ]
                    )
                    - base[frame]
                )  # (K, 1 + limbs, 75)
            width = tries.shape[1]
            before = done[tracks].repeat_interleave(width, 0)
            tried, losses = descend(cost, tries.flatten(0, 1), frame, before, flip_steps)
            tried, losses = tried.unflatten(0, (-1, width)), losses.unflatten(0, (-1, width))
            for k, track in enumerate(tracks):
                best = 1 + int(losses[k, 1:].argmin())
                if losses[k, best] < (1 - FLIP_MARGIN) * losses[k, 0]:  # clearly better: a near tie is noise
                    log.debug(
                        "frame %d: limb %s mirrored in depth (%.4g -> %.4g)",
                        frame,
                        LIMBS[best - 1],
                        *losses[k, [0, best]],
                    )
                    x[track] = tried[k, best]
        previous = visit[i - 1]
        full[:, frame] = x
        for between in range(previous + 1, frame):  # linear in the pose parameters
            w = (between - previous) / (frame - previous)
            full[:, between] = (1 - w) * full[:, previous] + w * full[:, frame]
        on_step()
    return full[:, 1:]


def _refine(
    body, delta, base, betas, cost, iterations, smooth, on_step, lr=0.02, contacts: Contacts | None = None
) -> tuple[torch.Tensor, float | list[float]]:
    """Fit all frames jointly (``cost``, a ``_DataCost`` over frames 1.. + smoothness, + the planted feet's term of
    ``contacts``) for ``iterations`` Adam steps from ``delta`` (T-1, 75). Returns the optimised delta and its
    final loss. ``delta`` (C, T-1, 75) refines C candidate fits as one batch (one Adam over independent
    candidates is one Adam per candidate) and returns (C, T-1, 75) and C losses."""
    candidates = delta.dim() == 3
    delta = (delta if candidates else delta[None]).clone().requires_grad_(True)  # (C, T-1, 75)
    count, moving = delta.shape[0], slice(1, None)  # frame 0 is the given start: only the smoothness prior needs it
    optimiser = torch.optim.Adam([delta], lr=lr)
    loss = torch.zeros(count)
    visibility = None
    for step in range(iterations + 1):
        final = step == iterations  # the final loss, of the returned delta
        with torch.set_grad_enabled(not final):
            q = base + torch.cat([delta.new_zeros(count, 1, 75), delta], 1)  # (C, T, 75)
            g, p, t = q[..., :3], q[..., 3:72], q[..., 72:]
            # the body of every frame, one candidate at a time: the body model's sums are not the same bits in a
            # batch of another size, and the fit amplifies one rounding unit (docs/fitting.md); the data terms
            # then take frames 1.. of all candidates as one batch (frame 0's would be dropped)
            bodies = [body(x[:, :3], x[:, 3:72], betas, x[:, 72:]).vertices for x in q]  # C x (T, V, 3)
            vertices = torch.cat([v[moving] for v in bodies])  # (C (T-1), V, 3), candidate after candidate
            if step % VISIBILITY_EVERY == 0 or final:  # the final loss is taken with a fresh test
                visibility = cost.visible(vertices)
            data = cost(vertices, visibility, moving) + LIMIT_WEIGHT * joint_limits(p[:, moving].flatten(0, 1))
            data = data.view(count, -1)  # (C, T-1)
            if contacts is not None:  # on the data terms' vertices (frame 0 fixed): their gradients add up as before
                data = data + torch.stack(
                    [
                        contacts.term(torch.cat([start[:1].detach(), v]))[moving]
                        for start, v in zip(bodies, vertices.view(count, -1, *vertices.shape[1:]))
                    ]
                )
            data = (
                data
                + STILL_WEIGHT * stillness(p[:, moving], base[moving, 3:72])
                + _too_near(t[:, moving, 2], base[moving, 74])
            )
            loss = data.mean(-1) + smooth * smoothness(g, p, t)  # (C,)
        if final:
            break
        optimiser.zero_grad()
        loss.sum().backward()
        optimiser.step()
        on_step()
    losses = loss.detach().tolist()
    return (delta.detach(), losses) if candidates else (delta.detach()[0], losses[0])


class _DataCost:
    """A data term of the fit, seen through ``camera``: ``visible(vertices)`` is the occlusion test it needs (the
    fit refreshes it every ``VISIBILITY_EVERY`` steps, not every step: a depth render costs about as much as the
    rest of a step) and ``cost(vertices, visibility, frame=None)`` the term itself: (T,) over all frames; with
    ``frame`` a slice, over those frames (vertices of several candidate fits of them, one after the other: all of
    theirs); with ``frame`` an int, (B,) for B candidate poses (B, V, 3) of that one frame."""

    def __init__(self, faces: torch.Tensor, camera: PinholeCamera):
        self.faces, self.camera = faces, camera

    def visible(self, vertices: torch.Tensor) -> torch.Tensor:
        """(T, V, 3) -> (T, V) float visibility of each vertex (``visible_vertices``, no gradient); 0 nearer the
        camera than the renderer's ``NEAR_PLANE`` (a body walked into or behind the camera is not seen there)."""
        in_front = vertices.detach()[..., 2] > NEAR_PLANE
        return visible_vertices(_near_clipped(vertices.detach()), self.faces, None, self.camera) * in_front

    def __call__(self, vertices: torch.Tensor, visibility: torch.Tensor, frame: int | None = None) -> torch.Tensor:
        raise NotImplementedError


class _StatsCost(_DataCost):
    """The part-summary data term (``body_stats`` against the map's ``map_stats``)."""

    def __init__(self, target: PartStats, present: torch.Tensor, faces, part_ids, camera: PinholeCamera):
        super().__init__(faces, camera)
        self.target, self.present, self.part_ids = target, present, part_ids

    def __call__(self, vertices, visibility, frame=None):
        model = body_stats(_near_clipped(vertices), self.faces, self.part_ids, self.camera, visibility)
        frames = slice(None) if frame is None else [frame] if isinstance(frame, int) else frame
        target, present = _slice(self.target, frames), self.present[frames]
        n = target.count.shape[0]
        if isinstance(frame, int) or model.count.shape[0] == n:
            return _data_terms(model, target, present)
        model = PartStats(
            *(x.unflatten(0, (-1, n)) for x in (model.count, model.centroid, model.covariance, model.normal))
        )
        return _data_terms(model, target, present).flatten()  # candidates x frames


class _SplatCost(_DataCost):
    """The colour data term (``fit_splat``) against ``target`` (T, H, W, 3) already blurred for ``sigma``."""

    def __init__(self, target: torch.Tensor, faces, part_ids, camera: PinholeCamera, shading: str, sigma: float):
        super().__init__(faces, camera)
        self.target, self.part_ids, self.shading, self.sigma = target, part_ids, shading, sigma

    def __call__(self, vertices, visibility, frame=None):
        vertices = _near_clipped(vertices)
        area = projected_vertex_area(self.camera.project(vertices), self.faces) * visibility
        normals = vertex_normals(vertices, self.faces)
        image = body_splat(vertices, normals, area, self.part_ids, self.camera, self.shading, self.sigma)
        frames = slice(None) if frame is None else slice(frame, frame + 1) if isinstance(frame, int) else frame
        target = self.target[frames]
        if isinstance(frame, int) or image.shape[0] == target.shape[0]:
            return splat_cost(image, target)
        return splat_cost(image.unflatten(0, (-1, target.shape[0])), target).flatten()  # candidates x frames


def _levels(body, q, betas, faces, part_ids, camera) -> torch.Tensor:
    """Poses q (T, 75) -> (T, H, W) semantic levels of the body drawn flat (a prior for decoding)."""
    with torch.no_grad():
        vertices = body(q[:, :3], q[:, 3:72], betas, q[:, 72:]).vertices
        return levels_of(render_motion_map(vertices, faces, part_ids, camera, "flat", "torch").images).cpu()


def _targets(images, shading, camera, depth, prior, device) -> tuple[PartStats, torch.Tensor]:
    """Decode the map (with ``prior`` levels, comovi_v1 only) -> its part summaries and (T, P) parts present.
    Callers zero ``present`` on frame 0 of a clip (the given start)."""
    decoded = decode_motion_map(images, shading, camera, depth, prior=prior if shading != "flat" else None)
    target = map_stats(decoded, camera)
    target = PartStats(*(x.to(device) for x in (target.count, target.centroid, target.covariance, target.normal)))
    return target, (target.count > 2e-4).float()  # (T, P) parts seen in the map (count = area in image units)


def _fit(body, images, start, camera, fps, o: FitOptions, shading: str, device, callback, init=None):
    """``fit_motion`` on a grad-enabled copy of the body model and the maps; ``o``: its steps and tuning.
    -> (the motion, its frame sources: "start", then "fit" or "estimate" per frame)"""
    output_camera = camera.resized(images.shape[1], images.shape[2])
    frames, depth = images.shape[0], float(start.transl[0, 2])
    faces, part_ids = body.faces.to(device), body.part_ids.to(device)

    def first(a):
        return torch.as_tensor(np.asarray(a[:1], np.float32), device=device).repeat(frames, 1)

    def per_frame(a):
        return torch.as_tensor(np.asarray(a, np.float32), device=device)

    base = torch.cat([first(start.global_orient), first(start.body_pose), first(start.transl)], -1)  # (T, 75)
    betas = torch.as_tensor(np.asarray(start.betas, np.float32), device=device)
    full_images, full_camera = images.float().cpu(), output_camera
    if CROP:
        with torch.no_grad():
            start_uv = output_camera.project(body(base[:1, :3], base[:1, 3:72], betas, base[:1, 72:]).vertices[0]).cpu()
        full_images, full_camera = _crop_to_body(full_images, output_camera, start_uv)
    images, camera = _downsample(full_images, full_camera, o.max_side)
    total = progress_steps(frames, o, init is not None)
    done = [0]

    def on_step():
        if callback is not None:
            callback(done[0], total)
        done[0] += 1

    def decode(delta: torch.Tensor):
        """The part-summary cost of the map decoded with base + delta drawn as the prior (frame 0 is the start)."""
        q = base + torch.cat([delta.new_zeros(1, 75), delta])
        target, present = _targets(
            images, shading, camera, depth, _levels(body, q, betas, faces, part_ids, camera), device
        )
        present[0] = 0
        return _StatsCost(target, present, faces, part_ids, camera)

    zero = torch.zeros(frames - 1, 75, device=device)
    guess = None
    if init is not None:  # per-frame estimates, as changes from the start pose
        guess = torch.cat([per_frame(init.global_orient), per_frame(init.body_pose), per_frame(init.transl)], -1)
        guess = _continuous(guess, base[0])[1:] - base[1:]
    cost = decode(zero if guess is None else guess)  # the map decoded with the start pose (or estimates) as prior
    if guess is not None:  # 1. refine the estimates jointly
        delta, loss = _refine(body, guess, base, betas, cost, o.iterations, o.smooth, on_step)
    elif o.track_steps > 0:  # 1. follow the motion frame by frame from the start pose, then refine all frames jointly
        delta = _track(body, base, betas, [[cost]], o.track_steps, o.smooth, on_step, o.flip_steps)[0]
        delta, loss = _refine(body, delta, base, betas, cost, o.iterations, o.smooth, on_step)
    if guess is None and (o.track_steps == 0 or o.from_start):  # 2. all frames from the start pose; the better stays
        fitted, fitted_loss = _refine(body, zero, base, betas, cost, o.iterations, o.smooth, on_step)
        if o.track_steps == 0 or fitted_loss < loss:
            log.info("fit from the start pose: loss %.4g, better than tracking", fitted_loss)
            delta, loss = fitted, fitted_loss
    for _ in range(o.relabel_rounds):  # 3. decode again with the fitted body as the prior, refine
        delta, loss = _refine(body, delta, base, betas, decode(delta), o.iterations // 2, o.smooth, on_step)
    last_cost, last_lr = None, 0.02  # the cost and step size the feet are locked with: the colour stage's, if it ran
    kept = torch.zeros(frames - 1, dtype=torch.bool)  # frames whose estimate replaced the fit
    if o.splat_steps > 0 and shading != "flat":
        delta, last_cost, kept = _splat_stage(
            body,
            delta,
            base,
            betas,
            full_images,
            full_camera,
            faces,
            part_ids,
            shading,
            o.splat_steps,
            o.smooth,
            device,
            on_step,
            o.flip_steps,
            guess,
        )
    contact = None
    if o.contact_steps > 0:  # 5. lock the feet the map shows standing
        last_lr = SPLAT_LR if last_cost is not None else last_lr
        delta, contact = _lock_feet(
            body,
            delta,
            base,
            betas,
            full_images,
            full_camera,
            part_ids,
            last_cost or decode(delta),
            last_lr,
            o,
            on_step,
        )
    log.info("fitted %d frames to the motion map (%d steps, loss %.4g)", frames, o.iterations, loss)
    with torch.no_grad():
        q = (base + torch.cat([delta.new_zeros(1, 75), delta])).cpu().numpy()
    sources = ["start"] + ["estimate" if k else "fit" for k in kept.tolist()]
    return SMPLMotion(q[:, :3], q[:, 3:72], start.betas, q[:, 72:], fps, output_camera, start.gender, contact), sources


def _lock_feet(body, delta, base, betas, images, camera, part_ids, cost, lr, o: FitOptions, on_step):
    """Find the feet ``images`` show standing (around the fit base + delta) and refine the fit with ``cost`` plus
    their term for ``o.contact_steps`` steps of ``lr`` -> (delta, (T, 2) bool foot contact). Without a standing
    foot the fit stays."""
    with torch.no_grad():
        q = base + torch.cat([delta.new_zeros(1, 75), delta])
        vertices = body(q[:, :3], q[:, 3:72], betas, q[:, 72:]).vertices
    masks = foot_masks(part_ids)
    contacts = Contacts(planted_feet(images, vertices, masks, camera), masks)
    log.info("planted feet: %d of %d foot-frames", contacts.planted, 2 * (q.shape[0] - 1))
    if not contacts.planted:
        for _ in range(o.contact_steps):
            on_step()
        return delta, contacts.standing().numpy()
    locked, _ = _refine(body, delta, base, betas, cost, o.contact_steps, o.smooth, on_step, lr, contacts)
    if not _plausible(base, locked):
        log.warning("locking the feet moved the body behind the camera or to non-finite poses; kept the fit")
        return delta, contacts.standing().numpy()
    return locked, contacts.standing().numpy()


def _splat_stage(
    body,
    delta,
    base,
    betas,
    images,
    camera,
    faces,
    part_ids,
    shading,
    steps,
    smooth,
    device,
    on_step,
    flip_steps,
    guess=None,
):
    """4. Compare colours instead of decoded labels (``fit_splat``): refine the summary fit ``delta``, and track
    the motion again from the start pose coarse to fine once per ``SPLAT_SCHEDULES`` entry (the tracks run
    together, ``_track``), each refined jointly; keep whichever matches the map's colours best (all end on the
    finest splat, so their costs compare). Returns that fit and the finest splat cost (the feet are locked with it).
    Every candidate is refined before they are compared: on the ``kick`` map the 3-1.5 px track matched better
    than the 6-3-1.5 px one before refinement and worse after (MPJPE 66 mm against 12 mm).

    Two schedules because the basin a pass can find depends on the splat size relative to the body: a fine start
    can bend a knee backwards where a coarse one finds the kick, and on other motions the other way round; the
    colour cost tells them apart (docs/fitting.md, "Why it is built this way").

    With per-frame estimates ``guess`` (T-1, 75) no tracks run: the estimates, brought in coarse to fine along the
    last schedule, are the other candidate, and the winner keeps an estimate's pose in frames whose colours it
    matches better (``_keep_better_frames``). Also returned: (T-1,) bool, the frames whose estimate it kept (none
    without estimates)."""
    targets, splat_camera = splat_targets(images, camera, SPLAT_SIDE, SPLAT_SIGMAS)
    costs = {s: _SplatCost(targets[s].to(device), faces, part_ids, splat_camera, shading, s) for s in SPLAT_SIGMAS}
    finest = costs[SPLAT_SIGMAS[-1]]
    schedules = [[costs[s] for s in schedule] for schedule in SPLAT_SCHEDULES]
    if guess is None:
        tracked = _track(body, base, betas, schedules, SPLAT_TRACK_STEPS, smooth, on_step, flip_steps)  # (C, T-1, 75)
    else:  # per-frame estimates: they are the other candidate, brought in coarse to fine (no tracks)
        tracked = guess
        for sigma in SPLAT_SCHEDULES[-1][:-1]:
            tracked, _ = _refine(body, tracked, base, betas, costs[sigma], SPLAT_TRACK_STEPS, smooth, on_step, SPLAT_LR)
        tracked = tracked[None]
    # the summary fit and every track (or the estimates), refined together (one batch)
    refined, losses = _refine(
        body, torch.cat([delta[None], tracked]), base, betas, finest, steps, smooth, on_step, SPLAT_LR
    )
    candidates = list(zip(losses, refined))
    log.info("colour fit: refined summary fit %.4g, tracked %s", losses[0], ", ".join(f"{c:.4g}" for c in losses[1:]))
    plausible = [(c_loss, c) for c_loss, c in candidates if _plausible(base, c)]
    if not plausible:  # e.g. a map that shows no body: the colour cost pushed the body away; keep the summary fit
        log.warning("colour stage moved the body behind the camera or to non-finite poses; kept the summary fit")
        return delta, finest, torch.zeros(len(delta), dtype=torch.bool)
    best = min(plausible, key=lambda pair: pair[0])[1]
    if guess is None:
        return best, finest, torch.zeros(len(best), dtype=torch.bool)
    best, kept = _keep_better_frames(body, best, guess, base, betas, finest)
    return best, finest, kept


def _keep_better_frames(body, delta, guess, base, betas, cost) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame, the pose of ``delta`` or of ``guess`` (both (T-1, 75)), whichever ``cost`` (with its occlusion
    test) prefers: an estimate can hold a frame the fit lost. -> (the poses, (T-1,) bool: where ``guess``'s won)"""

    def frame_costs(d: torch.Tensor) -> torch.Tensor:
        q = base + torch.cat([d.new_zeros(1, 75), d])
        vertices = body(q[:, :3], q[:, 3:72], betas, q[:, 72:]).vertices
        return cost(vertices, cost.visible(vertices))[1:]  # (T-1,): frame 0 is the start

    with torch.no_grad():
        use = frame_costs(guess) < frame_costs(delta)
    log.info(
        "per-frame estimates kept in %d of %d frames (their colours match the map better)", int(use.sum()), len(use)
    )
    return torch.where(use[:, None], guess, delta), use.cpu()


def _continuous(q: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Poses q (T, 75) -> the same poses with every rotation vector the one nearest to the frame before's (frame 0's
    to ``start``'s): an estimator's (-pi, 0, 0) after a start of (pi, 0, 0) is no turn, and the smoothness prior
    must not see one."""
    out, previous = q.clone(), start[:72].view(24, 3)
    for t in range(q.shape[0]):
        previous = nearest_axis_angle(q[t, :72].view(24, 3), previous)
        out[t, :72] = previous.reshape(72)
    return out


def _near_clipped(vertices: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> the same, z at least ``NEAR_PLANE``: a vertex at or behind the camera plane projects to a finite
    place (it counts for nothing: ``visible`` gives it 0) instead of infinity, which made the fit's sums NaN. The
    same values and gradients where every vertex is in front."""
    return torch.cat([vertices[..., :2], vertices[..., 2:].clamp_min(NEAR_PLANE)], -1)


def _too_near(depth: torch.Tensor, start_depth: torch.Tensor) -> torch.Tensor:
    """Per pose, the penalty for a root nearer the camera than ``MIN_DEPTH_FRACTION`` of the start's depth: a fit
    started from wrong estimates (or drawn by a map that shows no body) must not walk the body behind the camera.
    Exactly 0 where the bound holds, so a fit that never nears it is the same to the bit."""
    return NEAR_WEIGHT * torch.relu(MIN_DEPTH_FRACTION * start_depth - depth).square()


def _plausible(base: torch.Tensor, delta: torch.Tensor) -> bool:
    """All poses finite and the body in front of the camera (at least ``MIN_DEPTH_FRACTION`` of the start's depth)."""
    q = base + torch.cat([delta.new_zeros(1, 75), delta])
    return bool(torch.isfinite(q).all()) and bool((q[:, 74] > MIN_DEPTH_FRACTION * base[0, 74]).all())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.fitting", description=__doc__.split("\n\n")[0])
    p.add_argument("motion_map", type=Path, help="motion-map video (.mp4, comovi_v1 shading) to fit the body to")
    p.add_argument("--start", type=Path, required=True, help="SMPL motion (.npz) whose frame 0 is the video's frame 0")
    p.add_argument("--out", type=Path, required=True, help="where to write the fitted motion (.npz)")
    p.add_argument("--body-model", type=Path, help="SMPL file or folder; default: the stand-in mannequin (not SMPL)")
    p.add_argument("--steps", type=int, default=FIT_STEPS, help="optimisation steps of the joint fit")
    p.add_argument(
        "--track-steps", type=int, default=TRACK_STEPS, help="steps per frame of the frame-by-frame pass (0: off)"
    )
    p.add_argument(
        "--splat-steps", type=int, default=SPLAT_STEPS, help="joint steps of each colour refinement (0: off)"
    )
    p.add_argument(
        "--contact-steps",
        type=int,
        default=CONTACT_STEPS,
        help="joint steps locking the feet the map shows standing (0: off, no foot_contact in the output)",
    )
    p.add_argument("--fps", type=float, help="frame rate of the fitted motion (default: the start motion's)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> SMPLMotion:
    from ..body.motion_file import check_motion_target, load_motion, save_motion
    from ..body.smpl import load_body_model
    from ..files.video import read_video

    if args.steps < 1 or min(args.track_steps, args.splat_steps, args.contact_steps) < 0:
        raise CoMoViError(
            f"--steps must be >= 1, --track-steps, --splat-steps and --contact-steps >= 0; got {args.steps}, "
            f"{args.track_steps}, {args.splat_steps} and {args.contact_steps}"
        )
    if args.fps is not None and not args.fps > 0:
        raise CoMoViError(f"--fps must be above 0, got {args.fps}")
    check_motion_target(args.out, "--out file")
    if not args.motion_map.is_file():
        raise CoMoViError(f"motion-map video not found: {args.motion_map}")
    start = load_motion(args.start).frame(0)
    try:
        images = torch.from_numpy(read_video(args.motion_map)).float() / 255  # (T, H, W, 3)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise CoMoViError(f"could not read the video {args.motion_map}: {exc}") from exc
    camera = start.camera.padded_to(images.shape[1], images.shape[2])
    body = load_body_model(args.body_model)
    options = FitOptions(
        iterations=args.steps,
        track_steps=args.track_steps,
        splat_steps=args.splat_steps,
        contact_steps=args.contact_steps,
    )
    motion = fit_motion(
        body,
        images,
        start=start,
        camera=camera,
        fps=start.fps if args.fps is None else args.fps,
        options=options,
    )
    save_motion(args.out, motion)
    log.info("wrote %s (%d frames)", args.out, motion.num_frames)
    return motion


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
