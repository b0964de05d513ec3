"""Write the model in each layout we load: ours (safetensors + JSON meta), the release's CoMoVi
layout, and the base RGB branch as an original/ComfyUI single file or a diffusers folder. Atomic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from ..errors import CoMoViError
from ..files.atomic import atomic_path
from .keys import LAYOUTS, ours_to_release, wan_diffusers_to_original

if TYPE_CHECKING:  # the model imports diffusers (seconds)
    from .dual import CoMoViTransformer


def _state(
    model: CoMoViTransformer, dtype: torch.dtype | None = None, state: dict | None = None
) -> dict[str, torch.Tensor]:
    def cast(v):
        return v.to(dtype) if dtype is not None and v.is_floating_point() else v

    return {k: cast(v.detach()).contiguous() for k, v in (model.state_dict() if state is None else state).items()}


def _write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> Path:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def write_comovi_file(path: Path, tensors: dict[str, torch.Tensor], info: dict) -> Path:
    """Our layout: ``tensors`` by our key names with ``info`` (the model config and what made the file) as its
    metadata and next to it as ``<path>.json``. A file may hold part of the model (``load_model`` stacks it on the
    base weights)."""
    info = {"format": "comovi", **info}
    _write(path, tensors, {"comovi": json.dumps(info)})
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(info, indent=1))
    return path


def save_checkpoint(
    model: CoMoViTransformer,
    path: str | Path,
    layout: str = "comovi",
    meta: dict | None = None,
    dtype: torch.dtype | None = None,
    state: dict | None = None,
) -> Path:
    """Save ``model`` at ``path`` in ``layout`` (one of LAYOUTS), floating tensors cast to ``dtype`` if given.
    Base layouts keep the RGB branch only. ``state``: the tensors to write instead of ``model.state_dict()`` (a
    sharded model's gathered state)."""
    path = Path(path)
    state = _state(model, dtype, state)
    if layout == "comovi":
        return write_comovi_file(path, state, {"config": model.comovi_config.to_dict(), **(meta or {})})
    if layout == "comovi_release":
        return _write(path, {ours_to_release(k): v for k, v in state.items()})
    rgb = {k[len("rgb.") :]: v for k, v in state.items() if k.startswith("rgb.")}
    if layout == "wan_original":
        return _write(path, {"model.diffusion_model." + wan_diffusers_to_original(k): v for k, v in rgb.items()})
    if layout == "wan_diffusers":
        folder = path
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "diffusion_pytorch_model.safetensors", rgb)
        with atomic_path(folder / "config.json") as tmp:
            tmp.write_text(
                json.dumps({"_class_name": "WanTransformer3DModel", **model.rgb.config}, indent=1, default=list)
            )
        return folder
    raise CoMoViError(f"unknown layout {layout!r}; choose one of {list(LAYOUTS)}")
