"""Co-generate a human video, its motion map and the 3D SMPL motion from one image and one sentence.

    python -m comovi_core.generate --image person.png --prompt "a man does push-ups" \\
        --smpl start.npz --models models/ --out outputs/run1

writes ``rgb.mp4``, ``motion_map.mp4``, ``motion.npz`` (SMPL motion from the 3D head; only when the
weights have one) and ``meta.json`` (settings, seed, versions, timings) into ``--out``. The offline
tiny preset needs nothing else (random tiny weights, a built-in image and start pose):

    python -m comovi_core.generate --preset tiny --out outputs/tiny_demo
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path

import torch

from .. import __version__
from ..errors import CoMoViError, run_cli
from ..files.atomic import check_writable_folder, staged_folder
from ..model.memory import ATTENTION_BACKENDS
from ..model.step_cache import StepCacheConfig, describe_evaluations
from .sampling import GENERATION_MODES, SOLVERS

log = logging.getLogger("comovi_core.inference.generate")

BASE_REPO, COMOVI_REPO = "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "AfterJourney/CoMoVi"
TINY_DEFAULTS = dict(height=128, width=128, frames=9, steps=4, prompt="a person waves both arms")
RUN_FILES = ("rgb.mp4", "motion_map.mp4", "motion.npz")  # what a run folder holds besides meta.json
REAL_DEFAULTS = dict(height=704, width=1280, frames=81, steps=50, prompt=None)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.generate", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--preset",
        default="wan2.2-ti2v-5b",
        choices=("wan2.2-ti2v-5b", "tiny"),
        help="real model, or tiny random weights (offline)",
    )
    p.add_argument(
        "--image", type=Path, help="start image (any size; padded with white to the target aspect); tiny: built in"
    )
    p.add_argument("--prompt", help="what the person does")
    p.add_argument("--negative-prompt", help="joint negative prompt for both branches")
    p.add_argument(
        "--smpl", type=Path, help="start pose: a motion.npz whose frame 0 is used; tiny: the built-in mannequin"
    )
    p.add_argument(
        "--keypoints",
        type=Path,
        help="start pose estimated from this OpenPose/DWPose JSON of the start image (instead of --smpl)",
    )
    p.add_argument(
        "--estimator",
        type=Path,
        help="start pose estimated from --image with this HMR 2.0 or CameraHMR checkpoint (.ckpt or "
        ".safetensors; with --keypoints, refined to them; with --smpl not used for it); see README 'Start pose'. "
        "Without a 3D head the motion-map fit also starts from its per-frame estimates of the generated video",
    )
    p.add_argument(
        "--focal-net",
        default="auto",
        help="--estimator CameraHMR: its focal-length network FLNet (cam_model_cleaned.ckpt); 'auto' finds it "
        "next to the estimator, 'none' uses --fov",
    )
    p.add_argument(
        "--download-detector",
        action="store_true",
        help="--estimator without --keypoints: allow downloading the person detector (RT-DETR) from Hugging Face",
    )
    p.add_argument(
        "--fov",
        type=float,
        default=50.0,
        help="--keypoints/--estimator: vertical field of view of the start image's camera, degrees (CameraHMR "
        "with its FLNet estimates it instead)",
    )
    p.add_argument(
        "--body-model",
        type=Path,
        help="SMPL model file or folder (models/smpl); default: the stand-in mannequin (not SMPL)",
    )
    p.add_argument("--mode", default="cogenerate", choices=GENERATION_MODES, help="what is generated and what is given")
    p.add_argument("--motion", type=Path, help="motion_to_video: the SMPL motion (.npz) to follow")
    p.add_argument(
        "--video",
        type=Path,
        help="video_to_motion: the video (.mp4) to recover motion from; frames are padded/resized like --image",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--models", type=Path, default=Path("models"), help="folder holding Wan2.2-TI2V-5B-Diffusers/ and CoMoVi/"
    )
    p.add_argument(
        "--vae",
        type=Path,
        help=(
            "Wan2.2 VAE to use instead of the base folder's: Wan2.2_VAE.pth, wan2.2_vae.safetensors or a "
            "diffusers vae/ folder"
        ),
    )
    p.add_argument(
        "--model-config",
        help="size preset the weights in --models must match (default: read from "
        "the weights; e.g. wan2.2-ti2v-5b, tiny)",
    )
    p.add_argument("--no-download", action="store_true", help="never download missing weights")
    p.add_argument("--height", type=int, help="multiple of 32 (default 704; tiny 128)")
    p.add_argument("--width", type=int, help="multiple of 32 (default 1280; tiny 128)")
    p.add_argument("--frames", type=int, help="4k+1 frames (default 81; tiny 9)")
    p.add_argument("--steps", type=int, help="denoising steps (default 50; tiny 4)")
    p.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance scale (both branches)")
    p.add_argument("--shift", type=float, default=5.0, help="flow-matching timestep shift")
    p.add_argument("--solver", default="unipc", choices=SOLVERS, help="flow-matching solver")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same device: same output)")
    p.add_argument("--fps", type=float, default=16.0, help="frame rate of the written videos and motion")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument(
        "--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"), help="compute dtype (tiny: float32)"
    )
    p.add_argument(
        "--no-fit",
        action="store_true",
        help="without a 3D head, do not fit SMPL to the motion map (then no motion.npz)",
    )
    p.add_argument(
        "--fit-from-start",
        action="store_true",
        help="without a 3D head and with --estimator: fit the motion map from the start pose, not from the "
        "estimator's per-frame estimates of the generated video",
    )
    p.add_argument("--fp8", action="store_true", help="store transformer weights in fp8 (about half the memory)")
    p.add_argument("--block-swap", type=int, default=0, help="keep N layer pairs on the CPU, swapped in per layer")
    p.add_argument(
        "--offload",
        action="store_true",
        help="model offload: text encoder, VAE and transformer visit the GPU only while they work",
    )
    p.add_argument(
        "--lora", type=Path, help="LoRA file (from python -m comovi_core.train --lora) merged into the transformer"
    )
    p.add_argument(
        "--lora-scale", type=float, default=1.0, help="strength of --lora (0: the base model, 1: as trained)"
    )
    p.add_argument(
        "--attention",
        default="sdpa",
        choices=list(ATTENTION_BACKENDS),
        help="attention kernel through diffusers' dispatcher (flash, sage, xformers: if installed, CUDA)",
    )
    p.add_argument(
        "--context-parallel",
        default="off",
        choices=("off", "ulysses", "ring"),
        help="split every step's tokens over the processes of a launch (torchrun --nproc_per_node N -m "
        "comovi_core.generate ... --context-parallel ulysses; one GPU each); ring needs flash/cuDNN attention",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the transformer blocks (the first step compiles; later steps are faster)",
    )
    p.add_argument(
        "--cache-threshold",
        type=float,
        help="step cache: reuse the transformer's last residual until the input has changed by this much "
        "(e.g. 0.1; 0 or unset: every step computes); see the README's speed table",
    )
    p.add_argument(
        "--cache-start", type=float, help="step cache: the first fraction of the steps always computes (default 0.1)"
    )
    p.add_argument(
        "--cache-end", type=float, help="step cache: steps from this fraction on always compute (default 0.9)"
    )
    return p.parse_args(argv)


def _read_video(path: Path, height: int, width: int, frames: int) -> torch.Tensor:
    """(frames, H, W, 3) in [0, 1]: the first ``frames`` frames, each padded to the aspect and resized."""
    from PIL import Image

    from ..files.video import read_video
    from .inputs import pad_to_aspect

    if not path.is_file():
        raise CoMoViError(f"video not found: {path}")
    try:
        video = read_video(path)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise CoMoViError(f"could not read the video {path}: {exc}") from exc
    if len(video) < frames:
        raise CoMoViError(f"{path} has {len(video)} frames; --frames {frames} needs at least that many")
    return torch.stack([pad_to_aspect(Image.fromarray(f), height, width).permute(1, 2, 0) for f in video[:frames]])


def step_cache_config(args: argparse.Namespace) -> StepCacheConfig | None:
    """The --cache-* flags as a config (checked), or None when --cache-threshold is not given."""
    if args.cache_threshold is None:
        if args.cache_start is not None or args.cache_end is not None:
            raise CoMoViError("--cache-start/--cache-end need --cache-threshold (e.g. --cache-threshold 0.1)")
        return None
    if not 0 <= args.cache_threshold < float("inf"):
        raise CoMoViError(f"--cache-threshold must be 0 (off) or more, got {args.cache_threshold}; e.g. 0.1")
    given = {k: v for k, v in (("start", args.cache_start), ("end", args.cache_end)) if v is not None}
    try:
        return StepCacheConfig(args.cache_threshold, **given)
    except CoMoViError as exc:
        raise CoMoViError(f"--cache-start/--cache-end: {exc}") from None


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse the command line's own rates and scales that cannot give a video (zero, negative, NaN) before any work
    (guidance and shift: ``check_inputs``)."""
    if not (args.fps > 0 and math.isfinite(args.fps)):
        raise CoMoViError(f"--fps must be a frame rate above 0, got {args.fps}; e.g. 16 (Wan2.2's rate)")
    if not 0 < args.fov < 180:
        raise CoMoViError(f"--fov is a vertical field of view in degrees, between 0 and 180, got {args.fov}; e.g. 50")
    if not math.isfinite(args.lora_scale):
        raise CoMoViError(f"--lora-scale must be a number, got {args.lora_scale}; e.g. 1 (as trained)")
    if args.block_swap < 0:
        raise CoMoViError(f"--block-swap is a number of layer pairs kept on the CPU (0: none), got {args.block_swap}")


def run(args: argparse.Namespace) -> Path:
    from ..body.smpl import load_body_model
    from .pipeline import DEFAULT_NEGATIVE

    # 1. check everything cheap before any heavy work
    settings = _settings(args)
    rank, processes = _context_parallel_launch(args, settings)
    inputs = _read_inputs(args, settings)
    # 2. the start pose, the components, the start picture
    body = load_body_model(args.body_model)
    estimator = None
    if args.estimator is not None:
        from ..recovery.estimate import focal_net_arg
        from ..recovery.hmr.loading import load_estimator

        estimator = load_estimator(args.estimator, focal_net_arg(args.focal_net))
    start, start_source = _start_pose(args, body, inputs, settings, estimator)
    t0 = time.perf_counter()
    pipe, load_summary, dtype = _load_pipeline(args, body)
    pipe.estimator = None if args.fit_from_start else estimator  # without a 3D head the fit starts from its estimates
    if processes > 1:
        from ..model.parallel import check_split, enable_context_parallel

        latents = (1, 48, (settings["frames"] - 1) // 4 + 1, settings["height"] // 16, settings["width"] // 16)
        check_split(pipe.transformer, latents, processes, args.context_parallel)
        enable_context_parallel(pipe.transformer, processes, args.context_parallel)
    load_s = time.perf_counter() - t0
    picture = _start_picture(pipe, inputs["image"], start, settings["height"], settings["width"])
    # 3. generate, then write (nothing is written if generation fails or is cancelled)
    result = pipe(
        picture,
        settings["prompt"],
        start=start,
        num_frames=settings["frames"],
        steps=settings["steps"],
        guidance=args.guidance,
        shift=args.shift,
        solver=args.solver,
        seed=args.seed,
        negative_prompt=args.negative_prompt or DEFAULT_NEGATIVE,
        mode=args.mode,
        given=inputs["given"],
        fps=args.fps,
        fit_motion=not args.no_fit and rank == 0,  # context parallel: process 0 fits and writes
        step_cache=settings["cache"],
        callback=lambda i, n, t, *_: log.info("step %d/%d (t=%.0f)", i + 1, n, float(t)),
    )
    if rank != 0:
        return args.out
    if settings["cache"] is not None:
        log.info("%s", describe_evaluations(result.evaluations))
    meta = {
        "comovi_core": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "preset": args.preset,
        "mode": args.mode,
        "prompt": settings["prompt"],
        "negative_prompt": args.negative_prompt or DEFAULT_NEGATIVE,
        "seed": args.seed,
        **{k: settings[k] for k in ("height", "width", "frames", "steps")},
        "guidance": args.guidance,
        "shift": args.shift,
        "solver": args.solver,
        "fps": args.fps,
        "device": args.device,
        "dtype": str(dtype),
        "fp8": args.fp8,
        "block_swap": args.block_swap,
        "offload": args.offload,
        "attention": args.attention,
        "compile": args.compile,
        "context_parallel": None if processes == 1 else {"processes": processes, "mode": args.context_parallel},
        "lora": str(args.lora) if args.lora else None,
        "lora_scale": args.lora_scale,
        "body_model": "stand-in mannequin (NOT SMPL)" if body.is_standin else body.source,
        "start_pose": start_source,
        "has_3d_head": result.motion_source == "3d_head",
        "motion_source": result.motion_source,
        "motion_quality": result.motion_quality,
        "fit": result.fit_info,
        "weights": load_summary,
        "vae": "tiny preset" if args.preset == "tiny" else str(args.vae or "base folder vae/"),
        "step_cache": None if settings["cache"] is None else settings["cache"].to_dict(),
        "transformer_evaluations": result.evaluations,
        "timings_s": {"load": round(load_s, 3), **{k: round(v, 3) for k, v in result.timings.items()}},
    }
    return _write_run(args.out, result, meta)


def _context_parallel_launch(args: argparse.Namespace, settings: dict) -> tuple[int, int]:
    """(this process's rank, processes): (0, 1) without --context-parallel; else the torchrun group, each process on
    its own GPU, after refusing what cannot run split."""
    if args.context_parallel == "off":
        return 0, 1
    clashes = {
        "--cache-threshold (each process would decide on its own tokens)": settings["cache"] is not None,
        "--block-swap": args.block_swap > 0,
        "--offload": args.offload,
    }
    if any(clashes.values()):
        raise CoMoViError(
            f"--context-parallel does not combine with {', '.join(k for k, v in clashes.items() if v)}: leave "
            "those out (each GPU holds the whole model and 1/N of the tokens)"
        )
    from ..model.parallel import init_process_group

    rank, processes = init_process_group()
    if torch.cuda.is_available():
        args.device = f"cuda:{torch.cuda.current_device()}"
    if processes == 1:
        log.warning("--context-parallel with one process: launch with torchrun --nproc_per_node N (N GPUs)")
    return rank, processes


def _settings(args: argparse.Namespace) -> dict:
    """The run's sizes, steps and prompt (the preset's defaults where not given; 0 stays 0), all checked."""
    from .inputs import check_inputs

    defaults = TINY_DEFAULTS if args.preset == "tiny" else REAL_DEFAULTS
    settings = {k: defaults[k] if getattr(args, k) is None else getattr(args, k) for k in defaults}
    check_inputs(  # the given motion or video is read later (_read_inputs); the pipeline checks it
        height=settings["height"],
        width=settings["width"],
        num_frames=settings["frames"],
        steps=settings["steps"],
        guidance=args.guidance,
        shift=args.shift,
        prompt=settings["prompt"],
        names={"guidance": "--guidance", "shift": "--shift", "prompt": "--prompt"},
    )
    check_numbers(args)
    settings["cache"] = step_cache_config(args)
    check_writable_folder(args.out, "--out folder")
    if args.mode == "video_to_motion" and not args.video:
        raise CoMoViError("--mode video_to_motion needs --video VIDEO.mp4")
    if args.mode == "motion_to_video" and not args.motion:
        raise CoMoViError("--mode motion_to_video needs --motion MOTION.npz")
    if args.smpl is None and args.keypoints is None and args.estimator is None and args.preset != "tiny":
        raise CoMoViError(
            "the start pose is needed: --smpl START.npz (frame 0 is used), --keypoints POSE.json (OpenPose/DWPose "
            "keypoints of the start image, fitted with SMPL) or --estimator HMR2.ckpt (estimated from --image)"
        )
    if args.estimator is not None:
        if not args.smpl and args.image is None:
            raise CoMoViError("--estimator estimates the start pose from --image: give the start image (or --smpl)")
        if not args.estimator.is_file():
            raise CoMoViError(f"--estimator {args.estimator} is not a file: give the HMR 2.0 or CameraHMR checkpoint")
    return settings


def _read_inputs(args: argparse.Namespace, settings: dict) -> dict:
    """Read every input file before the heavy work: keypoints, the given motion or video, the start image."""
    from ..body.motion_file import load_motion
    from ..files.images import load_image
    from ..recovery.estimate import read_pose_json

    if args.vae is not None and not args.vae.exists():
        raise CoMoViError(f"--vae {args.vae} does not exist")
    if args.lora is not None:
        from ..model.lora import read_lora

        read_lora(args.lora)  # a missing or foreign file is refused before anything heavy loads
    given = None
    if args.motion:
        given = load_motion(args.motion)
    elif args.video:
        given = _read_video(args.video, settings["height"], settings["width"], settings["frames"])
    return {
        "keypoints": read_pose_json(args.keypoints) if args.keypoints and not args.smpl else None,
        "given": given,
        "image": load_image(args.image) if args.image else None,
    }


def _start_pose(args: argparse.Namespace, body, inputs: dict, settings: dict, estimator=None):
    """-> (the start pose, where it came from): --smpl, estimated from --image (``estimator``, loaded from
    --estimator), fitted to --keypoints, or (tiny) the built-in demo."""
    from ..body.mannequin import demo_motion
    from ..body.motion_file import load_motion

    keypoints = inputs["keypoints"]
    if args.smpl:
        return load_motion(args.smpl), str(args.smpl)
    if estimator is not None:
        import numpy as np

        from ..recovery.estimate import estimate_from_image

        image = torch.from_numpy(np.asarray(inputs["image"], np.float32) / 255.0)  # (H, W, 3)
        detector = None
        if keypoints is None:
            from ..recovery.hmr.detect import PersonDetector

            detector = PersonDetector.from_pretrained(allow_download=args.download_detector)
        motion, info = estimate_from_image(
            body,
            image,
            estimator,
            None if keypoints is None else keypoints[0],
            None,
            detector,
            args.fov,
            args.fps,
        )
        log.info("start pose estimated from %s: %s", args.image, info)
        return motion, f"estimated from {args.image} ({info['estimator']})"
    if keypoints is not None:
        from ..recovery.estimate import estimate_start_pose

        return estimate_start_pose(
            body, keypoints[0], *keypoints[1], fov_degrees=args.fov
        ), f"estimated from {args.keypoints} (keypoint fit)"
    return demo_motion(num_frames=1, height=settings["height"], width=settings["width"]), "built-in demo"


def _load_pipeline(args: argparse.Namespace, body):
    """-> (pipeline, what was loaded, compute dtype): the tiny preset's in-memory weights or the real files."""
    from .pipeline import CoMoViPipeline

    tiny = args.preset == "tiny"
    dtype = torch.float32 if tiny else getattr(torch, args.dtype)
    if tiny:
        from ..model.memory import compile_blocks, set_attention_backend
        from .tiny import tiny_components

        components = tiny_components(args.seed)
        load_summary = "tiny preset: random weights built in memory (not a real model)"
        if args.lora is not None:
            from ..model.lora import apply_lora

            layers = apply_lora(components["transformer"], args.lora, args.lora_scale)
            load_summary += f"; LoRA {args.lora.name} at scale {args.lora_scale:g}: {layers} layers"
        set_attention_backend(components["transformer"], args.attention, "cpu")
        if args.compile:
            load_summary += f"; torch.compile: {compile_blocks(components['transformer'])} blocks"
    else:
        from ..files.weights import resolve_weights
        from .components import TransformerOptions, load_components

        base, comovi = resolve_weights(args.models, BASE_REPO, COMOVI_REPO, allow_download=not args.no_download)
        options = TransformerOptions(
            args.model_config,
            dtype,
            args.device,
            fp8=args.fp8,
            block_swap=args.block_swap,
            offload=args.offload,
            attention=args.attention,
            lora=args.lora,
            lora_scale=args.lora_scale,
            compile=args.compile,
        )
        components, load_summary = load_components(base, comovi, options, vae_path=args.vae)
    device = "cpu" if tiny else args.device
    pipe = CoMoViPipeline(body_model=body, device=device, offload=args.offload and not tiny, **components)
    return pipe, load_summary, dtype


def _start_picture(pipe, image, start, height: int, width: int) -> torch.Tensor:
    """The start image padded to the target aspect, (3, H, W); without one (tiny demo) a grey silhouette of
    the start pose on white."""
    from .inputs import pad_to_aspect

    if image is not None:
        return pad_to_aspect(image, height, width)
    mask = (pipe.render_motion_maps(start, start.camera.padded_to(height, width), 1)[0] < 1).any(-1)
    picture = torch.ones(3, height, width)
    picture[:, mask] = 0.55
    return picture


def _write_run(out: Path, result, meta: dict) -> Path:
    """The run folder, built in a staging folder and published whole: videos, motion.npz, meta.json."""
    from ..body.motion_file import save_motion
    from ..files.video import mp4_writer, to_uint8

    with staged_folder(out, RUN_FILES.__contains__, "meta.json") as staging:
        for name, frames in (("rgb.mp4", result.rgb), ("motion_map.mp4", result.motion_map)):
            with mp4_writer(staging / name, meta["height"], meta["width"], meta["fps"]) as send:
                send(to_uint8(frames))
        if result.motion is not None:
            save_motion(staging / "motion.npz", result.motion)
            log.info("%s", result.describe_motion())
        else:
            log.warning("the loaded weights have no 3D head and --no-fit was given: no motion.npz is written")
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
    log.info("wrote %s", ", ".join(sorted(p.name for p in out.iterdir())))
    return out


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
