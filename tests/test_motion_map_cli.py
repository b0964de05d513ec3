"""``python -m comovi_core.motion_map``: outputs, and clean failures that write nothing."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import save_motion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.files.video import read_video, to_uint8
from comovi_core.motion_map.__main__ import main
from comovi_core.motion_map.render import render_motion_map


def test_demo_writes_video_and_exact_pngs(tmp_path):
    out, pngs = tmp_path / "out" / "map.mp4", tmp_path / "frames"
    rc = main(
        [
            "--out",
            str(out),
            "--height",
            "64",
            "--width",
            "112",
            "--backend",
            "torch",
            "--png-dir",
            str(pngs),
            "--frames-per-chunk",
            "5",
        ]
    )
    assert rc == 0
    video = read_video(out)
    assert video.shape == (33, 64, 112, 3)
    files = sorted(pngs.iterdir())
    assert [f.name for f in files[:2]] == ["000000.png", "000001.png"] and len(files) == 33
    model, motion = load_body_model(None), demo_motion()
    ref = render_motion_map(
        camera_vertices(model, motion).vertices[7:8],
        model.faces,
        model.part_ids,
        motion.camera.resized(64, 112),
        "comovi_v1",
        "torch",
    )
    np.testing.assert_array_equal(np.asarray(Image.open(files[7])), to_uint8(ref.images)[0])
    assert np.abs(video[7].astype(int) - to_uint8(ref.images)[0].astype(int)).mean() < 4  # lossy H.264
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.mp4"]


def test_motion_file_and_body_model_arguments(tmp_path):
    from synthetic_smpl import write_npz

    motion = demo_motion(num_frames=3, height=48, width=64)
    save_motion(tmp_path / "m.npz", motion)
    write_npz(tmp_path / "SMPL_NEUTRAL.npz")
    rc = main(
        [
            "--motion",
            str(tmp_path / "m.npz"),
            "--body-model",
            str(tmp_path),
            "--out",
            str(tmp_path / "v.mp4"),
            "--shading",
            "flat",
            "--backend",
            "torch",
        ]
    )
    assert rc == 0 and read_video(tmp_path / "v.mp4").shape == (3, 48, 64, 3)


def test_bad_arguments_fail_cleanly_and_write_nothing(tmp_path, caplog):
    cases = [
        (["--out", str(tmp_path / "a.mp4"), "--height", "63", "--width", "112"], "even height and width"),
        (["--out", str(tmp_path / "a.avi")], "must be an .mp4"),
        (["--out", str(tmp_path / "a.mp4"), "--body-model", str(tmp_path / "nothing")], "smpl.is.tue.mpg.de"),
        (["--out", str(tmp_path / "a.mp4"), "--motion", str(tmp_path / "missing.npz")], "motion file not found"),
        (["--out", str(tmp_path / "a.mp4"), "--height", "8", "--width", "8"], "at least 16 pixels"),
    ]
    for argv, message in cases:
        caplog.clear()
        assert main(argv) == 2, argv
        assert message in caplog.text, (argv, caplog.text)
    assert list(tmp_path.iterdir()) == []
    torch.manual_seed(0)
