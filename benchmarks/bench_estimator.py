"""Start-pose estimator: accuracy of the refinement (stand-in body, no weights) and the networks' time per image.

    python benchmarks/bench_estimator.py [--cases 2] [--skip-timing] [--threads 1] [--repeats 7] [--device cpu]
    python benchmarks/bench_estimator.py --skip-accuracy --estimator camerahmr --threads 1
    python benchmarks/bench_estimator.py --smoke   # seconds on a CPU: one case at 176 x 320, tiny networks

1. Refinement (``comovi_core.evaluation.start_pose.refinement_trial``): the stand-in body with a known pose, shape and
   camera, a start perturbed like an HMR error (15 deg per joint, 0.1 on betas, 20 % depth), refined toward
   keypoints projected from the truth; MPJPE (root-aligned), PA-MPJPE, silhouette IoU against the true render
   and translation error before and after, next to the keypoint-only fit from the rest pose.
2. Timing: the real-size network with random weights, after a warm-up, CPU time at fixed threads (CUDA events
   on a GPU), median and spread; peak memory (RSS, or CUDA). ``--estimator hmr2``: HMR 2.0 (ViT-H backbone,
   6-layer head) on one 256 x 256 crop. ``--estimator camerahmr``: CameraHMR (the same ViT-H, CLIFF head) on one
   crop with its box information, and FLNet (HRNet-W48) on the whole picture fitted into 256 x 256, once per
   picture. One estimator per run, so the peak RSS is that estimator's.
"""

from __future__ import annotations

import argparse
import resource

import torch
from timing import add_timing_args, check_repeats, clock_for, interleaved, parse_args, print_case, set_threads

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from comovi_core.body.smpl import load_body_model
from comovi_core.evaluation.start_pose import refinement_trial

CASES = ((3, 0.6), (6, 2.8), (1, -1.2), (5, 0.0))  # (demo frame, extra turn about the vertical, radians)
# the networks' presets: (HMR 2.0 or CameraHMR backbone, FLNet) and the names they are printed with
NETWORKS = {"real": ("vit-h", "w48", "ViT-H", "W48"), "tiny": ("tiny", "tiny", "tiny", "tiny")}
SMOKE = {"cases": 1, "height": 176, "width": 320, "networks": "tiny"}


def accuracy(cases: int, height: int, width: int) -> None:
    body = load_body_model(None)
    truth = demo_motion(num_frames=8, height=height, width=width)
    print(
        f"refinement on the stand-in body ({height} x {width}, 50 deg): mpjpe / pa-mpjpe mm, silhouette IoU, transl m"
    )
    for seed, (frame, yaw) in enumerate(CASES[:cases]):
        turned = axis_angle_to_matrix(
            torch.as_tensor(truth.global_orient[frame], dtype=torch.float64)
        ) @ axis_angle_to_matrix(torch.tensor([0.0, yaw, 0.0], dtype=torch.float64))
        betas = 0.8 * torch.randn(10, generator=torch.Generator().manual_seed(seed))
        r = refinement_trial(
            body,
            matrix_to_axis_angle(turned).float(),
            torch.as_tensor(truth.body_pose[frame]),
            betas,
            torch.as_tensor(truth.transl[frame]),
            truth.camera,
            seed,
        )
        for name, s in r.items():
            print(
                f"  frame {frame} turn {yaw:+.1f} {name:13s}: {s['mpjpe_mm']:6.1f} / {s['pa_mpjpe_mm']:6.1f} mm, "
                f"IoU {s['iou']:.3f}, transl {s['transl_error_m']:.3f} m"
            )


def _networks(name: str, device: str, networks: str = "real") -> tuple[dict, int, str]:
    """-> ({case: callable}, parameters, description) for the estimator ``name`` at its real size (``networks``
    "tiny": the tests' presets), random weights."""
    backbone, hrnet, backbone_name, hrnet_name = NETWORKS[networks]
    torch.manual_seed(0)
    if name == "hmr2":
        from comovi_core.recovery.hmr.config import PRESETS
        from comovi_core.recovery.hmr.model import HMR2

        model = HMR2(PRESETS[backbone]).eval().to(device)
        crop = torch.randn(1, 3, model.config.image_size, model.config.image_size, device=device)
        params = sum(p.numel() for p in model.parameters())
        return {f"HMR2 {backbone_name} crop": lambda: model(crop)}, params, f"HMR 2.0 {backbone_name}"
    from comovi_core.recovery.hmr.camerahmr import CameraHMR
    from comovi_core.recovery.hmr.config import CAMERAHMR_PRESETS, FLNET_PRESETS
    from comovi_core.recovery.hmr.fl_net import FLNet

    model = CameraHMR(CAMERAHMR_PRESETS[backbone]).eval().to(device)
    flnet = FLNet(FLNET_PRESETS[hrnet]).eval().to(device)
    crop = torch.randn(1, 3, model.config.image_size, model.config.image_size, device=device)
    info = torch.tensor([[0.1, -0.05, 0.4]], device=device)
    picture = torch.randn(1, 3, flnet.config.image_size, flnet.config.image_size, device=device)
    cases = {
        f"CameraHMR {backbone_name} crop": lambda: model(crop, info),
        f"FLNet {hrnet_name} picture": lambda: flnet(picture),
    }
    params = sum(p.numel() for m in (model, flnet) for p in m.parameters())
    return cases, params, f"CameraHMR {backbone_name} + FLNet {hrnet_name}"


def timing(args) -> None:
    cases, params, what = _networks(args.estimator, args.device, args.networks)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        seconds = interleaved(cases, args.repeats, args.warmup, clock_for(args.device))
    clock = clock_for(args.device)
    print(
        f"{what} ({params / 1e6:.{0 if params >= 1e6 else 4}f} M parameters, random weights), {args.device}, "
        f"{torch.get_num_threads()} threads, {clock.kind}"
    )
    for name in cases:
        print_case(name, seconds[name])
    if args.device.startswith("cuda"):
        print(f"  peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"  peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=2, help=f"refinement cases to run (1..{len(CASES)})")
    p.add_argument("--skip-timing", action="store_true", help="only the refinement accuracy")
    p.add_argument("--skip-accuracy", action="store_true", help="only the network timing")
    p.add_argument("--estimator", choices=("hmr2", "camerahmr"), default="hmr2", help="which network to time")
    p.add_argument("--device", default="cpu", help="torch device for the timing")
    p.add_argument("--height", type=int, default=704, help="picture height of the refinement cases")
    p.add_argument("--width", type=int, default=1280, help="picture width of the refinement cases")
    p.add_argument(
        "--networks",
        choices=tuple(NETWORKS),
        default="real",
        help="real: the released sizes (ViT-H, HRNet-W48); tiny: the tests' presets",
    )
    add_timing_args(p)
    args = parse_args(p, SMOKE)
    check_repeats(args.repeats)
    set_threads(args.threads)
    if not args.skip_accuracy:
        accuracy(args.cases, args.height, args.width)
    if not args.skip_timing:
        timing(args)


if __name__ == "__main__":
    main()
