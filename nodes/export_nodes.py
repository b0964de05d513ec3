"""ExportSMPL: write a SMPL motion as .npz (our format), .bvh (skeleton), .glb (skinned mesh), .fbx (through Blender's
``bpy``) or an .obj sequence; BVH, glb and FBX on SMPL's skeleton or retargeted to Mixamo, UE5 or VRM bones."""

from __future__ import annotations

from comfy_api.latest import io

from ..comovi_core.body.motion_file import save_motion
from ..comovi_core.errors import CoMoViError
from ..comovi_core.export.bvh import write_bvh
from ..comovi_core.export.fbx import write_fbx
from ..comovi_core.export.gltf import write_glb
from ..comovi_core.export.obj import write_obj_sequence
from ..comovi_core.export.skeleton import ExportOptions
from ..comovi_core.retarget.skeletons import EXPORT_SKELETONS
from . import host
from .sockets import SMPLModel, SMPLMotion

FORMATS = ("npz", "bvh", "glb", "obj", "fbx")


class ExportSMPL(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViExportSMPL",
            display_name="Export SMPL Motion (CoMoVi)",
            category="CoMoVi/body",
            description=(
                "Saves the motion in ComfyUI's output folder: motion.npz, a BVH skeleton animation, a "
                "skinned animated glTF (.glb: Blender, Unreal, three.js), FBX (needs pip install bpy) or one OBJ "
                "per frame (y-up); BVH, glb and FBX on SMPL's bones or retargeted to Mixamo, UE5 or VRM."
            ),
            inputs=[
                SMPLModel.Input("smpl_model"),
                SMPLMotion.Input("smpl_motion"),
                io.Combo.Input(
                    "format",
                    options=list(FORMATS),
                    default="bvh",
                    tooltip="npz: SMPL parameters + camera; bvh: skeleton; glb: skinned mesh + animation; obj: meshes; "
                    "fbx: the glb through Blender's exporter (pip install bpy)",
                ),
                io.String.Input(
                    "filename_prefix", default="comovi/motion", tooltip="sub-folder/name inside the output folder"
                ),
                # Appended last (saved workflows fill widgets by position) and optional: older workflows and
                # prompts without them export as before.
                io.Combo.Input(
                    "skeleton",
                    options=list(EXPORT_SKELETONS),
                    default="smpl",
                    optional=True,
                    tooltip="bvh / glb / fbx bones: SMPL's 24 joints, or retargeted to Mixamo, UE5 Manny/Quinn "
                    "(A-pose) or VRM humanoid; bone lengths come from this body",
                ),
                io.Boolean.Input("in_place", default=False, optional=True, tooltip="remove the horizontal root motion"),
                io.Boolean.Input(
                    "ground", default=False, optional=True, tooltip="move the clip so its lowest foot is at y = 0"
                ),
                io.Float.Input(
                    "fps",
                    default=0.0,
                    min=0.0,
                    max=240.0,
                    step=0.01,
                    optional=True,
                    tooltip="resample to this frame rate; 0 keeps the motion's (npz is never resampled)",
                ),
            ],
            outputs=[
                io.String.Output(
                    display_name="path",
                    tooltip="the file inside the output folder; connect it to Preview 3D & "
                    "Animation (glb) to see the animated body",
                )
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls, smpl_model, smpl_motion, format, filename_prefix, skeleton="smpl", in_place=False, ground=False, fps=0.0
    ) -> io.NodeOutput:
        if smpl_motion is None:
            raise CoMoViError(
                "no SMPL motion to export: the weights have no 3D head and the sampler's fit_motion was off; turn it on"
            )
        options = ExportOptions(skeleton=skeleton, in_place=in_place, ground=ground, fps=fps)
        target = host.output_path(filename_prefix, "" if format == "obj" else f".{format}")
        writers = {
            "npz": lambda: save_motion(target, smpl_motion),
            "bvh": lambda: write_bvh(target, smpl_model, smpl_motion, options),
            "glb": lambda: write_glb(target, smpl_model, smpl_motion, options),
            "fbx": lambda: write_fbx(target, smpl_model, smpl_motion, options),
            "obj": lambda: write_obj_sequence(target, smpl_model, smpl_motion, options),
        }
        writers[format]()
        return io.NodeOutput(host.output_relative(target))
