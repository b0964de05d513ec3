import asyncio
import dataclasses
import importlib.util
import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
STUB = ROOT / "tests" / "comfy_stub"

from comovi_core.recovery.fitting import FitOptions  # noqa: E402  (after ROOT joins sys.path)


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


# fit_motion's effort for tests of its plumbing (pipeline, nodes): every stage runs, with few steps and no limb
# flips (its accuracy is measured by tests/test_fitting.py and benchmarks/bench_fit_motion.py at the defaults).
QUICK_FIT = FitOptions(iterations=40, track_steps=10, relabel_rounds=1, splat_steps=10, flip_steps=0, contact_steps=10)
# The pipeline's and the nodes' plumbing: QUICK_FIT without the colour stage, whose frame-by-frame passes cost about
# 20 s of CPU at any size (5 frames of 64x64: 2 s instead of 25 s); tests/test_fit_splat.py covers that stage.
PLUMBING_FIT = dataclasses.replace(QUICK_FIT, splat_steps=0)


@pytest.fixture
def quick_fit(monkeypatch):
    """The pipeline's motion fit with ``PLUMBING_FIT``."""
    import functools

    from comovi_core.recovery import fitting

    monkeypatch.setattr(fitting, "fit_motion", functools.partial(fitting.fit_motion, options=PLUMBING_FIT))
    return PLUMBING_FIT


@pytest.fixture
def fresh_accelerate_state():
    """accelerate's state is process-wide (one precision per process, as in a real run): reset it after a test that
    trains in-process (modules that train use it for every test: ``pytestmark``)."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
