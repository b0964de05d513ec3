"""HMR 2.0 network: parity with the reference implementation (4D-Humans) and the official checkpoint layout.

``data/hmr2_tiny/reference.safetensors`` was made by running the reference modules (ViT backbone and
SMPLTransformerDecoderHead of github.com/shubham-goel/4D-Humans) with the ``tiny`` preset and seeded random
weights: input crop, the official-layout state dict, outputs. ``official_keys.json`` lists every tensor name
and shape of the released (ViT-H) Lightning module's state dict, built from the reference code on the meta device.

``preprocess.safetensors`` was made by running the demo's preprocessing of 4D-Humans (commit 6ec7965:
``ViTDetDataset`` with MODEL.IMAGE_SIZE 48, BBOX_SHAPE 192:256, ImageNet mean/std; and ``cam_crop_to_full`` at the
demo's focal, EXTRA.FOCAL_LENGTH 5000 / 256 * max(W, H)) on a synthetic 120 x 90 picture (uint8 RGB, fed to the
reference as BGR like ``cv2.imread``) with four person boxes: inside, partly outside, and two over the whole picture
that shrink it 5.6x and 16.7x (anti-alias blur sigma 0.91 and 3.7, reaching the picture's edges). It holds the
picture, boxes, the reference's normalised crops (float32), box centres and sizes, a crop camera per box and the
full-image translations (float64).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from comovi_core.errors import CoMoViError
from comovi_core.files.weights import read_safetensors
from comovi_core.recovery.hmr.config import PRESETS
from comovi_core.recovery.hmr.crop import crop_camera_to_full, crop_person, square_window
from comovi_core.recovery.hmr.loading import load_hmr2
from comovi_core.recovery.hmr.model import HMR2
from comovi_core.recovery.hmr.state_dict import (
    convert_state_dict,
    infer_estimator_config,
    official_to_ours,
    read_tensors,
)

DATA = Path(__file__).parent / "data" / "hmr2_tiny"


@pytest.fixture(scope="module")
def reference():
    return read_safetensors(DATA / "reference.safetensors")


def _official_state(reference):
    return {k.removeprefix("state."): v for k, v in reference.items() if k.startswith("state.")}


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def test_tiny_hmr2_matches_the_reference_implementation(reference, tmp_path):
    """Measured when written: relative errors 2e-7 (global_orient, cam) to 5e-7 (body_pose), fp32."""
    path = tmp_path / "tiny.safetensors"
    from safetensors.torch import save_file

    save_file(_official_state(reference), path)
    model = load_hmr2(path, PRESETS["tiny"])
    with torch.no_grad():
        out = model(reference["input"])
        features = model.backbone(reference["input"][..., 8:-8])
    assert _rel(features, reference["out.features"].flatten(2).transpose(1, 2)) < 1e-4
    for name in ("global_orient", "body_pose", "betas", "cam"):
        assert _rel(getattr(out, name), reference[f"out.{name}"]) < 1e-4, name
    assert reference["out.cam"].sub(reference["state.smpl_head.init_cam"]).abs().mean() > 0.1  # the head did work


def test_every_tensor_of_the_official_checkpoint_is_mapped():
    """576 tensors of the released module: backbone and head load into our ViT-H model exactly (names and
    shapes); discriminator, SMPL buffers and the `initialized` flag are the only ones dropped."""
    keys = json.loads((DATA / "official_keys.json").read_text())["keys"]
    assert len(keys) == 576
    dropped = sorted(k for k in keys if official_to_ours(k) is None)
    assert {k.split(".")[0] for k in dropped} == {"discriminator", "smpl", "initialized"}
    official = {k: torch.empty(shape, device="meta") for k, shape in keys.items()}
    state = convert_state_dict(official)
    config = infer_estimator_config(state)
    assert config == PRESETS["vit-h"]
    with torch.device("meta"):
        model = HMR2(config)
    assert set(model.state_dict()) == set(state)
    assert all(model.state_dict()[k].shape == v.shape for k, v in state.items())
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in model.state_dict().values())


def _lightning_like_ckpt(path: Path, state: dict) -> Path:
    """A .ckpt shaped like Lightning's: state_dict plus hyper-parameters whose class we do not have."""
    import sys
    import types

    class CfgNode(dict):  # pickled as yacs.config.CfgNode, a module that is not installed here
        pass

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    modules = {"yacs": types.ModuleType("yacs"), "yacs.config": types.ModuleType("yacs.config")}
    modules["yacs.config"].CfgNode = CfgNode
    sys.modules.update(modules)
    try:
        cfg = CfgNode(MODEL=CfgNode(IMAGE_SIZE=256))
        torch.save({"epoch": 35, "state_dict": state, "hyper_parameters": {"cfg": cfg}}, path)
    finally:
        for name in modules:
            del sys.modules[name]
    return path


def test_lightning_checkpoint_loads_through_the_restricted_unpickler(reference, tmp_path):
    """The .ckpt path gives the same tensors as the fixture; a foreign class in the pickle becomes an inert
    stand-in (never imported), and a pickle that names os.system runs nothing."""
    state = _official_state(reference)
    ckpt = _lightning_like_ckpt(tmp_path / "epoch=35-step=1000000.ckpt", state)
    tensors = read_tensors(ckpt)
    assert set(tensors) == set(state) and all(torch.equal(tensors[k], state[k]) for k in state)
    model = load_hmr2(ckpt, PRESETS["tiny"])
    with torch.no_grad():
        assert _rel(model(reference["input"]).body_pose, reference["out.body_pose"]) < 1e-4

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": state, "x": Evil()}, evil)
    read_tensors(evil)
    assert not marker.exists()


def test_bad_checkpoints_say_what_to_do(reference, tmp_path):
    with pytest.raises(CoMoViError, match="not found: download HMR 2.0"):
        load_hmr2(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CoMoViError, match="not a readable PyTorch checkpoint"):
        load_hmr2(tmp_path / "junk.ckpt")
    state = _official_state(reference)
    state.pop("smpl_head.deccam.weight")
    from safetensors.torch import save_file

    save_file(state, tmp_path / "partial.safetensors")
    with pytest.raises(CoMoViError, match="1 tensors missing"):
        load_hmr2(tmp_path / "partial.safetensors", PRESETS["tiny"])
    with pytest.raises(CoMoViError, match="unexpected tensor"):
        official_to_ours("vision_model.encoder.weight")


@pytest.fixture(scope="module")
def preprocess():
    return read_safetensors(DATA / "preprocess.safetensors")


def test_crop_window_and_pixels_match_the_reference_preprocessing(preprocess):
    """Measured when written (grey levels, 0..255): boxes 0-1 max 0.500, the reference's crop is uint8 (cv2
    warpAffine on the unblurred uint8 picture rounds), i.e. 0.0088 in normalised units; boxes 2-3 (blurred,
    float) max 0.0002 and 0.204 (0.0036 normalised): cv2 interpolates at 1/32-pixel steps, we exactly.
    Before the blur repeated the edge pixels (it reflected them), boxes 2-3 were off by up to 0.73 and 22 levels."""
    config = PRESETS["tiny"].replace(image_size=preprocess["crops"].shape[-1], crop_width=32)
    image = preprocess["image_rgb"].float() / 255  # (90, 120, 3) RGB
    std = torch.tensor(config.image_std)[:, None, None]
    for i, box in enumerate(preprocess["boxes"].numpy()):
        cx, cy, side = window = square_window(box)
        np.testing.assert_allclose([cx, cy], preprocess["box_center"][i].numpy(), atol=1e-5)
        assert side == pytest.approx(float(preprocess["box_size"][i]), rel=1e-6)
        ours = crop_person(image, window, config)
        assert (ours - preprocess["crops"][i]).abs().max() < 0.009, i  # normalised units
        levels = ((ours - preprocess["crops"][i]) * std * 255).abs().max()
        assert levels < (0.501 if i < 2 else 0.25), (i, float(levels))
    # the fixture exercises the blur and the channel order: without either, the crops are far off
    blurred = preprocess["crops"][3]
    assert (crop_person(image, square_window(preprocess["boxes"][3].numpy()), config, False) - blurred).abs().max() > 1
    assert (
        crop_person(image.flip(-1), square_window(preprocess["boxes"][0].numpy()), config) - preprocess["crops"][0]
    ).abs().max() > 1


def test_crop_camera_goes_to_the_full_image_as_the_reference(preprocess):
    """Relative error measured when written: 4e-10 to 6e-8 (our float32 camera against the float64 reference)."""
    height, width = preprocess["image_rgb"].shape[:2]
    focal = float(preprocess["focal_length"])
    assert focal == pytest.approx(5000 / 256 * 120)  # the demo's focal for this picture (ViT-H crop of 256)
    for i, box in enumerate(preprocess["boxes"].numpy()):
        cam = preprocess["pred_cam"][i].float()
        t = crop_camera_to_full(cam, square_window(box), (width / 2, height / 2), focal)
        expected = preprocess["transl"][i]
        assert float((t.double() - expected).norm() / expected.norm()) < 1e-5, i
