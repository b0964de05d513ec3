"""Benchmark the motion-map renderer backends on a human-sized moving body.

The body is the built-in stand-in mannequin (6890 vertices, 13,684 faces, NOT SMPL) doing the demo
motion (turning, waving, bending the knees), seen by a camera with a focal length of about 1000 px at
704x1280 from a distance that makes it fill roughly 70% of the image height. Each backend renders the
clip through ``iter_motion_maps`` (normals and colours included, as in real use) after a one-chunk
warm-up, ``--repeats`` times, the backends in turn within each repeat (order alternating), timed in CPU
time of the whole process (OpenGL's rasteriser threads included) at fixed torch threads (CUDA events when
only the torch backend runs on a GPU). It prints the median and spread per backend, PASS/FAIL of the
median against the target, and the per-repeat ratio of each backend to the first.

    python benchmarks/bench_motion_map.py                      # torch backend, 81 frames at 704x1280
    python benchmarks/bench_motion_map.py --backends torch --frames 33 --shading flat
    python benchmarks/bench_motion_map.py --backends torch,pyrender   # OpenGL too (target <= 4 s)
    python benchmarks/bench_motion_map.py --backends torch,torch_depth --frames 9 --height 352 --width 640
    python benchmarks/bench_motion_map.py --smoke                      # seconds on a CPU: 2 small frames

``torch_depth`` is the torch backend's depth alone (``raster_torch.render_depth``: no normals, colours or
shading), what the motion fit's visibility test draws at every optimisation step.

Writes no files.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import (
    add_timing_args,
    check_repeats,
    clock_for,
    describe,
    interleaved,
    print_ratio,
    ratios,
    set_threads,
    verdict,
)
from timing import parse_args as parse_with_smoke

from comovi_core.body.camera import PinholeCamera
from comovi_core.body.mannequin import demo_motion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.motion_map.raster_torch import render_depth
from comovi_core.motion_map.render import iter_motion_maps

log = logging.getLogger("bench_motion_map")

FOCAL_PX = 1000.0
BODY_DISTANCE_M = 3.4  # mean camera z of the body: about 0.7 of the image height at 704 px, f = 1000 px


def build_clip(
    num_frames: int, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, PinholeCamera]:
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


def make_case(backend: str, vertices, faces, part_ids, camera, shading: str, frames_per_chunk: int, device: str):
    """(render the whole clip, render one chunk for warm-up): each returns the covered pixel count.

    The torch backend runs on ``device``; pyrender on the CPU whatever ``--device`` says. pyrender's first
    warm-up also pays the one-off choice of the OpenGL platform (EGL or OSMesa; PYOPENGL_PLATFORM forces one).
    """
    if backend == "pyrender":
        from comovi_core.motion_map import render_gl

        render_gl.require_available()  # a clear error, saying what to install, when there is no OpenGL
        device = "cpu"
    vertices, faces, part_ids = vertices.to(device), faces.to(device), part_ids.to(device)
    if backend == "torch_depth":

        def depth(verts: torch.Tensor) -> int:
            return sum(int((render_depth(v, faces, camera) > 0).sum()) for v in verts.split(frames_per_chunk))

        return (lambda: depth(vertices)), (lambda: depth(vertices[:frames_per_chunk]))

    def run(verts: torch.Tensor) -> int:
        covered = 0
        for frames in iter_motion_maps(verts, faces, part_ids, camera, shading, backend, device, frames_per_chunk):
            covered += int(frames.mask.sum())
        return covered

    return (lambda: run(vertices)), (lambda: run(vertices[:frames_per_chunk]))


BACKENDS = ("torch", "pyrender", "torch_depth")
# default target per backend for the whole clip (median time)
TARGET_S = {"torch": 15.0, "pyrender": 4.0, "torch_depth": 15.0}
SMOKE = {"backends": "torch,torch_depth", "frames": 2, "height": 64, "width": 112, "frames_per_chunk": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", default="torch", help=f"comma-separated backends to time, of: {', '.join(BACKENDS)}"
    )
    parser.add_argument("--frames", type=int, default=81, help="number of frames in the clip")
    parser.add_argument("--height", type=int, default=704, help="image height in pixels")
    parser.add_argument("--width", type=int, default=1280, help="image width in pixels")
    parser.add_argument("--shading", default="comovi_v1", choices=("comovi_v1", "flat"), help="motion-map shading mode")
    parser.add_argument("--frames-per-chunk", type=int, default=16, help="frames rendered per backend call")
    parser.add_argument("--device", default="cpu", help="torch device for the torch backend, e.g. cpu or cuda")
    parser.add_argument(
        "--target-s",
        type=float,
        default=None,
        help=f"target total seconds for the whole clip (PASS/FAIL); default per backend: {TARGET_S}",
    )
    add_timing_args(parser)
    return parse_with_smoke(parser, SMOKE, argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args = parse_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        log.error("unknown backend(s) %s; choose from %s", unknown, list(BACKENDS))
        return 2
    check_repeats(args.repeats)
    set_threads(args.threads)
    vertices, faces, part_ids, camera = build_clip(args.frames, args.height, args.width)
    low, high = body_height_fraction(vertices, camera)
    clock = clock_for(args.device if names == ["torch"] else "cpu")
    log.info(
        "clip: %d frames at %dx%d, %d vertices, %d faces, body spans %.0f-%.0f%% of the image height, "
        "shading %s, %d torch threads, %s, %d warm-up + %d interleaved repeats",
        args.frames,
        args.height,
        args.width,
        vertices.shape[1],
        faces.shape[0],
        100 * low,
        100 * high,
        args.shading,
        torch.get_num_threads(),
        clock.kind,
        args.warmup,
        args.repeats,
    )
    made = {
        n: make_case(n, vertices, faces, part_ids, camera, args.shading, args.frames_per_chunk, args.device)
        for n in names
    }
    for _ in range(args.warmup):
        covered = {n: warm() for n, (_, warm) in made.items()}
    samples = interleaved({n: whole for n, (whole, _) in made.items()}, args.repeats, 0, clock)
    failed = False
    for name in names:
        target_s = args.target_s if args.target_s is not None else TARGET_S[name]
        failed |= "FAIL" in verdict(samples[name], target_s)
        print(
            f"  {name:<9}: whole clip {describe(samples[name], 1.0, 's', 2)}; per frame "
            f"{1e3 * statistics.median(samples[name]) / args.frames:.1f} ms; {verdict(samples[name], target_s, 's')}"
        )
    for name in names[1:]:
        print_ratio(f"{name}/{names[0]}", ratios(samples[name], samples[names[0]]), width=9)
    if args.warmup:
        log.info("pixels covered in the warm-up chunk: %s", covered)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
