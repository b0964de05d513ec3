"""RenderPoseConditions: SMPL motion -> skeleton, depth, normal and mesh IMAGE batches and OpenPose keypoints."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..comovi_core.conditions.render import render_pose_conditions
from ..comovi_core.motion_map.render import BACKENDS
from . import host
from .sockets import PoseKeypoint, SMPLModel, SMPLMotion


class RenderPoseConditions(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViRenderPoseConditions",
            display_name="Render Pose Conditions (CoMoVi)",
            category="CoMoVi/body",
            description="Renders the SMPL motion as pose-condition videos for other video models (Wan-Animate, "
            "UniAnimate, VACE, SCAIL, ControlNets): an OpenPose / DWPose skeleton, depth, normals and the plain "
            "mesh, plus the OpenPose keypoints.",
            inputs=[
                SMPLModel.Input("smpl_model"),
                SMPLMotion.Input("smpl_motion"),
                io.Int.Input("width", default=0, min=0, max=8192, step=2, tooltip="0 = the motion's camera size"),
                io.Int.Input("height", default=0, min=0, max=8192, step=2, tooltip="0 = the motion's camera size"),
                io.Float.Input(
                    "line_scale",
                    default=0.0,
                    min=0.0,
                    max=8.0,
                    step=0.25,
                    tooltip="skeleton limb width in multiples of OpenPose's 4 px; 0 = by image size, as "
                    "comfyui_controlnet_aux's xinsr stick scaling (3 at 1280 px)",
                ),
                io.Combo.Input(
                    "backend",
                    options=list(BACKENDS),
                    default="auto",
                    tooltip="renderer of depth, normal and mesh: torch needs no OpenGL; pyrender uses OpenGL",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="skeleton"),
                io.Image.Output(display_name="depth"),
                io.Image.Output(display_name="normal"),
                io.Image.Output(display_name="mesh"),
                PoseKeypoint.Output(display_name="pose_keypoint"),
            ],
        )

    @classmethod
    def execute(cls, smpl_model, smpl_motion, width, height, line_scale, backend) -> io.NodeOutput:
        camera = getattr(smpl_motion, "camera", None)
        if camera is not None and (width or height):
            camera = camera.resized(height or camera.height, width or camera.width)
        model = smpl_model.to(host.torch_device()) if isinstance(smpl_model, torch.nn.Module) else smpl_model
        progress = host.Progress(getattr(smpl_motion, "num_frames", 0))
        with torch.inference_mode():
            out = render_pose_conditions(
                model,
                smpl_motion,
                camera=camera,
                line_scale=line_scale,
                backend=backend,
                callback=lambda chunk: progress.step(chunk.keypoints.num_frames),
            )
        return io.NodeOutput(out.skeleton, out.depth, out.normal, out.mesh, out.keypoints.openpose_frames())
