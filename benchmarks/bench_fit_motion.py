"""Accuracy and speed of recovering SMPL from a motion map (``comovi_core.fitting``), on a known motion.

    python benchmarks/bench_fit_motion.py [--frames 33] [--height 352] [--width 640] [--iterations 300]

Renders the stand-in body's demo motion as a comovi_v1 motion map, fits the body to it from the start
pose alone, and prints MPJPE / PA-MPJPE / acceleration error of the fit and of simply holding the start
pose (the ratio is the figure that matters), plus the fitting time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import SMPLMotion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.fitting import fit_motion
from comovi_core.metrics import motion_errors
from comovi_core.motion_map.render import render_motion_map


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=33, help="frames of the demo motion (one full cycle)")
    p.add_argument("--height", type=int, default=352, help="motion map height")
    p.add_argument("--width", type=int, default=640, help="motion map width")
    p.add_argument("--iterations", type=int, default=300, help="optimisation steps")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    body = load_body_model(None)
    truth = demo_motion(num_frames=args.frames, height=args.height, width=args.width)
    with torch.no_grad():
        posed = camera_vertices(body, truth)
    maps = render_motion_map(posed.vertices, body.faces, body.part_ids, truth.camera, "comovi_v1", "torch").images
    start = SMPLMotion(truth.global_orient[:1], truth.body_pose[:1], truth.betas, truth.transl[:1], truth.fps, truth.camera)
    t0 = time.perf_counter()
    fitted = fit_motion(body, maps, start, truth.camera, truth.fps, iterations=args.iterations, device=args.device)
    seconds = time.perf_counter() - t0
    hold = SMPLMotion(*(np.repeat(a[:1], args.frames, 0) for a in (truth.global_orient, truth.body_pose)), truth.betas,
                      np.repeat(truth.transl[:1], args.frames, 0), truth.fps, truth.camera)
    with torch.no_grad():
        errors = {name: motion_errors(camera_vertices(body.cpu(), m).joints, posed.joints) for name, m in (("fit", fitted), ("hold", hold))}
    for name, e in errors.items():
        print(f"{name:>5}: " + ", ".join(f"{k} {v:.1f}" for k, v in e.items()))
    print(f"fit / hold MPJPE = {errors['fit']['mpjpe_mm'] / errors['hold']['mpjpe_mm']:.2f}, "
          f"PA-MPJPE = {errors['fit']['pa_mpjpe_mm'] / errors['hold']['pa_mpjpe_mm']:.2f}; "
          f"{seconds:.1f} s for {args.frames} frames ({args.iterations} steps, {args.device})")


if __name__ == "__main__":
    main()
