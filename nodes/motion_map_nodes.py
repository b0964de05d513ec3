"""RenderMotionMap: SMPL motion -> motion-map IMAGE batch and body MASK; PreviewSMPLOverlay: the body over a video."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..comovi_core.motion_map.overlay import overlay_motion
from ..comovi_core.motion_map.render import BACKENDS, iter_motion
from ..comovi_core.motion_map.shading import DEFAULT_SHADING, SHADINGS
from . import host
from .sockets import SMPLModel, SMPLMotion


class RenderMotionMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViRenderMotionMap",
            display_name="Render Motion Map (CoMoVi)",
            category="CoMoVi/body",
            description="Renders the SMPL body as CoMoVi's 2D motion map (normals + body parts).",
            inputs=[
                SMPLModel.Input("smpl_model"),
                SMPLMotion.Input("smpl_motion"),
                io.Int.Input("width", default=0, min=0, max=8192, step=2, tooltip="0 = the motion's camera size"),
                io.Int.Input("height", default=0, min=0, max=8192, step=2, tooltip="0 = the motion's camera size"),
                io.Combo.Input(
                    "shading",
                    options=list(SHADINGS),
                    default=DEFAULT_SHADING,
                    tooltip="comovi_v1 matches the released model's training data; flat is the paper's unshaded map",
                ),
                io.Combo.Input(
                    "backend",
                    options=list(BACKENDS),
                    default="auto",
                    tooltip="torch needs no OpenGL; pyrender uses OpenGL (EGL/OSMesa); auto: torch on GPU "
                    "and for small clips, OpenGL for large clips on CPU when it works",
                ),
            ],
            outputs=[io.Image.Output(display_name="motion_map"), io.Mask.Output(display_name="mask")],
        )

    @classmethod
    def execute(cls, smpl_model, smpl_motion, width, height, shading, backend) -> io.NodeOutput:
        camera = smpl_motion.camera
        if width or height:
            camera = camera.resized(height or camera.height, width or camera.width)
        model = smpl_model.to(host.torch_device())
        progress = host.Progress(smpl_motion.num_frames)
        images, masks = [], []
        with torch.inference_mode():
            for chunk in iter_motion(model, smpl_motion, camera, shading, backend):
                images.append(chunk.images.cpu())
                masks.append(chunk.mask.float().cpu())
                progress.step(len(chunk.images))
        return io.NodeOutput(torch.cat(images), torch.cat(masks))


class PreviewSMPLOverlay(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViPreviewSMPLOverlay",
            display_name="SMPL Overlay Preview (CoMoVi)",
            category="CoMoVi/body",
            description=(
                "Draws the SMPL motion (as its motion map) over the video: check that the 3D motion follows the person."
            ),
            inputs=[
                SMPLModel.Input("smpl_model"),
                SMPLMotion.Input("smpl_motion"),
                io.Image.Input("video", tooltip="frames the motion belongs to (e.g. the sampler's video)"),
                io.Float.Input("opacity", default=0.6, min=0.0, max=1.0, step=0.05),
            ],
            outputs=[io.Image.Output(display_name="preview")],
        )

    @classmethod
    def execute(cls, smpl_model, smpl_motion, video, opacity) -> io.NodeOutput:
        return io.NodeOutput(overlay_motion(smpl_model.to(host.torch_device()), smpl_motion, video, opacity))
