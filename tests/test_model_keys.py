"""Key mapping tables against diffusers' own converter, and both directions round trip."""

from pathlib import Path

from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors.torch import load_file

from comovi_core.model.keys import (
    ours_to_release,
    release_to_ours,
    wan_diffusers_to_original,
    wan_original_to_diffusers,
)

RELEASE = Path(__file__).parent / "data" / "release_tiny" / "single_m2v.safetensors"


def test_wan_table_agrees_with_diffusers_converter():
    state = load_file(RELEASE)
    original = {
        k[len("rgb_") :] if k.startswith("rgb_") else k: v
        for k, v in state.items()
        if k.startswith(("rgb_", "text_", "time_"))
    }
    theirs = convert_wan_transformer_to_diffusers(dict(original))  # (it empties the dict it is given)
    ours = {wan_original_to_diffusers(k): v for k, v in original.items()}
    assert set(ours) == set(theirs) and len(ours) == 69
    assert all(ours[k] is original[wan_diffusers_to_original(k)] for k in ours)
    assert all(wan_diffusers_to_original(wan_original_to_diffusers(k)) == k for k in original)


def test_release_keys_round_trip_and_are_all_mapped():
    keys = load_file(RELEASE).keys()
    assert all(release_to_ours(k) is not None for k in keys)
    assert all(ours_to_release(release_to_ours(k)) == k for k in keys)
    assert release_to_ours("smpl_decoders.1.ca.o.bias") == "smpl_head.layers.1.cross_attn.to_out.0.bias"
    assert release_to_ours("motion_blocks.0.norm3.weight") == "motion.blocks.0.norm2.weight"
    assert release_to_ours("time_projection.1.weight") == "rgb.condition_embedder.time_proj.weight"
    assert release_to_ours("something_else.weight") is None
