"""Memory modes: fp8 storage, block swap, gradient checkpointing give the same function."""

from __future__ import annotations

import pytest
import torch

from comovi_core.errors import CoMoViError
from comovi_core.model.config import get_config
from comovi_core.model.loading import build_model
from comovi_core.model.memory import enable_block_swap, enable_fp8_storage, set_attention_backend

CFG = get_config("tiny")


def _model():
    torch.manual_seed(0)
    model = build_model(CFG, "cpu").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)

    def lat():
        return torch.randn(1, 48, 3, 4, 4, generator=g)

    t = torch.full((1, 12), 500.0)
    t[:, :4] = 0
    return lat(), lat(), t, torch.randn(1, CFG.text_len, CFG.text_dim, generator=g), torch.randn(1, 144, generator=g)


def test_fp8_storage_keeps_weights_in_fp8_and_stays_close():
    model, inputs = _model(), _inputs()
    with torch.no_grad():
        ref = model(*inputs)
    enable_fp8_storage(model, compute_dtype=torch.float32)
    assert model.rgb.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
    assert model.motion.blocks[1].ffn.net[2].weight.dtype == torch.float8_e4m3fn
    assert model.rgb.patch_embedding.weight.dtype == torch.float32  # precision-critical layers are skipped
    with torch.no_grad():
        out = model(*inputs)
    for a, b in ((out.rgb, ref.rgb), (out.motion, ref.motion), (out.smpl_6d, ref.smpl_6d)):
        rel = float((a - b).norm() / b.norm())
        assert 1e-4 < rel < 0.1  # fp8 (3 mantissa bits) changes the numbers a little, not the function


def test_block_swap_moves_pairs_and_gives_identical_outputs():
    model, inputs = _model(), _inputs()
    with torch.no_grad():
        ref = model(*inputs)
    swapper = enable_block_swap(model, num_pairs=1, device="cpu", offload_device="cpu")
    with torch.no_grad():
        out = model(*inputs)
    assert swapper.swapped == {1} and swapper.moves == 1
    assert (
        torch.equal(out.rgb, ref.rgb) and torch.equal(out.motion, ref.motion) and torch.equal(out.smpl_6d, ref.smpl_6d)
    )
    with pytest.raises(CoMoViError, match="between 0 and 2"):
        enable_block_swap(model, num_pairs=3, device="cpu")


def test_block_swap_is_diffusers_group_offload_of_whole_layer_pairs():
    """Each swapped pair is one diffusers ModuleGroup: moved in as its motion block starts, out after its last
    RGB block (interleave 2: a motion block and two RGB blocks), never two pairs at once without prefetch."""
    from diffusers.hooks.group_offloading import ModuleGroup

    cfg = get_config("tiny", num_layers=4, interleave=2, smpl_layers=0)
    torch.manual_seed(0)
    model = build_model(cfg, "cpu").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    g = torch.Generator().manual_seed(3)
    inputs = (
        torch.randn(1, 48, 3, 4, 4, generator=g),
        torch.randn(1, 48, 3, 4, 4, generator=g),
        torch.full((1, 12), 500.0),
        torch.randn(1, cfg.text_len, cfg.text_dim, generator=g),
    )
    with torch.no_grad():
        ref = model(*inputs)
    swap = enable_block_swap(model, 2, "cpu")
    assert [type(gr) for gr in swap.groups] == [ModuleGroup, ModuleGroup] and swap.swapped == {0, 1}
    events = []
    for j, group in zip(sorted(swap.swapped), swap.groups):
        assert group.modules == model.pair_modules(j) and len(group.modules) == 3
        for name in ("onload_", "offload_"):
            method = getattr(group, name)
            setattr(group, name, lambda j=j, name=name, method=method: (events.append((name, j)), method())[1])
    for j in range(2):  # inside the blocks' computation: the first and the last sub-module to run
        model.motion.blocks[j].norm1.register_forward_pre_hook(lambda *_, j=j: events.append(("motion", j)))
        model.rgb.blocks[2 * j + 1].ffn.register_forward_hook(lambda *_, j=j: events.append(("rgb_last", j)))
    with torch.no_grad():
        out = model(*inputs)
    assert events == [
        ("onload_", 0),
        ("motion", 0),
        ("rgb_last", 0),
        ("offload_", 0),
        ("onload_", 1),
        ("motion", 1),
        ("rgb_last", 1),
        ("offload_", 1),
    ]
    assert swap.moves == 2 and torch.equal(out.rgb, ref.rgb) and torch.equal(out.motion, ref.motion)


def test_gradient_checkpointing_gives_the_same_gradients():
    """diffusers' mechanism (ModelMixin.enable_gradient_checkpointing): the layers run again in the backward pass."""
    inputs = _inputs()
    grads, calls = [], []
    for checkpointing in (False, True):
        model = _model().train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        assert model.is_gradient_checkpointing == checkpointing
        for p in model.parameters():
            p.requires_grad_(True)
        seen = []
        # the hook runs within this iteration, so the loop variable it reads is the right one
        model.motion.blocks[0].register_forward_hook(lambda *_: seen.append(1))  # noqa: B023
        out = model(*inputs)
        (out.rgb.square().mean() + out.motion.square().mean() + out.smpl_6d.square().mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        calls.append(len(seen))
    assert calls == [1, 2]  # recomputed once in the backward pass
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 100
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_block_swap_on_gpu_keeps_swapped_pairs_on_host():
    model, inputs = _model(), _inputs()
    with torch.no_grad():
        ref = model(*inputs)
    enable_block_swap(model, num_pairs=1, device="cuda")
    assert model.motion.blocks[1].attn1.to_q.weight.device.type == "cpu"
    with torch.no_grad():
        out = model(*(x.cuda() for x in inputs))
    torch.testing.assert_close(out.rgb.cpu(), ref.rgb, rtol=1e-4, atol=1e-4)


def test_attention_backend_selection():
    """diffusers' dispatcher routes every attention (both branches and the 3D head) to the chosen kernel."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    from comovi_core.model.memory import attention_backend

    model, inputs = _model(), _inputs()
    with torch.no_grad():
        ref = model(*inputs)
    n_attention = sum(1 for m in model.modules() if hasattr(getattr(m, "processor", None), "_attention_backend"))
    assert n_attention == 2 * 2 * CFG.num_layers + 2 * CFG.smpl_layers  # self + cross, both branches, head
    calls = []
    original = _AttentionBackendRegistry._backends["_native_math"]
    _AttentionBackendRegistry._backends["_native_math"] = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        set_attention_backend(model, "sdpa_math")
        assert attention_backend(model) == "sdpa_math"
        assert _AttentionBackendRegistry.get_active_backend()[0].value == "native"  # the process default is kept
        with torch.no_grad():
            math_out = model(*inputs)
    finally:
        _AttentionBackendRegistry._backends["_native_math"] = original
    assert len(calls) == n_attention  # each attention ran through the chosen kernel, once
    torch.testing.assert_close(math_out.rgb, ref.rgb, rtol=0, atol=1e-5)
    torch.testing.assert_close(math_out.smpl_6d, ref.smpl_6d, rtol=0, atol=1e-5)
    set_attention_backend(model, "sdpa")
    assert attention_backend(model) == "sdpa"
    with torch.no_grad():
        out = model(*inputs)
    torch.testing.assert_close(out.rgb, ref.rgb, rtol=0, atol=1e-6)
    with pytest.raises(CoMoViError, match="unknown attention backend 'flashy'"):
        set_attention_backend(model, "flashy")
    with pytest.raises(CoMoViError, match="'flash' needs flash-attn .*the model runs on cpu: use the default 'sdpa'"):
        set_attention_backend(model, "flash", device="cpu")
    try:
        import flash_attn  # noqa: F401  (only whether it is installed)
    except ImportError:  # a missing package is named when the backend is chosen, before any step
        with pytest.raises(CoMoViError, match="'flash' is not usable here: it needs flash-attn"):
            set_attention_backend(model, "flash")
    assert attention_backend(model) == "sdpa"  # a refused backend changes nothing


@pytest.mark.slow
def test_compiled_blocks_match_eager():
    """torch.compile of every block (diffusers' regional compilation) gives the eager outputs on CPU."""
    from comovi_core.model.memory import compile_blocks

    model, inputs = _model(), _inputs()
    with torch.no_grad():
        ref = model(*inputs)
    assert compile_blocks(model) == 2 * CFG.num_layers + CFG.smpl_layers
    assert model.rgb.blocks[0]._compiled_call_impl is not None
    with torch.no_grad():
        out = model(*inputs)
        again = model(*_inputs(seed=2))  # a second call reuses the compiled code
    for a, b in ((out.rgb, ref.rgb), (out.motion, ref.motion), (out.smpl_6d, ref.smpl_6d)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert float((a - b).abs().max()) < 1e-4
    assert again.rgb.shape == ref.rgb.shape and not torch.equal(again.rgb, out.rgb)


def test_resident_bytes_and_place_leave_block_swapped_pairs_alone():
    """What a host's memory manager counts and moves: everything but the swapped pairs (fp8 at 1 byte a weight)."""
    from comovi_core.model.memory import place, resident_bytes

    model = _model()
    total = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    assert resident_bytes(model) == total
    swapped_pair = model.pair_modules(CFG.num_motion_blocks - 1)
    pair_bytes = sum(p.numel() * p.element_size() for m in swapped_pair for p in m.parameters())
    enable_block_swap(model, 1, "cpu")
    assert pair_bytes > 0 and resident_bytes(model) == total - pair_bytes
    place(model, "meta")
    assert all(p.device.type == "cpu" for m in swapped_pair for p in m.parameters())
    assert (
        model.rgb.patch_embedding.weight.device.type == "meta"
        and model.motion.blocks[0].attn1.to_q.weight.device.type == "meta"
    )
    fp8 = _model()
    enable_fp8_storage(fp8, compute_dtype=torch.float32)
    assert total == 3471296 and resident_bytes(fp8) == 2279744  # the blocks' weights at 1 byte instead of 4


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.element_size() == 1 else t


def test_fp8_storage_at_load_casts_each_tensor_as_it_is_read(tmp_path, monkeypatch):
    """load_model(storage_dtype=fp8) gives the same weights, bit for bit, as loading in bf16 and then enabling fp8
    storage, and every fp8-stored weight is placed in fp8: no bf16 copy of the model is ever held (at real size
    the bf16 copy is 22 GB, the fp8 model 11 GB). A motion branch copied from the RGB weights gets its own tensors."""
    from comovi_core.model import loading
    from comovi_core.model.saving import save_checkpoint

    path = save_checkpoint(_model(), tmp_path / "base.safetensors", "wan_original")  # RGB only: motion is copied
    placed = {}
    real = loading._set_tensor
    monkeypatch.setattr(loading, "_set_tensor", lambda m, k, v: placed.setdefault(k, v.dtype) and real(m, k, v))
    streamed, _ = loading.load_model(CFG, path, dtype=torch.bfloat16, storage_dtype=torch.float8_e4m3fn)
    monkeypatch.setattr(loading, "_set_tensor", real)
    later, _ = loading.load_model(CFG, path, dtype=torch.bfloat16)
    enable_fp8_storage(later, compute_dtype=torch.bfloat16)
    a, b = streamed.state_dict(), later.state_dict()
    assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(_bits(a[k]), _bits(b[k])) for k in a)
    fp8 = [k for k, v in a.items() if v.dtype == torch.float8_e4m3fn]
    assert len(fp8) == 80 and all(placed[k] == torch.float8_e4m3fn for k in fp8)
    inputs = [x.to(torch.bfloat16) for x in _inputs()]
    with torch.no_grad():
        assert torch.equal(streamed(*inputs).rgb, later(*inputs).rgb)
    rgb, motion = streamed.rgb.blocks[0].attn1.to_q.weight, streamed.motion.blocks[0].attn1.to_q.weight
    assert torch.equal(_bits(rgb), _bits(motion)) and rgb.data_ptr() != motion.data_ptr()
