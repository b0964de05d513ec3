"""Read the model size from the checkpoint: a ``CoMoViConfig`` from tensor shapes and any stored config.

What the weights determine (``determined`` below) is read from shapes under our key names (``keys.py``):
    hidden size, latent channels, patch   ``rgb.patch_embedding.weight``  (D, C_in, pt, ph, pw)
    out channels                          ``rgb.proj_out.weight``         (pt*ph*pw*C_out, D)
    text / time embedding sizes           ``rgb.condition_embedder.*.linear_1.weight``
    FFN size, RGB layers                  ``rgb.blocks.N.ffn.net.0.proj.weight`` (ffn, D), count of N
    interleave                            RGB layers / motion layers (when the motion branch is stored)
    interaction                           number of ``zero_linears.N``: 0 none, M single_*, 2M dual, M+1 paper
    3D head                               ``smpl_head.layers.N`` count, its FFN, ``frame_embedding`` (1, T, D),
                                          ``proj_in.weight`` (D, 6 * joints)
What they cannot say (attention heads: Wan's q/k RMSNorm spans all heads; text length; eps; the 3D head's
heads; single_m2v vs single_v2m, which have the same zero-linears) comes from a stored config (ours, or a
diffusers ``config.json``), else from the preset of the same hidden size, else the 5B defaults with Wan's
128-channel heads.
"""

from __future__ import annotations

import dataclasses
import math

from ..errors import CoMoViError
from .config import INTERACTIONS, PRESETS, CoMoViConfig

WAN_HEAD_DIM = 128  # every Wan2.x DiT uses 128-channel heads
_KNOWN_SIZES = {5120: "Wan 14B", 1536: "Wan 1.3B", 3072: "Wan2.2 5B"}


def _indices(shapes: dict[str, tuple], prefix: str) -> set[int]:
    """{N} of the keys ``prefix.N.*``."""
    return {int(k[len(prefix) :].split(".")[0]) for k in shapes if k.startswith(prefix)}


def _count(shapes: dict[str, tuple], prefix: str) -> int:
    found = _indices(shapes, prefix)
    if found and found != set(range(max(found) + 1)):
        missing = sorted(set(range(max(found) + 1)) - found)
        raise CoMoViError(
            f"the weights skip {prefix}{missing[0]} (have {prefix}0..{max(found)}): the file is damaged "
            "or a partial save; save or download it again"
        )
    return len(found)


def interaction_candidates(num_zero: int, num_motion: int) -> list[str]:
    """The interaction modes whose zero-linear count is ``num_zero`` for ``num_motion`` motion blocks."""
    counts = {
        "none": 0,
        "single_m2v": num_motion,
        "single_v2m": num_motion,
        "dual": 2 * num_motion,
        "paper": num_motion + 1,
    }
    return [mode for mode in INTERACTIONS if counts[mode] == num_zero]


def stored_config(raw: dict | None) -> tuple[dict, str]:
    """(fields of ``CoMoViConfig`` it gives, what it is) from our JSON meta, our ``config.json`` (``save_pretrained``)
    or a diffusers ``WanTransformer3DModel`` ``config.json``; ({}, "") for anything else (e.g. the release's JSON)."""
    if not raw:
        return {}, ""
    if raw.get("format") == "comovi" and isinstance(raw.get("config"), dict):
        return dict(raw["config"]), "stored CoMoVi config"
    if raw.get("_class_name") == "CoMoViTransformer":
        return {k: v for k, v in raw.items() if not k.startswith("_")}, "stored CoMoVi config.json"
    if raw.get("_class_name") == "WanTransformer3DModel":
        fields = {f.name for f in dataclasses.fields(CoMoViConfig)} - {"num_layers"}
        return {k: v for k, v in raw.items() if k in fields}, "diffusers config.json"
    return {}, ""


def infer_config(shapes: dict[str, tuple], stored: dict | None = None) -> tuple[CoMoViConfig, set[str]]:
    """(config, names of the fields the tensor shapes determine) for a model holding ``shapes`` (our keys)."""
    embed = shapes.get("rgb.patch_embedding.weight") or shapes.get("motion.patch_embedding.weight")
    if embed is None or len(embed) != 5:
        raise CoMoViError(
            "the weights have no patch embedding (rgb.patch_embedding / patch_embedding.weight): "
            "cannot tell the model size; pass the base Wan2.2-TI2V-5B weights too"
        )
    dim, patch = embed[0], tuple(embed[2:])
    sized: dict = {"in_channels": embed[1], "patch_size": patch}
    if (out := shapes.get("rgb.proj_out.weight") or shapes.get("motion.proj_out.weight")) is not None:
        sized["out_channels"] = out[0] // math.prod(patch)
    if (text := shapes.get("rgb.condition_embedder.text_embedder.linear_1.weight")) is not None:
        sized["text_dim"] = text[1]
    if (time := shapes.get("rgb.condition_embedder.time_embedder.linear_1.weight")) is not None:
        sized["freq_dim"] = time[1]
    for branch in ("rgb", "motion"):
        if (ffn := shapes.get(f"{branch}.blocks.0.ffn.net.0.proj.weight")) is not None:
            sized["ffn_dim"] = ffn[0]
            break
    num_rgb, num_motion = _count(shapes, "rgb.blocks."), _count(shapes, "motion.blocks.")
    if num_rgb:
        sized["num_layers"] = num_rgb
        if num_motion:
            if num_rgb % num_motion:
                raise CoMoViError(
                    f"the weights hold {num_rgb} RGB blocks and {num_motion} motion blocks: not a "
                    "whole number of RGB blocks per motion block"
                )
            sized["interleave"] = num_rgb // num_motion
    num_smpl = _count(shapes, "smpl_head.layers.")
    sized["smpl_layers"] = num_smpl  # no head tensors: a model without the head
    if num_smpl:
        if (ffn := shapes.get("smpl_head.layers.0.ffn.net.0.proj.weight")) is not None:
            sized["smpl_ffn_dim"] = ffn[0]
        if (table := shapes.get("smpl_head.frame_embedding")) is not None:
            sized["smpl_max_frames"] = table[1]
        if (proj := shapes.get("smpl_head.proj_in.weight")) is not None:
            sized["num_joints"] = proj[1] // 6
    determined = set(sized)
    # what the shapes cannot say: a stored config, else the preset of this hidden size, else Wan defaults
    stored = dict(stored or {})
    mismatched = {k: (stored[k], v) for k, v in sized.items() if k in stored and _norm(stored[k]) != _norm(v)}
    if mismatched:
        detail = ", ".join(f"{k} {a} in the config vs {b} in the weights" for k, (a, b) in mismatched.items())
        raise CoMoViError(f"the stored config does not match the weights ({detail}); save the model again")
    preset = next((c for c in PRESETS.values() if c.hidden_size == dim), None)
    if preset is not None:
        base = preset.to_dict()
    elif "num_attention_heads" in stored or dim % WAN_HEAD_DIM == 0:
        heads = {"num_attention_heads": dim // WAN_HEAD_DIM, "attention_head_dim": WAN_HEAD_DIM}
        base = {**CoMoViConfig().to_dict(), **heads}
    else:
        raise CoMoViError(
            f"hidden size {dim} matches no known model and is not a multiple of {WAN_HEAD_DIM}: the "
            "number of attention heads cannot be read from the weights; give the model size"
        )
    base.update(stored)
    if base["num_attention_heads"] * base["attention_head_dim"] != dim:
        raise CoMoViError(
            f"the stored config says {base['num_attention_heads']} heads x {base['attention_head_dim']} "
            f"channels, the weights have hidden size {dim}; the config.json does not belong to them"
        )
    num_zero = _count(shapes, "zero_linears.")
    if num_motion and "interaction" not in stored:
        candidates = interaction_candidates(num_zero, num_motion)
        if not candidates:
            raise CoMoViError(
                f"the weights hold {num_zero} zero-linears for {num_motion} motion blocks: no "
                f"interaction mode has that many ({list(INTERACTIONS)})"
            )
        sized["interaction"] = candidates[0]  # single_m2v (the release's default) before single_v2m
    try:
        return CoMoViConfig.from_dict({**base, **sized}), determined
    except (TypeError, CoMoViError) as exc:
        raise CoMoViError(f"the weights do not describe a valid CoMoVi model: {exc}") from None


def _norm(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def describe_size(config: CoMoViConfig) -> str:
    known = _KNOWN_SIZES.get(config.hidden_size)
    head = f"3D head of {config.smpl_layers} layers" if config.has_smpl_head else "no 3D head"
    return (
        f"hidden {config.hidden_size}{f' ({known})' if known else ''}, {config.num_layers} layers, "
        f"FFN {config.ffn_dim}, {config.in_channels} latent channels, {head}"
    )


def reconcile(
    given: CoMoViConfig, found: CoMoViConfig, determined: set[str], shapes: dict[str, tuple], where: str
) -> CoMoViConfig:
    """``given`` (a size the user chose) checked against what the weights determine; a clear error if they differ.

    A file without the 3D head gives a model without it (not a contradiction); so does a file without the
    motion branch or the coupling (a base: those parts are copied or zeroed)."""
    differ = {
        k: (getattr(given, k), getattr(found, k))
        for k in sorted(determined)
        if k != "smpl_layers" and _norm(getattr(given, k)) != _norm(getattr(found, k))
    }
    if found.smpl_layers and given.smpl_layers and found.smpl_layers != given.smpl_layers:
        differ["smpl_layers"] = (given.smpl_layers, found.smpl_layers)
    if given.hidden_size != found.hidden_size:
        differ = {"hidden size": (given.hidden_size, found.hidden_size), **differ}
    if num_motion := _count(shapes, "motion.blocks."):  # the coupling is stored with the motion branch
        modes = interaction_candidates(_count(shapes, "zero_linears."), num_motion)
        if given.interaction not in modes:
            differ["interaction"] = (given.interaction, " or ".join(modes) or "none of them")
    if differ:
        detail = "; ".join(f"{k}: {a} requested, {b}{_size_note(k, b)} in the file" for k, (a, b) in differ.items())
        raise CoMoViError(
            f"{where}: the requested model size contradicts the weights ({detail}). The file holds a "
            f"model with {describe_size(found)}: leave the size unset (it is read from the file) or "
            "pick the matching one"
        )
    return given if found.smpl_layers else given.replace(smpl_layers=0)


def _size_note(key: str, value) -> str:
    return f" ({_KNOWN_SIZES[value]})" if key == "hidden size" and value in _KNOWN_SIZES else ""
