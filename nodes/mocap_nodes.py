"""Motion in from mocap files (AMASS / SMPL-H .npz, BVH, our motion.npz), placed in front of a camera."""

from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io

from ..comovi_core.mocap.load import SUPPORTED, load_motion_file
from . import host
from .sockets import SMPLModel, SMPLMotion

EXAMPLE_FOLDER = Path(__file__).resolve().parents[1] / "example_motions"  # made by tools/make_example_motions.py
EXAMPLES = {"example: walk (built-in AMASS file)": EXAMPLE_FOLDER / "walk_amass.npz"}


class LoadMotionFile(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViLoadMotionFile",
            display_name="Load Motion File (CoMoVi)",
            category="CoMoVi/body",
            description="A motion from a mocap file in the input folder (AMASS / SMPL-H .npz, BVH from CMU, Mixamo "
            "or Unreal, or a CoMoVi motion.npz), retargeted to SMPL and placed in front of a camera: the body stands "
            "on the ground, the camera looks at its start position horizontally. Connect it to the sampler's "
            "given_motion (mode motion_to_video) and start_pose, with the same width and height.",
            inputs=[
                SMPLModel.Input("smpl_model"),
                io.Combo.Input(
                    "file",
                    options=list(EXAMPLES) + host.input_files((".npz", ".bvh")),
                    tooltip=f"a file in ComfyUI's input folder ({SUPPORTED}); the example is our own procedural walk",
                ),
                io.Float.Input(
                    "fps",
                    default=16.0,
                    min=0.0,
                    max=240.0,
                    step=0.01,
                    tooltip="resample to this frame rate (CoMoVi makes 16 fps videos); 0 keeps the file's rate",
                ),
                io.Float.Input(
                    "distance",
                    default=3.5,
                    min=0.1,
                    max=100.0,
                    step=0.1,
                    tooltip="metres from the camera to the body's start position (mocap files only)",
                ),
                io.Float.Input(
                    "camera_height",
                    default=1.0,
                    min=-10.0,
                    max=100.0,
                    step=0.05,
                    tooltip="metres above the ground; the camera looks horizontally (mocap files only)",
                ),
                io.Float.Input(
                    "yaw",
                    default=0.0,
                    min=-360.0,
                    max=360.0,
                    step=1.0,
                    tooltip="degrees the body turns about the vertical: 0 faces the camera, 90 faces the image's "
                    "right edge, 180 shows its back (mocap files only)",
                ),
                io.Int.Input("width", default=1280, min=32, max=4096, step=32, tooltip="the sampler's width"),
                io.Int.Input("height", default=704, min=32, max=4096, step=32, tooltip="the sampler's height"),
                io.Float.Input(
                    "fov_degrees",
                    default=50.0,
                    min=10.0,
                    max=120.0,
                    step=1.0,
                    tooltip="vertical field of view of the camera (mocap files only)",
                ),
            ],
            outputs=[SMPLMotion.Output(display_name="smpl_motion")],
        )

    @classmethod
    def execute(cls, smpl_model, file, fps, distance, camera_height, yaw, width, height, fov_degrees) -> io.NodeOutput:
        motion = load_motion_file(
            EXAMPLES[file] if file in EXAMPLES else host.input_file(file),
            smpl_model.cpu(),
            fps=fps or None,
            distance=distance,
            height=camera_height,
            yaw=yaw,
            image_size=(height, width),
            fov_degrees=fov_degrees,
        )
        return io.NodeOutput(motion)
