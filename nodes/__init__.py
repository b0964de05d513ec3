"""ComfyUI adapters for comovi_core: thin nodes, one file per concern."""
