"""Estimator weights as tensors in our layout: read an official Lightning ``.ckpt`` (restricted unpickling) or a
``.safetensors`` file, rename its keys (``official_to_ours``), and read the network's config from the tensors'
shapes or from the metadata a converted file carries.

The ``.ckpt`` is a torch zip archive whose pickle also holds the training hyper-parameters (yacs ``CfgNode``),
optimiser state and Lightning bookkeeping. ``torch.load`` runs with a restricted pickle module
(``files.safe_pickle``): tensors, storages and plain containers are rebuilt; every other global the pickle names
becomes an inert stand-in that only records what it was given: no code from the file ever runs. The
discriminator, the SMPL buffers and the ``initialized`` flag of the training module are not part of the estimator
and are dropped (``IGNORED_PREFIXES``).
"""

from __future__ import annotations

import collections
import json
import logging
import pickle
import re
from pathlib import Path

import torch

from ...errors import CoMoViError, UnsafePickleError
from ...files.safe_pickle import pickle_module
from .config import HMR2Config

log = logging.getLogger(__name__)

IGNORED_PREFIXES = ("discriminator.", "smpl.", "initialized")  # training-only parts of the official module
_QKV = ("query", "key", "value")
_DEC = r"smpl_head\.transformer\.transformer\.layers\.(\d+)"  # a decoder layer of the official head


class StandIn:
    """An inert object for a global the pickle names but we do not trust: it keeps what it is given, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.__dict__.update(args=args, kwargs=kwargs)

    def __setstate__(self, state):
        self.__dict__["state"] = state

    def __setitem__(self, key, value):  # built by NEWOBJ without __init__ (dict subclasses): no attributes yet
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value):
        items = self.__dict__.setdefault("items", {})
        items[len(items)] = value

    def extend(self, values):
        for value in values:
            self.append(value)


def _stand_in(module: str, name: str) -> type:
    return type(f"StandIn[{module}.{name}]", (StandIn,), {})


def _reconstructor(cls, base, state=None):
    """``copyreg._reconstructor`` limited to stand-ins (how dict subclasses such as CfgNode are pickled)."""
    if not (isinstance(cls, type) and issubclass(cls, StandIn)):
        raise UnsafePickleError(f"refusing to rebuild {cls!r} from a checkpoint")
    return cls()


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


def _stand_in_for(module: str, name: str) -> type:
    log.debug("estimator file: %s.%s replaced by an inert stand-in", module, name)
    return _stand_in(module, name)


_PICKLE = pickle_module(_ALLOWED, _stand_in_for)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of an estimator checkpoint (``.ckpt`` / ``.pt`` / ``.pth`` or ``.safetensors``), by name."""
    path = Path(path)
    if not path.is_file():
        raise CoMoViError(
            f"estimator checkpoint {path} not found: download HMR 2.0 or CameraHMR (see README, 'Start pose') "
            "and place it in models/smpl_estimators"
        )
    if path.suffix == ".safetensors":
        from ...files.weights import read_safetensors

        return read_safetensors(path, "download the estimator checkpoint again")
    try:
        data = torch.load(path, map_location="cpu", pickle_module=_PICKLE, weights_only=False, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise CoMoViError(f"{path} is not a readable PyTorch checkpoint ({exc}): download it again") from exc
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise CoMoViError(f"{path} holds no state_dict: expected an HMR 2.0 or CameraHMR checkpoint (.ckpt)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def official_to_ours(key: str) -> list[tuple[str, int, int]] | None:
    """One official key -> [(our key, chunk, chunks)], or None for a key the estimator does not use.

    ``chunks`` > 1 splits a fused tensor along dim 0 and takes piece ``chunk`` (ViT qkv into query/key/value;
    the head's to_qkv and to_kv into to_q/to_k/to_v). Keys already in our layout map to themselves."""
    key = key.removeprefix("model.")
    if key.startswith(IGNORED_PREFIXES):
        return None
    rules = (
        (r"backbone\.patch_embed\.proj\.(.+)", r"backbone.embeddings.patch_embeddings.projection.\1"),
        (r"backbone\.pos_embed", r"backbone.embeddings.position_embeddings"),
        (r"backbone\.last_norm\.(.+)", r"backbone.layernorm.\1"),
        (r"backbone\.blocks\.(\d+)\.norm1\.(.+)", r"backbone.layers.\1.layernorm_before.\2"),
        (r"backbone\.blocks\.(\d+)\.norm2\.(.+)", r"backbone.layers.\1.layernorm_after.\2"),
        (r"backbone\.blocks\.(\d+)\.attn\.proj\.(.+)", r"backbone.layers.\1.attention.output.dense.\2"),
        (r"backbone\.blocks\.(\d+)\.mlp\.(fc\d)\.(.+)", r"backbone.layers.\1.mlp.\2.\3"),
        (r"smpl_head\.transformer\.to_token_embedding\.(.+)", r"head.token_embedding.\1"),
        (r"smpl_head\.transformer\.pos_embedding", r"head.pos_embedding"),
        (r"smpl_head\.(dec\w+|init_\w+)(.*)", r"head.\1\2"),
        (_DEC + r"\.(\d)\.norm\.(.+)", None),  # norm1..3, below
        (_DEC + r"\.0\.fn\.to_out\.0\.(.+)", r"head.layers.\1.attn1.to_out.0.\2"),
        (_DEC + r"\.1\.fn\.to_out\.0\.(.+)", r"head.layers.\1.attn2.to_out.0.\2"),
        (_DEC + r"\.1\.fn\.to_q\.(.+)", r"head.layers.\1.attn2.to_q.\2"),
        (_DEC + r"\.2\.fn\.net\.0\.(.+)", r"head.layers.\1.ff.net.0.proj.\2"),
        (_DEC + r"\.2\.fn\.net\.3\.(.+)", r"head.layers.\1.ff.net.2.\2"),
    )
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match and target is None:
            layer, part, rest = match.groups()
            return [(f"head.layers.{layer}.norm{int(part) + 1}.{rest}", 0, 1)]
        if match:
            return [(match.expand(target), 0, 1)]
    split = (
        (r"backbone\.blocks\.(\d+)\.attn\.qkv\.(.+)", "backbone.layers.{0}.attention.attention.{q}.{1}", _QKV),
        (_DEC + r"\.0\.fn\.to_qkv\.(.+)", "head.layers.{0}.attn1.{q}.{1}", ("to_q", "to_k", "to_v")),
        (_DEC + r"\.1\.fn\.to_kv\.(.+)", "head.layers.{0}.attn2.{q}.{1}", ("to_k", "to_v")),
    )
    for pattern, target, parts in split:
        match = re.fullmatch(pattern, key)
        if match:
            return [(target.format(*match.groups(), q=q), i, len(parts)) for i, q in enumerate(parts)]
    if key.startswith(("backbone.", "head.")):
        return [(key, 0, 1)]  # our own layout
    raise CoMoViError(f"unexpected tensor {key!r} in the estimator checkpoint: is it an HMR 2.0 checkpoint?")


def convert_state_dict(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (or our) names -> our state dict; fused q/k/v tensors are split, unused parts dropped."""
    ours = {}
    for key, tensor in official.items():
        targets = official_to_ours(key)
        for name, chunk, chunks in targets or ():
            ours[name] = tensor if chunks == 1 else tensor.chunk(chunks, dim=0)[chunk]
    return ours


VIT_HEADS = {1280: 16, 1024: 16, 768: 12, 384: 6}  # ViT-H, -L, -B, -S: heads are not visible in tensor shapes


def infer_estimator_config(state: dict[str, torch.Tensor], base: HMR2Config | None = None) -> HMR2Config:
    """The architecture from tensor shapes (our layout): any ViT size and head depth of the family loads.
    ``base`` gives what shapes do not show (crop size, statistics) and the class (HMR2Config or CameraHMRConfig)."""
    base = base or HMR2Config()
    name = "CameraHMR" if type(base).__name__ == "CameraHMRConfig" else "HMR 2.0"
    try:
        embed = state["backbone.layernorm.weight"].shape[0]
        tokens = state["backbone.embeddings.position_embeddings"].shape[1] - 1
        config = base.replace(
            embed_dim=embed,
            num_heads=VIT_HEADS.get(embed, 1),  # unknown widths: refused below
            depth=1 + max(int(k.split(".")[2]) for k in state if k.startswith("backbone.layers.")),
            patch_size=state["backbone.embeddings.patch_embeddings.projection.weight"].shape[-1],
            head_dim=state["head.token_embedding.weight"].shape[0],
            head_depth=1 + max(int(k.split(".")[2]) for k in state if k.startswith("head.layers.")),
            head_heads=state["head.layers.0.attn1.to_q.weight"].shape[0] // base.head_dim_head,
            head_mlp_dim=state["head.layers.0.ff.net.0.proj.weight"].shape[0],
        )
    except (KeyError, ValueError) as exc:
        raise CoMoViError(f"the estimator checkpoint lacks {exc}: is it an {name} checkpoint?") from exc
    if embed not in VIT_HEADS or tokens != config.grid[0] * config.grid[1]:
        raise CoMoViError(
            f"unknown {name} variant (ViT width {embed}, {tokens} image tokens): the released ViT-H "
            "checkpoint is the one supported"
        )
    return config


# what a converted .safetensors of ours stores in its metadata: kind -> (metadata key, the network's name)
METADATA = {
    "hmr2": ("hmr2_config", "HMR 2.0"),
    "camerahmr": ("camerahmr_config", "CameraHMR"),
    "flnet": ("flnet_config", "FLNet"),
}


def config_class(kind: str):
    from .config import CameraHMRConfig, FLNetConfig

    return {"hmr2": HMR2Config, "camerahmr": CameraHMRConfig, "flnet": FLNetConfig}[kind]


def stored_estimator_config(path: Path, kind: str = "hmr2"):
    """The config JSON a converted .safetensors may carry in its metadata (``save_estimator``), else None."""
    if path.suffix != ".safetensors":
        return None
    from ...files.weights import open_safetensors

    key, name = METADATA[kind]
    with open_safetensors(path) as fh:
        text = (fh.metadata() or {}).get(key)
    if text is None:
        return None
    fields = json.loads(text)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        return config_class(kind)(**fields)
    except TypeError as exc:
        raise CoMoViError(f"{path}: its {key} metadata does not describe {name} ({exc})") from exc


def load_into(model_cls, config, state: dict[str, torch.Tensor], path, name: str, device="cpu", dtype=torch.float32):
    """``model_cls(config)`` in eval mode with ``state`` (our layout); missing or unexpected tensors are an error."""
    with torch.device("meta"):
        model = model_cls(config)
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise CoMoViError(
            f"{path} does not fit {name}: {len(missing)} tensors missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); download the official checkpoint"
        )
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise CoMoViError(f"{path}: tensor shapes do not fit {name} ({exc})") from exc
    return model.to(device=device, dtype=dtype).eval()
