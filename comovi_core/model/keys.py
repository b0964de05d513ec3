"""State-dict key names: original Wan / ComfyUI, diffusers, the release's CoMoVi file, and ours.

Ours are diffusers names under ``rgb.`` / ``motion.`` plus ``zero_linears.N`` and ``smpl_head.*``.
One table (``_WAN_RULES``) maps original Wan names to diffusers names; it is used in both directions.
"""

from __future__ import annotations

import re

# original Wan name <-> diffusers name; {n} = block index, {p} = weight | bias
_WAN_PAIRS: list[tuple[str, str]] = [
    ("patch_embedding.{p}", "patch_embedding.{p}"),
    ("text_embedding.0.{p}", "condition_embedder.text_embedder.linear_1.{p}"),
    ("text_embedding.2.{p}", "condition_embedder.text_embedder.linear_2.{p}"),
    ("time_embedding.0.{p}", "condition_embedder.time_embedder.linear_1.{p}"),
    ("time_embedding.2.{p}", "condition_embedder.time_embedder.linear_2.{p}"),
    ("time_projection.1.{p}", "condition_embedder.time_proj.{p}"),
    *[(f"blocks.{{n}}.{o}_attn.{a}.{{p}}", f"blocks.{{n}}.{d}.to_{b}.{{p}}")
      for o, d in (("self", "attn1"), ("cross", "attn2")) for a, b in (("q", "q"), ("k", "k"), ("v", "v"), ("o", "out.0"))],
    *[(f"blocks.{{n}}.{o}_attn.norm_{a}.weight", f"blocks.{{n}}.{d}.norm_{a}.weight")
      for o, d in (("self", "attn1"), ("cross", "attn2")) for a in "qk"],
    ("blocks.{n}.norm3.{p}", "blocks.{n}.norm2.{p}"),
    ("blocks.{n}.ffn.0.{p}", "blocks.{n}.ffn.net.0.proj.{p}"),
    ("blocks.{n}.ffn.2.{p}", "blocks.{n}.ffn.net.2.{p}"),
    ("blocks.{n}.modulation", "blocks.{n}.scale_shift_table"),
    ("head.head.{p}", "proj_out.{p}"),
    ("head.modulation", "scale_shift_table"),
]


def _regex(template: str) -> re.Pattern:
    rx = re.escape(template).replace(r"\{n\}", r"(?P<n>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(rx + "$")


_FORWARD = [(_regex(a), b) for a, b in _WAN_PAIRS]
_BACKWARD = [(_regex(b), a) for a, b in _WAN_PAIRS]


def _convert(key: str, rules) -> str | None:
    for rx, template in rules:
        m = rx.match(key)
        if m:
            return template.format(**m.groupdict())
    return None


def wan_original_to_diffusers(key: str) -> str | None:
    """``blocks.3.self_attn.q.weight`` -> ``blocks.3.attn1.to_q.weight``; None if not a Wan key."""
    return _convert(key, _FORWARD)


def wan_diffusers_to_original(key: str) -> str | None:
    return _convert(key, _BACKWARD)


SHARED_ORIGINAL = ("text_embedding.", "time_embedding.", "time_projection.")
_SMPL_ATTN = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0"}


def release_to_ours(key: str) -> str | None:
    """A key of the release's CoMoVi file -> our key (None if it has no counterpart)."""
    for branch in ("rgb", "motion"):
        prefix = f"{branch}_"
        if key.startswith(prefix) and key[len(prefix):].split(".")[0] in ("patch_embedding", "blocks", "head"):
            mapped = wan_original_to_diffusers(key[len(prefix):])
            return f"{branch}.{mapped}" if mapped else None
    if key.startswith(SHARED_ORIGINAL):
        mapped = wan_original_to_diffusers(key)
        return f"rgb.{mapped}" if mapped else None
    m = re.match(r"zero_linear_blocks\.(\d+)\.(weight|bias)$", key)
    if m:
        return f"zero_linears.{m[1]}.{m[2]}"
    m = re.match(r"smpl_fusion_layers\.(\d+)\.(weight|bias)$", key)
    if m:
        return f"smpl_head.fusion.{m[1]}.{m[2]}"
    if key == "smpl_pe":
        return "smpl_head.frame_embedding"
    m = re.match(r"smpl_(proj_in|proj_out)\.(weight|bias)$", key)
    if m:
        return f"smpl_head.{m[1]}.{m[2]}"
    m = re.match(r"smpl_decoders\.(\d+)\.(sa|ca)\.([qkvo])\.(weight|bias)$", key)
    if m:
        attn = "self_attn" if m[2] == "sa" else "cross_attn"
        return f"smpl_head.layers.{m[1]}.{attn}.{_SMPL_ATTN[m[3]]}.{m[4]}"
    m = re.match(r"smpl_decoders\.(\d+)\.(sa|ca)\.norm_([qk])\.weight$", key)
    if m:
        attn = "self_attn" if m[2] == "sa" else "cross_attn"
        return f"smpl_head.layers.{m[1]}.{attn}.norm_{m[3]}.weight"
    m = re.match(r"smpl_decoders\.(\d+)\.ffn\.([02])\.(weight|bias)$", key)
    if m:
        return f"smpl_head.layers.{m[1]}.ffn.net.{'0.proj' if m[2] == '0' else '2'}.{m[3]}"
    return None


def part_of(key: str) -> str:
    """Which part of the model an (our) key belongs to, in words."""
    if key.startswith("rgb.condition_embedder") or key.startswith("rgb.rope"):
        return "shared text/time embeddings"
    if key.startswith("rgb."):
        return "RGB branch"
    if key.startswith("motion."):
        return "motion branch"
    if key.startswith("zero_linears."):
        return "zero-linear coupling"
    if key.startswith("smpl_head."):
        return "3D head"
    return "unknown"


def ours_to_release(key: str) -> str | None:
    """Our key -> the release's CoMoVi name (inverse of ``release_to_ours``)."""
    for branch in ("rgb", "motion"):
        if key.startswith(f"{branch}.") and not key.startswith("rgb.condition_embedder"):
            original = wan_diffusers_to_original(key[len(branch) + 1:])
            return f"{branch}_{original}" if original else None
    if key.startswith("rgb.condition_embedder"):
        return wan_diffusers_to_original(key[len("rgb."):])
    m = re.match(r"zero_linears\.(\d+)\.(weight|bias)$", key)
    if m:
        return f"zero_linear_blocks.{m[1]}.{m[2]}"
    m = re.match(r"smpl_head\.fusion\.(\d+)\.(weight|bias)$", key)
    if m:
        return f"smpl_fusion_layers.{m[1]}.{m[2]}"
    if key == "smpl_head.frame_embedding":
        return "smpl_pe"
    m = re.match(r"smpl_head\.(proj_in|proj_out)\.(weight|bias)$", key)
    if m:
        return f"smpl_{m[1]}.{m[2]}"
    m = re.match(r"smpl_head\.layers\.(\d+)\.(self_attn|cross_attn)\.(to_q|to_k|to_v|to_out\.0|norm_q|norm_k)\.(weight|bias)$", key)
    if m:
        short = {"to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o", "norm_q": "norm_q", "norm_k": "norm_k"}[m[3]]
        return f"smpl_decoders.{m[1]}.{'sa' if m[2] == 'self_attn' else 'ca'}.{short}.{m[4]}"
    m = re.match(r"smpl_head\.layers\.(\d+)\.ffn\.net\.(0\.proj|2)\.(weight|bias)$", key)
    if m:
        return f"smpl_decoders.{m[1]}.ffn.{m[2][0]}.{m[3]}"
    return None
