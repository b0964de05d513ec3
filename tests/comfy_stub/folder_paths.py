"""Stand-in for ComfyUI's folder_paths, rooted in a folder chosen by the test (``set_base``)."""

import os

base_path = os.path.join(os.path.dirname(__file__), "_root")
models_dir = os.path.join(base_path, "models")
folder_names_and_paths: dict = {}


def set_base(path):
    global base_path, models_dir
    base_path, models_dir = str(path), os.path.join(str(path), "models")
    folder_names_and_paths.clear()


def add_model_folder_path(name, path, is_default=False):
    if name in folder_names_and_paths:
        folder_names_and_paths[name][0].append(path)
    else:
        folder_names_and_paths[name] = ([path], set())


def get_folder_paths(name):
    if name not in folder_names_and_paths and name in ("diffusers", "diffusion_models"):
        add_model_folder_path(name, os.path.join(models_dir, name))
    return list(folder_names_and_paths[name][0])


def get_filename_list(name):
    get_folder_paths(name)
    paths, exts = folder_names_and_paths[name]
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += [f for f in os.listdir(p) if not exts or os.path.splitext(f)[1].lower() in exts]
    return sorted(out)


def get_full_path_or_raise(name, filename):
    for p in get_folder_paths(name):
        full = os.path.join(p, filename)
        if os.path.isfile(full):
            return full
    raise FileNotFoundError(f"Model in folder '{name}' with filename '{filename}' not found.")


def get_input_directory():
    return os.path.join(base_path, "input")


def get_output_directory():
    return os.path.join(base_path, "output")


def get_annotated_filepath(name):
    return os.path.join(get_input_directory(), name)
