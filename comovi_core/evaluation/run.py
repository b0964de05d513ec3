"""Evaluate a generation: does the 3D motion match the motion map, and (given one) the reference motion?

    python -m comovi_core.evaluate outputs/run1 [--gt reference_motion.npz] [--body-model models/smpl]

reads ``motion.npz`` and ``motion_map.mp4`` from the run folder (as written by ``comovi_core.inference.generate``)
and writes ``eval.json`` there (or to ``--out``):
- ``consistency``: the SMPL motion rendered as a motion map vs the generated motion map (silhouette
  IoU, part agreement, normal angle; see ``comovi_core.evaluation.metrics``);
- ``vs_reference`` (with ``--gt``): MPJPE, PA-MPJPE, PVE and acceleration error in millimetres, over
  the frames both motions have.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import CoMoViError, run_cli
from ..files.atomic import atomic_path, check_writable_file

log = logging.getLogger("comovi_core.evaluation.run")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a generate output folder (motion.npz, motion_map.mp4)")
    p.add_argument("--gt", type=Path, help="reference SMPL motion (.npz) to compare the 3D motion with")
    p.add_argument(
        "--body-model", type=Path, help="SMPL model file or folder; default: the stand-in mannequin (not SMPL)"
    )
    p.add_argument("--out", type=Path, help="where to write the JSON (default: RUN/eval.json)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "pyrender"), help="motion-map renderer")
    return p.parse_args(argv)


def consistency(
    body, motion, generated: torch.Tensor, backend: str = "auto", max_frames: int | None = None, stride: int = 1
) -> dict[str, float]:
    """``motion`` (SMPLMotion) rendered exactly vs ``generated`` (T, H, W, 3) in [0, 1] (comovi_v1 shading).

    A cheap estimate for long, large videos: ``max_frames`` evenly spaced frames, and every ``stride``-th pixel
    of both maps (the same pixels on both sides, so the estimate is unbiased)."""
    from ..motion_map.decode import decode_motion_map
    from ..motion_map.render import render_motion
    from .metrics import decode_generated, map_consistency

    frames = min(motion.num_frames, generated.shape[0])
    camera = motion.camera
    if tuple(generated.shape[1:3]) != (camera.height, camera.width):
        raise CoMoViError(
            f"the motion map is {tuple(generated.shape[1:3])} but the motion's camera is "
            f"{(camera.height, camera.width)}: evaluate the motion.npz written with this motion map"
        )
    index = torch.arange(frames)
    if max_frames is not None and frames > max_frames:
        index = torch.linspace(0, frames - 1, max_frames).round().long()
    reference = render_motion(body, motion, camera, "flat", backend, frames=index).images
    pixels = (slice(None), slice(stride // 2, None, stride), slice(stride // 2, None, stride))
    exact = decode_motion_map(reference[pixels], "flat")
    sampled = camera.resized(*exact.mask.shape[1:])  # close enough for the shading's light direction
    decoded = decode_generated(generated[index][pixels], sampled, float(np.median(motion.transl[:frames, 2])))
    return {"frames": frames, **map_consistency(exact, decoded)}


def versus_reference(body, motion, reference) -> dict[str, float]:
    from ..body.smpl import camera_vertices
    from .metrics import motion_errors

    frames = min(motion.num_frames, reference.num_frames)
    with torch.no_grad():
        pred, gt = camera_vertices(body, motion), camera_vertices(body, reference)
    return {
        "frames": frames,
        **motion_errors(pred.joints[:frames], gt.joints[:frames], pred.vertices[:frames], gt.vertices[:frames]),
    }


def run(args: argparse.Namespace) -> dict:
    from ..body.motion_file import load_motion
    from ..body.smpl import load_body_model
    from ..files.video import read_video

    motion_path, map_path = args.run / "motion.npz", args.run / "motion_map.mp4"
    if not motion_path.is_file():
        raise CoMoViError(
            f"no motion.npz in {args.run}: the run had no 3D head and --no-fit, or this is not a generate output folder"
        )
    out = args.out or args.run / "eval.json"
    check_writable_file(out, "--out file")
    motion = load_motion(motion_path)
    reference = load_motion(args.gt) if args.gt else None
    body = load_body_model(args.body_model)
    report = {"run": str(args.run), "body_model": "stand-in mannequin (NOT SMPL)" if body.is_standin else body.source}
    if map_path.is_file():
        generated = torch.from_numpy(read_video(map_path)).float() / 255
        report["consistency"] = consistency(body, motion, generated, args.backend)
    else:
        log.warning("no motion_map.mp4 in %s: consistency skipped", args.run)
    if reference is not None:
        report["vs_reference"] = versus_reference(body, motion, reference)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    for section in ("consistency", "vs_reference"):
        if section in report:
            log.info("%s: %s", section, ", ".join(f"{k} {v:.4g}" for k, v in report[section].items()))
    log.info("wrote %s", out)
    return report


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
