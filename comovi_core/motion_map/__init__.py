"""The 2D motion map (docs/motion_map.md): per-vertex colours, shading, renderer backends and a decoder."""
