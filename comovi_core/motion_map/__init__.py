"""The 2D motion map (SPEC §4): per-vertex colours, shading, renderer backends and a decoder."""
