"""Image-based SMPL estimators (HMR 2.0 of 4D-Humans; CameraHMR with its focal network FLNet) as plain PyTorch
modules, loaded from official checkpoints.

Nothing here is imported by ``comovi_core`` at start-up: the networks build on transformers and diffusers
modules, which load on first use (``comovi_core.recovery.estimate`` imports this package lazily).
"""
