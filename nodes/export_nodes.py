"""ExportSMPL: write a SMPL motion as .npz (our format), .bvh (skeleton), .glb (skinned mesh) or an .obj sequence."""

from __future__ import annotations

from comfy_api.latest import io

from ..comovi_core.body.motion_file import save_motion
from ..comovi_core.errors import CoMoViError
from ..comovi_core.export.bvh import write_bvh
from ..comovi_core.export.gltf import write_glb
from ..comovi_core.export.obj import write_obj_sequence
from . import host
from .sockets import SMPLModel, SMPLMotion

FORMATS = ("npz", "bvh", "glb", "obj")


class ExportSMPL(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViExportSMPL",
            display_name="Export SMPL Motion (CoMoVi)",
            category="CoMoVi/body",
            description=(
                "Saves the motion in ComfyUI's output folder: motion.npz, a BVH skeleton animation, a "
                "skinned animated glTF (.glb: Blender, Unreal, three.js) or one OBJ per frame (y-up)."
            ),
            inputs=[
                SMPLModel.Input("smpl_model"),
                SMPLMotion.Input("smpl_motion"),
                io.Combo.Input(
                    "format",
                    options=list(FORMATS),
                    default="bvh",
                    tooltip="npz: SMPL parameters + camera; bvh: skeleton; glb: skinned mesh + animation; obj: meshes",
                ),
                io.String.Input(
                    "filename_prefix", default="comovi/motion", tooltip="sub-folder/name inside the output folder"
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
    def execute(cls, smpl_model, smpl_motion, format, filename_prefix) -> io.NodeOutput:
        if smpl_motion is None:
            raise CoMoViError(
                "no SMPL motion to export: the weights have no 3D head and the sampler's fit_motion was off; turn it on"
            )
        target = host.output_path(filename_prefix, "" if format == "obj" else f".{format}")
        writers = {
            "npz": lambda: save_motion(target, smpl_motion),
            "bvh": lambda: write_bvh(target, smpl_model, smpl_motion),
            "glb": lambda: write_glb(target, smpl_model, smpl_motion),
            "obj": lambda: write_obj_sequence(target, smpl_model, smpl_motion),
        }
        writers[format]()
        return io.NodeOutput(host.output_relative(target))
