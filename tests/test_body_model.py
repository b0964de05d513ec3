"""SMPL file loading (plain / chumpy pickles, npz), refusal of unsafe pickles, kinematics vs smplx."""

import pickle

import numpy as np
import pytest
import torch
from synthetic_smpl import smpl_like_arrays, write_chumpy_pickle, write_npz, write_plain_pickle

from comovi_core.body.mannequin import REST_JOINTS, mannequin_arrays
from comovi_core.body.model_file import find_model_file, load_model_data
from comovi_core.body.parts import JOINT_PART_INDEX, PART_NAMES, parts_from_segmentation
from comovi_core.body.smpl import BodyModel, load_body_model
from comovi_core.errors import BodyModelNotFoundError, CoMoViError, UnsafePickleError
from comovi_core.files.safe_pickle import load_pickle_arrays

KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


@pytest.mark.parametrize(
    "writer,name",
    [
        (write_plain_pickle, "SMPL_NEUTRAL.pkl"),
        (write_chumpy_pickle, "SMPL_NEUTRAL.pkl"),
        (write_npz, "SMPL_NEUTRAL.npz"),
    ],
)
def test_every_layout_loads_the_same_arrays(tmp_path, writer, name):
    writer(tmp_path / name)
    data = load_model_data(tmp_path)  # found through the folder, as ComfyUI's models/smpl
    ref = smpl_like_arrays()
    for key in KEYS:
        np.testing.assert_allclose(
            getattr(data, key), np.asarray(ref[key]).astype(getattr(data, key).dtype), rtol=0, atol=1e-7, err_msg=key
        )
    assert data.v_template.shape == (6890, 3) and data.J_regressor.shape == (24, 6890)
    assert not data.is_standin


def test_chumpy_pickle_is_read_without_chumpy(tmp_path):
    path = write_chumpy_pickle(tmp_path / "SMPL_NEUTRAL.pkl")
    assert b"chumpy.ch" in path.read_bytes() and b"csc_matrix" in path.read_bytes()
    arrays = load_pickle_arrays(path)
    np.testing.assert_array_equal(arrays["shapedirs"], mannequin_arrays()["shapedirs"])
    np.testing.assert_allclose(arrays["J_regressor"], mannequin_arrays()["J_regressor"], atol=0)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "SMPL_NEUTRAL.pkl"
    evil.write_bytes(pickle.dumps({"v_template": _RunsCode(marker)}, protocol=2))
    with pytest.raises(UnsafePickleError, match="refusing to load 'posix.system'|refusing to load 'os.system'"):
        load_model_data(evil)
    assert not marker.exists()


def test_missing_model_says_where_to_get_it(tmp_path):
    with pytest.raises(BodyModelNotFoundError, match=r"smpl\.is\.tue\.mpg\.de.*models/smpl"):
        find_model_file(tmp_path)
    with pytest.raises(BodyModelNotFoundError, match="not found"):
        load_body_model(tmp_path / "nope.pkl")


def test_wrong_file_contents_are_named(tmp_path):
    arrays = smpl_like_arrays()
    arrays["shapedirs"] = arrays["shapedirs"][:, :, :5]
    with pytest.raises(CoMoViError, match="shapedirs.*at least 10"):
        load_model_data(write_npz(tmp_path / "SMPL_NEUTRAL.npz", arrays))
    arrays = smpl_like_arrays()
    del arrays["J_regressor"]
    with pytest.raises(CoMoViError, match="missing 'J_regressor'"):
        load_model_data(write_plain_pickle(tmp_path / "x.pkl", arrays))
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(CoMoViError, match="not a readable SMPL pickle"):
        load_model_data(tmp_path / "junk.pkl")


def test_kinematics_rest_skeleton_and_translation():
    model = load_body_model(None)
    assert model.is_standin
    g = torch.Generator().manual_seed(0)
    t = 7
    go, bp = torch.randn(t, 3, generator=g), 0.4 * torch.randn(t, 69, generator=g)
    betas, transl = torch.randn(10, generator=g), torch.randn(t, 3, generator=g)
    out = model(go, bp, betas, transl)
    moved = model(go, bp, betas, None)
    torch.testing.assert_close(out.vertices - transl[:, None], moved.vertices, rtol=0, atol=1e-6)
    # a pure root rotation rotates the whole rest body about the pelvis joint
    rot = torch.tensor([[0.0, 0.0, 1.2]])
    turned = model(rot, torch.zeros(1, 69), betas)
    still = model(torch.zeros(1, 3), torch.zeros(1, 69), betas)
    from comovi_core.body.rotations import axis_angle_to_matrix

    pelvis = still.joints[0, 0]
    expect = (still.vertices[0] - pelvis) @ axis_angle_to_matrix(rot[0]).T + pelvis
    torch.testing.assert_close(turned.vertices[0], expect, rtol=0, atol=1e-5)
    rest = model(torch.zeros(1, 3), torch.zeros(1, 69))
    np.testing.assert_allclose(rest.joints[0].numpy(), REST_JOINTS, atol=1e-5)
    height = rest.vertices[0, :, 1].max() - rest.vertices[0, :, 1].min()
    assert 1.6 < float(height) < 1.9


def test_parts_from_skinning_and_segmentation_precedence():
    data = load_body_model(None)
    ids = data.part_ids.numpy()
    weights = mannequin_arrays()["weights"]
    np.testing.assert_array_equal(ids, JOINT_PART_INDEX[weights.argmax(1)])
    assert PART_NAMES[JOINT_PART_INDEX[15]] == "head" and PART_NAMES[JOINT_PART_INDEX[0]] == "hips"
    seg = {name: [] for name in PART_NAMES}
    seg["head"] = list(range(10))
    seg["rightHand"] = list(range(5, 20))  # rightHand (p=0) comes before head (p=11): head wins on 5..9
    seg["hips"] = list(range(10, 6890))  # hips is last: it wins on 10..19
    parts = parts_from_segmentation(seg, 6890)
    assert parts[:10].tolist() == [11] * 10 and parts[10:20].tolist() == [23] * 10
    with pytest.raises(CoMoViError, match="belong to no part"):
        parts_from_segmentation({"head": [0]}, 6890)


def test_segmentation_file_beside_the_model_is_used(tmp_path):
    import json

    write_npz(tmp_path / "SMPL_NEUTRAL.npz")
    seg = {name: [] for name in PART_NAMES}
    seg["neck"] = list(range(6890))
    (tmp_path / "smpl_vert_segmentation.json").write_text(json.dumps(seg))
    model = BodyModel(load_model_data(tmp_path))
    assert set(model.part_ids.tolist()) == {PART_NAMES.index("neck")}
