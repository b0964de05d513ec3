"""CameraHMR and FLNet weights from the release's files (restricted unpickling, as HMR 2.0) or our .safetensors.

CameraHMR's ``camerahmr_checkpoint_cleaned.ckpt`` names its tensors as HMR 2.0 does (``backbone.*``,
``smpl_head.*``), so the same renaming applies (``official_to_ours``). Dropped, because the estimate does not use
them: the head's dense-keypoint readout ``smpl_head.deckp`` (2D keypoints for a training loss), the training
module's SMPL layers and ``initialized`` flag, and ``cam_model.*``, a copy of FLNet the training module carries
(read as the focal network only when no FLNet file is found, see ``loading.load_estimator``).

The head's start values (``init_body_pose``, ``init_betas``, ``init_cam``) are buffers the release fills from
``smpl_mean_params.npz`` when it builds the network and then loads the checkpoint with ``strict=False``; a file
without them is completed from ``smpl_mean_params.npz`` next to it (downloaded with the checkpoints).

FLNet's ``cam_model_cleaned.ckpt`` already has our names; dropped: ``backbone.final_layer`` (HRNet's heat-map
layer, not on FLNet's path) and ``fc2`` (built by the release but skipped by its forward: fc1 -> fc3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import CoMoViError
from .config import CameraHMRConfig, FLNetConfig
from .state_dict import (
    convert_state_dict,
    infer_estimator_config,
    load_into,
    official_to_ours,
    read_tensors,
    stored_estimator_config,
)

CAMERAHMR_IGNORED = ("smpl_head.deckp.", "smpl.", "smpl_layer.", "smpl_gt", "initialized", "cam_model.")
FLNET_IGNORED = ("backbone.final_layer.", "fc2.")
FOCAL_NET_NAMES = ("cam_model", "flnet", "fl_net", "humanfov")  # what an FLNet file's name contains
CHECKPOINT_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth")


def camerahmr_to_ours(key: str) -> list[tuple[str, int, int]] | None:
    """One official CameraHMR key -> [(our key, chunk, chunks)] as ``official_to_ours``, or None if unused."""
    key = key.removeprefix("model.")
    if key.startswith(CAMERAHMR_IGNORED):
        return None
    return official_to_ours(key)


def flnet_to_ours(key: str) -> str | None:
    """One official FLNet key (alone, or under ``cam_model.`` in a CameraHMR training file) -> ours, or None."""
    key = key.removeprefix("model.").removeprefix("cam_model.")
    if key.startswith(FLNET_IGNORED):
        return None
    if key.startswith(("backbone.", "fc1.", "fc3.")):
        return key
    raise CoMoViError(f"unexpected tensor {key!r} in the focal-network checkpoint: is it CameraHMR's FLNet?")


def _count(state: dict, prefix: str, index: int) -> int:
    found = [int(k.split(".")[index]) for k in state if k.startswith(prefix)]
    if not found:
        raise KeyError(prefix)
    return 1 + max(found)


def infer_flnet_config(state: dict[str, torch.Tensor]) -> FLNetConfig:
    """FLNet's architecture from tensor shapes (our layout); the input size is not visible and stays 256."""
    try:
        return FLNetConfig(
            width=state["backbone.stage2.0.branches.0.0.conv1.weight"].shape[0],
            stem_blocks=_count(state, "backbone.layer1.", 2),
            stage_modules=tuple(_count(state, f"backbone.stage{s}.", 2) for s in (2, 3, 4)),
            stage_blocks=_count(state, "backbone.stage2.0.branches.0.", 5),
            hidden=state["fc1.weight"].shape[0],
        )
    except KeyError as exc:
        raise CoMoViError(f"the focal-network checkpoint lacks {exc}: is it CameraHMR's FLNet?") from exc


def load_camerahmr(path, config: CameraHMRConfig | None = None, tensors=None, device="cpu", dtype=torch.float32):
    """A ``CameraHMR`` module in eval mode with the weights of ``path`` (``tensors``: already read from it)."""
    from .camerahmr import CameraHMR

    tensors = read_tensors(path) if tensors is None else tensors
    state = convert_state_dict({k: v for k, v in tensors.items() if camerahmr_to_ours(k) is not None})
    state = _with_mean_params(state, Path(path))
    config = (
        config or stored_estimator_config(Path(path), "camerahmr") or infer_estimator_config(state, CameraHMRConfig())
    )
    return load_into(CameraHMR, config, state, path, "CameraHMR", device, dtype)


MEAN_PARAMS = {"head.init_body_pose": "pose", "head.init_betas": "shape", "head.init_cam": "cam"}


def _with_mean_params(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``state`` with the head's start values read from ``smpl_mean_params.npz`` next to ``path`` where the file
    has none (plain arrays: no pickles)."""
    missing = [name for name in MEAN_PARAMS if name not in state]
    if not missing:
        return state
    source = path.parent / "smpl_mean_params.npz"
    if not source.is_file():
        raise CoMoViError(
            f"{path} has no SMPL mean parameters ({', '.join(missing)}): put smpl_mean_params.npz (downloaded with "
            f"CameraHMR's checkpoints, scripts/fetch_demo_data.sh) next to it, in {path.parent}"
        )
    try:
        with np.load(source, allow_pickle=False) as npz:
            values = {name: torch.from_numpy(np.asarray(npz[MEAN_PARAMS[name]], np.float32))[None] for name in missing}
    except (KeyError, ValueError, OSError) as exc:
        raise CoMoViError(f"{source} is not SMPL mean parameters (arrays pose, shape, cam): {exc}") from exc
    return {**state, **values}


def load_flnet(path, config: FLNetConfig | None = None, tensors=None, device="cpu", dtype=torch.float32):
    """An ``FLNet`` in eval mode from its file, or from the ``cam_model.*`` tensors of a CameraHMR training file."""
    from .fl_net import FLNet

    tensors = read_tensors(path) if tensors is None else tensors
    if any(k.removeprefix("model.").startswith("cam_model.") for k in tensors):
        tensors = {k: v for k, v in tensors.items() if k.removeprefix("model.").startswith("cam_model.")}
    state = {}
    for key, tensor in tensors.items():
        name = flnet_to_ours(key)
        if name is not None:
            state[name] = tensor
    config = config or stored_estimator_config(Path(path), "flnet") or infer_flnet_config(state)
    return load_into(FLNet, config, state, path, "FLNet (CameraHMR's focal network)", device, dtype)


def find_focal_net(path) -> Path | None:
    """The FLNet file next to a CameraHMR checkpoint: the first (by name) whose name holds cam_model, flnet,
    fl_net or humanfov (the release calls it cam_model_cleaned.ckpt); None if there is none."""
    path = Path(path)
    for candidate in sorted(path.parent.iterdir()):
        name = candidate.name.lower()
        if candidate != path and candidate.suffix in CHECKPOINT_SUFFIXES and any(n in name for n in FOCAL_NET_NAMES):
            return candidate
    return None
