"""The example workflows as the real ComfyUI frontend reads them.

The frontend fills a node's widgets from ``widgets_values`` by position, and it makes widgets our schemas
do not list: ``control_after_generate`` after a seed, ``upload`` after LoadImage's file, Preview3D's
viewer. A template saved without them shifts every later value by one, and ComfyUI refuses the prompt.
These tests map each template the way frontend 1.49.6 does (recorded in tests/data/comfyui_frontend/
from a real ComfyUI 0.33: the widget lists per node type, and the prompt "Queue" sent for each template;
tools/comfyui/README.md says how to record them again) and check every value against our schemas.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRONTEND = Path(__file__).parent / "data" / "comfyui_frontend"
RECORDED = json.loads((FRONTEND / "widgets.json").read_text())
TEMPLATES = sorted((ROOT / "example_workflows").glob("*.json"))
FRONTEND_ONLY = {"control_after_generate", "upload"}  # widgets the frontend keeps in widgets_values but never sends
VIRTUAL = {"Note", "MarkdownNote"}  # frontend-only nodes
DISPLAY_ONLY = {"PreviewAny"}  # its widgets show the result after a run: saved as the frontend likes ([[]]), never sent
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
BYPASS, MUTE = 4, 2


def frontend_widgets(schema) -> list:
    """Our schema's widgets in the frontend's order: each widget input, a control combo after a seed."""
    names = []
    for spec in schema.inputs:
        if spec.is_widget:
            names.append(spec.id)
            if spec.io_type == "INT" and (spec.control_after_generate or spec.id in ("seed", "noise_seed")):
                names.append("control_after_generate")
    return names


def widgets_of(ext, kind: str) -> list:
    if kind in ext["nodes"]:
        return frontend_widgets(ext["nodes"][kind].define_schema())
    assert kind in RECORDED["widgets"], (
        f"{kind}: a core node no recorded frontend knows; record it (tools/comfyui/README.md)"
    )
    return RECORDED["widgets"][kind]


def to_prompt(ext, workflow: dict) -> dict:
    """The API prompt the frontend sends for a UI workflow (bypassed/muted/virtual nodes dropped, bypass passes
    through)."""
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {link[0]: link for link in workflow["links"]}  # id, origin, origin_slot, target, target_slot, type

    def source(link_id):
        _, origin, slot, _, _, kind = links[link_id]
        node = nodes[origin]
        if node["mode"] == BYPASS:  # the frontend routes the first input of the same type through a bypassed node
            through = next((i for i in node.get("inputs", []) if i["type"] == kind and i.get("link") is not None), None)
            return None if through is None else source(through["link"])
        return None if node["mode"] == MUTE else [str(origin), slot]

    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL or node["mode"] in (BYPASS, MUTE):
            continue
        values = [] if node["type"] in DISPLAY_ONLY else node.get("widgets_values") or []
        inputs = {
            name: value for name, value in zip(widgets_of(ext, node["type"]), values) if name not in FRONTEND_ONLY
        }
        for socket in node.get("inputs", []):
            if socket.get("link") is not None and (src := source(socket["link"])) is not None:
                inputs[socket["name"]] = src
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def test_our_widget_order_is_the_recorded_frontends(ext):
    """The rules above give, for every node of ours, the widgets the real frontend made."""
    ours = {kind: widgets_of(ext, kind) for kind in ext["nodes"]}
    recorded = {kind: names for kind, names in RECORDED["widgets"].items() if kind in ext["nodes"]}
    assert ours == recorded, (
        "node inputs changed: fix the templates and record the frontend again (tools/comfyui/README.md)"
    )
    assert "control_after_generate" in ours["CoMoViDualSampler"]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_values_fit_the_widgets_they_land_on(ext, path):
    workflow = json.loads(path.read_text())
    for node in workflow["nodes"]:
        if node["type"] in DISPLAY_ONLY:
            continue
        names, values = widgets_of(ext, node["type"]), node.get("widgets_values") or []
        assert len(values) == len(names), (
            f"{path.name} node {node['id']} {node['type']}: {len(values)} values for widgets {names}"
        )
        if node["type"] not in ext["nodes"]:
            continue
        specs = {i.id: i for i in ext["nodes"][node["type"]].define_schema().inputs}
        for name, value in zip(names, values):
            where = f"{path.name} node {node['id']} {node['type']}.{name} = {value!r}"
            if name == "control_after_generate":
                assert value in CONTROL_VALUES, where
                continue
            spec = specs[name]
            if spec.io_type == "COMBO":
                assert value in spec.options, f"{where}: not in {spec.options}"
            elif spec.io_type in ("INT", "FLOAT"):
                assert isinstance(value, (int, float)) and not isinstance(value, bool), where
                assert spec.min <= value <= spec.max and (spec.io_type == "FLOAT" or value == int(value)), where
            else:
                assert isinstance(value, {"BOOLEAN": bool, "STRING": str}[spec.io_type]), where


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_becomes_the_prompt_the_real_frontend_sent(ext, path):
    """Mapped as above, each template gives exactly the prompt recorded from the real frontend, which ran to success."""
    recorded = json.loads((FRONTEND / path.name.replace(".json", ".api.json")).read_text())
    recorded = {
        k: {"class_type": n["class_type"], "inputs": n["inputs"]} for k, n in recorded.items()
    }  # less the titles
    assert to_prompt(ext, json.loads(path.read_text())) == recorded


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_runs_as_saved_and_says_what_to_download(ext, path):
    """Opened as saved: the tiny demo (no download), required inputs linked, the GLB shown in Preview 3D, a note
    with the files."""
    workflow = json.loads(path.read_text())
    prompt = to_prompt(ext, workflow)
    for node_id, node in prompt.items():
        if node["class_type"] in ext["nodes"]:
            schema = ext["nodes"][node["class_type"]].define_schema()
            missing = {i.id for i in schema.inputs if not i.optional} - set(node["inputs"])
            assert not missing, f"{path.name} node {node_id}: {missing} not connected"
        if node["class_type"].startswith("CoMoViLoad") and "base" in node["inputs"]:
            assert node["inputs"]["base"].startswith("tiny demo")
    export = [k for k, n in prompt.items() if n["class_type"] == "CoMoViExportSMPL"]
    assert any(n["class_type"] == "Preview3D" and n["inputs"]["model_file"] == [export[0], 0] for n in prompt.values())
    assert prompt[export[0]]["inputs"]["format"] == "glb"
    samplers = [k for k, n in prompt.items() if n["class_type"] == "CoMoViDualSampler"]
    assert all(any(n["inputs"].get("source") == [k, 3] for n in prompt.values()) for k in samplers)  # motion_info shown
    note = next(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "MarkdownNote")
    if "cogenerate" in path.name:
        assert "tiny demo" in note and "noise" in note and "https://huggingface.co/AfterJourney/CoMoVi" in note
        assert "smpl.is.tue.mpg.de" in note and "1280" in note
        for node in workflow["nodes"]:
            for model in node.get("properties", {}).get("models", []):
                assert model["url"].startswith("https://huggingface.co/") and model["url"].endswith(model["name"])
                assert model["name"] in note
