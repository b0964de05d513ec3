"""comovi_core: a plain PyTorch library for CoMoVi (no ComfyUI imports).

Subpackages:
    body        SMPL body model loading, motion files, rotations, the stand-in mannequin.
    motion_map  the 2D motion map (docs/motion_map.md): colours, shading, renderers, decoder, CLI.
"""

__version__ = "0.1.0"
