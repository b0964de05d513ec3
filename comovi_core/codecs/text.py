"""Prompt encoding: umT5-XXL through transformers (diffusers layout ``text_encoder/`` + ``tokenizer/``).

Embeddings are cut to each prompt's real length and zero-padded to ``text_len`` (512), as Wan
pipelines and the release do. Pre-computed embeddings (e.g. ComfyUI CONDITIONING) bypass this.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CoMoViError


def pad_embeddings(embeds: list[torch.Tensor], text_len: int) -> torch.Tensor:
    """[(L_i, D)] -> (B, text_len, D), zero-padded (and cut at text_len)."""
    return torch.stack(
        [torch.cat([e[:text_len], e.new_zeros(max(0, text_len - e.shape[0]), e.shape[1])]) for e in embeds]
    )


class UMT5TextEncoder:
    """umT5 encoder + tokenizer loaded with transformers from a diffusers-layout folder."""

    def __init__(self, folder: str | Path, device="cpu", dtype=torch.bfloat16, text_len: int = 512):
        from transformers import AutoTokenizer, UMT5EncoderModel

        folder = Path(folder)
        for sub in ("text_encoder", "tokenizer"):
            if not (folder / sub).is_dir():
                raise CoMoViError(
                    f"{folder} has no {sub}/ folder: download Wan-AI/Wan2.2-TI2V-5B-Diffusers (text_encoder/ and "
                    "tokenizer/)"
                )
        self.tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
        self.model = UMT5EncoderModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype).to(device).eval()
        self.text_len = text_len

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.text_len,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = self.model.device
        hidden = self.model(tokens.input_ids.to(device), tokens.attention_mask.to(device)).last_hidden_state
        lengths = tokens.attention_mask.sum(1)
        return pad_embeddings([h[:n] for h, n in zip(hidden.float(), lengths)], self.text_len)


class TinyTextEncoder:
    """An in-memory umT5 with random weights and byte-level tokens: the offline ``tiny`` preset's encoder."""

    def __init__(self, text_dim: int, text_len: int, seed: int = 0):
        from transformers import UMT5Config, UMT5EncoderModel

        torch.manual_seed(seed)
        config = UMT5Config(
            vocab_size=259,
            d_model=text_dim,
            d_kv=8,
            d_ff=2 * text_dim,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
        )
        self.model = UMT5EncoderModel(config).eval()
        self.text_len = text_len

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        embeds = []
        for prompt in prompts:
            ids = [b + 3 for b in prompt.encode("utf-8")][: self.text_len - 1] + [1]  # bytes, then EOS
            embeds.append(self.model(torch.tensor([ids])).last_hidden_state[0])
        return pad_embeddings(embeds, self.text_len)
