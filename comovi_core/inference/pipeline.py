"""Co-generation pipeline: (start image, prompt, start SMPL pose) -> RGB video, motion-map video, SMPL motion.

Components are plain objects so hosts can swap them (ComfyUI passes its own VAE / CONDITIONING):
``transformer`` (CoMoViTransformer), ``vae`` (AutoencoderKLWan-like), ``text_encoder`` (callable:
list of prompts -> (B, text_len, text_dim)), ``body_model`` (comovi_core.body.smpl.BodyModel), and optionally
``estimator`` (HMR 2.0 / CameraHMR or any ``capture.video.BatchEstimator``): without a 3D head, the motion-map fit then
starts from its per-frame estimates of the generated video.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..body.motion_file import SMPLMotion
from ..body.rotations import axis_angle_to_rot6d, rot6d_to_axis_angle
from ..codecs.text import pad_embeddings
from ..codecs.vae import decode_latents, encode_frames
from ..errors import CoMoViError
from ..model.step_cache import StepCacheConfig
from ..motion_map.render import render_motion
from .inputs import check_inputs
from .sampling import sample

QUALITY_MAX_SIDE, QUALITY_MAX_FRAMES = 320, 17  # the motion-vs-map check samples pixels and frames (a cheap estimate)
DEFAULT_NEGATIVE = "blurry, low quality, static, distorted body, extra limbs, watermark, text"


@dataclass
class GenerationResult:
    rgb: torch.Tensor  # (F, H, W, 3) in [0, 1]
    motion_map: torch.Tensor  # (F, H, W, 3) in [0, 1], channels (sem, ny, nx)
    motion: (
        SMPLMotion | None
    )  # SMPL motion (3D head, or fitted to the motion map); None only with fit_motion=False and no head
    timings: dict = field(default_factory=dict)  # seconds per stage
    motion_source: str = "none"  # "3d_head", "fitted_to_motion_map" or "none"
    motion_quality: dict = field(
        default_factory=dict
    )  # the motion rendered vs the generated motion map (evaluate.consistency)
    evaluations: dict = field(
        default_factory=dict
    )  # transformer calls of the denoising loop: computed, reused (step cache)
    fit_info: dict = field(default_factory=dict)  # the fit: "started_from" (words), "frame_sources" (per frame)

    def describe_motion(self) -> str:
        """One line for people: where the 3D motion came from and how well it matches the motion map."""
        if self.motion is None:
            return "no 3D motion: the weights have no 3D head and fitting was off"
        source = {
            "3d_head": "from the 3D head",
            "fitted_to_motion_map": "fitted to the generated motion map (no 3D head)",
        }
        q = self.motion_quality
        return (
            (
                f"3D motion {source.get(self.motion_source, self.motion_source)}, {self.motion.num_frames} frames; "
                "against the "
                f"motion map: silhouette IoU {q['silhouette_iou']:.2f}, part agreement {q['part_agreement']:.2f}, "
                f"normal error {q['normal_error_deg']:.1f} deg"
            )
            + self._describe_fit()
            + self._describe_feet()
        )

    def _describe_fit(self) -> str:
        if "started_from" not in self.fit_info:
            return ""
        sources = self.fit_info.get("frame_sources", [])
        kept = [t for t, source in enumerate(sources) if source == "estimate"]
        where = f" (frames {', '.join(map(str, kept))})" if 0 < len(kept) <= 12 else ""
        estimates = f"; the estimate kept in {len(kept)} of {len(sources) - 1} frames{where}" if sources else ""
        return f"; fit started from {self.fit_info['started_from']}{estimates}"

    def _describe_feet(self) -> str:
        contact = self.motion.foot_contact
        if contact is None:
            return ""
        left, right = (int(n) for n in contact.sum(0))
        return f"; feet standing (locked): left {left}, right {right} of {contact.shape[0]} frames"


def start_pose_6d(motion: SMPLMotion) -> torch.Tensor:
    """(1, 144): frame 0's 24 joint rotations (global_orient first) as 6D."""
    pose = motion.full_pose[0].reshape(24, 3)
    return axis_angle_to_rot6d(torch.from_numpy(pose)).reshape(1, 144)


def motion_from_6d(smpl_6d: torch.Tensor, start: SMPLMotion, camera, fps: float) -> SMPLMotion:
    """Head output (P, 144) + the start pose -> a SMPLMotion of P+1 frames (betas, transl, camera of the start)."""
    rotvec = rot6d_to_axis_angle(smpl_6d.float().reshape(-1, 24, 6).cpu()).numpy()  # (P, 24, 3)
    first = start.full_pose[:1].reshape(1, 24, 3)
    poses = np.concatenate([first, rotvec]).astype(np.float32)
    frames = poses.shape[0]
    return SMPLMotion(
        poses[:, 0],
        poses[:, 1:].reshape(frames, 69),
        start.betas,
        np.repeat(start.transl[:1], frames, 0),
        fps,
        camera,
        start.gender,
    )


class CoMoViPipeline:
    def __init__(
        self,
        transformer,
        vae,
        text_encoder,
        body_model,
        device="cpu",
        render_backend: str = "auto",
        offload: bool = False,
        placement=None,
        estimator=None,
    ):
        self.transformer, self.vae, self.text_encoder, self.body_model = transformer, vae, text_encoder, body_model
        self.estimator = estimator  # per-frame bodies of the generated video: where the motion-map fit starts
        self.device = torch.device(device)
        self.render_backend = render_backend
        self.offload = offload  # model_offload: each component visits the device only while it works
        self.placement = (
            placement  # host hook: placement(module) -> context manager with ``module`` on the device inside
        )

    def _on_device(self, module):
        """``module`` on the device for the block: the host's ``placement``, else (``offload``) moved there and back."""
        if not isinstance(module, torch.nn.Module):
            return contextlib.nullcontext()
        if self.placement is not None:
            return self.placement(module)
        if not self.offload or getattr(module, "block_swap", None) is not None:  # block swap places its own layers
            return contextlib.nullcontext()
        return self._offloaded(module)

    @contextlib.contextmanager
    def _offloaded(self, module):
        module.to(self.device)
        try:
            yield
        finally:
            module.to("cpu")

    def _check_embeds(self, embeds: torch.Tensor, what: str) -> torch.Tensor:
        """(L, D) or (1, L, D) text embeddings -> (1, text_len, D), zero-padded; D must be the model's text size."""
        config = self.transformer.comovi_config
        embeds = embeds[None] if embeds.dim() == 2 else embeds
        if embeds.dim() != 3 or embeds.shape[0] != 1 or embeds.shape[-1] != config.text_dim:
            raise CoMoViError(
                f"{what} embeddings have shape {tuple(embeds.shape)}; this model needs (1, tokens, "
                f"{config.text_dim}): use the umT5-XXL text encoder (ComfyUI: CLIP type 'wan')"
            )
        return pad_embeddings([embeds[0].float()], config.text_len)

    def render_motion_maps(self, motion: SMPLMotion, camera, frames=None) -> torch.Tensor:
        """(T, H, W, 3) motion maps of ``motion`` (all frames, or the first ``frames``)."""
        return render_motion(self.body_model, motion, camera, "comovi_v1", self.render_backend, frames).images

    def __call__(
        self,
        image: torch.Tensor,
        prompt: str,
        *,
        start: SMPLMotion,
        num_frames: int = 81,
        steps: int = 50,
        guidance: float = 6.0,
        shift: float = 5.0,
        solver: str = "unipc",
        seed: int = 0,
        negative_prompt: str = DEFAULT_NEGATIVE,
        mode: str = "cogenerate",
        given: torch.Tensor | SMPLMotion | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        callback=None,
        fps: float = 16.0,
        fit_motion: bool = True,
        fit_callback=None,
        step_cache: StepCacheConfig | None = None,
    ) -> GenerationResult:
        """image (3, H, W) in [0, 1], already padded to the target size (``inputs.pad_to_aspect``); ``prompt``:
        the text (ignored where ``prompt_embeds`` are given); the rest is keyword-only. ``start``: frame 0 is the
        start pose and camera. The request is checked first (``inputs.check_inputs``). ``given``: the SMPL motion
        to follow (``motion_to_video``) or the video (T, H, W, 3) in [0, 1] to read (``video_to_motion``).

        Without a 3D head, ``fit_motion`` recovers the SMPL motion by fitting the body to the generated
        motion map (``comovi_core.recovery.fitting``; ``fit_callback(step, total)`` reports its progress). With an
        ``estimator`` the fit starts from its per-frame estimates of the generated video (``_estimates``; the
        result's ``fit_info`` says per frame whether the fit or the estimate was kept).
        ``step_cache`` skips the transformer's blocks on steps where their input barely changed
        (``comovi_core.model.step_cache``); None (default) computes every step.
        """
        # 1. check inputs
        _, height, width = image.shape
        check_inputs(
            height=height,
            width=width,
            num_frames=num_frames,
            steps=steps,
            guidance=guidance,
            shift=shift,
            prompt=prompt,
            prompt_embeds=prompt_embeds,
            mode=mode,
            given=given,
        )
        camera = start.camera.padded_to(height, width)  # the start image is padded the same way
        timings = {}
        # 2. text
        with _timed(timings, "text"):
            prompt_embeds, negative_prompt_embeds = self._encode_text(
                prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, guidance
            )
        # 3. first frames (and the given video or motion) into latents
        with _timed(timings, "encode"):
            rgb_cond, motion_cond, given_latents = self._encode_conditions(
                image, start, camera, num_frames, mode, given
            )
        # 4. the joint denoising loop
        with _timed(timings, "denoise"):
            generator = torch.Generator(self.device).manual_seed(seed)
            head = self.transformer.smpl_head is not None
            with torch.no_grad(), self._on_device(self.transformer):
                result = sample(
                    self.transformer,
                    rgb_cond,
                    motion_cond,
                    (num_frames - 1) // 4 + 1,
                    prompt_embeds.to(self.device),
                    negative_prompt_embeds=_to(negative_prompt_embeds, self.device),
                    start_pose_6d=start_pose_6d(start).to(self.device) if head else None,
                    steps=steps,
                    guidance=guidance,
                    shift=shift,
                    solver=solver,
                    generator=generator,
                    mode=mode,
                    given_latents=given_latents,
                    callback=callback,
                    step_cache=step_cache,
                )
        # 5. latents to frames
        with _timed(timings, "decode"), torch.no_grad(), self._on_device(self.vae):
            rgb, motion_map = self._to_frames(result.rgb), self._to_frames(result.motion)
        # 6. the 3D motion: from the head, else fitted to the generated motion map; and how well it agrees
        smpl, source, quality, fit_info = self._recover_motion(
            result.smpl_6d, rgb, motion_map, start, camera, fps, fit_motion, fit_callback, timings
        )
        return GenerationResult(rgb, motion_map, smpl, timings, source, quality, result.evaluations, fit_info)

    def _encode_text(self, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, guidance):
        """-> (prompt, negative prompt or None without guidance) embeddings, (1, text_len, D) each."""
        need_negative = guidance > 1 and negative_prompt_embeds is None
        if (prompt_embeds is None or need_negative) and self.text_encoder is None:
            raise CoMoViError(
                "no text encoder is loaded: give prompt embeddings (ComfyUI: connect positive and "
                "negative CONDITIONING from a umT5-XXL text encoder), or load the umT5 text encoder"
            )
        with self._on_device(getattr(self.text_encoder, "model", None)):
            if prompt_embeds is None:
                prompt_embeds = self.text_encoder([prompt])
            if need_negative:
                negative_prompt_embeds = self.text_encoder([negative_prompt])
        prompt_embeds = self._check_embeds(prompt_embeds, "prompt")
        if guidance <= 1:
            return prompt_embeds, None
        return prompt_embeds, self._check_embeds(negative_prompt_embeds, "negative prompt")

    def _encode_conditions(self, image, start, camera, num_frames, mode, given):
        """The start image and the start pose's motion map -> latent frame 0 of each branch; in the one-sided
        modes also the given motion (rendered) or video (both checked by ``check_inputs``) -> its latents.
        -> (rgb_cond, motion_cond, given or None)"""
        start_map = self.render_motion_maps(start, camera, frames=1)[0]  # (H, W, 3)
        given_latents = None
        with torch.no_grad(), self._on_device(self.vae):
            rgb_cond = encode_frames(self.vae, (image * 2 - 1)[None, :, None].to(self.device))
            motion_cond = encode_frames(self.vae, self._as_video(start_map[None]))
            if mode == "motion_to_video":
                given_latents = encode_frames(
                    self.vae, self._as_video(self.render_motion_maps(given, camera, num_frames))
                )
            elif mode == "video_to_motion":
                given_latents = encode_frames(self.vae, self._as_video(given[:num_frames]))
        return rgb_cond, motion_cond, given_latents

    def _as_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) in [0, 1] -> (1, 3, T, H, W) in [-1, 1] on the pipeline's device."""
        return (frames * 2 - 1).permute(3, 0, 1, 2)[None].to(self.device)

    def _to_frames(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, C, f, h, w) latents -> (T, H, W, 3) frames in [0, 1] on the CPU."""
        return ((decode_latents(self.vae, latents)[0] + 1) / 2).permute(1, 2, 3, 0).cpu()

    def _recover_motion(self, smpl_6d, rgb, motion_map, start, camera, fps, fit_motion, fit_callback, timings):
        """-> (SMPLMotion or None, its source, its agreement with the motion map, the fit's info)."""
        smpl, source, quality, fit_info = None, "none", {}, {}
        if smpl_6d is not None:
            smpl, source = motion_from_6d(smpl_6d[0], start, camera, fps), "3d_head"
        elif fit_motion:
            from ..recovery.fitting import fit_motion as fit

            init, fit_info["started_from"] = None, "the start pose"
            if self.estimator is not None:
                with _timed(timings, "estimate"):
                    init, fit_info["started_from"] = self._estimates(rgb, motion_map, start, camera, fps)
            report = {}
            with _timed(timings, "fit"):
                smpl = fit(
                    self.body_model,
                    motion_map,
                    start=start,
                    camera=camera,
                    fps=fps,
                    device=self.device,
                    callback=fit_callback,
                    init=init,
                    report=report,
                )
            if init is not None:
                fit_info["frame_sources"] = report["frame_sources"]
            source = "fitted_to_motion_map"
        if smpl is not None:
            from ..evaluation.run import consistency

            with _timed(timings, "quality"):
                stride = max(1, max(motion_map.shape[1:3]) // QUALITY_MAX_SIDE)
                found = consistency(self.body_model, smpl, motion_map, self.render_backend, QUALITY_MAX_FRAMES, stride)
            quality = {k: round(float(v), 4) for k, v in found.items()}
        return smpl, source, quality, fit_info

    def _estimates(self, rgb, motion_map, start, camera, fps) -> tuple[SMPLMotion | None, str]:
        """The estimator's per-frame bodies of the generated video for the fit to start from
        (``capture.video.estimates_for_fit``), the estimator on the device while it works."""
        from ..capture.video import estimates_for_fit

        network = getattr(self.estimator, "model", self.estimator)  # CameraHMR wraps its network
        placed = self._offloaded(network) if isinstance(network, torch.nn.Module) else contextlib.nullcontext()
        with torch.no_grad(), placed:  # hosts do not manage the estimator
            return estimates_for_fit(
                rgb, motion_map, start, camera, fps, estimator=self.estimator, body=self.body_model
            )


@contextlib.contextmanager
def _timed(timings: dict, name: str):
    """Adds the wall seconds of the block to ``timings[name]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def _to(tensor: torch.Tensor | None, device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)
