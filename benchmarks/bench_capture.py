"""The capture core (``comovi_core.capture``) on known motions: how much smoothing and foot locking improve noisy
per-frame estimates, whether they lag, and how fast the per-frame estimator runs.

    OMP_NUM_THREADS=1 python benchmarks/bench_capture.py          # 5 motions x 90 frames at 30 fps; HMR 2.0 ViT-H
    python benchmarks/bench_capture.py --smoke                    # seconds on a CPU: 2 motions x 16 frames, tiny HMR

1. Accuracy. Each motion (``bench_fit_motion``'s ``arms``, ``kick`` (a planted foot), ``turn`` (stepping), ``demo``,
   ``random0``) drives the stand-in body, rendered as a motion map; the person boxes come from its masks. A
   NOISY ORACLE stands in for HMR 2.0: every frame's estimate is the truth with every joint turned by a random
   rotation of ``--joint-noise`` degrees (RMS angle), the root moved by ``--root-noise`` cm (RMS) and the betas by
   0.1; ``--outliers`` of the frames (at least one) are much worse (``--outlier-scale`` times the noise).
   ``capture_motion`` runs twice: raw (smoothing 0, no foot locking: the per-frame estimates with one shape per
   clip) and with its defaults. Printed per motion and overall: root-relative MPJPE (mm), acceleration error
   (mm / frame^2; ``comovi_core.evaluation.metrics.motion_errors``), and the lag of the output behind the truth
   (frames): the peak of the cross-correlation of the root-relative joint trajectories (means removed), within
   +-``--max-lag`` frames, with a parabola through the peak for the fraction; and the foot skate: how far (mm per
   frame) the output's feet move where the true foot stands (nan where no foot stands). Targets: acceleration
   error at least 3x lower, MPJPE at least 20% lower, lag 0 frames.
2. Throughput. The per-frame estimator (``recovery.hmr.estimator.estimate_bodies``) on ``--throughput-frames``
   frames, random weights (``--network``: ``vit-h``, the released HMR 2.0's size, or ``tiny``), CPU time at fixed
   threads after a warm-up; batched (``--batch-size``) and one crop at a time; median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import statistics
import sys

import numpy as np
import torch
from bench_fit_motion import MOTIONS, PLANTED, NoisyOracle, plant_foot
from timing import CpuClock, add_timing_args, parse_args, set_threads

from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.capture.track import boxes_from_masks
from comovi_core.capture.video import CaptureOptions, capture_motion
from comovi_core.evaluation.metrics import motion_errors
from comovi_core.motion_map.render import render_motion
from comovi_core.recovery.contact import foot_centres, foot_masks

SMOKE = {
    "motions": "demo,kick",
    "frames": 16,
    "height": 64,
    "width": 112,
    "network": "tiny",
    "throughput_frames": 4,
    "batch_size": 4,
    "repeats": 3,
}


def lag_frames(truth: torch.Tensor, other: torch.Tensor, max_lag: int) -> float:
    """Joints (T, 24, 3) -> the shift (frames; positive: ``other`` behind) that best aligns ``other``'s root-relative
    trajectories with the truth's: the normalised cross-correlation's peak, refined by a parabola through it."""
    a = truth - truth[:, :1]
    b = other - other[:, :1]
    a, b = (a - a.mean(0)).flatten(1).double(), (b - b.mean(0)).flatten(1).double()
    frames = len(a)
    corr = []
    for k in range(-max_lag, max_lag + 1):  # normalised: sum_t a(t) . b(t + k) / (|a| |b|) over the overlap
        x, y = (a[: frames - k], b[k:]) if k >= 0 else (a[-k:], b[: frames + k])
        corr.append(float((x * y).sum() / (x.norm() * y.norm())))
    i = int(np.argmax(corr))
    if 0 < i < len(corr) - 1:
        left, mid, right = corr[i - 1 : i + 2]
        return i - max_lag + 0.5 * (left - right) / (left - 2 * mid + right)
    return float(i - max_lag)


def skate_mm(body, vertices: torch.Tensor, true_vertices: torch.Tensor) -> float:
    """Vertices (T, V, 3) of a motion and of the truth -> how far (mm per frame, mean) the motion's feet move where
    the true foot stands (moves under 2 mm from the frame before); nan if no foot stands."""
    masks = foot_masks(body.part_ids)
    feet, true_feet = foot_centres(vertices, masks), foot_centres(true_vertices, masks)  # (T, 2, 3)
    standing = (true_feet[1:] - true_feet[:-1]).norm(dim=-1) < 0.002
    steps = 1000 * (feet[1:] - feet[:-1]).norm(dim=-1)
    return float(steps[standing].mean()) if standing.any() else float("nan")


def accuracy(args, body) -> None:
    print(
        f"noisy oracle: {args.joint_noise:g} deg per joint, {args.root_noise:g} cm at the root, "
        f"{args.outliers:.0%} outlier frames x{args.outlier_scale:g}; {args.frames} frames at {args.fps:g} fps, "
        f"{args.height}x{args.width}"
    )
    print(
        f"{'motion':>8} | {'MPJPE mm':>15} {'ratio':>5} | {'accel mm/f^2':>15} {'ratio':>5} | {'lag frames':>11} "
        f"| {'skate mm/f':>11} | feet"
    )
    print(
        f"{'':>8} | {'raw':>7} {'smooth':>7} {'':>5} | {'raw':>7} {'smooth':>7} {'':>5} | {'raw':>5} {'out':>5} | "
        f"{'raw':>5} {'out':>5} |"
    )
    totals = {"raw": [], "smooth": []}
    lags = []
    for seed, name in enumerate(args.motions.split(",")):
        truth = MOTIONS[name](args.frames, args.height, args.width)
        truth = dataclasses.replace(truth, fps=args.fps)
        if name in PLANTED:
            truth = plant_foot(body, truth, PLANTED[name])
        maps = render_motion(body, truth, backend="torch")
        boxes = np.stack(boxes_from_masks(maps.mask))
        oracle = NoisyOracle(truth, args.joint_noise, args.root_noise, args.outliers, args.outlier_scale, seed)
        with torch.no_grad():
            true_posed = camera_vertices(body, truth)
        true_joints = true_posed.joints
        out = {}
        for kind, options in (("raw", CaptureOptions(smoothing=0.0, lock_feet=False)), ("smooth", CaptureOptions())):
            result = capture_motion(maps.images, truth.fps, estimator=oracle, body=body, boxes=boxes, options=options)
            with torch.no_grad():
                posed = camera_vertices(body, result.motion)
            errors = motion_errors(posed.joints, true_joints)
            errors["skate_mm"] = skate_mm(body, posed.vertices, true_posed.vertices)
            out[kind] = (errors, lag_frames(true_joints, posed.joints, args.max_lag), result)
            totals[kind].append(out[kind][0])
        (raw, raw_lag, _), (smooth, lag, result) = out["raw"], out["smooth"]
        lags.append(lag)
        contact = result.motion.foot_contact
        print(
            f"{name:>8} | {raw['mpjpe_mm']:7.1f} {smooth['mpjpe_mm']:7.1f} "
            f"{smooth['mpjpe_mm'] / raw['mpjpe_mm']:5.2f} | "
            f"{raw['accel_error_mm']:7.2f} {smooth['accel_error_mm']:7.2f} "
            f"{smooth['accel_error_mm'] / raw['accel_error_mm']:5.2f} | {raw_lag:5.2f} {lag:5.2f} | "
            f"{raw['skate_mm']:5.2f} {smooth['skate_mm']:5.2f} | "
            f"{int(contact.sum())} foot-frames planted; outliers {oracle.outliers.tolist()} confidence "
            f"{result.confidence[oracle.outliers].max():.2f} max, others {np.median(result.confidence):.2f} median",
            flush=True,
        )
    mean = {k: {m: statistics.mean(e[m] for e in v) for m in ("mpjpe_mm", "accel_error_mm")} for k, v in totals.items()}
    mpjpe = mean["smooth"]["mpjpe_mm"] / mean["raw"]["mpjpe_mm"]
    accel = mean["raw"]["accel_error_mm"] / mean["smooth"]["accel_error_mm"]
    lag = max(abs(v) for v in lags)
    print(
        f"overall: MPJPE {mean['raw']['mpjpe_mm']:.1f} -> {mean['smooth']['mpjpe_mm']:.1f} mm (x{mpjpe:.2f}, target "
        f"<= 0.80: {'PASS' if mpjpe <= 0.8 else 'FAIL'}); acceleration error {mean['raw']['accel_error_mm']:.2f} -> "
        f"{mean['smooth']['accel_error_mm']:.2f} mm/frame^2 ({accel:.1f}x lower, target >= 3: "
        f"{'PASS' if accel >= 3 else 'FAIL'}); lag at most {lag:.2f} frames (target 0: "
        f"{'PASS' if round(lag) == 0 else 'FAIL'})"
    )


def throughput(args) -> None:
    from comovi_core.body.camera import PinholeCamera
    from comovi_core.recovery.hmr.config import PRESETS
    from comovi_core.recovery.hmr.estimator import estimate_bodies
    from comovi_core.recovery.hmr.model import HMR2

    torch.manual_seed(0)
    model = HMR2(PRESETS[args.network]).eval()
    n, h, w = args.throughput_frames, 480, 640
    frames = torch.rand(n, h, w, 3)
    boxes = np.tile(np.array([[220.0, 60.0, 420.0, 460.0]], np.float32), (n, 1))
    camera = PinholeCamera.default_for(h, w)
    clock = CpuClock()
    print(
        f"per-frame estimator: HMR 2.0 {args.network}, random weights, {n} frames of {h}x{w}, {clock.kind}, "
        f"threads {args.threads}, {args.warmup} warm-up frame, median of {args.repeats}"
    )
    for _ in range(args.warmup):  # one frame: the first call's one-off costs
        estimate_bodies(model, frames[:1], boxes[:1], camera, "unused")
    for batch in (args.batch_size, 1):
        run = functools.partial(estimate_bodies, model, frames, boxes, camera, "unused", batch_size=batch)
        seconds = statistics.median(clock.time(run) for _ in range(max(1, args.repeats)))
        print(f"  batch {batch:>3}: {n / seconds:8.2f} frames/s ({seconds / n * 1000:.0f} ms/frame)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--motions", default="arms,kick,turn,demo,random0", help=f"comma-separated, from {sorted(MOTIONS)}")
    p.add_argument("--frames", type=int, default=90, help="frames per motion")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the motions")
    p.add_argument("--height", type=int, default=144, help="rendered frame height (the boxes come from its masks)")
    p.add_argument("--width", type=int, default=256, help="rendered frame width")
    p.add_argument("--joint-noise", type=float, default=3.0, help="RMS angle (degrees) of each joint's noise")
    p.add_argument("--root-noise", type=float, default=2.0, help="RMS distance (cm) of the root's noise")
    p.add_argument("--outliers", type=float, default=0.05, help="fraction of the frames that are outliers")
    p.add_argument("--outlier-scale", type=float, default=8.0, help="an outlier frame's noise / the usual noise")
    p.add_argument("--max-lag", type=int, default=5, help="lags (frames) the cross-correlation looks at")
    p.add_argument("--network", default="vit-h", choices=["vit-h", "tiny"], help="HMR 2.0 size timed")
    p.add_argument("--throughput-frames", type=int, default=4, help="frames the estimator is timed on")
    p.add_argument("--batch-size", type=int, default=4, help="crops per network call in the timing")
    p.add_argument("--skip-timing", action="store_true", help="accuracy only")
    add_timing_args(p, repeats=1)
    args = parse_args(p, SMOKE)
    set_threads(args.threads)
    logging.getLogger("comovi_core").setLevel(logging.ERROR)
    print("command: python benchmarks/bench_capture.py " + " ".join(sys.argv[1:]))
    accuracy(args, load_body_model(None))
    if not args.skip_timing:
        throughput(args)


if __name__ == "__main__":
    main()
