"""Loaders for the SMPL body model and SMPL motion files."""

from __future__ import annotations

from comfy_api.latest import io

from ..comovi_core.body.mannequin import demo_motion
from ..comovi_core.body.motion_file import load_motion
from ..comovi_core.body.smpl import load_body_model
from . import host
from .sockets import SMPLModel, SMPLMotion

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
