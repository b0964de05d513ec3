"""The joint sampler: parity with diffusers' Wan2.2 TI2V pipeline, seeds, callback, modes."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

import comovi_core.codecs.tiny
from comovi_core.codecs.vae import decode_latents, encode_frames
from comovi_core.errors import CoMoViError
from comovi_core.inference.sampling import make_scheduler, sample
from comovi_core.model.config import get_config
from comovi_core.model.loading import build_model

CFG = get_config("tiny")
H = W = 64
FRAMES = 9


def tiny_vae():
    """The tiny preset's VAE with latent statistics other than 0 and 1, so that (de)normalisation is exercised."""
    return comovi_core.codecs.tiny.tiny_vae(3, latents_mean=0.1, latents_std=1.5)


def tiny_model(cfg=CFG):
    """Random weights as in ``tiny.tiny_transformer``, except the coupling (``zero_linears``) and the 3D head, which
    keep the weights they are built with."""
    torch.manual_seed(0)
    model = build_model(cfg, "cpu").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(("zero_linears", "smpl_head")):
                p.copy_(torch.randn_like(p) * 0.05 + (1.0 if "norm_" in name else 0.0))
    return model


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, H, W, generator=g)
    emb, neg = (
        torch.randn(1, CFG.text_len, CFG.text_dim, generator=g),
        torch.randn(1, CFG.text_len, CFG.text_dim, generator=g),
    )
    vae = tiny_vae()
    with torch.no_grad():
        cond = encode_frames(vae, (image * 2 - 1)[None, :, None])
    return dict(image=image, emb=emb, neg=neg, vae=vae, cond=cond, model=tiny_model())


@pytest.mark.parametrize("solver", ["unipc", "euler"])
def test_rgb_latents_equal_diffusers_ti2v_pipeline(setup, solver):
    """Zero-linears at zero: our joint loop's RGB latents are diffusers' Wan2.2 TI2V latents."""
    model, vae = setup["model"], setup["vae"]
    ref = WanTransformer3DModel(**CFG.wan_kwargs()).eval()
    ref.load_state_dict(model.rgb.state_dict())
    pipe = WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        scheduler=make_scheduler(solver, 5.0),
        transformer=ref,
        image_encoder=None,
        image_processor=None,
        expand_timesteps=True,
    )
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        expected = pipe(
            image=setup["image"],
            prompt_embeds=setup["emb"],
            negative_prompt_embeds=setup["neg"],
            height=H,
            width=W,
            num_frames=FRAMES,
            num_inference_steps=4,
            guidance_scale=6.0,
            generator=torch.Generator().manual_seed(7),
            output_type="latent",
        ).frames
        ours = sample(
            model,
            setup["cond"],
            torch.zeros_like(setup["cond"]),
            3,
            setup["emb"],
            negative_prompt_embeds=setup["neg"],
            steps=4,
            guidance=6.0,
            solver=solver,
            generator=torch.Generator().manual_seed(7),
        )
    assert ours.rgb.shape == expected.shape == (1, 48, 3, 4, 4)
    torch.testing.assert_close(ours.rgb, expected, rtol=0, atol=2e-5)


def _run(setup, seed, **kw):
    with torch.no_grad():
        return sample(
            setup["model"],
            setup["cond"],
            -setup["cond"],
            3,
            setup["emb"],
            negative_prompt_embeds=setup["neg"],
            steps=3,
            generator=torch.Generator().manual_seed(seed),
            **kw,
        )


def test_seeds_are_reproducible_and_start_frames_are_kept(setup):
    a, b, c = _run(setup, 5), _run(setup, 5), _run(setup, 6)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.motion, b.motion)
    assert not torch.equal(a.rgb, c.rgb)
    assert torch.equal(a.rgb[:, :, :1], setup["cond"]) and torch.equal(a.motion[:, :, :1], -setup["cond"])


def test_callback_reports_every_step_and_can_cancel(setup):
    seen = []
    _run(setup, 0, callback=lambda i, n, t, latents, denoised: seen.append((i, n, latents[0].shape)))
    assert [s[0] for s in seen] == [0, 1, 2] and all(s[1] == 3 and s[2] == (1, 48, 3, 4, 4) for s in seen)

    class Cancelled(Exception):
        pass

    def cancel(i, n, t, latents, denoised):
        if i == 1:
            raise Cancelled()

    with pytest.raises(Cancelled):
        _run(setup, 0, callback=cancel)


def test_3d_head_and_modes(setup):
    model = tiny_model()
    with torch.no_grad():
        for p in [*model.smpl_head.parameters(), *model.zero_linears.parameters()]:
            p.copy_(torch.randn_like(p) * 0.05)  # a "trained" coupling: the motion stream steers RGB
    setup = dict(setup, model=model)
    pose = torch.randn(1, 144)
    out = _run(setup, 1, start_pose_6d=pose)
    assert out.smpl_6d.shape == (1, 8, 144) and torch.isfinite(out.smpl_6d).all()
    given = torch.randn(1, 48, 3, 4, 4)
    m2v = _run(setup, 1, mode="motion_to_video", given_latents=given)
    assert torch.equal(m2v.motion, given) and not torch.equal(m2v.rgb, out.rgb)
    v2m = _run(setup, 1, mode="video_to_motion", given_latents=given)
    assert torch.equal(v2m.rgb, given)
    with pytest.raises(CoMoViError, match="needs given latents"):
        _run(setup, 1, mode="video_to_motion")
    with pytest.raises(CoMoViError, match="unknown solver"):
        _run(setup, 1, solver="ddim")


def test_vae_round_trip_shapes(setup):
    frames = torch.rand(1, 3, FRAMES, H, W) * 2 - 1
    with torch.no_grad():
        lat = encode_frames(setup["vae"], frames)
        back = decode_latents(setup["vae"], lat)
    assert lat.shape == (1, 48, 3, 4, 4) and back.shape == (1, 3, FRAMES, H, W) and float(back.abs().max()) <= 1.0


def test_callback_denoised_estimate_is_the_euler_result_at_the_last_step(setup):
    """x0 = x_t - sigma v: Euler's last step goes to sigma 0, so its estimate is the sampler's result."""
    seen = []
    out = _run(setup, 0, solver="euler", callback=lambda i, n, t, latents, denoised: seen.append(denoised))
    rgb_x0, motion_x0 = seen[-1]
    assert torch.allclose(rgb_x0[:, :, 1:], out.rgb[:, :, 1:], atol=1e-5)
    assert torch.allclose(motion_x0[:, :, 1:], out.motion[:, :, 1:], atol=1e-5)
    assert (seen[0][0] - out.rgb)[:, :, 1:].abs().max() > 1e-2  # the first estimate is still far from it
