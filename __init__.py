"""ComfyUI-CoMoVi: CoMoVi video + motion co-generation nodes for ComfyUI.

ComfyUI imports this package; it registers the nodes (V3 ``comfy_entrypoint``), the ``models/smpl``
folder and the web directory. The library itself lives in ``comovi_core`` (no ComfyUI imports).
"""

from .nodes.extension import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
