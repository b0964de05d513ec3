"""Load weights into the dual-branch model from every layout users have (docs/file_formats.md).

Accepted, detected by key names and shapes (never by file name):
    wan_original    base Wan2.2-TI2V-5B, original/ComfyUI single file (``blocks.N.self_attn.q.weight``;
                    ComfyUI's ``model.diffusion_model.`` prefix is accepted; fp16/bf16/fp8 tensors)
    wan_diffusers   base Wan2.2-TI2V-5B, diffusers folder (``transformer/`` with sharded safetensors)
    comovi_release  the release's CoMoVi file (``rgb_blocks.*``, ``motion_blocks.*``, ``zero_linear_blocks.*``,
                    ``smpl_*`` and shared embeddings)
    comovi          our own training checkpoints (``rgb.*``, ``motion.*``, ``zero_linears.*``, ``smpl_head.*``)

Several files load in order, later ones overriding earlier ones (base first, then CoMoVi on top, as
the release does). A base alone gives an untrained copy: the motion branch copies the RGB branch and
the zero-linears are zero. Tensors are read lazily with ``safe_open`` and assigned one at a time into
a model built on the meta device, each cast (and, with fp8 storage, stored in fp8) and moved to its device
as it is read, so peak host RAM stays near one tensor beyond the weights that end in host memory.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import CoMoViError
from ..files.weights import open_safetensors
from .config import CoMoViConfig
from .keys import part_of, release_to_ours, wan_original_to_diffusers
from .sizes import describe_size, infer_config, reconcile, stored_config

if TYPE_CHECKING:
    from .dual import CoMoViTransformer

log = logging.getLogger(__name__)

COMFY_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


@dataclass
class TensorRef:
    file: Path  # safetensors file holding the tensor
    name: str  # key inside that file
    shape: tuple  # stored shape
    dtype: str  # stored dtype, e.g. "BF16", "F8_E4M3"


@dataclass
class Checkpoint:
    path: Path  # what the user gave
    format: str  # one of keys.LAYOUTS
    tensors: dict[str, TensorRef]  # our key -> where it is stored
    unmapped: list[str] = field(default_factory=list)  # stored keys with no place in the model
    config: dict | None = None  # our JSON meta (format "comovi") or diffusers config.json

    @property
    def has_smpl_head(self) -> bool:
        return any(k.startswith("smpl_head.") for k in self.tensors)


def safetensors_files(path: str | Path) -> list[Path]:
    """A .safetensors file, or a (diffusers or training run) folder -> its weight files, in name order.

    Hidden files (a leading ".", as ``atomic_path`` names files while they are written) are never loaded. In a
    training run folder the files are ``step_NNNNNN.safetensors``: loaded in order, the latest step wins."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CoMoViError(
                f"{path}: only .safetensors weights are loaded (no pickled .pt/.bin/.ckpt); convert it first"
            )
        return [path]
    if path.is_dir():
        for folder in (path / "transformer", path):  # names starting with "." are files still being written
            files = sorted(f for f in folder.glob("*.safetensors") if not f.name.startswith("."))
            if files:
                return files
        raise CoMoViError(f"{path}: no .safetensors files in it (or in its transformer/ subfolder)")
    raise CoMoViError(f"checkpoint not found: {path}")


def _stored_keys(files: list[Path]) -> dict[str, TensorRef]:
    keys = {}
    for file in files:
        with open_safetensors(file) as fh:
            for name in fh.keys():
                sl = fh.get_slice(name)
                keys[name] = TensorRef(file, name, tuple(sl.get_shape()), sl.get_dtype())
    return keys


def _strip(name: str) -> str:
    for prefix in COMFY_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def detect_format(names) -> str:
    names = [_strip(n) for n in names]
    if any(".lora_A." in n or ".lora_B." in n for n in names):
        raise CoMoViError(
            "this is a LoRA file (adapters only, no model): load the base/CoMoVi weights as the model and "
            "apply the LoRA on top (load_model(..., lora=FILE), generate --lora FILE, CoMoVi LoRA node)"
        )
    if any(
        n.startswith(("rgb_blocks.", "motion_blocks.", "zero_linear_blocks.", "rgb_patch_embedding")) for n in names
    ):
        return "comovi_release"
    if any(n.startswith(("rgb.", "motion.")) for n in names):
        return "comovi"
    if any(n.startswith("blocks.0.self_attn.") for n in names):
        return "wan_original"
    if any(n.startswith("blocks.0.attn1.") for n in names):
        return "wan_diffusers"
    if any(n.startswith(("encoder.", "decoder.", "conv1.")) for n in names):
        raise CoMoViError("this is a VAE checkpoint, not a transformer: load it as the VAE (Wan2.2 VAE, z_dim 48)")
    sample = ", ".join(sorted(names)[:5])
    raise CoMoViError(
        f"unrecognised checkpoint layout (first keys: {sample}); expected Wan2.2-TI2V-5B or CoMoVi weights"
    )


def _our_key(name: str, fmt: str) -> str | None:
    name = _strip(name)
    if fmt == "comovi":
        return name
    if fmt == "comovi_release":
        return release_to_ours(name)
    mapped = wan_original_to_diffusers(name) if fmt == "wan_original" else name
    return f"rgb.{mapped}" if mapped else None


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Read key names and shapes (no tensor data) and map them to our keys."""
    files = safetensors_files(path)
    stored = _stored_keys(files)
    try:
        fmt = detect_format(stored)
    except CoMoViError as exc:
        raise CoMoViError(f"{path}: {exc}") from None
    tensors, unmapped = {}, []
    for name, ref in stored.items():
        ours = _our_key(name, fmt)
        if ours is None:
            unmapped.append(name)
        else:
            tensors[ours] = ref
    config = None
    meta_file = Path(path) if Path(path).is_dir() else Path(path).with_suffix(".json")
    for candidate in (meta_file / "transformer" / "config.json", meta_file / "config.json", meta_file):
        if candidate.is_file() and candidate.suffix == ".json":
            config = json.loads(candidate.read_text())
            break
    return Checkpoint(Path(path), fmt, tensors, unmapped, config)


def check_compatible(ckpt: Checkpoint, in_channels: int = 48) -> None:
    """Name the mismatch when a file belongs to another model family (Wan2.1 / Wan2.2-14B: 16-channel VAE)."""
    ref = ckpt.tensors.get("rgb.patch_embedding.weight") or ckpt.tensors.get("motion.patch_embedding.weight")
    if ref is not None and ref.shape[1] != in_channels:
        channels = ref.shape[1]
        hint = " (a Wan2.1 or Wan2.2-14B file: those use the 16-channel VAE)" if channels in (16, 36) else ""
        raise CoMoViError(
            f"{ckpt.path}: the patch embedding takes {channels} latent channels{hint}; CoMoVi needs Wan2.2-TI2V-5B "
            f"with {in_channels} channels (Wan2.2 VAE, z_dim 48)"
        )


def resolve_config(checkpoints: list[Checkpoint], given: CoMoViConfig | None = None) -> CoMoViConfig:
    """The model config the stacked ``checkpoints`` hold (``sizes.infer_config``: stored config, else shapes).

    ``given``: a size the user chose; kept when the weights agree, a ``CoMoViError`` naming each difference if not.
    Without the 3D head in the files the config has none (``smpl_layers=0``)."""
    for ckpt in checkpoints:
        check_compatible(ckpt, given.in_channels if given is not None else 48)
    shapes = {key: ref.shape for ckpt in checkpoints for key, ref in ckpt.tensors.items()}
    stored, what = {}, ""
    for ckpt in checkpoints:  # the last file with a config describes the stack (base config first, ours on top)
        fields, kind = stored_config(ckpt.config)
        if fields:
            stored, what = {**stored, **fields}, f"{ckpt.path} ({kind})"
    where = ", ".join(str(c.path) for c in checkpoints)
    try:
        found, determined = infer_config(shapes, stored)
    except CoMoViError as exc:
        raise CoMoViError(f"{what or where}: {exc}") from None
    if given is None:
        log.info("model size read from the weights: %s", describe_size(found))
        return found
    return reconcile(given, found, determined, shapes, where)


@dataclass
class LoadReport:
    loaded: Counter  # part -> tensors loaded from files
    copied: int  # motion-branch tensors copied from the RGB branch (base weights only)
    zeroed: int  # zero-linear tensors initialised to zero
    unexpected: dict[str, list[str]]  # file -> stored keys with no place in the model
    has_smpl_head: bool  # whether the loaded model has its 3D head
    lora: str = ""  # the LoRA merged into the weights, if any

    def summary(self) -> str:
        parts = ", ".join(f"{part}: {n} tensors" for part, n in sorted(self.loaded.items()))
        lines = [f"loaded {parts}"]
        if self.copied:
            lines.append(f"motion branch: {self.copied} tensors copied from the RGB branch (untrained copy)")
        if self.zeroed:
            lines.append(f"zero-linear coupling: {self.zeroed} tensors set to zero (untrained)")
        if not self.has_smpl_head:
            lines.append("no 3D head in the weights: the model runs without it (no SMPL poses)")
        for file, keys in self.unexpected.items():
            lines.append(f"{file}: {len(keys)} tensors ignored (no place in this model), e.g. {keys[:3]}")
        if self.lora:
            lines.append(self.lora)
        return "; ".join(lines)


def _set_tensor(model: torch.nn.Module, key: str, value: torch.Tensor) -> None:
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name)
    if name in module._parameters:
        module._parameters[name] = torch.nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[name] = value


def build_model(config: CoMoViConfig, device: str | torch.device = "meta") -> CoMoViTransformer:
    """The model with parameters on ``device`` (``meta``: no memory until weights are assigned)."""
    from accelerate import init_empty_weights  # on use: the model imports diffusers (seconds); `inspect` needs neither

    from .dual import CoMoViTransformer

    if str(device) == "meta":
        with init_empty_weights(include_buffers=False):
            return CoMoViTransformer.from_comovi_config(config)
    model = CoMoViTransformer.from_comovi_config(config).to(device)
    model.initialize_weights()
    return model


def load_model(
    config: CoMoViConfig | None,
    paths,
    dtype: torch.dtype = torch.bfloat16,
    device="cpu",
    lora=None,
    lora_scale: float = 1.0,
    storage_dtype: torch.dtype | None = None,
) -> tuple[CoMoViTransformer, LoadReport]:
    """Build the model and fill it from ``paths`` (loaded in order, later files win), one tensor at a time.

    Each tensor is read from its file, cast to ``dtype``, merged with the LoRA file ``lora`` at ``lora_scale`` when
    it adapts that layer (``comovi_core.model.lora.LoRAMerge``), cast to ``storage_dtype`` (e.g. fp8) when given and
    the layer is stored so (``memory.enable_fp8_storage``, set up before loading), and moved to ``device``; so the
    host never holds more than one tensor beyond what ends on ``device``. A motion-branch tensor missing from the
    files is made from its RGB counterpart as that one is read.

    ``config``: None reads the model size from the files (``resolve_config``); a config is checked against them."""
    checkpoints = [open_checkpoint(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not checkpoints:
        raise CoMoViError("no checkpoint given: pass the Wan2.2-TI2V-5B weights and/or the CoMoVi file")
    config = resolve_config(checkpoints, config)
    model = build_model(config, "meta")
    if storage_dtype is not None:
        from .memory import enable_fp8_storage

        enable_fp8_storage(model, compute_dtype=dtype, storage_dtype=storage_dtype)
    meta = {k: p for k, p in model.state_dict().items() if p.is_meta}
    source: dict[str, TensorRef] = {}
    unexpected: dict[str, list[str]] = defaultdict(list)
    for ckpt in checkpoints:
        for key, ref in ckpt.tensors.items():
            if key in meta:
                source[key] = ref
            else:
                unexpected[str(ckpt.path)].append(ref.name)
        unexpected[str(ckpt.path)].extend(ckpt.unmapped)
    unexpected = {f: ks for f, ks in unexpected.items() if ks}

    copies, zeroed, still_missing = defaultdict(list), [], []
    for key in (k for k in meta if k not in source):
        if key.startswith("motion.") and (rgb_key := _rgb_counterpart(key, config)) in source:
            copies[rgb_key].append(key)
        elif key.startswith("zero_linears."):
            zeroed.append(key)
        else:
            still_missing.append(key)
    if still_missing:
        by_part = Counter(part_of(k) for k in still_missing)
        parts = ", ".join(f"{part} ({n} tensors)" for part, n in by_part.items())
        raise CoMoViError(
            f"the checkpoints leave parts of the model without weights: {parts}, e.g. {still_missing[:3]}; "
            "pass the base Wan2.2-TI2V-5B weights together with the CoMoVi file"
        )
    merge = None
    if lora is not None:
        from .lora import LoRAMerge

        merge = LoRAMerge(model, lora, lora_scale)  # every adapter checked before any weight is read

    def place_tensor(key: str, value: torch.Tensor) -> None:
        if value.is_floating_point():
            value = value.to(dtype)
            module = key.removesuffix(".weight")
            if merge is not None and key.endswith(".weight") and module in merge.pairs:
                value = merge.merged(module, value)
            value = value.to(meta[key].dtype if meta[key].dtype in FP8_DTYPES else dtype)
        _set_tensor(model, key, value.to(device))

    loaded = Counter()
    for key, ref in _by_file(source):
        if tuple(ref.value.shape) != tuple(meta[key].shape):
            raise CoMoViError(
                f"{ref.file}: '{ref.name}' has shape {tuple(ref.value.shape)}, the model expects "
                f"{tuple(meta[key].shape)} ({part_of(key)})"
            )
        place_tensor(key, ref.value)
        for target in copies.get(key, ()):
            place_tensor(target, ref.value.clone())  # its own storage: the branches train apart
        loaded[part_of(key)] += 1
    for key in zeroed:
        place_tensor(key, torch.zeros(meta[key].shape, dtype=dtype))
    copied = sum(len(v) for v in copies.values())
    report = LoadReport(loaded, copied, len(zeroed), unexpected, model.smpl_head is not None)
    if merge is not None:
        merge.log_merged()
        report.lora = f"LoRA {Path(lora).name} at scale {lora_scale:g}: {len(merge.pairs)} layers"
    log.info("%s", report.summary())
    return model.eval(), report


def _rgb_counterpart(motion_key: str, config: CoMoViConfig) -> str:
    rest = motion_key[len("motion.") :]
    if rest.startswith("blocks."):
        _, j, tail = rest.split(".", 2)
        return f"rgb.blocks.{int(j) * config.interleave}.{tail}"
    return f"rgb.{rest}"


class _Loaded:
    def __init__(self, ref: TensorRef, value: torch.Tensor):
        self.file, self.name, self.value = ref.file, ref.name, value


def _by_file(source: dict[str, TensorRef]):
    """Yield (our key, tensor) reading each file once, one tensor at a time."""
    by_file = defaultdict(list)
    for key, ref in source.items():
        by_file[ref.file].append((key, ref))
    for file, items in by_file.items():
        with open_safetensors(file, reader="copy") as fh:  # no mapped pages held: resident memory is the model
            for key, ref in items:
                yield key, _Loaded(ref, fh.get_tensor(ref.name))
