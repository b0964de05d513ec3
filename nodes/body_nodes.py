"""The SMPL body model and SMPL motions: loaders and the start-pose estimator."""

from __future__ import annotations

from comfy_api.latest import io

from ..comovi_core.body.mannequin import demo_motion
from ..comovi_core.body.motion_file import concat_motions, load_motion
from ..comovi_core.body.smpl import load_body_model
from ..comovi_core.errors import CoMoViError
from ..comovi_core.estimate import estimate_start_pose, keypoints_from_pose_json
from . import host
from .sockets import PoseKeypoint, SMPLModel, SMPLMotion

DEMO_CHOICE = "demo: mannequin waving (built-in)"


class LoadSMPLModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViLoadSMPLModel",
            display_name="Load SMPL Model (CoMoVi)",
            category="CoMoVi/body",
            description="Loads SMPL from models/smpl (SMPL_NEUTRAL.pkl or .npz; register at smpl.is.tue.mpg.de to download).",
            inputs=[
                io.Combo.Input("model", options=host.smpl_choices(), tooltip="file in models/smpl; the built-in mannequin is not SMPL"),
            ],
            outputs=[SMPLModel.Output(display_name="smpl_model")],
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        return io.NodeOutput(load_body_model(host.smpl_path(model)))


class LoadSMPLMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViLoadSMPLMotion",
            display_name="Load SMPL Motion (CoMoVi)",
            category="CoMoVi/body",
            description="Loads a motion.npz (SMPL poses, translation, camera) from the input folder.",
            inputs=[
                io.Combo.Input("motion", options=[DEMO_CHOICE] + host.input_files(".npz"), tooltip="a .npz in ComfyUI's input folder"),
            ],
            outputs=[SMPLMotion.Output(display_name="smpl_motion")],
        )

    @classmethod
    def execute(cls, motion) -> io.NodeOutput:
        return io.NodeOutput(demo_motion() if motion == DEMO_CHOICE else load_motion(host.input_file(motion)))


class EstimateSMPL(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViEstimateSMPL",
            display_name="Estimate SMPL Start Pose (CoMoVi)",
            category="CoMoVi/body",
            description="Fits SMPL to body keypoints of the start image (POSE_KEYPOINT from a DWPose / OpenPose estimator): "
                        "the start pose and camera for the sampler.",
            inputs=[
                SMPLModel.Input("smpl_model"),
                PoseKeypoint.Input("pose_keypoint", tooltip="from DWPose Estimator / OpenPose Pose (comfyui_controlnet_aux)"),
                io.Int.Input("person", default=0, min=0, max=63, tooltip="which detected person (0 = first)"),
                io.Float.Input("fov_degrees", default=50.0, min=10.0, max=120.0, step=1.0, tooltip="vertical field of view of the camera"),
            ],
            outputs=[SMPLMotion.Output(display_name="start_pose")],
        )

    @classmethod
    def execute(cls, smpl_model, pose_keypoint, person, fov_degrees) -> io.NodeOutput:
        frames = pose_keypoint if isinstance(pose_keypoint, list) else [pose_keypoint]
        if not frames:
            raise CoMoViError("the POSE_KEYPOINT input is empty: run the pose estimator on the start image")
        keypoints, (height, width) = keypoints_from_pose_json(frames[0], person)
        return io.NodeOutput(estimate_start_pose(smpl_model, keypoints, height, width, fov_degrees))


class SMPLMotionFrame(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViSMPLMotionFrame",
            display_name="SMPL Motion Frame (CoMoVi)",
            category="CoMoVi/body",
            description="One frame of a motion as a start pose: -1 (the last frame) continues a clip into the next one.",
            inputs=[SMPLMotion.Input("smpl_motion"), io.Int.Input("frame", default=-1, min=-100000, max=100000, tooltip="-1 = last")],
            outputs=[SMPLMotion.Output(display_name="start_pose")],
        )

    @classmethod
    def execute(cls, smpl_motion, frame) -> io.NodeOutput:
        return io.NodeOutput(smpl_motion.frame(frame))


class ConcatSMPLMotions(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViConcatSMPLMotions",
            display_name="Concatenate SMPL Motions (CoMoVi)",
            category="CoMoVi/body",
            description="Joins two clips' motions into one long motion (for videos longer than one generation).",
            inputs=[SMPLMotion.Input("first"), SMPLMotion.Input("second"),
                    io.Boolean.Input("skip_shared_frame", default=True, tooltip="the second clip starts with the first's last frame: drop it")],
            outputs=[SMPLMotion.Output(display_name="smpl_motion")],
        )

    @classmethod
    def execute(cls, first, second, skip_shared_frame) -> io.NodeOutput:
        return io.NodeOutput(concat_motions(first, second, skip_shared_frame))
