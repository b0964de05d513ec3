"""The few host services nodes use: model folders, device, progress and interrupt."""

from __future__ import annotations

import os
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths

from ..comovi_core.errors import CoMoViError
from ..comovi_core.files.atomic import check_writable_folder

SMPL_FOLDER = "smpl"
ESTIMATOR_FOLDER = "smpl_estimators"  # HMR 2.0, CameraHMR and FLNet checkpoints (.ckpt / .safetensors)
LORA_FOLDER = "loras"
STANDIN_CHOICE = "built-in mannequin (NOT SMPL, demo only)"


def register_model_folders() -> None:
    """Declare ComfyUI's ``models/smpl`` folder (for SMPL_NEUTRAL.pkl / .npz), and ``models/loras`` if missing."""
    folder_paths.add_model_folder_path(SMPL_FOLDER, os.path.join(folder_paths.models_dir, SMPL_FOLDER))
    folder_paths.folder_names_and_paths[SMPL_FOLDER][1].update({".pkl", ".npz"})
    folder_paths.add_model_folder_path(ESTIMATOR_FOLDER, os.path.join(folder_paths.models_dir, ESTIMATOR_FOLDER))
    folder_paths.folder_names_and_paths[ESTIMATOR_FOLDER][1].update({".ckpt", ".safetensors"})
    if LORA_FOLDER not in folder_paths.folder_names_and_paths:  # ComfyUI has it; declared for other hosts
        folder_paths.add_model_folder_path(LORA_FOLDER, os.path.join(folder_paths.models_dir, LORA_FOLDER))


def lora_files() -> list[str]:
    """LoRA files in ComfyUI's ``models/loras`` (ours come from python -m comovi_core.train --lora)."""
    return [f for f in folder_paths.get_filename_list(LORA_FOLDER) if f.endswith(".safetensors")]


def lora_path(name: str) -> str:
    return folder_paths.get_full_path_or_raise(LORA_FOLDER, name)


def estimator_files() -> list[str]:
    return folder_paths.get_filename_list(ESTIMATOR_FOLDER)


def estimator_path(name: str) -> str:
    return folder_paths.get_full_path_or_raise(ESTIMATOR_FOLDER, name)


def smpl_choices() -> list[str]:
    return [STANDIN_CHOICE] + folder_paths.get_filename_list(SMPL_FOLDER)


def smpl_path(choice: str) -> str | None:
    return None if choice == STANDIN_CHOICE else folder_paths.get_full_path_or_raise(SMPL_FOLDER, choice)


def diffusers_folders() -> list[str]:
    """Sub-folders of ComfyUI's ``models/diffusers`` (e.g. Wan2.2-TI2V-5B-Diffusers)."""
    names = []
    for root in folder_paths.get_folder_paths("diffusers"):
        if os.path.isdir(root):
            names += [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    return sorted(names)


def diffusers_folder(name: str) -> Path:
    for root in folder_paths.get_folder_paths("diffusers"):
        if os.path.isdir(os.path.join(root, name)):
            return Path(root) / name
    raise CoMoViError(
        f"{name} is not in models/diffusers: download Wan-AI/Wan2.2-TI2V-5B-Diffusers into ComfyUI's models/diffusers/"
    )


def diffusion_model_files() -> list[str]:
    return [f for f in folder_paths.get_filename_list("diffusion_models") if f.endswith(".safetensors")]


def diffusion_model_path(name: str) -> str:
    return folder_paths.get_full_path_or_raise("diffusion_models", name)


def input_file(name: str) -> str:
    return folder_paths.get_annotated_filepath(name)


def input_files(extension: str | tuple[str, ...]) -> list[str]:
    """Files in ComfyUI's input folder whose names end with ``extension`` (or one of several), sorted."""
    folder = folder_paths.get_input_directory()
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(extension)) if os.path.isdir(folder) else []


def output_path(prefix: str, suffix: str) -> Path:
    """The next free ``<output>/<prefix>_00001<suffix>``; refuses prefixes that leave the output folder."""
    if not prefix or not prefix.strip():
        raise CoMoViError("filename_prefix is empty: give a name inside the output folder, e.g. 'comovi/motion'")
    root = Path(folder_paths.get_output_directory()).resolve()
    base = (root / prefix).resolve()
    if root not in base.parents:
        raise CoMoViError(
            f"filename_prefix {prefix!r} points outside ComfyUI's output folder; use a relative name like "
            "'comovi/motion'"
        )
    check_writable_folder(base.parent, f"folder of filename_prefix {prefix!r}")
    base.parent.mkdir(parents=True, exist_ok=True)
    counter = 1
    while (candidate := base.parent / f"{base.name}_{counter:05d}{suffix}").exists():
        counter += 1
    return candidate


def output_relative(path: Path) -> str:
    """``path`` inside the output folder as ComfyUI's viewers address it ('comovi/motion_00001.glb')."""
    return Path(path).resolve().relative_to(Path(folder_paths.get_output_directory()).resolve()).as_posix()


def torch_device():
    return comfy.model_management.get_torch_device()


class Progress:
    """Progress bar + cancellation between units of work."""

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(total)

    def step(self, n: int = 1, preview=None) -> None:
        """Advance by ``n``; ``preview``: ComfyUI's ("JPEG", PIL image, max size) shown on the node."""
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(self.bar.current + n, preview=preview)

    @staticmethod
    def check_interrupt(*_) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
