"""Benchmark the motion-map renderer backends on a human-sized moving body.

The body is the built-in stand-in mannequin (6890 vertices, 13,684 faces, NOT SMPL) doing the demo
motion (turning, waving, bending the knees), seen by a camera with a focal length of about 1000 px at
704x1280 from a distance that makes it fill roughly 70% of the image height. Each backend renders the
clip through ``iter_motion_maps`` (normals and colours included, as in real use) after a warm-up;
the script prints the total time, the time per frame and PASS/FAIL against the target.

    python benchmarks/bench_motion_map.py                      # torch backend, 81 frames at 704x1280
    python benchmarks/bench_motion_map.py --backends torch --frames 33 --shading flat
    python benchmarks/bench_motion_map.py --backends torch,pyrender   # OpenGL too (target <= 4 s)

Writes no files.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comovi_core.body.mannequin import demo_motion  # noqa: E402
from comovi_core.body.smpl import camera_vertices, load_body_model  # noqa: E402
from comovi_core.motion_map.camera import PinholeCamera  # noqa: E402
from comovi_core.motion_map.render import iter_motion_maps  # noqa: E402

log = logging.getLogger("bench_motion_map")

FOCAL_PX = 1000.0
BODY_DISTANCE_M = 3.4  # mean camera z of the body: about 0.7 of the image height at 704 px, f = 1000 px


def build_clip(num_frames: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, PinholeCamera]:
    """The mannequin's demo motion in camera space: vertices (T, V, 3) float32, faces (F, 3), part ids (V,), camera.

    The clip is re-framed for the benchmark camera: centred in x and y over the whole clip and pushed
    to ``BODY_DISTANCE_M`` metres.
    """
    model = load_body_model(None)
    motion = demo_motion(num_frames, height, width)
    with torch.no_grad():
        vertices = camera_vertices(model, motion).vertices.to(torch.float32)  # (T, V, 3)
    low, high = vertices.amin(dim=(0, 1)), vertices.amax(dim=(0, 1))  # (3,) each
    centre = (low + high) / 2
    vertices = vertices - torch.tensor([centre[0], centre[1], vertices[..., 2].mean() - BODY_DISTANCE_M])
    camera = PinholeCamera((FOCAL_PX, FOCAL_PX), (width / 2, height / 2), (height, width))
    return vertices, model.faces, model.part_ids, camera


def body_height_fraction(vertices: torch.Tensor, camera: PinholeCamera) -> tuple[float, float]:
    """Smallest and largest fraction of the image height the body spans over the clip. vertices (T, V, 3)."""
    rows = camera.project(vertices)[..., 1]  # (T, V)
    span = (rows.amax(1) - rows.amin(1)) / camera.height  # (T,)
    return float(span.min()), float(span.max())


def bench_torch(vertices, faces, part_ids, camera, shading: str, frames_per_chunk: int, device: str) -> float:
    """Seconds to render the clip with the pure-PyTorch backend (after a one-chunk warm-up)."""
    vertices, faces, part_ids = vertices.to(device), faces.to(device), part_ids.to(device)

    def run(verts: torch.Tensor) -> int:
        covered = 0
        for frames in iter_motion_maps(verts, faces, part_ids, camera, shading, "torch", device, frames_per_chunk):
            covered += int(frames.mask.sum())
        if verts.device.type == "cuda":
            torch.cuda.synchronize()
        return covered

    run(vertices[:frames_per_chunk])  # warm-up
    start = time.perf_counter()
    covered = run(vertices)
    seconds = time.perf_counter() - start
    log.info("torch: %.1f%% of pixels covered on average", 100 * covered / (vertices.shape[0] * camera.height * camera.width))
    return seconds


def bench_pyrender(vertices, faces, part_ids, camera, shading: str, frames_per_chunk: int, device: str) -> float:
    """Seconds to render the clip with the OpenGL backend (after a one-chunk warm-up).

    Runs on the CPU whatever ``--device`` says (that flag is for the torch backend). The warm-up also
    pays the one-off choice of the OpenGL platform (EGL or OSMesa; set PYOPENGL_PLATFORM to force one).
    """
    import os

    from comovi_core.motion_map import render_gl

    render_gl.require_available()  # a clear error, saying what to install, when there is no OpenGL
    log.info("pyrender: OpenGL platform %s", os.environ.get("PYOPENGL_PLATFORM", "(pyrender's default)"))

    def run(verts: torch.Tensor) -> int:
        covered = 0
        for frames in iter_motion_maps(verts, faces, part_ids, camera, shading, "pyrender", "cpu", frames_per_chunk):
            covered += int(frames.mask.sum())
        return covered

    run(vertices[:frames_per_chunk])  # warm-up
    start, cpu_start = time.perf_counter(), time.process_time()
    covered = run(vertices)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    log.info("pyrender: %.1f%% of pixels covered on average; %.2f s of CPU time over all threads",
             100 * covered / (vertices.shape[0] * camera.height * camera.width), cpu_seconds)
    return seconds


BACKENDS: dict[str, Callable[..., float]] = {"torch": bench_torch, "pyrender": bench_pyrender}
TARGET_S = {"torch": 15.0, "pyrender": 4.0}  # default target per backend for the whole clip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="torch", help=f"comma-separated backends to time, of: {', '.join(BACKENDS)}")
    parser.add_argument("--frames", type=int, default=81, help="number of frames in the clip")
    parser.add_argument("--height", type=int, default=704, help="image height in pixels")
    parser.add_argument("--width", type=int, default=1280, help="image width in pixels")
    parser.add_argument("--shading", default="comovi_v1", choices=("comovi_v1", "flat"), help="motion-map shading mode")
    parser.add_argument("--frames-per-chunk", type=int, default=16, help="frames rendered per backend call")
    parser.add_argument("--device", default="cpu", help="torch device for the torch backend, e.g. cpu or cuda")
    parser.add_argument("--target-s", type=float, default=None,
                        help=f"target total seconds for the whole clip (PASS/FAIL); default per backend: {TARGET_S}")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads value (default: torch's own)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args = parse_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        log.error("unknown backend(s) %s; choose from %s", unknown, list(BACKENDS))
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    vertices, faces, part_ids, camera = build_clip(args.frames, args.height, args.width)
    low, high = body_height_fraction(vertices, camera)
    log.info(
        "clip: %d frames at %dx%d, %d vertices, %d faces, body spans %.0f-%.0f%% of the image height, "
        "shading %s, %d torch threads",
        args.frames, args.height, args.width, vertices.shape[1], faces.shape[0], 100 * low, 100 * high,
        args.shading, torch.get_num_threads(),
    )
    failed = False
    for name in names:
        seconds = BACKENDS[name](vertices, faces, part_ids, camera, args.shading, args.frames_per_chunk, args.device)
        target_s = args.target_s if args.target_s is not None else TARGET_S[name]
        ok = seconds <= target_s
        failed |= not ok
        log.info(
            "%s: %.2f s total, %.1f ms/frame (target <= %.1f s): %s",
            name, seconds, 1000 * seconds / args.frames, target_s, "PASS" if ok else "FAIL",
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
