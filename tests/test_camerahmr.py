"""CameraHMR and its focal network FLNet: parity with the release's implementation, the official checkpoint layouts,
the release demo's preprocessing, and telling estimator files apart.

``data/camerahmr_tiny/reference.safetensors`` was made by running the release's modules (prepare/CameraHMR of
IGL-HKUST/CoMoVi: ``core/camerahmr_model.py`` with its ViT and CLIFF head, ``core/cam_model/fl_net.py`` with its
HRNet) with tiny configs and seeded random weights (exact in fp16, stored so), and the demo's preprocessing
(``mesh_estimator.py``: ``resize_image``, ``get_cam_intrinsics``, ``convert_to_full_img_cam``;
``core/datasets/dataset.py``) on a 48 x 80 picture. The networks' inputs are stored in fp16 too (exact); the
reference crops are rounded to fp16. ``official_keys.json`` lists every tensor of the release's training module
(ViT-H backbone, CLIFF head, FLNet as ``cam_model``, SMPL layers), built on the meta device.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_files import write_tiny_camerahmr

from comovi_core.body.camera import PinholeCamera
from comovi_core.body.rotations import axis_angle_to_matrix
from comovi_core.errors import CoMoViError
from comovi_core.files.weights import read_safetensors
from comovi_core.recovery.hmr.camerahmr import CameraHMR, CameraHMREstimator, bbox_info, crop_window
from comovi_core.recovery.hmr.camerahmr_loading import (
    camerahmr_to_ours,
    find_focal_net,
    flnet_to_ours,
    infer_flnet_config,
    load_camerahmr,
    load_flnet,
)
from comovi_core.recovery.hmr.config import CAMERAHMR_PRESETS, FLNET_PRESETS, CameraHMRConfig
from comovi_core.recovery.hmr.crop import crop_person
from comovi_core.recovery.hmr.estimator import estimate_body
from comovi_core.recovery.hmr.fl_net import FLNet, flnet_input
from comovi_core.recovery.hmr.loading import estimator_kind, load_estimator
from comovi_core.recovery.hmr.state_dict import convert_state_dict, infer_estimator_config, read_tensors

DATA = Path(__file__).parent / "data" / "camerahmr_tiny"


@pytest.fixture(scope="module")
def reference():
    return {
        k: v.float() if v.dtype == torch.float16 else v
        for k, v in read_safetensors(DATA / "reference.safetensors").items()
    }


def _state(reference, prefix: str) -> dict:
    return {k.removeprefix(prefix): v for k, v in reference.items() if k.startswith(prefix)}


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture()
def tiny_files(tmp_path):
    """The fixture's networks as the release names its files, in one folder (our .safetensors, config inside)."""
    return write_tiny_camerahmr(tmp_path / "smpl_estimators")


def _write(path: Path, state: dict) -> Path:
    save_file(state, path)
    return path


def test_tiny_camerahmr_matches_the_reference_implementation(reference, tmp_path):
    """Measured when written: relative errors 2e-7 (global_orient) to 1.6e-6 (body_pose), fp32. The bbox info is
    ours (``bbox_info``) from the box, picture size and focal length the reference was given."""
    model = load_camerahmr(
        _write(tmp_path / "tiny.safetensors", _state(reference, "state.")), CAMERAHMR_PRESETS["tiny"]
    )
    crop = torch.nn.functional.pad(reference["input.middle"], (32, 32))  # the reference sees only the middle columns
    info = torch.stack(
        [
            bbox_info((float(c[0]), float(c[1]), float(side)), tuple(int(v) for v in size), float(k[0, 0]))
            for c, side, size, k in zip(
                reference["input.box_center"],
                reference["input.box_size"],
                reference["input.img_size"],
                reference["input.cam_int"],
            )
        ]
    )
    with torch.no_grad():
        out = model(crop, info)
        features = model.backbone(reference["input.middle"])
    assert _rel(features, reference["out.features"].flatten(2).transpose(1, 2)) < 1e-4
    for name in ("global_orient", "body_pose", "betas", "cam"):
        assert _rel(getattr(out, name), reference[f"out.{name}"]) < 1e-4, name
    assert (reference["out.cam"] - reference["state.smpl_head.init_cam"]).abs().mean() > 0.05  # the head did work
    with torch.no_grad():  # the box information matters: another focal length gives another pose
        assert _rel(model(crop, info * 2).body_pose, out.body_pose) > 1e-3


def test_a_file_without_the_mean_parameters_takes_them_from_smpl_mean_params(reference, tmp_path):
    """The release fills the head's start values from smpl_mean_params.npz and loads with strict=False: a checkpoint
    without them needs that file next to it, and then loads to the same network."""
    import numpy as np

    state = _state(reference, "state.")
    means = {name: state.pop(f"smpl_head.init_{name}")[0].numpy() for name in ("body_pose", "betas", "cam")}
    path = _write(tmp_path / "camerahmr_checkpoint_cleaned.safetensors", state)
    with pytest.raises(CoMoViError, match="put smpl_mean_params.npz .* next to it"):
        load_camerahmr(path, CAMERAHMR_PRESETS["tiny"])
    np.savez(tmp_path / "smpl_mean_params.npz", pose=means["body_pose"], shape=means["betas"], cam=means["cam"])
    model = load_camerahmr(path, CAMERAHMR_PRESETS["tiny"])
    torch.testing.assert_close(model.head.init_cam, reference["state.smpl_head.init_cam"], rtol=0, atol=0)
    torch.testing.assert_close(model.head.init_body_pose, reference["state.smpl_head.init_body_pose"], rtol=0, atol=0)
    np.savez(tmp_path / "smpl_mean_params.npz", pose=means["body_pose"])  # not the right arrays
    with pytest.raises(CoMoViError, match="is not SMPL mean parameters"):
        load_camerahmr(path, CAMERAHMR_PRESETS["tiny"])


def test_tiny_flnet_matches_the_reference_implementation(reference, tmp_path):
    """Measured when written: field-of-view output and pooled HRNet features equal the reference's exactly."""
    flnet = load_flnet(_write(tmp_path / "fl.safetensors", _state(reference, "flnet.state.")), FLNET_PRESETS["tiny"])
    with torch.no_grad():
        fov = flnet(reference["flnet.input"])
        features = flnet.backbone(reference["flnet.input"]).mean((2, 3))
    assert _rel(features, reference["flnet.out.features"]) < 1e-4
    assert _rel(fov, reference["flnet.out.fov"]) < 1e-4
    assert (fov - flnet.fc3.bias).abs().mean() > 0.05  # not only the readout's bias


def test_every_tensor_of_the_official_checkpoints_is_mapped():
    """The training module's 2440 tensors: backbone and head load into our ViT-H CameraHMR exactly (names and
    shapes); its ``cam_model`` (FLNet) into our W48 FLNet. Dropped, with their reason in camerahmr_checkpoint:
    the dense-keypoint readout, SMPL layers, ``initialized``; of FLNet the heat-map layer and the unused fc2."""
    keys = json.loads((DATA / "official_keys.json").read_text())["keys"]
    assert len(keys) == 2440
    official = {k: torch.empty(shape, device="meta") for k, shape in keys.items()}
    assert estimator_kind(official) == "camerahmr"
    dropped = {k.split(".")[0] + (".deckp" if ".deckp." in k else "") for k in keys if camerahmr_to_ours(k) is None}
    expected = {"smpl_head.deckp", "cam_model", "smpl", "smpl_layer", "smpl_gt", "smpl_gt_male", "smpl_gt_female"}
    assert dropped == expected | {"initialized"}
    state = convert_state_dict({k: v for k, v in official.items() if camerahmr_to_ours(k) is not None})
    config = infer_estimator_config(state, CameraHMRConfig())
    assert config == CAMERAHMR_PRESETS["vit-h"]
    with torch.device("meta"):
        model = CameraHMR(config)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}

    flnet_official = {k.removeprefix("cam_model."): v for k, v in official.items() if k.startswith("cam_model.")}
    assert len(flnet_official) == 1874 and estimator_kind(flnet_official) == "flnet"
    dropped = sorted({k.rsplit(".", 1)[0] for k in flnet_official if flnet_to_ours(k) is None})
    assert dropped == ["backbone.final_layer", "fc2"]
    state = {flnet_to_ours(k): v for k, v in flnet_official.items() if flnet_to_ours(k) is not None}
    assert infer_flnet_config(state) == FLNET_PRESETS["w48"] and FLNET_PRESETS["w48"].features == 720
    with torch.device("meta"):
        flnet = FLNet(FLNET_PRESETS["w48"])
    assert {k: tuple(v.shape) for k, v in flnet.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}

    hmr2 = json.loads((Path(__file__).parent / "data" / "hmr2_tiny" / "official_keys.json").read_text())["keys"]
    assert estimator_kind({k: torch.empty(s, device="meta") for k, s in hmr2.items()}) == "hmr2"


def test_preprocessing_matches_the_release_demo(reference):
    """FLNet's input (picture shrunk with INTER_AREA into a white square, BGR as OpenCV reads it) and the person crop
    (the box's longer side, bilinear, no blur) against the demo's OpenCV results: within 8-bit rounding and
    OpenCV's 1/32-pixel fixed-point sampling (measured when written: 0.018 and 0.010 at most, normalised units)."""
    image = reference["image"].float() / 255
    x = flnet_input(image, FLNET_PRESETS["tiny"])
    assert (x - reference["image.flnet_input"]).abs().max() < 0.03
    assert (x - reference["image.flnet_input"]).abs().mean() < 0.002
    window = crop_window(reference["image.box"].numpy())
    assert window[2] == pytest.approx(float(reference["image.box_size"]))
    crop = crop_person(image, window, CAMERAHMR_PRESETS["tiny"], antialias=False)
    assert (crop - reference["image.crop"]).abs().max() < 0.02
    assert (crop - reference["image.crop"]).abs().mean() < 0.006


def test_picture_to_body_matches_the_release_demo(reference, tiny_files):
    """The whole path on the 48 x 80 picture: FLNet's focal length, the crop, the box info, the network and the
    full-image translation, against the demo's numbers (measured when written: focal 1e-6, translation 9e-5,
    betas 8e-4, pose 2.5e-3 relative; the pose differs by the crop's 8-bit rounding)."""
    estimator = load_estimator(tiny_files[0])
    assert isinstance(estimator, CameraHMREstimator) and estimator.focal_net is not None
    image = reference["image"].float() / 255
    est = estimate_body(estimator, image, reference["image.box"].numpy(), PinholeCamera.default_for(48, 80), "unused")
    focal = float(reference["image.cam_int"][0, 0])
    assert est.camera.focal_length == pytest.approx((focal, focal), rel=1e-4)
    assert est.camera.principal_point == (40.0, 24.0) and est.backend == "CameraHMR"
    vfov = math.degrees(2 * math.atan(24 / focal))
    assert est.focal_source == f"estimated by CameraHMR (vertical field of view {vfov:.1f} degrees)"
    assert _rel(est.transl, reference["image.out.cam_t"][0]) < 1e-3
    assert _rel(est.betas, reference["image.out.betas"][0]) < 5e-3
    assert _rel(axis_angle_to_matrix(est.body_pose.reshape(23, 3)), reference["image.out.body_pose"][0]) < 1e-2


def test_files_are_told_apart_and_flnet_is_found_next_to_camerahmr(reference, tiny_files, tmp_path):
    """A Lightning .ckpt (restricted unpickling) with the training module's keys loads as CameraHMR and its
    ``cam_model`` copy serves as FLNet when no FLNet file lies next to it; FLNet chosen as the estimator, or a
    foreign file, says what to do; 'none' leaves the focal length to the field of view."""
    camerahmr_file, flnet_file = tiny_files
    assert find_focal_net(camerahmr_file) == flnet_file
    assert load_estimator(camerahmr_file, None).focal_net is None
    with pytest.raises(CoMoViError, match="focal network .* not found: download CameraHMR's cam_model_cleaned"):
        load_estimator(camerahmr_file, tmp_path / "missing.ckpt")
    with pytest.raises(CoMoViError, match="is CameraHMR's focal-length network"):
        load_estimator(flnet_file)

    state = {
        **_state(reference, "state."),
        **{f"cam_model.{k}": v for k, v in _state(reference, "flnet.state.").items()},
    }
    state["initialized"] = torch.tensor(True)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    torch.save({"epoch": 3, "state_dict": state, "hyper_parameters": {"lr": 1e-5}}, lonely / "camerahmr.ckpt")
    assert estimator_kind(read_tensors(lonely / "camerahmr.ckpt")) == "camerahmr"
    assert find_focal_net(lonely / "camerahmr.ckpt") is None
    model = load_camerahmr(lonely / "camerahmr.ckpt", CAMERAHMR_PRESETS["tiny"])
    flnet = load_flnet(lonely / "camerahmr.ckpt", FLNET_PRESETS["tiny"])  # the embedded copy
    with torch.no_grad():
        assert _rel(flnet(reference["flnet.input"]), reference["flnet.out.fov"]) < 1e-4
        assert model.head.token_embedding.weight.shape == (48, 160)

    save_file({"vision_model.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CoMoViError, match="neither HMR 2.0, CameraHMR nor"):
        load_estimator(tmp_path / "other.safetensors")
