"""Co-generation in ComfyUI: load the CoMoVi components, then one joint sampling node."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io
from PIL import Image

from ..comovi_core.capture.video import graph_estimator
from ..comovi_core.errors import CoMoViError
from ..comovi_core.inference.components import AUTO_SIZE, TransformerOptions, load_components, load_transformer
from ..comovi_core.inference.inputs import check_inputs, pad_to_aspect
from ..comovi_core.inference.pipeline import DEFAULT_NEGATIVE, CoMoViPipeline
from ..comovi_core.inference.sampling import GENERATION_MODES, SOLVERS
from ..comovi_core.model.memory import ATTENTION_BACKENDS
from ..comovi_core.model.step_cache import describe_evaluations
from ..comovi_core.recovery.fitting import progress_steps
from . import host
from .adapters import conditioning_embeds, vae_codec
from .body_nodes import DEMO_ESTIMATOR
from .managed import ManagedCoMoVi
from .previews import side_by_side_preview, wan22_previewer
from .sockets import CoMoViModels, SMPLModel, SMPLMotion, StepCache

NO_COMOVI = "none (base only: untrained copy)"
SIZES = (AUTO_SIZE, "wan2.2-ti2v-5b", "tiny")  # auto: read from the weights
TINY_DEMO = "tiny demo (random weights, built in memory: pictures are noise)"
FIT_FROM_START = "none: fit from the start pose"
TINY_SUMMARY = (
    "tiny demo: random weights built in memory, NOT a trained model; the pictures are noise, the plumbing is real"
)


def _tiny_demo(attention: str = "sdpa", compile: bool = False) -> ManagedCoMoVi:
    from ..comovi_core.inference.tiny import tiny_components
    from ..comovi_core.model.memory import compile_blocks, set_attention_backend

    components, summary = tiny_components(0), TINY_SUMMARY
    set_attention_backend(components["transformer"], attention, host.torch_device())
    if compile:
        summary += f"; torch.compile: {compile_blocks(components['transformer'])} blocks"
    return ManagedCoMoVi(**components, summary=summary)


class LoadCoMoVi(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViLoadModels",
            display_name="Load CoMoVi (CoMoVi)",
            category="CoMoVi",
            description=(
                "Wan2.2-TI2V-5B (diffusers folder in models/diffusers: transformer, VAE, umT5) plus the "
                "CoMoVi weights from models/diffusion_models."
            ),
            inputs=[
                io.Combo.Input(
                    "base",
                    options=host.diffusers_folders() + [TINY_DEMO],
                    tooltip="Wan2.2-TI2V-5B-Diffusers folder in "
                    "models/diffusers; the tiny demo needs no download (random weights: noise)",
                ),
                io.Combo.Input(
                    "comovi",
                    options=[NO_COMOVI] + host.diffusion_model_files(),
                    tooltip="CoMoVi .safetensors in models/diffusion_models",
                ),
                *_weight_options(),
            ],
            outputs=[CoMoViModels.Output(display_name="comovi")],
        )

    @classmethod
    def execute(
        cls, base, comovi, precision, fp8_weights, block_swap, offload, size, attention="sdpa", compile=False
    ) -> io.NodeOutput:
        if base == TINY_DEMO:
            return io.NodeOutput(_tiny_demo(attention, compile))
        files = [] if comovi == NO_COMOVI else [host.diffusion_model_path(comovi)]
        options = _load_options(precision, fp8_weights, block_swap, size, attention, compile)
        components, summary = load_components(host.diffusers_folder(base), files, options)
        return io.NodeOutput(ManagedCoMoVi(**components, summary=summary, offload=offload))


def _load_options(
    precision: str, fp8_weights: bool, block_swap: int, size: str, attention: str = "sdpa", compile: bool = False
) -> TransformerOptions:
    """The loaders' widgets (``_weight_options``) as ``TransformerOptions``. The weights always load into CPU
    memory (``offload``): ``ManagedCoMoVi`` hands them to ComfyUI's model management, which places them."""
    return TransformerOptions(
        size,
        getattr(torch, precision),
        host.torch_device(),
        fp8=fp8_weights,
        block_swap=block_swap,
        offload=True,
        attention=attention,
        compile=compile,
    )


def _weight_options() -> list:
    """The loaders' shared widgets, in this order: precision, fp8_weights, block_swap, offload, size, attention,
    compile (the last two added later: templates saved before them load with their defaults)."""
    return [
        io.Combo.Input("precision", options=["bfloat16", "float16", "float32"], default="bfloat16"),
        io.Boolean.Input(
            "fp8_weights", default=False, tooltip="store transformer weights in fp8 (about 10 GB instead of 20)"
        ),
        io.Int.Input(
            "block_swap", default=0, min=0, max=30, tooltip="layer pairs kept in CPU memory and swapped in per layer"
        ),
        io.Boolean.Input(
            "offload",
            default=False,
            tooltip="keep the weights in CPU memory; they visit the GPU only while they work (24 GB cards)",
        ),
        io.Combo.Input(
            "size",
            options=list(SIZES),
            default=SIZES[0],
            tooltip="size of the weight files; auto reads it from them (a named size must match)",
        ),
        io.Combo.Input(
            "attention",
            options=list(ATTENTION_BACKENDS),
            default="sdpa",
            tooltip="attention kernel (diffusers' dispatcher): sdpa = PyTorch's choice, works everywhere; flash, "
            "sage, xformers need their package and a CUDA GPU (refused when the model loads otherwise)",
        ),
        io.Boolean.Input(
            "compile",
            default=False,
            tooltip="torch.compile the transformer blocks: the first run compiles (minutes), later runs are faster",
        ),
    ]


class LoadCoMoViTransformer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = host.diffusion_model_files()
        return io.Schema(
            node_id="CoMoViLoadTransformer",
            display_name="Load CoMoVi Transformer (CoMoVi)",
            category="CoMoVi",
            description=(
                "Single files from models/diffusion_models: the Wan2.2-TI2V-5B transformer "
                "(e.g. wan2.2_ti2v_5B_fp16.safetensors) plus the CoMoVi weights. "
                "Connect ComfyUI's Wan2.2 VAE and umT5 CONDITIONING to the sampler."
            ),
            inputs=[
                io.Combo.Input(
                    "base",
                    options=files + [TINY_DEMO],
                    tooltip="Wan2.2-TI2V-5B transformer file (wan2.2_ti2v_5B_fp16."
                    "safetensors); the tiny demo needs no download (random weights: noise)",
                ),
                io.Combo.Input(
                    "comovi", options=[NO_COMOVI] + files, tooltip="CoMoVi weights, loaded on top of the base"
                ),
                *_weight_options(),
            ],
            outputs=[CoMoViModels.Output(display_name="comovi")],
        )

    @classmethod
    def execute(
        cls, base, comovi, precision, fp8_weights, block_swap, offload, size, attention="sdpa", compile=False
    ) -> io.NodeOutput:
        if base == TINY_DEMO:  # carries its own tiny VAE and text encoder: leave the sampler's vae/text inputs empty
            return io.NodeOutput(_tiny_demo(attention, compile))
        files = [host.diffusion_model_path(base)] + ([] if comovi == NO_COMOVI else [host.diffusion_model_path(comovi)])
        options = _load_options(precision, fp8_weights, block_swap, size, attention, compile)
        transformer, summary = load_transformer(files, options)
        return io.NodeOutput(ManagedCoMoVi(transformer, None, None, summary, offload))


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
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF, control_after_generate=True),
                io.Combo.Input("solver", options=list(SOLVERS), default="unipc"),
                io.Combo.Input("mode", options=list(GENERATION_MODES), default="cogenerate"),
                io.Boolean.Input(
                    "fit_motion",
                    default=True,
                    tooltip="weights without a 3D head: fit SMPL to the generated motion map",
                ),
                SMPLMotion.Input("given_motion", optional=True, tooltip="motion_to_video: the motion to follow"),
                io.Image.Input("given_video", optional=True, tooltip="video_to_motion: the video to read"),
                io.Vae.Input(
                    "vae", optional=True, tooltip="ComfyUI's Wan2.2 VAE (wan2.2_vae.safetensors); replaces the loader's"
                ),
                io.Conditioning.Input(
                    "positive", optional=True, tooltip="umT5-XXL text (CLIP type 'wan'); replaces the prompt text"
                ),
                io.Conditioning.Input(
                    "negative", optional=True, tooltip="umT5-XXL negative text; replaces the negative prompt text"
                ),
                StepCache.Input(
                    "step_cache",
                    optional=True,
                    tooltip="CoMoVi Step Cache: reuse the transformer on steps "
                    "where its input barely changed (faster; motion_info reports the steps reused)",
                ),
                io.Combo.Input(
                    "fit_estimator",
                    options=[FIT_FROM_START, DEMO_ESTIMATOR] + host.estimator_files(),
                    default=FIT_FROM_START,
                    optional=True,
                    tooltip="weights without a 3D head: start the motion-map fit from this estimator's per-frame "
                    "bodies of the generated video (HMR 2.0 or CameraHMR in models/smpl_estimators; more accurate "
                    "and faster than from the start pose); motion_info says per frame which was kept",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="video"),
                io.Image.Output(display_name="motion_map"),
                SMPLMotion.Output(display_name="smpl_motion"),
                io.String.Output(
                    display_name="motion_info",
                    tooltip="where the 3D motion came from (3D head or fitted to "
                    "the motion map) and how well it matches the motion map (silhouette IoU, part agreement)",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        comovi,
        smpl_model,
        start_pose,
        start_image,
        prompt,
        negative_prompt,
        width,
        height,
        length,
        steps,
        cfg,
        shift,
        seed,
        solver,
        mode,
        fit_motion=True,
        given_motion=None,
        given_video=None,
        vae=None,
        positive=None,
        negative=None,
        step_cache=None,
        fit_estimator=FIT_FROM_START,
    ) -> io.NodeOutput:
        given = given_motion if mode == "motion_to_video" else None
        if mode == "video_to_motion" and given_video is not None:
            given = _video_frames(given_video, height, width)
        embeds = {
            k: conditioning_embeds(c, k) for k, c in (("positive", positive), ("negative", negative)) if c is not None
        }
        check_inputs(
            height=height,
            width=width,
            num_frames=length,
            steps=steps,
            guidance=cfg,
            shift=shift,
            prompt=prompt,
            prompt_embeds=embeds.get("positive"),
            mode=mode,
            given=given,
            names={"guidance": "cfg"},
        )
        codec = vae_codec(vae) if vae is not None else comovi.vae
        if codec is None:
            raise CoMoViError(
                "no VAE: connect Load VAE (wan2.2_vae.safetensors) to the sampler's vae input (in the template, "
                "un-bypass the Load VAE node with Ctrl+B)"
            )
        fitting = fit_motion and comovi.transformer.smpl_head is None  # no 3D head: the motion is fitted after sampling
        estimator = None
        if fitting and fit_estimator != FIT_FROM_START:
            estimator = graph_estimator(
                None if fit_estimator == DEMO_ESTIMATOR else host.estimator_path(fit_estimator), focal_net=None
            )  # the generated video's camera is known: no focal-length network
        pipe = CoMoViPipeline(
            comovi.transformer,
            codec,
            comovi.text_encoder,
            smpl_model.cpu(),
            device=host.torch_device(),
            placement=comovi.on_device,
            estimator=estimator,
        )
        fit_steps = progress_steps(length, init=estimator is not None) if fitting else 0
        progress, previewer = host.Progress(steps + fit_steps), wan22_previewer()
        comovi.transformer.layer_callback = progress.check_interrupt
        try:
            result = pipe(
                _image(start_image[0], height, width),
                prompt,
                start=start_pose,
                num_frames=length,
                steps=steps,
                guidance=cfg,
                shift=shift,
                solver=solver,
                seed=seed,
                negative_prompt=negative_prompt,
                mode=mode,
                given=given,
                prompt_embeds=embeds.get("positive"),
                negative_prompt_embeds=embeds.get("negative"),
                callback=lambda i, n, t, latents, x0: progress.step(preview=side_by_side_preview(previewer, *x0)),
                fit_motion=fit_motion,
                fit_callback=lambda *_: progress.step(),
                step_cache=step_cache,
            )
        finally:
            comovi.transformer.layer_callback = None
        info = result.describe_motion() + (
            "" if step_cache is None else "\n" + describe_evaluations(result.evaluations)
        )
        if fit_estimator != FIT_FROM_START and not fitting:
            why = "these weights have a 3D head" if fit_motion else "fit_motion is off"
            info += f"\nfit_estimator not used: {why} (it starts the fit of weights without a 3D head)"
        return io.NodeOutput(result.rgb, result.motion_map, result.motion, info)


def _image(frame: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """ComfyUI IMAGE frame (H, W, 3) in [0, 1] -> (3, height, width), padded with white to the aspect and resized."""
    return pad_to_aspect(Image.fromarray((frame.cpu().numpy() * 255).round().astype(np.uint8)), height, width)


def _video_frames(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """video_to_motion: an IMAGE batch of any size -> (T, height, width, 3), each frame like the start image."""
    if video.shape[1:3] == (height, width):
        return video
    return torch.stack([_image(frame, height, width).permute(1, 2, 0) for frame in video])
