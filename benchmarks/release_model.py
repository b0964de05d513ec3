"""The authors' released dual model (``IGL-HKUST/CoMoVi``, ``comovi/models/comovi_transformer3d.py``) built from a local
checkout, for side-by-side timing (``bench_dual_step.py --release PATH``). Nothing of it is in this repository.

Its package ``__init__`` files import the whole release (VAE, CLIP, torchvision, xfuser); this loads only the model
module, with its sequence-parallel helpers as the one-process values they take without xfuser.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import torch


def _package(name: str, folder: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    sys.modules[name] = module
    return module


def load_release_class(checkout: str | Path):
    """``ComoviTransformer3DModel`` from the checkout folder (the one holding ``comovi/``)."""
    root = Path(checkout) / "comovi"
    if not (root / "models" / "comovi_transformer3d.py").is_file():
        raise SystemExit(f"--release {checkout}: no comovi/models/comovi_transformer3d.py there (a CoMoVi checkout)")
    _package("comovi", root)
    _package("comovi.models", root / "models")
    dist = _package("comovi.dist", root / "dist")
    dist.get_sequence_parallel_rank = lambda: 0
    dist.get_sequence_parallel_world_size = lambda: 1
    dist.get_sp_group = lambda: types.SimpleNamespace(all_gather=None)
    dist.usp_attn_forward = None
    utils = _package("comovi.utils", root / "utils")
    utils.cfg_skip = importlib.import_module("comovi.utils.cfg_optimization").cfg_skip
    return importlib.import_module("comovi.models.comovi_transformer3d").ComoviTransformer3DModel


def release_model(checkout, cfg, device, dtype):
    """The release's model with the sizes of our ``CoMoViConfig`` ``cfg`` (no 3D head), random weights."""
    cls = load_release_class(checkout)
    model = cls(
        model_type="ti2v",
        patch_size=tuple(cfg.patch_size),
        text_len=cfg.text_len,
        in_dim=cfg.in_channels,
        dim=cfg.hidden_size,
        ffn_dim=cfg.ffn_dim,
        freq_dim=cfg.freq_dim,
        text_dim=cfg.text_dim,
        out_dim=cfg.out_channels,
        num_heads=cfg.num_attention_heads,
        num_layers=cfg.num_layers,
        eps=cfg.eps,
        in_channels=cfg.in_channels,
        hidden_size=cfg.hidden_size,
        interaction=cfg.interaction,
        interleave=cfg.interleave,
        predict_smpl=False,
    )
    return model.to(device, dtype).eval()


def release_step(model, latents: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor):
    """One forward of the release model on our inputs: (B, C, F, H, W) latents for both branches, (B, L) per-token
    timesteps, (B, text_len, D) context."""
    return model([latents, latents], timestep, list(context), seq_len=timestep.shape[1])
