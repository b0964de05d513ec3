"""Accuracy and speed of recovering SMPL from a motion map (``comovi_core.recovery.fitting``), on known motions.

    OMP_NUM_THREADS=1 python benchmarks/bench_fit_motion.py --frames 9 --steps 300 \
        --motions arms,turn,demo --bodies standin,big --conditions float,8bit,degraded
    python benchmarks/bench_fit_motion.py --device cuda --frames 81 --motions demo --bodies standin \
        --conditions degraded        # the GPU speed target: <= 30 s for 81 frames (s/frame x 81)
    python benchmarks/bench_fit_motion.py --smoke   # seconds on a CPU: 3 small frames, few steps
    git worktree add /tmp/fit_old <commit>; OMP_NUM_THREADS=1 python benchmarks/bench_fit_motion.py \
        --baseline /tmp/fit_old --frames 9 --motions demo --bodies standin --conditions degraded   # old vs new
    OMP_NUM_THREADS=1 python benchmarks/bench_fit_motion.py --frames 9 --motions kick,arms,turn,demo \
        --conditions degraded --repeats 1 --warmup 0 --init noisy    # the fit started from per-frame estimates
    (the same with --init captured: the estimates through the pipeline's chain, ``estimates_for_fit``)

For every motion x body x condition: render the motion as a comovi_v1 motion map (torch rasteriser),
optionally round it to 8 bits or degrade it like a VAE round trip (``comovi_core.motion_map.degrade``,
fixed seed), fit the body to it from the start pose alone, and print root-relative MPJPE of the fit
and of holding the start pose (the ratio is the figure that matters; the issue asks <= 0.5), the same
over arm joints (shoulders, elbows, wrists, hands) and leg joints (hips, knees, ankles, feet) as
fit/hold in mm (a ratio is meaningless where a motion barely moves that limb), and
for motions with a planted foot the drift of the fitted planted feet from where they stand (mean and max
mm over the frames a true foot has not moved) and the pelvis's error in camera space (mm), and
the seconds per frame of the fit (CPU time, ``time.process_time``, or with ``--device cuda`` CUDA events; torch
threads fixed by ``--threads``; after one untimed warm-up fit). The fit is timed ``--repeats`` times (default 7)
and the time is reported as median [min-max]; the fit itself is deterministic, so its errors do not change between
repeats. With ``--repeats`` below 7 (accuracy only, faster) no time is reported.

``--baseline PATH`` compares with the fit of another checkout (e.g. the commit before a change, as a git worktree):
its fit runs in a worker process that imports ``comovi_core`` from PATH, at its own defaults, and the two take turns
on every repeat of every case (new, old, old, new, ...), so slow phases of a shared machine hit both alike. Each case
then prints a row per code (column ``code``) and the per-repeat ratio of their CPU times, baseline/new.

``--init noisy`` starts this code's fit from per-frame estimates (``fit_motion(init=...)``), as the pipeline does when
an image estimator reads the generated RGB video: a NOISY ORACLE (``noisy_estimates``: the truth with every joint
turned by ``--joint-noise`` degrees RMS, the root moved by ``--root-noise`` cm, ``--outliers`` of the frames
``--outlier-scale`` times worse; the defaults are those of ``bench_capture.py``). A row labelled "noisy estimates"
prints the estimates' own errors; compare the fit with it and with the fit from the start pose (a run without
``--init``, or ``--baseline``, whose fit always starts from the start pose). ``--init captured`` takes the same
oracle through the pipeline's chain (``capture.video.estimates_for_fit``: boxes from the map's silhouette, the map's
camera, smoothing by confidence, the start's body shape) and prints its "captured estimates" row: what the pipeline
gives the fit when an estimator reads its generated video.

Motions (all on the stand-in mannequin's demo camera, 3 m away): ``arms`` (shoulders, collars, elbows
and wrists sweep widely), ``kick`` (the left foot stays planted while the right leg swings forward and
kicks, the supporting knee bends and the arms rise; the body's translation keeps the left foot still),
``turn`` (yaw sweep of ~115 degrees while stepping), ``demo``
(``demo_motion``: small turn, arm wave, knee bends), ``random0``/``random1`` (15 random joints
rotated progressively, normal(0, 0.5) rad, on top of the demo). Bodies: ``standin`` (betas 0) and
``big`` (betas: 15% larger overall, thicker limbs; transl unchanged, so it fills more of the frame).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from timing import MIN_REPEATS, add_timing_args, clock_for, parse_args, set_threads

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import SMPLMotion
from comovi_core.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.motion_map.degrade import HARSH, WAN22_VAE, degrade_motion_map
from comovi_core.motion_map.render import render_motion_map
from comovi_core.recovery.contact import foot_centres, foot_masks
from comovi_core.recovery.fitting import FitOptions, fit_motion
from comovi_core.recovery.hmr.estimator import BodyEstimate

ARM_JOINTS = [16, 17, 18, 19, 20, 21, 22, 23]  # shoulders, elbows, wrists, hands
LEG_JOINTS = [1, 2, 4, 5, 7, 8, 10, 11]  # hips, knees, ankles, feet
BODIES = {"standin": np.zeros(10), "big": np.array([2.5, 2.0, 0, 0, 0, 0, 0, 0, 0, 0])}
SMOKE = {
    "frames": 3,
    "height": 48,
    "width": 80,
    "steps": 2,
    "motions": "demo",
    "bodies": "standin",
    "conditions": "degraded",
    "warmup": 0,  # the warm-up fit runs the fit's default colour stage (~15 s at any size)
}
# --smoke: the fit's stages with few steps, without the colour stage (its frame-by-frame pass alone takes ~9 s at
# any size) and limb flips; the full run measures the fit's defaults
SMOKE_FIT = {"track_steps": 2, "relabel_rounds": 1, "splat_steps": 0, "flip_steps": 0, "contact_steps": 2}


def _with_pose(base: SMPLMotion, global_orient: np.ndarray, body_pose: np.ndarray, transl: np.ndarray) -> SMPLMotion:
    return SMPLMotion(global_orient, body_pose, base.betas, transl, base.fps, base.camera)


def arms_motion(frames: int, height: int, width: int) -> SMPLMotion:
    """Upright body, both arms sweep through large shoulder / elbow / wrist / collar rotations."""
    base = demo_motion(num_frames=frames, height=height, width=width)
    phase = np.linspace(0, 1, frames)[:, None]
    pose = np.zeros((frames, 23, 3))
    s = np.sin(np.pi * phase)[:, 0]
    pose[:, 15] = np.stack((0.6 * s, -0.5 * s, -1.1 * s), -1)  # left shoulder (16): up and forward
    pose[:, 16] = np.stack((-0.4 * s, 0.7 * s, 0.3 * s), -1)  # right shoulder (17): down and back
    pose[:, 17, 1] = -1.4 * phase[:, 0]  # left elbow (18) flexes
    pose[:, 18, 1] = 1.2 * s  # right elbow (19)
    pose[:, 19, 0], pose[:, 20, 2] = 0.6 * s, -0.6 * phase[:, 0]  # wrists (20, 21)
    pose[:, 12, 2], pose[:, 13, 2] = -0.3 * s, 0.3 * s  # collars (13, 14)
    orient = np.repeat(base.global_orient[:1], frames, 0)
    transl = np.repeat(np.array([[0.0, 0.05, 3.0]]), frames, 0)
    return _with_pose(base, orient, pose.reshape(frames, 69), transl)


def kick_motion(frames: int, height: int, width: int) -> SMPLMotion:
    """The right leg swings forward and kicks while the left knee bends; plant it with ``plant_foot``."""
    base = demo_motion(num_frames=frames, height=height, width=width)
    phase = np.linspace(0, 1, frames)
    s = np.sin(np.pi * phase)
    pose = np.zeros((frames, 23, 3))
    pose[:, 1, 0] = -1.2 * s  # right hip (2) flexes: the leg swings forward
    pose[:, 4, 0] = 1.3 * np.sin(np.pi * np.clip(1.6 * phase, 0, 1))  # right knee (5) bends, then kicks
    pose[:, 0, 0], pose[:, 3, 0], pose[:, 6, 0] = -0.2 * s, 0.4 * s, -0.25 * s  # left hip, knee, ankle (1, 4, 7)
    pose[:, 2, 0] = 0.2 * s  # spine (3) leans
    pose[:, 15, 2], pose[:, 16, 2] = -0.9 + 0.6 * s, 0.9 - 0.6 * s  # arms rise for balance (shoulders 16, 17)
    orient = np.repeat(base.global_orient[:1], frames, 0)
    transl = np.repeat(np.array([[0.0, 0.05, 3.0]]), frames, 0)
    return _with_pose(base, orient, pose.reshape(frames, 69), transl)


def plant_foot(body, motion: SMPLMotion, foot: int) -> SMPLMotion:
    """Shift ``motion``'s translation so that foot ``foot`` (0 left, 1 right) stays where it is at frame 0."""
    with torch.no_grad():
        centres = foot_centres(camera_vertices(body, motion).vertices, foot_masks(body.part_ids))[:, foot].numpy()
    return _with_pose(motion, motion.global_orient, motion.body_pose, motion.transl - (centres - centres[:1]))


def turn_motion(frames: int, height: int, width: int) -> SMPLMotion:
    """The body turns ~115 degrees about its vertical axis while stepping (alternating hips and knees)."""
    base = demo_motion(num_frames=frames, height=height, width=width)
    phase = torch.linspace(0, 1, frames, dtype=torch.float64)
    yaw = axis_angle_to_matrix(torch.stack((0 * phase, 2.0 * phase, 0 * phase), -1))
    flip = axis_angle_to_matrix(torch.tensor([np.pi, 0.0, 0.0], dtype=torch.float64))  # SMPL y-up -> camera y-down
    orient = matrix_to_axis_angle(flip @ yaw).numpy()
    step = np.sin(2 * np.pi * phase.numpy())
    pose = np.zeros((frames, 23, 3))
    pose[:, 0, 0], pose[:, 1, 0] = -0.5 * np.clip(step, 0, None), -0.5 * np.clip(-step, 0, None)  # hips (1, 2)
    pose[:, 3, 0], pose[:, 4, 0] = 0.9 * np.clip(step, 0, None), 0.9 * np.clip(-step, 0, None)  # knees (4, 5)
    pose[:, 15, 2], pose[:, 16, 2] = -0.9, 0.9  # arms lowered (shoulders 16, 17)
    transl = np.stack((0.3 * phase.numpy() - 0.15, 0.05 + 0 * step, 3.0 + 0 * step), -1)
    return _with_pose(base, orient, pose.reshape(frames, 69), transl)


def random_motion(frames: int, height: int, width: int, seed: int) -> SMPLMotion:
    """The demo motion plus 15 random joints rotated progressively (normal(0, 0.5) rad by the last frame)."""
    base = demo_motion(num_frames=frames, height=height, width=width)
    rng = np.random.default_rng(seed)
    pose = base.body_pose.copy().reshape(frames, 23, 3)
    ramp = np.linspace(0, 1, frames)[:, None]
    for joint in rng.choice(23, 15, replace=False):
        pose[:, joint] += ramp * rng.normal(0, 0.5, 3)
    return _with_pose(base, base.global_orient, pose.reshape(frames, 69), base.transl)


MOTIONS = {
    "arms": arms_motion,
    "kick": kick_motion,
    "turn": turn_motion,
    "demo": lambda f, h, w: demo_motion(num_frames=f, height=h, width=w),
    "random0": lambda f, h, w: random_motion(f, h, w, 0),
    "random1": lambda f, h, w: random_motion(f, h, w, 1),
}


PLANTED = {"kick": 0}  # motions whose foot (0 left, 1 right) stays planted: translated by plant_foot


@dataclass
class NoisyEstimates:
    """Per-frame estimates of a known motion with a real estimator's noise (``noisy_estimates``)."""

    full_pose: np.ndarray  # (T, 72) axis-angle, the root first
    transl: np.ndarray  # (T, 3)
    frame_betas: np.ndarray  # (T, 10): a shape per frame, as an image estimator gives
    outliers: np.ndarray  # frames with much larger noise

    def motion(self, truth: SMPLMotion) -> SMPLMotion:
        """The estimates as a motion with the truth's shape, camera and frame rate (what a fit starts from)."""
        return SMPLMotion(
            self.full_pose[:, :3], self.full_pose[:, 3:], truth.betas, self.transl, truth.fps, truth.camera
        )


def noisy_estimates(
    truth: SMPLMotion, joint_deg: float, root_cm: float, outliers: float, outlier_scale: float, seed: int
) -> NoisyEstimates:
    """The truth with every joint turned by a random rotation of ``joint_deg`` degrees (RMS angle), the root moved by
    ``root_cm`` cm (RMS), the betas by 0.1, and ``outliers`` of the frames (at least one) ``outlier_scale`` times
    worse: a NOISY ORACLE in place of a per-frame image estimator (HMR 2.0, CameraHMR)."""
    rng = np.random.default_rng(seed)
    frames = truth.num_frames
    scale = np.ones(frames)
    bad = rng.choice(frames, max(1, round(outliers * frames)), replace=False)
    scale[bad] = outlier_scale
    per_axis = np.radians(joint_deg) / np.sqrt(3)  # RMS angle joint_deg
    noise = torch.from_numpy(rng.normal(0, per_axis, (frames, 24, 3)) * scale[:, None, None])
    true = torch.from_numpy(truth.full_pose.reshape(frames, 24, 3)).double()
    turned = matrix_to_axis_angle(axis_angle_to_matrix(noise) @ axis_angle_to_matrix(true)).float()
    transl = truth.transl + rng.normal(0, root_cm / 100 / np.sqrt(3), (frames, 3)) * scale[:, None]
    betas = truth.betas + rng.normal(0, 0.1, (frames, 10))
    return NoisyEstimates(turned.reshape(frames, 72).numpy(), transl, betas, np.sort(bad))


class NoisyOracle:
    """The truth plus per-frame noise of a real estimator's size, in the ``BatchEstimator`` form."""

    name = "noisy oracle"

    def __init__(self, truth, joint_deg: float, root_cm: float, outliers: float, outlier_scale: float, seed: int):
        noisy = noisy_estimates(truth, joint_deg, root_cm, outliers, outlier_scale, seed)
        self.outliers = noisy.outliers
        self.pose = torch.from_numpy(noisy.full_pose).float()  # (T, 72)
        self.transl = torch.from_numpy(noisy.transl).float()
        self.betas = torch.from_numpy(noisy.frame_betas).float()  # (T, 10)

    def __call__(self, images, boxes, camera, indices) -> list[BodyEstimate]:
        return [
            BodyEstimate(self.pose[i, :3], self.pose[i, 3:], self.betas[i], self.transl[i], camera, "oracle", box)
            for i, box in zip(indices, boxes)
        ]


def foot_drift_mm(body, fitted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Vertices (T, V, 3) of a fit and of the truth -> how far (mm) the fit's feet moved from frame 0 over the
    frames where the true foot has not moved from there (within 2 mm; frame 0, the given start, included); empty if
    no foot stands."""
    masks = foot_masks(body.part_ids)
    true_feet, fitted_feet = foot_centres(truth, masks), foot_centres(fitted, masks)  # (T, 2, 3)
    standing = (true_feet - true_feet[:1]).norm(dim=-1) < 0.002
    return 1000 * (fitted_feet - fitted_feet[:1]).norm(dim=-1)[standing]


def condition_maps(maps: torch.Tensor, condition: str) -> torch.Tensor:
    """(T, H, W, 3) float render -> the map a fit sees under ``condition``."""
    if condition == "float":
        return maps
    if condition == "8bit":
        return torch.round(maps * 255) / 255
    if condition in ("degraded", "harsh"):
        degraded = degrade_motion_map(maps, WAN22_VAE if condition == "degraded" else HARSH, seed=0)
        return torch.round(degraded * 255) / 255  # a host hands over 8-bit frames
    raise SystemExit(f"unknown condition {condition!r}: choose float, 8bit, degraded or harsh")


def joint_errors_mm(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(T, 24, 3) joints, metres -> (T, 24) root-relative position errors in mm."""
    return 1000 * ((pred - pred[:, :1]) - (truth - truth[:, :1])).norm(dim=-1)


def held(motion: SMPLMotion) -> SMPLMotion:
    n = motion.num_frames

    def first(a):
        return np.repeat(np.asarray(a)[:1], n, 0)

    return SMPLMotion(
        first(motion.global_orient),
        first(motion.body_pose),
        motion.betas,
        first(motion.transl),
        motion.fps,
        motion.camera,
    )


def start_of(motion: SMPLMotion) -> SMPLMotion:
    return SMPLMotion(
        motion.global_orient[:1], motion.body_pose[:1], motion.betas, motion.transl[:1], motion.fps, motion.camera
    )


def timed_fit(clock, body, images: torch.Tensor, truth: SMPLMotion, **kwargs) -> tuple[SMPLMotion, float]:
    """Fit ``images`` from the start of ``truth`` (``kwargs``: ``fit_motion``'s options, device) -> (the fitted
    motion, seconds by ``clock``)."""
    fitted = []
    start = start_of(truth)
    seconds = clock.time(
        lambda: fitted.append(fit_motion(body, images, start=start, camera=truth.camera, fps=truth.fps, **kwargs))
    )
    return fitted[0], seconds


def case_truth(body, motion_name: str, body_name: str, frames: int, height: int, width: int) -> SMPLMotion:
    """The known motion of one benchmark case (``MOTIONS`` x ``BODIES``; the planted motions' foot held still)."""
    if motion_name not in MOTIONS or body_name not in BODIES:
        raise SystemExit(f"unknown case {motion_name}/{body_name}: motions {sorted(MOTIONS)}, bodies {sorted(BODIES)}")
    truth = MOTIONS[motion_name](frames, height, width)
    truth = SMPLMotion(truth.global_orient, truth.body_pose, BODIES[body_name], truth.transl, truth.fps, truth.camera)
    return plant_foot(body, truth, PLANTED[motion_name]) if motion_name in PLANTED else truth


def case_estimates(args, body, truth: SMPLMotion, images: torch.Tensor) -> tuple[SMPLMotion | None, str]:
    """``--init``: the noisy oracle's per-frame estimates of a case as the fit gets them -> (them or None, a label):
    "noisy" as they are, "captured" through the pipeline's chain (``estimates_for_fit``; the oracle reads no pixels,
    so the map stands in for the video)."""
    noise = (args.joint_noise, args.root_noise, args.outliers, args.outlier_scale, args.seed)
    if args.init == "noisy":
        return noisy_estimates(truth, *noise).motion(truth), "noisy estimates"
    from comovi_core.capture.video import estimates_for_fit

    estimates, words = estimates_for_fit(
        images, images, start_of(truth), truth.camera, truth.fps, estimator=NoisyOracle(truth, *noise), body=body
    )
    return estimates, "captured estimates" if estimates is not None else words


def warm_up(body, height: int, width: int, device: str) -> None:
    """One short untimed fit: the first fit of a process pays one-off costs (allocator, kernels)."""
    warm = demo_motion(num_frames=2, height=height, width=width)
    with torch.no_grad():
        warm_maps = render_motion_map(
            camera_vertices(body, warm).vertices, body.faces, body.part_ids, warm.camera, "comovi_v1", "torch"
        ).images
    fit_motion(
        body,
        warm_maps,
        start=start_of(warm),
        camera=warm.camera,
        fps=warm.fps,
        options=FitOptions(iterations=2, track_steps=0),
        device=device,
    )


def serve_baseline(args: argparse.Namespace) -> None:
    """``--serve``: the fitting end of ``--baseline``, run with the baseline checkout first on ``PYTHONPATH``.

    Reads one JSON request a line from stdin ({"motion", "body", "images": .npy path, "out": .npz path}), fits the
    case's map with the ``comovi_core`` it imported (its ``FitOptions`` defaults, ``--steps`` if given), writes the
    fitted poses to "out" and answers one JSON line {"seconds": ...} on stdout."""
    body = load_body_model(None)
    clock = clock_for(args.device)
    options = FitOptions(**({} if args.steps is None else {"iterations": args.steps}))
    for _ in range(args.warmup):
        warm_up(body, args.height, args.width, args.device)
    for line in sys.stdin:
        request = json.loads(line)
        truth = case_truth(body, request["motion"], request["body"], args.frames, args.height, args.width)
        images = torch.from_numpy(np.load(request["images"]))
        fitted, seconds = timed_fit(clock, body, images, truth, device=args.device, options=options)
        np.savez(request["out"], global_orient=fitted.global_orient, body_pose=fitted.body_pose, transl=fitted.transl)
        print(json.dumps({"seconds": seconds}), flush=True)


class Baseline:
    """The fit of another checkout (``--baseline PATH``), in a worker process that imports ``comovi_core`` from
    there (``serve_baseline``); ``fit`` has ``timed_fit``'s shape, so the two codes can take turns."""

    def __init__(self, root: Path, args: argparse.Namespace, scratch: Path):
        if not (root / "comovi_core" / "recovery" / "fitting.py").is_file():
            raise SystemExit(
                f"--baseline {root}: no comovi_core/recovery/fitting.py there (give a checkout, e.g. "
                "`git worktree add /tmp/fit_old HEAD~1`)"
            )
        self.root, self.scratch = root, scratch
        self.commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip() or str(root)
        flags = ["--frames", str(args.frames), "--height", str(args.height), "--width", str(args.width)]
        flags += ["--device", args.device, "--threads", str(args.threads), "--warmup", str(args.warmup)]
        flags += [] if args.steps is None else ["--steps", str(args.steps)]
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": str(args.threads)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def fit(
        self, motion_name: str, body_name: str, images: torch.Tensor, truth: SMPLMotion
    ) -> tuple[SMPLMotion, float]:
        """Fit ``images`` (the case's map) in the baseline -> (its fitted motion, its seconds)."""
        path = self.scratch / "images.npy"
        np.save(path, images.numpy())
        out = self.scratch / "fitted.npz"
        request = {"motion": motion_name, "body": body_name, "images": str(path), "out": str(out)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit(f"the baseline fit ({self.root}) stopped; its error is printed above")
        with np.load(out) as fitted:
            motion = _with_pose(truth, fitted["global_orient"], fitted["body_pose"], fitted["transl"])
        return motion, json.loads(answer)["seconds"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def evaluate(body, fitted: SMPLMotion, posed, hold_err: torch.Tensor) -> dict:
    """Accuracy of one fit against the true posed body -> the row's figures."""
    with torch.no_grad():
        fit_out = camera_vertices(body, fitted)
        fit_err = joint_errors_mm(fit_out.joints, posed.joints)
        drift = foot_drift_mm(body, fit_out.vertices, posed.vertices)
        root = 1000 * (fit_out.joints[:, 0] - posed.joints[:, 0]).norm(dim=-1)
    return {
        "fit": float(fit_err.mean()),
        "ratio": float(fit_err.mean() / hold_err.mean()),
        "arms": f"{fit_err[:, ARM_JOINTS].mean():.0f}/{hold_err[:, ARM_JOINTS].mean():.0f}",
        "legs": f"{fit_err[:, LEG_JOINTS].mean():.0f}/{hold_err[:, LEG_JOINTS].mean():.0f}",
        "drift": f"{drift.mean():.0f} [max {drift.max():.0f}]" if drift.numel() else "-",
        "pelvis": f"{root.mean():.0f}",
    }


def row(case: str, hold: float, figures: dict, seconds: list[float] | None, code: str) -> str:
    """One printed line: ``case``'s errors (``evaluate``), seconds per frame of each repeat (None: not a fit), which
    code ran."""
    timing = "-" if seconds is None else f"n/a (<{MIN_REPEATS} repeats)"
    if seconds is not None and len(seconds) >= MIN_REPEATS:
        timing = f"{statistics.median(seconds):.2f} [{min(seconds):.2f}-{max(seconds):.2f}]"
    return (
        f"{case} | {figures['fit']:6.1f} {hold:6.1f} {figures['ratio']:5.2f} |"
        f" {figures['arms']:>9} {figures['legs']:>9}"
        f" | {timing:>11} | {figures['drift']} | {figures['pelvis']}" + (f" | {code}" if code else "")
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=9, help="frames per motion")
    p.add_argument("--height", type=int, default=352, help="motion map height")
    p.add_argument("--width", type=int, default=640, help="motion map width")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: fit_motion's default)")
    p.add_argument("--motions", default="arms,turn,demo", help=f"comma-separated, from {sorted(MOTIONS)}")
    p.add_argument("--bodies", default="standin,big", help=f"comma-separated, from {sorted(BODIES)}")
    p.add_argument("--conditions", default="float,8bit,degraded", help="comma-separated: float, 8bit, degraded, harsh")
    p.add_argument("--device", default="cpu", help="where the fit runs, e.g. cpu or cuda (timed with CUDA events)")
    p.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of this repository to compare with (e.g. `git worktree add /tmp/fit_old HEAD~1`): its fit "
        "runs in a worker process, taking turns with this one on every repeat of every case (at its own defaults)",
    )
    p.add_argument(
        "--init",
        choices=["none", "noisy", "captured"],
        default="none",
        help="noisy: start this code's fit from per-frame estimates (the truth with a real estimator's noise, "
        "`noisy_estimates`; the baseline still fits from the start pose); a row prints the estimates' own errors",
    )
    p.add_argument("--joint-noise", type=float, default=3.0, help="--init noisy: RMS angle (degrees) per joint")
    p.add_argument("--root-noise", type=float, default=2.0, help="--init noisy: RMS distance (cm) of the root")
    p.add_argument("--outliers", type=float, default=0.05, help="--init noisy: fraction of outlier frames (>= 1)")
    p.add_argument("--outlier-scale", type=float, default=8.0, help="--init noisy: an outlier's noise / the usual")
    p.add_argument("--seed", type=int, default=0, help="--init noisy: seed of the noise")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the worker end of --baseline
    add_timing_args(p)
    args = parse_args(p, SMOKE)
    set_threads(args.threads)
    logging.getLogger("comovi_core").setLevel(logging.ERROR)
    if args.serve:
        return serve_baseline(args)
    body = load_body_model(None)
    options = FitOptions(
        **({} if args.steps is None else {"iterations": args.steps}) | (SMOKE_FIT if args.smoke else {})
    )
    clock = clock_for(args.device)
    print(
        f"{args.frames} frames, {args.height}x{args.width}, steps {args.steps or 'default'}, threads {args.threads}, "
        f"{clock.kind}, device {args.device}, {args.warmup} warm-up fit, {args.repeats} timed fits per case"
    )
    print(
        f"{'motion':>8} {'body':>7} {'cond':>8} | {'fit':>6} {'hold':>6} {'ratio':>5} | {'arms mm':>9} "
        f"{'legs mm':>9} | {'s/frame':>11} | planted feet drift mm | pelvis mm" + (" | code" if args.baseline else "")
    )
    print(f"{'':>8} {'':>7} {'':>8} | {'MPJPE mm, root-relative':>19} | {'fit/hold':>9} {'fit/hold':>9} |")
    with tempfile.TemporaryDirectory() as scratch:
        baseline = None if args.baseline is None else Baseline(args.baseline.resolve(), args, Path(scratch))
        try:
            ratios = run_cases(args, body, options, clock, baseline)
        finally:
            if baseline is not None:
                baseline.close()
    for code, values in ratios.items():
        print(
            f"ratio fit/hold over {len(values)} cases{code}: median {statistics.median(values):.2f}, "
            f"max {max(values):.2f} (issue 14 asks <= 0.5 on every case)"
        )


def run_cases(args, body, options: FitOptions, clock, baseline: Baseline | None) -> dict[str, list[float]]:
    """Fit every case (``timed_fit``; with ``baseline``, its fit and this one take turns: new, old, old, new, ...),
    print its rows (and the CPU-time ratio old/new) -> fit/hold ratios per code ("" or " (new)", " (baseline)")."""
    if args.warmup:  # the first fit of a process pays one-off costs (allocator, kernels): not timed
        warm_up(body, args.height, args.width, args.device)
    codes = ["new", "baseline"] if baseline is not None else [""]
    ratios = {(f" ({code})" if code else ""): [] for code in codes}
    for motion_name in args.motions.split(","):
        for body_name in args.bodies.split(","):
            truth = case_truth(body, motion_name, body_name, args.frames, args.height, args.width)
            with torch.no_grad():
                posed = camera_vertices(body, truth)
                hold_err = joint_errors_mm(camera_vertices(body, held(truth)).joints, posed.joints)
            maps = render_motion_map(
                posed.vertices, body.faces, body.part_ids, truth.camera, "comovi_v1", "torch"
            ).images
            for condition in args.conditions.split(","):
                images = condition_maps(maps, condition)
                fits = {code: [] for code in codes}
                init = {}
                if args.init != "none":  # per-frame estimates to start from (this code only), and how good they are
                    estimates, label = case_estimates(args, body, truth, images)
                    init = {"init": estimates}
                    case = f"{motion_name:>8} {body_name:>7} {condition:>8}"
                    if estimates is None:
                        print(f"{case} | {label}: the fit starts from the start pose", flush=True)
                    else:
                        figures = evaluate(body, estimates, posed, hold_err)
                        print(row(case, float(hold_err.mean()), figures, None, label), flush=True)
                for repeat in range(max(args.repeats, 1)):
                    for code in codes if repeat % 2 == 0 else codes[::-1]:
                        if code == "baseline":
                            fits[code].append(baseline.fit(motion_name, body_name, images, truth))
                        else:
                            fits[code].append(
                                timed_fit(clock, body, images, truth, device=args.device, options=options, **init)
                            )
                case = f"{motion_name:>8} {body_name:>7} {condition:>8}"
                seconds = {code: [t / args.frames for _, t in fits[code]] for code in codes}
                for code in codes:
                    figures = evaluate(body, fits[code][-1][0], posed, hold_err)
                    ratios[f" ({code})" if code else ""].append(figures["ratio"])
                    label = f"baseline {baseline.commit}" if code == "baseline" else code
                    print(row(case, float(hold_err.mean()), figures, seconds[code], label), flush=True)
                if baseline is not None and len(seconds["new"]) >= MIN_REPEATS:
                    speedup = [old / new for old, new in zip(seconds["baseline"], seconds["new"])]
                    print(
                        f"{case} | CPU time baseline/new, per repeat: median {statistics.median(speedup):.2f} "
                        f"[{min(speedup):.2f}-{max(speedup):.2f}]",
                        flush=True,
                    )
    return ratios


if __name__ == "__main__":
    main()
