"""Co-generation in ComfyUI: load the CoMoVi components, then one joint sampling node."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io
from PIL import Image

from ..comovi_core.components import load_components, load_transformer
from ..comovi_core.errors import CoMoViError
from ..comovi_core.fitting import progress_steps
from ..comovi_core.conditioning import pad_to_aspect
from ..comovi_core.pipeline import DEFAULT_NEGATIVE, CoMoViPipeline
from ..comovi_core.sampling import MODES, SOLVERS
from . import host
from .adapters import conditioning_embeds, vae_codec
from .sockets import CoMoViModels, SMPLModel, SMPLMotion

NO_COMOVI = "none (base only: untrained copy)"
SIZES = ("wan2.2-ti2v-5b", "tiny")


class LoadCoMoVi(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViLoadModels",
            display_name="Load CoMoVi (CoMoVi)",
            category="CoMoVi",
            description="Wan2.2-TI2V-5B (diffusers folder in models/diffusers: transformer, VAE, umT5) plus the CoMoVi weights from models/diffusion_models.",
            inputs=[
                io.Combo.Input("base", options=host.diffusers_folders() or ["Wan2.2-TI2V-5B-Diffusers"], tooltip="folder in models/diffusers"),
                io.Combo.Input("comovi", options=[NO_COMOVI] + host.diffusion_model_files(), tooltip="CoMoVi .safetensors in models/diffusion_models"),
                io.Combo.Input("precision", options=["bfloat16", "float16", "float32"], default="bfloat16"),
                io.Boolean.Input("fp8_weights", default=False, tooltip="store transformer weights in fp8 (about 10 GB instead of 20)"),
                io.Int.Input("block_swap", default=0, min=0, max=30, tooltip="layer pairs kept in CPU memory and swapped in per layer"),
                io.Boolean.Input("offload", default=False, tooltip="keep the weights in CPU memory; they visit the GPU only while they work (24 GB cards)"),
                io.Combo.Input("size", options=list(SIZES), default=SIZES[0], tooltip="tiny: the test preset"),
            ],
            outputs=[CoMoViModels.Output(display_name="comovi")],
        )

    @classmethod
    def execute(cls, base, comovi, precision, fp8_weights, block_swap, offload, size) -> io.NodeOutput:
        files = [] if comovi == NO_COMOVI else [host.diffusion_model_path(comovi)]
        components, summary = load_components(host.diffusers_folder(base), files, size, getattr(torch, precision),
                                              host.torch_device(), fp8=fp8_weights, block_swap=block_swap, offload=offload)
        return io.NodeOutput(dict(components, summary=summary, offload=offload))


class LoadCoMoViTransformer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = host.diffusion_model_files()
        return io.Schema(
            node_id="CoMoViLoadTransformer",
            display_name="Load CoMoVi Transformer (CoMoVi)",
            category="CoMoVi",
            description="Single files from models/diffusion_models: the Wan2.2-TI2V-5B transformer (e.g. wan2.2_ti2v_5B_fp16."
                        "safetensors) plus the CoMoVi weights. Connect ComfyUI's Wan2.2 VAE and umT5 CONDITIONING to the sampler.",
            inputs=[
                io.Combo.Input("base", options=files or ["wan2.2_ti2v_5B_fp16.safetensors"], tooltip="Wan2.2-TI2V-5B transformer file"),
                io.Combo.Input("comovi", options=[NO_COMOVI] + files, tooltip="CoMoVi weights, loaded on top of the base"),
                io.Combo.Input("precision", options=["bfloat16", "float16", "float32"], default="bfloat16"),
                io.Boolean.Input("fp8_weights", default=False, tooltip="store transformer weights in fp8 (about 10 GB instead of 20)"),
                io.Int.Input("block_swap", default=0, min=0, max=30, tooltip="layer pairs kept in CPU memory and swapped in per layer"),
                io.Boolean.Input("offload", default=False, tooltip="keep the weights in CPU memory; they visit the GPU only while they work (24 GB cards)"),
                io.Combo.Input("size", options=list(SIZES), default=SIZES[0], tooltip="tiny: the test preset"),
            ],
            outputs=[CoMoViModels.Output(display_name="comovi")],
        )

    @classmethod
    def execute(cls, base, comovi, precision, fp8_weights, block_swap, offload, size) -> io.NodeOutput:
        files = [host.diffusion_model_path(base)] + ([] if comovi == NO_COMOVI else [host.diffusion_model_path(comovi)])
        transformer, summary = load_transformer(files, size, getattr(torch, precision), host.torch_device(),
                                                fp8=fp8_weights, block_swap=block_swap, offload=offload)
        return io.NodeOutput(dict(transformer=transformer, vae=None, text_encoder=None, summary=summary, offload=offload))


class DualSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViDualSampler",
            display_name="CoMoVi Dual Sampler (CoMoVi)",
            category="CoMoVi",
            description="One denoising loop for the video, its motion map and the 3D SMPL motion.",
            inputs=[
                CoMoViModels.Input("comovi"),
                SMPLModel.Input("smpl_model"),
                SMPLMotion.Input("start_pose", tooltip="frame 0 is the start pose and camera"),
                io.Image.Input("start_image"),
                io.String.Input("prompt", multiline=True, default="a person waves both arms"),
                io.String.Input("negative_prompt", multiline=True, default=DEFAULT_NEGATIVE),
                io.Int.Input("width", default=1280, min=32, max=4096, step=32),
                io.Int.Input("height", default=704, min=32, max=4096, step=32),
                io.Int.Input("length", default=81, min=5, max=1001, step=4, tooltip="frames, 4k+1"),
                io.Int.Input("steps", default=50, min=1, max=200),
                io.Float.Input("cfg", default=6.0, min=1.0, max=20.0, step=0.1),
                io.Float.Input("shift", default=5.0, min=0.0, max=20.0, step=0.1),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF),
                io.Combo.Input("solver", options=list(SOLVERS), default="unipc"),
                io.Combo.Input("mode", options=list(MODES), default="cogenerate"),
                io.Boolean.Input("fit_motion", default=True, tooltip="weights without a 3D head: fit SMPL to the generated motion map"),
                SMPLMotion.Input("given_motion", optional=True, tooltip="motion_to_video: the motion to follow"),
                io.Image.Input("given_video", optional=True, tooltip="video_to_motion: the video to read"),
                io.Vae.Input("vae", optional=True, tooltip="ComfyUI's Wan2.2 VAE (wan2.2_vae.safetensors); replaces the loader's"),
                io.Conditioning.Input("positive", optional=True, tooltip="umT5-XXL text (CLIP type 'wan'); replaces the prompt text"),
                io.Conditioning.Input("negative", optional=True, tooltip="umT5-XXL negative text; replaces the negative prompt text"),
            ],
            outputs=[io.Image.Output(display_name="video"), io.Image.Output(display_name="motion_map"),
                     SMPLMotion.Output(display_name="smpl_motion")],
        )

    @classmethod
    def execute(cls, comovi, smpl_model, start_pose, start_image, prompt, negative_prompt, width, height, length, steps,
                cfg, shift, seed, solver, mode, fit_motion=True, given_motion=None, given_video=None, vae=None, positive=None,
                negative=None) -> io.NodeOutput:
        image = Image.fromarray((start_image[0].cpu().numpy() * 255).round().astype(np.uint8))
        given = given_motion if mode == "motion_to_video" else given_video
        codec = vae_codec(vae) if vae is not None else comovi["vae"]
        if codec is None:
            raise CoMoViError("no VAE: connect Load VAE (wan2.2_vae.safetensors) to the sampler's vae input")
        embeds = {k: conditioning_embeds(c, k) for k, c in (("positive", positive), ("negative", negative)) if c is not None}
        pipe = CoMoViPipeline(comovi["transformer"], codec, comovi["text_encoder"], smpl_model.cpu(), device=host.torch_device(),
                              offload=comovi.get("offload", False), make_room=host.free_memory)
        fitting = fit_motion and comovi["transformer"].smpl_head is None  # no 3D head: the motion is fitted after sampling
        progress = host.Progress(steps + (progress_steps(length) if fitting else 0))
        comovi["transformer"].layer_callback = progress.check_interrupt
        try:
            result = pipe(pad_to_aspect(image, height, width), prompt, start_pose, length, steps, cfg, shift, solver, seed,
                          negative_prompt, mode, given, embeds.get("positive"), embeds.get("negative"),
                          callback=lambda *_: progress.step(), fit_motion=fit_motion, fit_callback=lambda *_: progress.step())
        finally:
            comovi["transformer"].layer_callback = None
        return io.NodeOutput(result.rgb, result.motion_map, result.motion)
