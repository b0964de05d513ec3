"""The dual-branch CoMoVi transformer (SPEC §2, §3): configs, model, 3D head, checkpoint loading."""
