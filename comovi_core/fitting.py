"""Recover a SMPL motion from a motion-map video by fitting the body to it (when no 3D head is loaded).

The motion map tells, per pixel, which body part is seen and its surface normal. For every frame and
part we summarise the decoded pixels by their count, 2D centroid, 2D covariance and mean normal, and
fit the body so that the same summaries of its camera-facing vertices (soft-weighted by how much each
vertex faces the camera) match, with a smoothness prior over time. Frame 0 stays the given start pose
(shape, pose and camera are known there). Summaries instead of a differentiable rasteriser keep it
fast and dependency-free. Occlusion is handled without gradient: each step renders the current pose's
depth and drops hidden vertices from the body's summaries (without this the data term at the true
pose was 3x its value with it, and a fit started at the truth drifted ~35-40 mm away, stand-in
``arms`` motion of benchmarks/bench_fit_motion.py).

Maps are decoded at a reduced resolution (``max_side``, nearest-neighbour so the colours stay exact).

    python -m comovi_core.fitting motion_map.mp4 --start start.npz --out motion.npz [--body-model models/smpl]

fits the body to a motion-map video (e.g. a generate run's ``motion_map.mp4``) from the start pose
(frame 0 of ``--start``, its camera padded to the video's size as ``generate`` does).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .body.motion_file import SMPLMotion
from .body.parts import NUM_PARTS
from .cli import run_cli
from .errors import CoMoViError
from .motion_map.camera import PinholeCamera
from .motion_map.colors import vertex_normals
from .motion_map.decode import DecodedMotionMap, decode_motion_map, levels_of
from .motion_map.render import render_motion_map

log = logging.getLogger("comovi_core.fitting")  # the same name when run as `python -m`
FIT_STEPS = 300  # default optimisation steps
TRACK_STEPS = 60  # default steps per frame of the frame-by-frame pass (0: fit only from the start pose)
MIN_CONFIDENCE = 0.5  # decoded pixels below this confidence are ignored
VISIBILITY_TOLERANCE = 0.01  # metres behind the drawn surface a vertex still counts as visible
RELABEL_ROUNDS = 1  # times the map is decoded again with the fitted body as a prior, then refined


@dataclass
class PartStats:
    count: torch.Tensor  # (T, P) pixels (or projected vertex area) per part, in image units (see _image_units)
    centroid: torch.Tensor  # (T, P, 2) in image units
    covariance: torch.Tensor  # (T, P, 2, 2) in image units squared
    normal: torch.Tensor  # (T, P, 3) unit mean normal


def _stats(weights: torch.Tensor, points: torch.Tensor, normals: torch.Tensor, parts: torch.Tensor) -> PartStats:
    """weights (T, N), points (T, N, 2), normals (T, N, 3), parts (N,) in 0..P-1 -> per-part summaries."""
    frames = weights.shape[0]
    values = torch.cat([weights[..., None], weights[..., None] * points, weights[..., None] * normals,
                        weights[..., None] * (points[..., :, None] * points[..., None, :]).flatten(-2)], -1)  # (T, N, 10)
    sums = values.new_zeros(frames, NUM_PARTS, values.shape[-1]).index_add_(1, parts, values)  # (T, P, 10)
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
        xy, parts, normals = points[body], decoded.part[t].reshape(-1)[body], decoded.normal[t].reshape(-1, 3)[body].float()
        keep = _inliers(xy, parts)
        pixel_area = torch.full((1, int(keep.sum())), 1 / float(max(height, width)) ** 2)
        out.append(_stats(pixel_area, xy[keep][None], normals[keep][None], parts[keep]))
    return PartStats(*(torch.cat([getattr(o, f) for o in out]) for f in ("count", "centroid", "covariance", "normal")))


def visible_vertices(vertices: torch.Tensor, faces: torch.Tensor, part_ids: torch.Tensor, camera: PinholeCamera,
                     tolerance: float = VISIBILITY_TOLERANCE) -> torch.Tensor:
    """vertices (T, V, 3) in camera space -> (T, V) float, 1 where a vertex is not hidden behind the body.

    Renders the body's depth at the camera's resolution (no gradient) and keeps vertices within
    ``tolerance`` metres of the drawn surface at their pixel (or on no drawn pixel: silhouette)."""
    with torch.no_grad():
        depth = render_motion_map(vertices.detach(), faces, part_ids, camera, "flat", "torch").depth  # (T, H, W)
        uv = camera.project(vertices.detach())
        col = uv[..., 0].long().clamp(0, camera.width - 1)
        row = uv[..., 1].long().clamp(0, camera.height - 1)
        drawn = depth[torch.arange(depth.shape[0], device=depth.device)[:, None], row, col]  # (T, V)
        return ((drawn == 0) | (vertices[..., 2].detach() <= drawn + tolerance)).float()


def body_stats(vertices: torch.Tensor, faces: torch.Tensor, part_ids: torch.Tensor, camera: PinholeCamera,
               visibility: torch.Tensor | None = None) -> PartStats:
    """The same summaries for a posed body: each vertex weighs a third of the projected area of its
    camera-facing faces, so vertex sums approximate pixel sums of the visible surface. ``visibility``
    (T, V) (see ``visible_vertices``) drops vertices hidden behind other parts; without it occluded
    surface still counts (measured: it doubles to triples the data term at the true pose)."""
    uv = _image_units(camera.project(vertices), camera)  # (T, V, 2)
    tri = uv[:, faces]  # (T, F, 3, 2)
    e1, e2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    signed = 0.5 * (e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0])  # < 0: the face looks at the camera
    face_area = torch.relu(-signed)
    weights = vertices.new_zeros(vertices.shape[:2])
    for corner in range(3):
        weights = weights.index_add(1, faces[:, corner], face_area / 3)
    if visibility is not None:
        weights = weights * visibility
    return _stats(weights, uv, vertex_normals(vertices, faces), part_ids)


def _downsample(images: torch.Tensor, camera: PinholeCamera, max_side: int) -> tuple[torch.Tensor, PinholeCamera]:
    scale = max_side / max(camera.height, camera.width)
    if scale >= 1:
        return images, camera
    height, width = max(16, round(camera.height * scale)), max(16, round(camera.width * scale))
    rows = ((torch.arange(height) + 0.5) * camera.height / height).long()
    cols = ((torch.arange(width) + 0.5) * camera.width / width).long()
    return images[:, rows][:, :, cols], camera.resized(height, width)


def progress_steps(frames: int, iterations: int = FIT_STEPS, track_steps: int = TRACK_STEPS,
                   relabel_rounds: int = RELABEL_ROUNDS) -> int:
    """How many times ``fit_motion`` calls its callback for a clip of ``frames`` frames."""
    first = (2 * iterations + max(frames - 1, 0)) if track_steps > 0 else iterations
    return first + relabel_rounds * (iterations // 2)


def fit_motion(body, images: torch.Tensor, start: SMPLMotion, camera: PinholeCamera, fps: float, shading: str = "comovi_v1",
               iterations: int = FIT_STEPS, max_side: int = 192, smooth: float = 1.0, device="cpu", callback=None,
               track_steps: int = TRACK_STEPS, relabel_rounds: int = RELABEL_ROUNDS) -> SMPLMotion:
    """images (T, H, W, 3) in [0, 1] (frame 0 shows ``start``'s frame 0) -> a SMPLMotion of T frames.

    Two fits, and the one whose loss is lower wins: (1) all frames jointly from the start pose,
    ``iterations`` Adam steps; (2) with ``track_steps`` > 0, frame by frame from the previous frame's fit
    (``track_steps`` steps each), then jointly as (1). Both model occlusion (``visible_vertices``).
    ``callback(step, total)`` is called after each joint step and each tracked frame, ``total`` =
    ``progress_steps(T, iterations, track_steps, relabel_rounds)`` times (progress, cancellation).
    Labels are decoded with the start pose drawn as a prior (``decode_motion_map(prior=...)``); then
    ``relabel_rounds`` times with the fitted body as the prior, each followed by ``iterations // 2`` joint steps.
    Works inside ``torch.inference_mode``/``no_grad`` (hosts such as ComfyUI run nodes that way): the
    optimisation uses its own grad-enabled copies of the body model and the maps.
    """
    with torch.inference_mode(False), torch.enable_grad():
        return _fit(copy.deepcopy(body).to(device), images.clone(), start, camera, fps, shading, iterations, max_side, smooth,
                    device, callback, track_steps, relabel_rounds)


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


def _accel(x: torch.Tensor) -> torch.Tensor:
    """(T, D) -> (T-2, D) second differences (smooth, without pulling toward stillness)."""
    return x[2:] - 2 * x[1:-1] + x[:-2]


def _prior(g: torch.Tensor, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Temporal smoothness of global_orient (T, 3), body_pose (T, 69), transl (T, 3); 0 for T < 3."""
    if g.shape[0] < 3:
        return g.new_zeros(())
    return _accel(p).square().sum(-1).mean() + _accel(g).square().sum(-1).mean() + 10 * _accel(t).square().sum(-1).mean()


def _slice(stats: PartStats, index) -> PartStats:
    return PartStats(stats.count[index], stats.centroid[index], stats.covariance[index], stats.normal[index])


def _track(body, delta, orient, pose, transl, betas, faces, part_ids, camera, target, present, steps, smooth, on_step):
    """Frame by frame, fit each frame alone for ``steps`` steps from the previous frame's fit (data term
    + the joint prior over it and the two frames before it). delta (T-1, 75) is filled in place."""
    base = torch.cat([orient, pose, transl], -1)  # (T, 75) the start pose, every frame
    for frame in range(1, orient.shape[0]):
        with torch.no_grad():
            done = torch.cat([delta.new_zeros(1, 75), delta])[max(0, frame - 2) : frame].clone()  # (<= 2, 75) fitted before
        x = done[-1:].clone().requires_grad_(True)  # (1, 75) start from the previous frame
        optimiser = torch.optim.Adam([x], lr=0.02)
        frame_target, frame_present = _slice(target, [frame]), present[[frame]]
        for step in range(steps + 1):
            q = base[frame : frame + 1] + x  # (1, 75)
            vertices = body(q[:, :3], q[:, 3:72], betas, q[:, 72:]).vertices
            model = body_stats(vertices, faces, part_ids, camera, visible_vertices(vertices, faces, part_ids, camera))
            loss = _data_terms(model, frame_target, frame_present).sum()
            if done.shape[0] == 2:  # continue the motion smoothly
                seq = torch.cat([base[frame - 2 : frame] + done, q])  # (3, 75)
                loss = loss + smooth * _prior(seq[:, :3], seq[:, 3:72], seq[:, 72:])
            if step == steps:
                break
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            delta[frame - 1] = x[0]
        on_step()


def _refine(body, delta, orient, pose, transl, betas, faces, part_ids, camera, target, present, iterations, smooth,
            on_step) -> tuple[torch.Tensor, float]:
    """Fit all frames jointly (data + smoothness) for ``iterations`` Adam steps from ``delta`` (T-1, 75).
    Returns the optimised delta and the final loss."""
    delta = delta.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([delta], lr=0.02)
    frames = orient.shape[0]
    loss = torch.zeros(())
    for step in range(iterations + 1):
        q = _pose(orient, pose, transl, delta)
        g, p, t = q[:, :3], q[:, 3:72], q[:, 72:]
        vertices = body(g, p, betas, t).vertices
        visibility = visible_vertices(vertices, faces, part_ids, camera)
        data = _data_terms(body_stats(vertices, faces, part_ids, camera, visibility), target, present).sum() / max(frames - 1, 1)
        loss = data + smooth * _prior(g, p, t)
        if step == iterations:  # the final loss, of the returned delta
            break
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        on_step()
    return delta.detach(), float(loss.detach())


def _pose(orient, pose, transl, delta) -> torch.Tensor:
    """The start pose (T, 75) plus the fitted change (T-1, 75) of frames 1.. -> (T, 75) (orient, pose, transl)."""
    return torch.cat([orient, pose, transl], -1) + torch.cat([delta.new_zeros(1, 75), delta])


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


def _fit(body, images, start, camera, fps, shading, iterations, max_side, smooth, device, callback, track_steps,
         relabel_rounds) -> SMPLMotion:
    full_camera = camera.resized(images.shape[1], images.shape[2])
    images, camera = _downsample(images.float().cpu(), full_camera, max_side)
    frames, depth = images.shape[0], float(start.transl[0, 2])
    faces, part_ids = body.faces.to(device), body.part_ids.to(device)
    first = lambda a: torch.as_tensor(np.asarray(a[:1], np.float32), device=device).repeat(frames, 1)  # noqa: E731
    orient, pose, transl = first(start.global_orient), first(start.body_pose), first(start.transl)
    betas = torch.as_tensor(np.asarray(start.betas, np.float32), device=device)
    total, done = progress_steps(frames, iterations, track_steps, relabel_rounds), [0]

    def on_step():
        if callback is not None:
            callback(done[0], total)
        done[0] += 1

    def decode(q: torch.Tensor) -> tuple[PartStats, torch.Tensor]:
        """Targets of the map decoded with poses q (T, 75) drawn as the prior; frame 0 is the given start."""
        target, present = _targets(images, shading, camera, depth, _levels(body, q, betas, faces, part_ids, camera), device)
        present[0] = 0
        return target, present

    def settle(target, present, delta, steps):  # joint refinement
        return _refine(*fixed[:1], delta, *fixed[1:], target, present, steps, smooth, on_step)

    fixed = (body, orient, pose, transl, betas, faces, part_ids, camera)
    start_pose = _pose(orient, pose, transl, torch.zeros(frames - 1, 75, device=device))
    # 1. all frames jointly from the start pose; the map decoded with the start pose as the prior
    target, present = decode(start_pose)
    delta, loss = settle(target, present, torch.zeros(frames - 1, 75, device=device), iterations)
    if track_steps > 0:
        # 2. follow the motion frame by frame, then refine jointly; keep whichever explains the map better
        tracked = torch.zeros(frames - 1, 75, device=device)
        _track(*fixed[:1], tracked, *fixed[1:], target, present, track_steps, smooth, on_step)
        tracked, tracked_loss = settle(target, present, tracked, iterations)
        log.info("fit from the start pose: loss %.4g; tracked: %.4g", loss, tracked_loss)
        if tracked_loss < loss:
            delta, loss = tracked, tracked_loss
    for _ in range(relabel_rounds):  # 3. decode again with the fitted body as the prior, refine
        delta, loss = settle(*decode(_pose(orient, pose, transl, delta)), delta, iterations // 2)
    log.info("fitted %d frames to the motion map (%d steps, loss %.4g)", frames, iterations, loss)
    with torch.no_grad():
        q = _pose(orient, pose, transl, delta)
        g, p, t = (x.cpu().numpy() for x in (q[:, :3], q[:, 3:72], q[:, 72:]))
    return SMPLMotion(g, p, start.betas, t, fps, full_camera, start.gender)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.fitting", description=__doc__.split("\n\n")[0])
    p.add_argument("motion_map", type=Path, help="motion-map video (.mp4, comovi_v1 shading) to fit the body to")
    p.add_argument("--start", type=Path, required=True, help="SMPL motion (.npz) whose frame 0 is the video's frame 0")
    p.add_argument("--out", type=Path, required=True, help="where to write the fitted motion (.npz)")
    p.add_argument("--body-model", type=Path, help="SMPL file or folder; default: the stand-in mannequin (not SMPL)")
    p.add_argument("--steps", type=int, default=FIT_STEPS, help="optimisation steps of the joint fit")
    p.add_argument("--track-steps", type=int, default=TRACK_STEPS, help="steps per frame of the frame-by-frame pass (0: off)")
    p.add_argument("--fps", type=float, help="frame rate of the fitted motion (default: the start motion's)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> SMPLMotion:
    from .body.motion_file import load_motion, save_motion
    from .body.smpl import load_body_model
    from .video import read_video

    if args.steps < 1 or args.track_steps < 0:
        raise CoMoViError(f"--steps must be >= 1 and --track-steps >= 0, got {args.steps} and {args.track_steps}")
    if not args.motion_map.is_file():
        raise CoMoViError(f"motion-map video not found: {args.motion_map}")
    start = load_motion(args.start).frame(0)
    try:
        images = torch.from_numpy(read_video(args.motion_map)).float() / 255  # (T, H, W, 3)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise CoMoViError(f"could not read the video {args.motion_map}: {exc}") from exc
    camera = start.camera.padded_to(images.shape[1], images.shape[2])
    body = load_body_model(args.body_model)
    motion = fit_motion(body, images, start, camera, start.fps if args.fps is None else args.fps, iterations=args.steps,
                        track_steps=args.track_steps)
    save_motion(args.out, motion)
    log.info("wrote %s (%d frames)", args.out, motion.num_frames)
    return motion


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
