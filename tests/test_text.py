"""The umT5 text path on a tiny model saved in the diffusers layout (text_encoder/ + tokenizer/)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from comovi_core.codecs.text import UMT5TextEncoder, pad_embeddings
from comovi_core.errors import CoMoViError


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wan")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "person": 4, "jumps": 5, "waves": 6}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tok.save_pretrained(folder / "tokenizer")
    torch.manual_seed(0)
    config = UMT5Config(
        vocab_size=8, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, relative_attention_num_buckets=8
    )
    UMT5EncoderModel(config).save_pretrained(folder / "text_encoder")
    return folder


def test_embeddings_are_cut_to_the_prompt_and_zero_padded(diffusers_folder):
    enc = UMT5TextEncoder(diffusers_folder, dtype=torch.float32, text_len=12)
    out = enc(["a person jumps", "a person waves"])
    assert out.shape == (2, 12, 16)
    assert out[:, :3].abs().sum(-1).min() > 0  # 3 words (no special tokens added by this tokenizer)
    assert torch.equal(out[:, 3:], torch.zeros_like(out[:, 3:]))
    ids = torch.tensor([[3, 4, 5]])
    direct = enc.model(ids, torch.ones_like(ids)).last_hidden_state[0]
    torch.testing.assert_close(out[0, :3], direct)
    assert not torch.equal(out[0, :3], out[1, :3])


def test_missing_folders_and_padding_helper(tmp_path):
    with pytest.raises(CoMoViError, match="no text_encoder/ folder.*Wan2.2-TI2V-5B-Diffusers"):
        UMT5TextEncoder(tmp_path)
    padded = pad_embeddings([torch.ones(5, 4), torch.ones(20, 4)], 8)
    assert padded.shape == (2, 8, 4) and padded[0, 5:].abs().sum() == 0 and padded[1].abs().sum() == 32
