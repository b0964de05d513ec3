"""LoRA for CoMoVi: low-rank adapters trained with peft, saved alone, merged into a loaded model for inference.

Training (``python -m comovi_core.train --lora RANK``) injects peft ``LoraConfig`` adapters into the Linear layers
of the groups in ``--lora-targets`` (``LORA_GROUPS``); only the adapter matrices train, every base weight stays
frozen (in the compute dtype, bf16 for real presets). Defaults (``DEFAULT_TARGETS``): stage 1 adapts the attention
(self and cross: q, k, v, out) and FFN linears of the motion branch; stage 2 adds adapters on the zero-linear
coupling and on every Linear of the 3D head. The coupling is adapted rather than trained fully: a full zero-linear
is hidden x hidden per layer (283M parameters at real size, 4.5 GB with its fp32 AdamW state), its rank-r adapter
2 * hidden * r (a zero weight plus B @ A learns like any other layer: B starts at zero, A does not).

A LoRA file is safetensors holding only ``<module>.lora_A.weight`` (r, in) and ``<module>.lora_B.weight``
(out, r) per adapted Linear (fp32), with JSON meta under the key ``comovi_lora`` (rank, alpha, targets, preset,
model config, stage, step) and the same JSON beside it (``.json``). Merging adds ``scale * alpha / r * B @ A`` to
each weight (``apply_lora``); peft is needed for training only.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import CoMoViError
from ..files.atomic import atomic_path
from ..files.weights import open_safetensors

log = logging.getLogger(__name__)

LORA_META_KEY = "comovi_lora"
ADAPTER = "default"  # peft's adapter name inside the training model
_BLOCK_ATTN = r"blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"
_BLOCK_FFN = r"blocks\.\d+\.ffn\.net\.(0\.proj|2)"
LORA_GROUPS = {  # group -> full-match pattern of the Linear module names it adapts
    "motion_attn": r"motion\." + _BLOCK_ATTN,
    "motion_ffn": r"motion\." + _BLOCK_FFN,
    "rgb_attn": r"rgb\." + _BLOCK_ATTN,
    "rgb_ffn": r"rgb\." + _BLOCK_FFN,
    "coupling": r"zero_linears\.\d+",
    "smpl_head": r"smpl_head\..+",
}
DEFAULT_TARGETS = {1: ("motion_attn", "motion_ffn"), 2: ("motion_attn", "motion_ffn", "coupling", "smpl_head")}
FIX = "apply it to the base model it was trained on (same --preset / model size)"


def parse_targets(targets: str | None, stage: int) -> tuple[str, ...]:
    """``--lora-targets``: comma-separated group names (``LORA_GROUPS``); empty -> the stage's default."""
    names = tuple(t.strip() for t in (targets or "").split(",") if t.strip()) or DEFAULT_TARGETS[stage]
    unknown = [t for t in names if t not in LORA_GROUPS]
    if unknown:
        raise CoMoViError(
            f"--lora-targets: unknown group(s) {unknown}; choose from {list(LORA_GROUPS)} "
            "(comma-separated), or leave it empty for the stage's default"
        )
    return names


def require_peft():
    try:
        import peft
    except ImportError as exc:
        raise CoMoViError(
            "LoRA training needs peft: pip install peft (or pip install 'comfyui-comovi[lora]'); "
            "loading a LoRA file for inference does not"
        ) from exc
    return peft


def target_modules(model: torch.nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Names of the Linear layers of ``model`` that the groups ``targets`` adapt, in module order."""
    pattern = re.compile("|".join(f"(?:{LORA_GROUPS[t]})" for t in targets))
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and pattern.fullmatch(n)]
    if not names:
        raise CoMoViError(f"--lora-targets {','.join(targets)}: no Linear layer of this model matches")
    return names


def add_lora(model: torch.nn.Module, rank: int, alpha: float, targets: tuple[str, ...], seed: int = 0) -> list:
    """Inject rank-``rank`` peft adapters into ``targets`` and freeze everything else. The adapters' random init
    (A; B starts at zero) draws from ``seed`` without touching the global RNG. -> trained (name, parameter) pairs."""
    peft = require_peft()
    if rank < 1:
        raise CoMoViError(f"--lora must be a rank of at least 1, got {rank}")
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=target_modules(model, targets))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_A." in name or ".lora_B." in name)
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors of a peft-injected model under file names (``<module>.lora_A.weight``), fp32."""
    tag = re.compile(rf"\.(lora_[AB])\.{ADAPTER}\.weight$")
    return {
        tag.sub(r".\1.weight", n): p.detach().float().contiguous() for n, p in model.named_parameters() if tag.search(n)
    }


def save_lora(model: torch.nn.Module, path: str | Path, meta: dict) -> Path:
    """Write the adapters of ``model`` (only them) + ``meta`` (rank, alpha, targets, preset, ...) atomically."""
    path = Path(path)
    info = {"format": LORA_META_KEY, **meta}
    with atomic_path(path) as tmp:
        save_file(lora_state(model), str(tmp), metadata={LORA_META_KEY: json.dumps(info)})
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(info, indent=1))
    return path


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) of a LoRA file; a missing file, another format or a full checkpoint is refused by name."""
    path = Path(path).expanduser()
    if not path.is_file() or path.suffix != ".safetensors":
        raise CoMoViError(
            f"LoRA file not found: {path} (give the .safetensors file a LoRA run wrote, "
            "e.g. runs/lora/step_002000.safetensors)"
        )
    with open_safetensors(path) as fh:
        meta = (fh.metadata() or {}).get(LORA_META_KEY)
        keys = list(fh.keys())
        if meta is None:
            kind = "a full model checkpoint" if any(".lora_" not in k for k in keys) else "a LoRA of another tool"
            raise CoMoViError(
                f"{path} is not a CoMoVi LoRA file (it looks like {kind}: no '{LORA_META_KEY}' metadata): "
                "load full checkpoints as the model (--models / load_model / the loader's comovi input), "
                "LoRA files written by python -m comovi_core.train --lora as the LoRA"
            )
        tensors = {k: fh.get_tensor(k) for k in keys}
    return tensors, json.loads(meta)


def _pairs(path: Path, tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    pairs = {}
    for key in tensors:
        module, _, rest = key.rpartition(".lora_")
        if rest not in ("A.weight", "B.weight"):
            raise CoMoViError(f"{path}: '{key}' is not an adapter tensor (<module>.lora_A/B.weight): not a LoRA file")
        if module not in pairs:
            a, b = tensors.get(f"{module}.lora_A.weight"), tensors.get(f"{module}.lora_B.weight")
            if a is None or b is None:
                raise CoMoViError(f"{path}: '{module}' has only one of lora_A/lora_B: the file is incomplete")
            pairs[module] = (a, b)
    return pairs


def _check_adapter(path: Path, model: torch.nn.Module, module: str, a, b, meta: dict) -> None:
    trained_on = f"this LoRA was trained on preset {meta.get('preset')!r}; {FIX}"
    try:
        layer = model.get_submodule(module)
    except AttributeError:
        raise CoMoViError(f"{path}: adapts '{module}', which this model does not have ({trained_on})") from None
    if not isinstance(layer, torch.nn.Linear):
        raise CoMoViError(
            f"{path}: '{module}' is not a plain Linear layer here (LoRA already attached?); "
            "apply LoRA files to a model loaded with load_model"
        )
    out_f, in_f = layer.weight.shape
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != in_f or b.shape[0] != out_f or a.shape[0] != b.shape[1]:
        raise CoMoViError(
            f"{path}: the adapter of '{module}' is {tuple(b.shape)} x {tuple(a.shape)} but the layer is "
            f"{out_f} x {in_f} ({trained_on})"
        )


class LoRAMerge:
    """The LoRA file ``path`` checked against ``model`` (which may be on the meta device), ready to merge.

    Every adapter is checked when this is made, before any weight changes. ``delta(module)`` is the float32
    ``scale * alpha / r * B @ A`` of one adapted Linear (made when asked for, so only one is in memory at a time);
    ``merged(module, weight)`` is ``weight`` with it added, in ``weight``'s dtype."""

    def __init__(self, model: torch.nn.Module, path: str | Path, scale: float = 1.0):
        self.path, self.scale = Path(path), scale
        tensors, self.meta = read_lora(self.path)
        config, saved = getattr(model, "comovi_config", None), self.meta.get("config")
        now = json.loads(json.dumps(config.to_dict())) if hasattr(config, "to_dict") else None
        if saved is not None and now is not None and saved != now:
            diff = {k: (saved.get(k), now.get(k)) for k in now if saved.get(k) != now.get(k)}
            raise CoMoViError(
                f"{self.path}: trained on preset {self.meta.get('preset')!r}, whose model differs from this one "
                f"(the LoRA's vs this model's: {diff}); {FIX}"
            )
        self.factor = scale * float(self.meta["alpha"]) / int(self.meta["rank"])
        self.pairs = _pairs(self.path, tensors)
        for module, (a, b) in self.pairs.items():
            _check_adapter(self.path, model, module, a, b, self.meta)

    def delta(self, module: str) -> torch.Tensor:
        a, b = self.pairs[module]
        return self.factor * (b.float() @ a.float())

    def merged(self, module: str, weight: torch.Tensor) -> torch.Tensor:
        return (weight.float() + self.delta(module).to(weight.device)).to(weight.dtype)

    def log_merged(self) -> None:
        log.info(
            "LoRA %s merged at scale %g into %d layers (rank %s, alpha %s, targets %s)",
            self.path.name,
            self.scale,
            len(self.pairs),
            self.meta["rank"],
            self.meta["alpha"],
            self.meta.get("targets"),
        )


def apply_lora(model: torch.nn.Module, path: str | Path, scale: float = 1.0) -> int:
    """Merge the LoRA file ``path`` into ``model``'s weights in place: W += scale * alpha / r * B @ A.
    Every adapter is checked before any weight changes. Returns the number of layers changed."""
    merge = LoRAMerge(model, path, scale)
    for module in merge.pairs:
        if model.get_submodule(module).weight.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            raise CoMoViError(
                f"{path}: the weights are stored in fp8; apply the LoRA before fp8 storage "
                "(turn fp8_weights off, or load with lora=... so it is merged first)"
            )
    with torch.no_grad():
        for module in merge.pairs:
            weight = model.get_submodule(module).weight
            weight.copy_(merge.merged(module, weight))
    merge.log_merged()
    return len(merge.pairs)


def with_lora(model: torch.nn.Module, path: str | Path, scale: float = 1.0) -> torch.nn.Module:
    """A copy of ``model`` with the LoRA merged; ``model`` is left as it was. The copy shares every tensor except
    the weights of the adapted layers (new tensors), so a host may keep the base model and apply LoRAs again."""
    tensors, _ = read_lora(path)
    adapted = {m for m in _pairs(Path(path), tensors)}
    shared = {
        id(t): t
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if name.rpartition(".")[0] not in adapted
    }
    clone = copy.deepcopy(model, memo=dict(shared))
    apply_lora(clone, path, scale)
    return clone
