"""Write tiny weights in the on-disk layouts users have (diffusers base folder, CoMoVi file)."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from comovi_core.model.config import get_config
from comovi_core.model.saving import save_checkpoint
from comovi_core.tiny import tiny_transformer, tiny_vae


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
