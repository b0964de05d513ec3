"""State-dict key names: original Wan / ComfyUI, diffusers, the release's CoMoVi file, and ours.

Ours are diffusers names under ``rgb.`` / ``motion.`` plus ``zero_linears.N`` and ``smpl_head.*``.
One table (``_WAN_RULES``) maps original Wan names to diffusers names; it is used in both directions.
"""

from __future__ import annotations

import re

# The file layouts of the transformer's weights (docs/file_formats.md): ours, the release's, and the base Wan2.2
# RGB branch as an original/ComfyUI single file or a diffusers folder.
LAYOUTS = ("comovi", "comovi_release", "wan_original", "wan_diffusers")

# original Wan name <-> diffusers name; {n} = block index, {p} = weight | bias
_WAN_PAIRS: list[tuple[str, str]] = [
    ("patch_embedding.{p}", "patch_embedding.{p}"),
    ("text_embedding.0.{p}", "condition_embedder.text_embedder.linear_1.{p}"),
    ("text_embedding.2.{p}", "condition_embedder.text_embedder.linear_2.{p}"),
    ("time_embedding.0.{p}", "condition_embedder.time_embedder.linear_1.{p}"),
    ("time_embedding.2.{p}", "condition_embedder.time_embedder.linear_2.{p}"),
    ("time_projection.1.{p}", "condition_embedder.time_proj.{p}"),
    *[
        (f"blocks.{{n}}.{o}_attn.{a}.{{p}}", f"blocks.{{n}}.{d}.to_{b}.{{p}}")
        for o, d in (("self", "attn1"), ("cross", "attn2"))
        for a, b in (("q", "q"), ("k", "k"), ("v", "v"), ("o", "out.0"))
    ],
    *[
        (f"blocks.{{n}}.{o}_attn.norm_{a}.weight", f"blocks.{{n}}.{d}.norm_{a}.weight")
        for o, d in (("self", "attn1"), ("cross", "attn2"))
        for a in "qk"
    ],
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

# release name <-> our name for the coupling and the 3D head; {n} = layer index, {p} = weight | bias
_RELEASE_PAIRS: list[tuple[str, str]] = [
    ("zero_linear_blocks.{n}.{p}", "zero_linears.{n}.{p}"),
    ("smpl_fusion_layers.{n}.{p}", "smpl_head.fusion.{n}.{p}"),
    ("smpl_pe", "smpl_head.frame_embedding"),
    ("smpl_proj_in.{p}", "smpl_head.proj_in.{p}"),
    ("smpl_proj_out.{p}", "smpl_head.proj_out.{p}"),
    *[
        (f"smpl_decoders.{{n}}.{r}.{a}.{{p}}", f"smpl_head.layers.{{n}}.{o}.{b}.{{p}}")
        for r, o in (("sa", "self_attn"), ("ca", "cross_attn"))
        for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"))
    ],
    *[
        (f"smpl_decoders.{{n}}.{r}.norm_{a}.weight", f"smpl_head.layers.{{n}}.{o}.norm_{a}.weight")
        for r, o in (("sa", "self_attn"), ("ca", "cross_attn"))
        for a in "qk"
    ],
    ("smpl_decoders.{n}.ffn.0.{p}", "smpl_head.layers.{n}.ffn.net.0.proj.{p}"),
    ("smpl_decoders.{n}.ffn.2.{p}", "smpl_head.layers.{n}.ffn.net.2.{p}"),
]
_RELEASE_FORWARD = [(_regex(a), b) for a, b in _RELEASE_PAIRS]
_RELEASE_BACKWARD = [(_regex(b), a) for a, b in _RELEASE_PAIRS]
_BRANCH_PARTS = ("patch_embedding", "blocks", "head")


def release_to_ours(key: str) -> str | None:
    """A key of the release's CoMoVi file -> our key (None if it has no counterpart)."""
    for branch in ("rgb", "motion"):
        rest = key[len(branch) + 1 :]
        if key.startswith(f"{branch}_") and rest.split(".")[0] in _BRANCH_PARTS:
            mapped = wan_original_to_diffusers(rest)
            return f"{branch}.{mapped}" if mapped else None
    if key.startswith(SHARED_ORIGINAL):
        mapped = wan_original_to_diffusers(key)
        return f"rgb.{mapped}" if mapped else None
    return _convert(key, _RELEASE_FORWARD)


def ours_to_release(key: str) -> str | None:
    """Our key -> the release's CoMoVi name (inverse of ``release_to_ours``)."""
    if key.startswith("rgb.condition_embedder"):
        return wan_diffusers_to_original(key[len("rgb.") :])
    for branch in ("rgb", "motion"):
        if key.startswith(f"{branch}."):
            original = wan_diffusers_to_original(key[len(branch) + 1 :])
            return f"{branch}_{original}" if original else None
    return _convert(key, _RELEASE_BACKWARD)


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
