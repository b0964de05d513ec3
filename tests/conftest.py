import asyncio
import importlib.util
import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
STUB = ROOT / "tests" / "comfy_stub"


@pytest.fixture(autouse=True)
def _quiet_logs(caplog):
    caplog.set_level(logging.INFO)
    yield


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    """The extension loaded the way ComfyUI loads it, in the stand-in host (tests/comfy_stub) rooted in a temp
    folder."""
    base = tmp_path_factory.mktemp("comfy")
    sys.path.insert(0, str(STUB))
    import folder_paths

    folder_paths.set_base(base)
    (base / "input").mkdir()
    (base / "models" / "smpl").mkdir(parents=True)
    spec = importlib.util.spec_from_file_location(
        "comovi_ext", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["comovi_ext"] = module
    spec.loader.exec_module(module)
    extension = asyncio.run(module.comfy_entrypoint())
    nodes = {n.define_schema().node_id: n for n in asyncio.run(extension.get_node_list())}
    yield {"module": module, "nodes": nodes, "base": base, "folder_paths": folder_paths}
    sys.path.remove(str(STUB))
