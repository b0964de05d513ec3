"""FBX through Blender's own exporter: the optional ``bpy`` package (``pip install bpy``, the ``fbx`` extra).

We never write FBX ourselves. The motion is written as a skinned ``.glb`` (``gltf.write_glb``, same skeleton and
options) into a temporary folder, imported into an empty Blender scene and exported with Blender's FBX exporter
(baked animation, no leaf bones). Without ``bpy`` the export fails with a message that says how to get it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..body.motion_file import SMPLMotion
from ..body.smpl import BodyModel
from ..errors import CoMoViError
from ..files.atomic import atomic_path
from .gltf import write_glb
from .skeleton import ExportOptions


def _blender():
    try:
        import bpy
    except ImportError as err:
        raise CoMoViError(
            "FBX export runs Blender's FBX exporter through Blender's Python module, which is not installed: "
            "pip install bpy (it needs the Python version that Blender release supports; or pip install "
            "'comfyui-comovi[fbx]'). Without it, export .glb and convert it in Blender, Maya or Unreal."
        ) from err
    return bpy


def write_fbx(path: str | Path, model: BodyModel, motion: SMPLMotion, options: ExportOptions | None = None) -> Path:
    """``motion`` as an FBX file with a skinned body (see the module docstring)."""
    bpy = _blender()
    path = Path(path)
    with tempfile.TemporaryDirectory() as folder:
        glb = write_glb(Path(folder) / "motion.glb", model, motion, options)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        fps = motion.fps if options is None or not options.fps else options.fps
        scene = bpy.context.scene  # the importer keys the glTF's seconds at the scene's rate: one key per frame
        scene.render.fps, scene.render.fps_base = round(fps), round(fps) / fps
        bpy.ops.import_scene.gltf(filepath=str(glb))
        # the glTF importer adds a display shape for bones (an unparented icosphere): not part of the motion
        for obj in list(bpy.data.objects):
            if obj.type != "ARMATURE" and obj.parent is None:
                bpy.data.objects.remove(obj, do_unlink=True)
        with atomic_path(path) as tmp:
            bpy.ops.export_scene.fbx(filepath=str(tmp), bake_anim=True, add_leaf_bones=False)
    return path
