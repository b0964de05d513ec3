"""Write tiny weights in the on-disk layouts users have (diffusers base folder, CoMoVi file)."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from comovi_core.codecs.tiny import tiny_vae
from comovi_core.inference.tiny import tiny_transformer
from comovi_core.model.config import get_config
from comovi_core.model.saving import save_checkpoint


def write_tiny_weights(base: Path, comovi_file: Path) -> None:
    """base: a Wan2.2-TI2V-5B-Diffusers-like folder; comovi_file: the release-layout CoMoVi file."""
    model = tiny_transformer(0)
    save_checkpoint(model, base / "transformer", "wan_diffusers")
    comovi_file.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, comovi_file, "comovi_release")
    tiny_vae().save_pretrained(base / "vae")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "person": 4, "jumps": 5}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(base / "tokenizer")
    cfg = get_config("tiny")
    UMT5EncoderModel(
        UMT5Config(
            vocab_size=8,
            d_model=cfg.text_dim,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
        )
    ).save_pretrained(base / "text_encoder")


def write_tiny_camerahmr(folder: Path) -> list[Path]:
    """The CameraHMR parity fixture's tiny random-weight networks, saved as a user places the release's files."""
    from safetensors.torch import save_file

    from comovi_core.files.weights import read_safetensors
    from comovi_core.recovery.hmr.camerahmr_loading import load_camerahmr, load_flnet
    from comovi_core.recovery.hmr.config import CAMERAHMR_PRESETS, FLNET_PRESETS
    from comovi_core.recovery.hmr.loading import save_estimator

    reference = read_safetensors(Path(__file__).parent / "data" / "camerahmr_tiny" / "reference.safetensors")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for prefix, load, config, name in (
        ("state.", load_camerahmr, CAMERAHMR_PRESETS["tiny"], "camerahmr_checkpoint_cleaned.safetensors"),
        ("flnet.state.", load_flnet, FLNET_PRESETS["tiny"], "cam_model_cleaned.safetensors"),
    ):
        state = {k.removeprefix(prefix): v for k, v in reference.items() if k.startswith(prefix)}
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # stored in fp16
        save_file(state, folder / name)
        files.append(save_estimator(load(folder / name, config), folder / name))
    return files
