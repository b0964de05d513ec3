"""ComfyUI-CoMoVi: CoMoVi video + motion co-generation nodes for ComfyUI.

ComfyUI imports this package; it registers the nodes (V3 ``comfy_entrypoint``), the ``models/smpl``
folder and the web directory. The library itself lives in ``comovi_core`` (no ComfyUI imports).
"""

WEB_DIRECTORY = "./web"

from .nodes.extension import comfy_entrypoint  # noqa: E402

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
