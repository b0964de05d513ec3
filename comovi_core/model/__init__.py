"""The dual-branch CoMoVi transformer (docs/model.md): configs, model, 3D head, checkpoint loading."""
