"""The SMPL body model and SMPL motions: loaders and the start-pose estimator."""

from __future__ import annotations

from comfy_api.latest import io

from ..comovi_core.body.mannequin import demo_motion
from ..comovi_core.body.motion_file import concat_motions, load_motion
from ..comovi_core.body.smpl import load_body_model
from ..comovi_core.capture.video import capture_from_graph
from ..comovi_core.motion_map.overlay import overlay_motion
from ..comovi_core.recovery.estimate import estimate_start
from . import host
from .sockets import PoseKeypoint, SMPLModel, SMPLMotion

DEMO_CHOICE = "demo: mannequin waving (built-in)"
KEYPOINT_FIT = "none: fit to the keypoints"
FOCAL_AUTO = "auto: FLNet next to the CameraHMR file"
FOCAL_NONE = "none: use fov_degrees"
DEMO_ESTIMATOR = "tiny demo (random weights, built in memory: the motion is noise)"


def _focal_net(choice: str):
    """The focal_network combo -> ``cached_estimator``'s focal_net: "auto", None or a file path."""
    focal = {FOCAL_AUTO: "auto", FOCAL_NONE: None}.get(choice, choice)
    return host.estimator_path(focal) if focal not in ("auto", None) else focal


def _focal_network_input(more: str = "") -> io.Combo.Input:
    """The optional CameraHMR focal-network choice both estimating nodes end with."""
    return io.Combo.Input(
        "focal_network",
        options=[FOCAL_AUTO, FOCAL_NONE] + host.estimator_files(),
        default=FOCAL_AUTO,
        optional=True,
        tooltip="CameraHMR only: its focal-length network (FLNet, cam_model_cleaned.ckpt in "
        "models/smpl_estimators), found next to the CameraHMR file by default" + more,
    )


class LoadSMPLModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViLoadSMPLModel",
            display_name="Load SMPL Model (CoMoVi)",
            category="CoMoVi/body",
            description=(
                "Loads SMPL from models/smpl (SMPL_NEUTRAL.pkl or .npz; register at smpl.is.tue.mpg.de to download)."
            ),
            inputs=[
                io.Combo.Input(
                    "model",
                    options=host.smpl_choices(),
                    tooltip="file in models/smpl; the built-in mannequin is not SMPL",
                ),
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
                io.Combo.Input(
                    "motion",
                    options=[DEMO_CHOICE] + host.input_files(".npz"),
                    tooltip="a .npz in ComfyUI's input folder",
                ),
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
            description="The start pose and camera for the sampler from the start IMAGE (HMR 2.0 or CameraHMR "
            "in models/smpl_estimators) and/or body keypoints (DWPose / OpenPose), with a preview of the "
            "body over the picture. Without estimator weights the body is fitted to the keypoints. CameraHMR "
            "also estimates the focal length when its FLNet file (cam_model_cleaned.ckpt) lies next to it.",
            inputs=[
                SMPLModel.Input("smpl_model"),
                PoseKeypoint.Input(
                    "pose_keypoint",
                    optional=True,
                    tooltip="from DWPose Estimator / OpenPose Pose (comfyui_controlnet_aux)",
                ),
                io.Int.Input("person", default=0, min=0, max=63, tooltip="which detected person (0 = first)"),
                io.Float.Input(
                    "fov_degrees",
                    default=50.0,
                    min=10.0,
                    max=120.0,
                    step=1.0,
                    tooltip="vertical field of view of the camera (HMR 2.0 estimates no focal length; "
                    "CameraHMR with its FLNet file estimates it and ignores this)",
                ),
                io.Combo.Input(
                    "estimator",
                    options=[KEYPOINT_FIT] + host.estimator_files(),
                    default=KEYPOINT_FIT,
                    tooltip="HMR 2.0 or CameraHMR checkpoint in models/smpl_estimators; the keypoint fit needs none",
                ),
                io.Boolean.Input(
                    "download_detector",
                    default=False,
                    tooltip="without keypoints or a mask, fetch "
                    "the person detector (RT-DETR, 172 MB) from Hugging Face if it is not cached",
                ),
                io.Image.Input("image", optional=True, tooltip="the start image"),
                io.Mask.Input("mask", optional=True, tooltip="the person, when the picture holds several"),
                _focal_network_input(),
            ],
            outputs=[SMPLMotion.Output(display_name="start_pose"), io.Image.Output(display_name="preview")],
        )

    @classmethod
    def execute(
        cls,
        smpl_model,
        pose_keypoint=None,
        person=0,
        fov_degrees=50.0,
        estimator=KEYPOINT_FIT,
        download_detector=False,
        image=None,
        mask=None,
        focal_network=FOCAL_AUTO,
    ) -> io.NodeOutput:
        path = None if estimator == KEYPOINT_FIT else host.estimator_path(estimator)
        focal = _focal_net(focal_network)
        return io.NodeOutput(
            *estimate_start(smpl_model, image, pose_keypoint, person, mask, path, fov_degrees, download_detector, focal)
        )


class VideoToSMPLMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViVideoToSMPLMotion",
            display_name="Video to SMPL Motion (CoMoVi)",
            category="CoMoVi/body",
            description="The SMPL motion of the person in a video (HMR 2.0 or CameraHMR in models/smpl_estimators on "
            "every frame, one body shape and one camera per clip, smoothed in rotation space, feet locked), with the "
            "body drawn over the video and a verdict on the capture. The tiny demo estimator has random weights: "
            "it shows the plumbing, its motion is noise.",
            inputs=[
                SMPLModel.Input("smpl_model"),
                io.Image.Input("images", tooltip="the video's frames, e.g. from Load Video"),
                io.Float.Input("fps", default=16.0, min=0.1, max=240.0, step=0.01, tooltip="the video's frame rate"),
                io.Combo.Input(
                    "estimator",
                    options=[DEMO_ESTIMATOR] + host.estimator_files(),
                    default=DEMO_ESTIMATOR,
                    tooltip="HMR 2.0 or CameraHMR checkpoint in models/smpl_estimators; the tiny demo needs no "
                    "file (random weights: noise) and takes the whole frame as the person",
                ),
                io.Float.Input(
                    "smoothing",
                    default=1.0,
                    min=0.0,
                    max=3.0,
                    step=0.1,
                    tooltip="temporal smoothing of the rotations, weighted by each frame's confidence: 0 off, "
                    "1 default, 2 half the cutoff frequency (smoother, less detail)",
                ),
                io.Boolean.Input(
                    "download_detector",
                    default=False,
                    tooltip="without a mask, fetch the person detector (RT-DETR, 172 MB) from Hugging Face if it "
                    "is not cached",
                ),
                io.Mask.Input("mask", optional=True, tooltip="the person in every frame (or one mask for all)"),
                _focal_network_input("; otherwise 50 degrees"),
            ],
            outputs=[
                SMPLMotion.Output(display_name="smpl_motion"),
                io.Image.Output(display_name="preview"),
                io.String.Output(display_name="info"),
            ],
        )

    @classmethod
    def execute(
        cls, smpl_model, images, fps, estimator, smoothing, download_detector, mask=None, focal_network=FOCAL_AUTO
    ) -> io.NodeOutput:
        path = None if estimator == DEMO_ESTIMATOR else host.estimator_path(estimator)
        result = capture_from_graph(
            smpl_model,
            images,
            fps,
            estimator_path=path,
            focal_net=_focal_net(focal_network),
            masks=mask,
            allow_download=download_detector,
            smoothing=smoothing,
        )
        preview = overlay_motion(smpl_model.to(host.torch_device()), result.motion, images[..., :3])
        return io.NodeOutput(result.motion, preview, result.summary())


class SMPLMotionFrame(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViSMPLMotionFrame",
            display_name="SMPL Motion Frame (CoMoVi)",
            category="CoMoVi/body",
            description=(
                "One frame of a motion as a start pose: -1 (the last frame) continues a clip into the next one."
            ),
            inputs=[
                SMPLMotion.Input("smpl_motion"),
                io.Int.Input("frame", default=-1, min=-100000, max=100000, tooltip="-1 = last"),
            ],
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
            inputs=[
                SMPLMotion.Input("first"),
                SMPLMotion.Input("second"),
                io.Boolean.Input(
                    "skip_shared_frame",
                    default=True,
                    tooltip="the second clip starts with the first's last frame: drop it",
                ),
            ],
            outputs=[SMPLMotion.Output(display_name="smpl_motion")],
        )

    @classmethod
    def execute(cls, first, second, skip_shared_frame) -> io.NodeOutput:
        return io.NodeOutput(concat_motions(first, second, skip_shared_frame))
