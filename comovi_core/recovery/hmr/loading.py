"""Load an estimator (HMR 2.0 here; CameraHMR and FLNet in ``camerahmr_loading``) from its weights file, tell
which network a file holds, and save ours as ``.safetensors`` with the config in the metadata.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch

from ...errors import CoMoViError
from .config import HMR2Config
from .state_dict import (
    METADATA,
    config_class,
    convert_state_dict,
    infer_estimator_config,
    load_into,
    read_tensors,
    stored_estimator_config,
)

log = logging.getLogger(__name__)


def save_estimator(model, path: str | Path) -> Path:
    """Our layout (HMR2, CameraHMR or FLNet) as .safetensors with the config in the metadata (no pickle)."""
    from safetensors.torch import save_file

    kind = next(k for k in ("flnet", "camerahmr", "hmr2") if isinstance(model.config, config_class(k)))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(path),
        metadata={METADATA[kind][0]: json.dumps(dataclasses.asdict(model.config))},
    )
    return Path(path)


save_hmr2 = save_estimator


def estimator_kind(tensors: dict[str, torch.Tensor], path: str | Path = "the file") -> str:
    """Which network a checkpoint holds, from its tensors (official or our layout): "hmr2", "camerahmr" (the
    query token carries box information and mean parameters) or "flnet" (an HRNet with a two-angle readout)."""
    keys = {k.removeprefix("model."): k for k in tensors}
    if "fc3.weight" in keys and any(k.startswith("backbone.stage4.") for k in keys):
        return "flnet"
    for name in ("smpl_head.transformer.to_token_embedding.weight", "head.token_embedding.weight"):
        if name in keys:
            return "hmr2" if tensors[keys[name]].shape[-1] == 1 else "camerahmr"
    raise CoMoViError(
        f"{path} is neither HMR 2.0, CameraHMR nor CameraHMR's focal network (FLNet) (first tensors: "
        f"{sorted(keys)[:3]}): place only those checkpoints in models/smpl_estimators (see README, 'Start pose')"
    )


def load_hmr2(path: str | Path, config: HMR2Config | None = None, device="cpu", dtype=torch.float32, tensors=None):
    """An ``HMR2`` module in eval mode with the weights of ``path`` (``tensors``: already read from it)."""
    from .model import HMR2

    state = convert_state_dict(read_tensors(path) if tensors is None else tensors)
    config = config or stored_estimator_config(Path(path)) or infer_estimator_config(state)
    return load_into(HMR2, config, state, path, "HMR 2.0", device, dtype)


AUTO = "auto"  # load_estimator's focal_net: FLNet next to the CameraHMR file, else the copy inside it


def resolve_focal_net(path: str | Path, focal_net=AUTO) -> Path | None:
    """The FLNet file ``load_estimator`` reads for ``path``: ``focal_net`` itself, the one found next to ``path``
    (``AUTO``), or None (``focal_net`` None, or nothing found: then a copy inside the CameraHMR file is used)."""
    if focal_net is None:
        return None
    if focal_net != AUTO:
        return Path(focal_net)
    from .camerahmr_loading import find_focal_net

    return find_focal_net(path)


def load_estimator(path: str | Path, focal_net=AUTO, device="cpu", dtype=torch.float32):
    """The body estimator in ``path``, by what it holds: an ``HMR2`` module, or a ``CameraHMREstimator`` (CameraHMR
    and, for the picture's focal length, FLNet from ``focal_net``: a file, ``AUTO`` or None for none)."""
    tensors = read_tensors(path)
    kind = estimator_kind(tensors, path)
    if kind == "flnet":
        raise CoMoViError(
            f"{Path(path).name} is CameraHMR's focal-length network (FLNet), not a body estimator: choose the "
            "CameraHMR checkpoint (camerahmr_checkpoint_cleaned.ckpt); FLNet is found next to it"
        )
    if kind == "hmr2":
        if focal_net not in (None, AUTO):
            log.warning(
                "%s is HMR 2.0: the focal network %s is not used (HMR 2.0 takes the field of view)", path, focal_net
            )
        return load_hmr2(path, device=device, dtype=dtype, tensors=tensors)
    from .camerahmr import CameraHMREstimator
    from .camerahmr_loading import load_camerahmr, load_flnet

    model = load_camerahmr(path, tensors=tensors, device=device, dtype=dtype)
    focal_path = resolve_focal_net(path, focal_net)
    if focal_path is not None and not focal_path.is_file():
        raise CoMoViError(
            f"focal network {focal_path} not found: download CameraHMR's cam_model_cleaned.ckpt (see README, "
            "'Start pose') into models/smpl_estimators, or choose none to use the field of view"
        )
    if focal_path is not None:
        focal = load_flnet(focal_path, device=device, dtype=dtype)
    elif focal_net == AUTO and any(k.removeprefix("model.").startswith("cam_model.") for k in tensors):
        focal = load_flnet(path, tensors=tensors, device=device, dtype=dtype)
    else:
        focal = None
        if focal_net == AUTO:
            log.warning("no FLNet (cam_model_cleaned.ckpt) next to %s: the field of view sets the focal length", path)
    return CameraHMREstimator(model, focal)
