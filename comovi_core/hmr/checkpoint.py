"""Load HMR 2.0 weights from the official Lightning ``.ckpt`` (restricted unpickling) or a ``.safetensors`` file.

The ``.ckpt`` is a torch zip archive whose pickle also holds the training hyper-parameters (yacs ``CfgNode``),
optimiser state and Lightning bookkeeping. ``torch.load`` runs with our pickle module: tensors, storages and
plain containers are rebuilt; every other global the pickle names becomes an inert stand-in that only records
what it was given: no code from the file ever runs. The state dict is then renamed to our layout
(``official_to_ours``); the discriminator, the SMPL buffers and the ``initialized`` flag of the training
module are not part of the estimator and are dropped (``IGNORED_PREFIXES``).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import pickle
import re
import types
from pathlib import Path

import torch

from ..errors import CoMoViError, UnsafePickleError
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


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves tensors and plain containers; every other global becomes a ``StandIn`` subclass."""

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            log.debug("checkpoint: %s.%s replaced by an inert stand-in", module, name)
            return _stand_in(module, name)
        return found


restricted_pickle = types.ModuleType("comovi_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.__dict__["load"] = lambda *a, **k: RestrictedUnpickler(*a, **k).load()


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of an HMR 2.0 checkpoint (``.ckpt`` / ``.pt`` / ``.pth`` or ``.safetensors``), by name."""
    path = Path(path)
    if not path.is_file():
        raise CoMoViError(
            f"estimator checkpoint {path} not found: download HMR 2.0 (see README, 'Start pose') "
            "and place it in models/smpl_estimators"
        )
    if path.suffix == ".safetensors":
        from ..weights import read_safetensors

        return read_safetensors(path, "download the estimator checkpoint again")
    try:
        data = torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise CoMoViError(f"{path} is not a readable PyTorch checkpoint ({exc}): download it again") from exc
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise CoMoViError(f"{path} holds no state_dict: expected the HMR 2.0 Lightning checkpoint (.ckpt)")
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


def infer_config(state: dict[str, torch.Tensor]) -> HMR2Config:
    """The architecture from tensor shapes (our layout): any ViT size and head depth of the family loads."""
    try:
        embed = state["backbone.layernorm.weight"].shape[0]
        tokens = state["backbone.embeddings.position_embeddings"].shape[1] - 1
        base = HMR2Config()
        config = base.replace(
            embed_dim=embed,
            num_heads=VIT_HEADS.get(embed, 0),
            depth=1 + max(int(k.split(".")[2]) for k in state if k.startswith("backbone.layers.")),
            patch_size=state["backbone.embeddings.patch_embeddings.projection.weight"].shape[-1],
            head_dim=state["head.token_embedding.weight"].shape[0],
            head_depth=1 + max(int(k.split(".")[2]) for k in state if k.startswith("head.layers.")),
            head_heads=state["head.layers.0.attn1.to_q.weight"].shape[0] // base.head_dim_head,
            head_mlp_dim=state["head.layers.0.ff.net.0.proj.weight"].shape[0],
        )
    except (KeyError, ValueError) as exc:
        raise CoMoViError(f"the estimator checkpoint lacks {exc}: is it an HMR 2.0 checkpoint?") from exc
    if config.num_heads == 0 or tokens != config.grid[0] * config.grid[1]:
        raise CoMoViError(
            f"unknown HMR 2.0 variant (ViT width {embed}, {tokens} image tokens): the released ViT-H "
            "checkpoint (epoch=35-step=1000000.ckpt) is the one supported"
        )
    return config


def _stored_config(path: Path) -> HMR2Config | None:
    """The ``hmr2_config`` JSON a converted .safetensors may carry in its metadata (``save_hmr2``)."""
    if path.suffix != ".safetensors":
        return None
    from ..weights import open_safetensors

    with open_safetensors(path) as fh:
        text = (fh.metadata() or {}).get("hmr2_config")
    if text is None:
        return None
    fields = json.loads(text)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        return HMR2Config(**fields)
    except TypeError as exc:
        raise CoMoViError(f"{path}: its hmr2_config metadata does not describe HMR 2.0 ({exc})") from exc


def save_hmr2(model, path: str | Path) -> Path:
    """Our layout as .safetensors with the config in the metadata (a converted checkpoint, no pickle)."""
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(path),
        metadata={"hmr2_config": json.dumps(dataclasses.asdict(model.config))},
    )
    return Path(path)


def load_hmr2(path: str | Path, config: HMR2Config | None = None, device="cpu", dtype=torch.float32):
    """An ``HMR2`` module in eval mode with the weights of ``path``; missing or unexpected tensors are an error."""
    from .model import HMR2

    state = convert_state_dict(read_tensors(path))
    config = config or _stored_config(Path(path)) or infer_config(state)
    with torch.device("meta"):
        model = HMR2(config)
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise CoMoViError(
            f"{path} does not fit HMR 2.0: {len(missing)} tensors missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); download the official checkpoint"
        )
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise CoMoViError(f"{path}: tensor shapes do not fit HMR 2.0 ({exc})") from exc
    return model.to(device=device, dtype=dtype).eval()
