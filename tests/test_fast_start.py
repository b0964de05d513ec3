"""Fast start: the CLIs' --help and ComfyUI's import of the extension load no heavy library, and the
renderer asks whether OpenGL works (seconds, in child processes) only for clips where it can pay off."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from comovi_core.motion_map import render, render_gl

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("diffusers", "torch._dynamo", "transformers", "accelerate", "roma", "scipy", "OpenGL", "pyrender")
CLIS = (
    "generate",
    "train",
    "prepare",
    "consolidate",
    "estimate",
    "fitting",
    "evaluate",
    "export",
    "checkpoint",
    "motion_map",
    "capture",
    "conditions",
)

# Runs each CLI as `python -m` would (run_name="__main__") with --help, in one fresh interpreter.
_HELP_CODE = """
import contextlib, io, json, runpy, sys
result = {}
for name in sys.argv[1:]:
    sys.argv[:] = ["x", "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module("comovi_core." + name, run_name="__main__", alter_sys=True)
        code = "no exit"
    except SystemExit as exc:
        code = exc.code or 0
    result[name] = [code, out.getvalue()]
print(json.dumps({"help": result, "modules": sorted(sys.modules)}))
"""

# Loads the extension the way ComfyUI does (tests/comfy_stub stands in for the host) and lists its nodes.
_EXTENSION_CODE = """
import asyncio, importlib.util, json, sys
sys.path.insert(0, sys.argv[2])
root = sys.argv[1]
spec = importlib.util.spec_from_file_location("comovi_ext", root + "/__init__.py", submodule_search_locations=[root])
module = importlib.util.module_from_spec(spec)
sys.modules["comovi_ext"] = module
spec.loader.exec_module(module)
nodes = asyncio.run(asyncio.run(module.comfy_entrypoint()).get_node_list())
print(json.dumps({"nodes": len(nodes), "modules": sorted(sys.modules)}))
"""


def _fresh_python(code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _heavy(modules: list[str]) -> list[str]:
    return sorted({m for m in modules for h in HEAVY if m == h or m.startswith(h + ".")})


def test_every_cli_the_docs_advertise_is_checked():
    """Each ``python -m comovi_core.X`` named in the README or a module docstring is in CLIS (its --help is tested)."""
    texts = [(ROOT / "README.md").read_text(), *(p.read_text() for p in (ROOT / "comovi_core").rglob("*.py"))]
    advertised = {m for text in texts for m in re.findall(r"python -m comovi_core\.(\w+)", text)}
    assert advertised == set(CLIS)


def test_cli_help_prints_usage_and_imports_nothing_heavy():
    found = _fresh_python(_HELP_CODE, *CLIS)
    for name in CLIS:
        code, text = found["help"][name]
        assert code == 0, f"{name} --help exited with {code}"
        assert text.startswith(f"usage: python -m comovi_core.{name}"), f"{name} --help printed {text[:200]!r}"
        assert "--help" in text and len(text.splitlines()) >= 4
    assert "comovi_core.errors" in found["modules"] and "comovi_core.inference.sampling" in found["modules"]
    assert _heavy(found["modules"]) == [], "importing the CLIs for --help loaded heavy libraries"


def test_comfyui_import_of_the_extension_imports_nothing_heavy():
    found = _fresh_python(_EXTENSION_CODE, str(ROOT), str(ROOT / "tests" / "comfy_stub"))
    assert found["nodes"] >= 11
    assert "comovi_ext.nodes.sampler_nodes" in found["modules"]
    assert _heavy(found["modules"]) == [], "ComfyUI's import of the extension loaded heavy libraries"


@pytest.fixture
def probe_calls(monkeypatch):
    """Stand-in for the OpenGL probe: records calls, answers 'available'."""
    calls = []
    monkeypatch.setattr(render_gl, "_probe", lambda: calls.append(1) or (True, ""))
    return calls


def test_auto_renderer_asks_for_opengl_only_for_large_clips(probe_calls):
    cpu = torch.device("cpu")
    small = 9 * 128 * 128  # the tiny demo
    assert render.resolve_backend("auto", cpu, small) == "torch" and probe_calls == []
    assert render.resolve_backend("torch", cpu, render.AUTO_GL_MIN_PIXELS) == "torch" and probe_calls == []
    assert render.resolve_backend("auto", cpu, 81 * 704 * 1280) == "pyrender" and len(probe_calls) == 1
    assert render.resolve_backend("auto", cpu, None) == "pyrender" and len(probe_calls) == 2  # size unknown
    assert render.resolve_backend("pyrender", cpu, small) == "pyrender" and len(probe_calls) == 3  # asked for


def test_auto_renderer_on_a_large_clip_without_opengl_uses_torch(monkeypatch):
    monkeypatch.setattr(render_gl, "_probe", lambda: (False, "no EGL, no OSMesa"))
    assert render.resolve_backend("auto", torch.device("cpu"), render.AUTO_GL_MIN_PIXELS) == "torch"
