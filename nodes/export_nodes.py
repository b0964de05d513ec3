"""ExportSMPL: write a SMPL motion as .npz (our format), .bvh (skeleton) or an .obj sequence."""

from __future__ import annotations

from comfy_api.latest import io

from ..comovi_core.body.motion_file import save_motion
from ..comovi_core.errors import CoMoViError
from ..comovi_core.export import write_bvh, write_obj_sequence
from . import host
from .sockets import SMPLModel, SMPLMotion

FORMATS = ("npz", "bvh", "obj")


class ExportSMPL(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViExportSMPL",
            display_name="Export SMPL Motion (CoMoVi)",
            category="CoMoVi/body",
            description="Saves the motion in ComfyUI's output folder: motion.npz, a BVH skeleton animation, or one OBJ per frame (y-up).",
            inputs=[
                SMPLModel.Input("smpl_model"),
                SMPLMotion.Input("smpl_motion"),
                io.Combo.Input("format", options=list(FORMATS), default="bvh", tooltip="npz: SMPL parameters + camera; bvh: skeleton; obj: meshes"),
                io.String.Input("filename_prefix", default="comovi/motion", tooltip="sub-folder/name inside the output folder"),
            ],
            outputs=[io.String.Output(display_name="path")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, smpl_model, smpl_motion, format, filename_prefix) -> io.NodeOutput:
        if smpl_motion is None:
            raise CoMoViError("no SMPL motion to export: the weights have no 3D head and the sampler's fit_motion was off; turn it on")
        target = host.output_path(filename_prefix, "" if format == "obj" else f".{format}")
        writers = {"npz": lambda: save_motion(target, smpl_motion), "bvh": lambda: write_bvh(target, smpl_model, smpl_motion),
                   "obj": lambda: write_obj_sequence(target, smpl_model, smpl_motion)}
        writers[format]()
        return io.NodeOutput(str(target))
