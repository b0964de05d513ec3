"""Stand-in for ComfyUI's ``comfy_api.latest`` (V3 node API): only what our nodes use."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Input:
    id: str
    io_type: str
    optional: bool = False
    default: Any = None
    min: Any = None
    max: Any = None
    step: Any = None
    options: list | None = None
    tooltip: str | None = None
    is_widget: bool = False
    control_after_generate: bool = False


@dataclass
class _Output:
    io_type: str
    display_name: str | None = None


def _type(io_type: str, widget: bool = False) -> type:
    class _T:
        @staticmethod
        def Input(
            id,
            optional=False,
            default=None,
            min=None,
            max=None,
            step=None,
            options=None,
            tooltip=None,
            control_after_generate=False,
            **_,
        ):
            return _Input(
                id, io_type, optional, default, min, max, step, options, tooltip, widget, control_after_generate
            )

        @staticmethod
        def Output(display_name=None, **_):
            return _Output(io_type, display_name)

    _T.io_type = io_type
    return _T


@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = ""
    description: str = ""
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    is_output_node: bool = False


class NodeOutput:
    def __init__(self, *args, ui=None):
        self.args = args
        self.ui = ui


class ComfyNode:
    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError


io = types.SimpleNamespace(
    ComfyNode=ComfyNode,
    Schema=Schema,
    NodeOutput=NodeOutput,
    Custom=lambda name: _type(name),
    Image=_type("IMAGE"),
    Mask=_type("MASK"),
    Latent=_type("LATENT"),
    Int=_type("INT", True),
    Float=_type("FLOAT", True),
    String=_type("STRING", True),
    Boolean=_type("BOOLEAN", True),
    Combo=_type("COMBO", True),
    Vae=_type("VAE"),
    Conditioning=_type("CONDITIONING"),
)


class ComfyExtension:
    async def on_load(self) -> None:
        return None

    async def get_node_list(self):
        raise NotImplementedError
