"""ComfyUI nodes, run through a minimal stand-in for the host (tests/comfy_stub), and the example workflows."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STUB = Path(__file__).parent / "comfy_stub"


def test_registration(ext):
    assert ext["module"].WEB_DIRECTORY == "./web"
    assert set(ext["nodes"]) == {
        "CoMoViLoadSMPLModel",
        "CoMoViLoadSMPLMotion",
        "CoMoViLoadMotionFile",
        "CoMoViEstimateSMPL",
        "CoMoViRenderMotionMap",
        "CoMoViPreviewSMPLOverlay",
        "CoMoViRenderPoseConditions",
        "CoMoViSMPLMotionFrame",
        "CoMoViConcatSMPLMotions",
        "CoMoViVideoToSMPLMotion",
        "CoMoViExportSMPL",
        "CoMoViLoadModels",
        "CoMoViLoadTransformer",
        "CoMoViLoraLoader",
        "CoMoViStepCache",
        "CoMoViDualSampler",
    }
    paths, exts = ext["folder_paths"].folder_names_and_paths["smpl"]
    assert paths == [str(ext["base"] / "models" / "smpl")] and exts == {".pkl", ".npz"}
    paths, exts = ext["folder_paths"].folder_names_and_paths["smpl_estimators"]
    assert paths == [str(ext["base"] / "models" / "smpl_estimators")] and exts == {".ckpt", ".safetensors"}


def test_render_node_matches_core_and_reports_progress(ext):
    from comovi_ext.comovi_core.body.smpl import camera_vertices, load_body_model
    from comovi_ext.comovi_core.motion_map.render import render_motion_map

    nodes = ext["nodes"]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    motion = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    import comfy.utils

    images, mask = nodes["CoMoViRenderMotionMap"].execute(model, motion, 128, 72, "comovi_v1", "torch").args
    assert images.shape == (33, 72, 128, 3) and mask.shape == (33, 72, 128) and images.dtype == torch.float32
    bar = comfy.utils.ProgressBar.instances[-1]
    assert bar.current == bar.total == 33
    camera = motion.camera.resized(72, 128)
    body = load_body_model(None)
    ref = render_motion_map(
        camera_vertices(body, motion).vertices, body.faces, body.part_ids, camera, "comovi_v1", "torch"
    )
    torch.testing.assert_close(images, ref.images, rtol=0, atol=0)
    assert torch.equal(mask.bool(), ref.mask)
    assert (images[mask == 0] == 1.0).all() and 0.02 < mask.mean() < 0.5
    assert images[mask > 0].min() >= 0.2 - 1e-6


def test_loaders_read_user_files(ext, tmp_path):
    from comovi_ext.comovi_core.body.mannequin import demo_motion
    from comovi_ext.comovi_core.body.motion_file import save_motion
    from synthetic_smpl import write_chumpy_pickle

    write_chumpy_pickle(ext["base"] / "models" / "smpl" / "SMPL_NEUTRAL.pkl")
    save_motion(ext["base"] / "input" / "clip.npz", demo_motion(num_frames=5))
    load_model, load_motion = ext["nodes"]["CoMoViLoadSMPLModel"], ext["nodes"]["CoMoViLoadSMPLMotion"]
    model_input = load_model.define_schema().inputs[0]
    assert model_input.options[1:] == ["SMPL_NEUTRAL.pkl"]
    assert "clip.npz" in load_motion.define_schema().inputs[0].options
    model = load_model.execute("SMPL_NEUTRAL.pkl").args[0]
    assert not model.is_standin and model.faces.shape == (13684, 3)
    motion = load_motion.execute("clip.npz").args[0]
    assert motion.num_frames == 5 and motion.camera.image_size == (704, 1280)


def test_chaining_clips_frame_and_concatenate(ext):
    """Continue a clip: its last frame is the next start pose; the two motions join without repeating that frame."""
    import numpy as np

    nodes = ext["nodes"]
    motion = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    last = nodes["CoMoViSMPLMotionFrame"].execute(motion, -1).args[0]
    assert last.num_frames == 1 and np.array_equal(last.body_pose[0], motion.body_pose[-1])
    assert np.array_equal(nodes["CoMoViSMPLMotionFrame"].execute(motion, 3).args[0].transl[0], motion.transl[3])
    joined = nodes["CoMoViConcatSMPLMotions"].execute(motion, motion, True).args[0]
    assert joined.num_frames == 2 * motion.num_frames - 1
    assert np.array_equal(joined.body_pose[motion.num_frames :], motion.body_pose[1:])
    assert nodes["CoMoViConcatSMPLMotions"].execute(motion, last, False).args[0].num_frames == motion.num_frames + 1
    CoMoViError = sys.modules["comovi_ext.comovi_core.errors"].CoMoViError
    with pytest.raises(CoMoViError, match="has 33 frames"):
        nodes["CoMoViSMPLMotionFrame"].execute(motion, 33)


def test_overlay_preview_blends_the_body_on_the_video(ext):
    nodes = ext["nodes"]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    motion = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    video = torch.rand(5, 88, 160, 3, generator=torch.Generator().manual_seed(1))  # the motion camera's aspect
    preview = nodes["CoMoViPreviewSMPLOverlay"].execute(model, motion, video, 0.5).args[0]
    maps, mask = nodes["CoMoViRenderMotionMap"].execute(model, motion, 160, 88, "comovi_v1", "auto").args
    body = mask[:5].bool()
    assert preview.shape == (5, 88, 160, 3) and torch.equal(preview[~body], video[~body])  # background untouched
    torch.testing.assert_close(preview[body], 0.5 * video[body] + 0.5 * maps[:5][body])
    assert 0.02 < float(body.float().mean()) < 0.6  # the body covers ~3.5% of this wide frame


@functools.lru_cache(maxsize=1)
def _mannequin_video(frames: int = 12, height: int = 80, width: int = 128):
    """A rendered mannequin clip as a video loader gives it: (T, H, W, 3) frames and (T, H, W) masks of the person."""
    from comovi_ext.comovi_core.body.mannequin import demo_motion
    from comovi_ext.comovi_core.body.smpl import load_body_model
    from comovi_ext.comovi_core.motion_map.render import render_motion

    maps = render_motion(
        load_body_model(None), demo_motion(num_frames=frames, height=height, width=width), backend="torch"
    )
    return maps.images.float(), maps.mask.float()


def _acceleration(body, motion) -> float:
    """Mean second difference (metres per frame squared) of the body's joints in the camera."""
    from comovi_ext.comovi_core.body.smpl import camera_vertices

    with torch.no_grad():
        joints = camera_vertices(body, motion).joints
    return float((joints[2:] - 2 * joints[1:-1] + joints[:-2]).norm(dim=-1).mean())


def test_video_to_motion_node_with_the_tiny_demo_estimator(ext):
    from comovi_ext.comovi_core.motion_map.overlay import overlay_motion

    nodes = ext["nodes"]
    node = nodes["CoMoViVideoToSMPLMotion"]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    video, masks = _mannequin_video()
    demo = node.define_schema().inputs[3].options[0]
    assert demo.startswith("tiny demo") and "noise" in demo
    motion, preview, info = node.execute(model, video, 16.0, demo, 1.0, False).args
    assert motion.num_frames == 12 and motion.fps == 16.0 and motion.betas.shape == (10,)
    assert motion.body_pose.shape == (12, 69) and motion.camera.image_size == (80, 128)
    assert preview.shape == video.shape and preview.dtype == torch.float32
    torch.testing.assert_close(preview, overlay_motion(model, motion, video))  # the overlay node's drawing
    assert (
        not torch.equal(preview, video)
        and "person boxes from the whole frame" in info
        and "noise" in info
        and "mean confidence" in info
    )
    # with a mask the person's box comes from it; the same random network sees other crops
    masked, _, info = node.execute(model, video, 16.0, demo, 1.0, False, mask=masks).args
    assert masked.num_frames == 12 and "person boxes from masks" in info
    assert not np.allclose(masked.body_pose, motion.body_pose)
    # one mask for the whole clip is used for every frame
    assert node.execute(model, video, 16.0, demo, 1.0, False, mask=masks[:1]).args[0].num_frames == 12


def test_video_to_motion_smoothing_lowers_the_acceleration(ext):
    nodes = ext["nodes"]
    node = nodes["CoMoViVideoToSMPLMotion"]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    video, masks = _mannequin_video()
    demo = node.define_schema().inputs[3].options[0]
    raw = node.execute(model, video, 16.0, demo, 0.0, False, mask=masks).args[0]
    smooth = node.execute(model, video, 16.0, demo, 1.0, False, mask=masks).args[0]
    assert not np.allclose(raw.body_pose, smooth.body_pose)
    assert _acceleration(model, smooth) < 0.7 * _acceleration(model, raw)


def test_video_to_motion_bad_inputs_say_how_to_fix_them(ext):
    nodes = ext["nodes"]
    node = nodes["CoMoViVideoToSMPLMotion"]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    video, masks = _mannequin_video()
    demo = node.define_schema().inputs[3].options[0]
    CoMoViError = sys.modules["comovi_ext.comovi_core.errors"].CoMoViError
    with pytest.raises(CoMoViError, match=r"1 frame\(s\): a motion needs at least 2.*frame_load_cap"):
        node.execute(model, video[:1], 16.0, demo, 1.0, False)
    with pytest.raises(CoMoViError, match="fps must be the video's frame rate, a positive number, got 0"):
        node.execute(model, video, 0.0, demo, 1.0, False)
    with pytest.raises(CoMoViError, match=r"the mask is \(12, 40, 64\) but the video is \(12, 80, 128\)"):
        node.execute(model, video, 16.0, demo, 1.0, False, mask=masks[:, ::2, ::2])
    with pytest.raises(CoMoViError, match="no person found in any of the 12 frames"):
        node.execute(model, video, 16.0, demo, 1.0, False, mask=torch.zeros_like(masks))


def test_interrupt_stops_rendering(ext):
    import comfy.model_management as mm

    nodes = ext["nodes"]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    motion = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    mm.INTERRUPT["flag"] = True
    with pytest.raises(mm.InterruptProcessingException):
        nodes["CoMoViRenderMotionMap"].execute(model, motion, 64, 36, "flat", "torch")


def test_export_node_writes_inside_the_output_folder(ext):
    from comovi_ext.comovi_core.body.motion_file import load_motion
    from comovi_ext.comovi_core.errors import CoMoViError

    nodes = ext["nodes"]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    motion = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    export = nodes["CoMoViExportSMPL"]
    out = ext["base"] / "output"
    names = [export.execute(model, motion, fmt, "comovi/clip").args[0] for fmt in ("npz", "bvh", "bvh", "obj", "glb")]
    assert names == [
        "comovi/clip_00001.npz",
        "comovi/clip_00001.bvh",
        "comovi/clip_00002.bvh",
        "comovi/clip_00001",
        "comovi/clip_00001.glb",
    ]  # inside the output folder, as Preview 3D & Animation addresses files
    paths = [str(out / name) for name in names]
    assert open(paths[4], "rb").read(4) == b"glTF"
    assert load_motion(paths[0]).num_frames == 33 and "Frames: 33" in open(paths[1]).read()
    assert len(list((out / "comovi" / "clip_00001").glob("*.obj"))) == 33
    # the widgets appended last: skeleton, in_place, ground, fps (a saved workflow without them exports as before)
    name = export.execute(model, motion, "bvh", "comovi/mixamo", "mixamo", True, True, 8.0).args[0]
    text = open(out / name).read()
    assert "ROOT mixamorig:Hips" in text and "Frames: 17" in text and "Frame Time: 0.125000" in text
    root = [line.split()[:3] for line in text.splitlines()[text.splitlines().index("MOTION") + 3 :]]
    assert {float(r[0]) for r in root} == {0.0} and {float(r[2]) for r in root} == {0.0}  # in place
    with pytest.raises(CoMoViError, match="skeleton must be one of smpl, mixamo, ue5, vrm"):
        export.execute(model, motion, "bvh", "comovi/x", "maya")
    with pytest.raises(CoMoViError, match="outside ComfyUI's output folder"):
        export.execute(model, motion, "bvh", "../../escape")
    with pytest.raises(CoMoViError, match="no 3D head"):
        export.execute(model, None, "bvh", "comovi/none")
    with pytest.raises(CoMoViError, match="filename_prefix is empty"):
        export.execute(model, motion, "bvh", " ")
    assert not (ext["base"].parent / "escape_00001.bvh").exists()
    (out / "comovi" / "afile").write_text("x")  # a prefix whose folder is a file: our error, not FileExistsError
    with pytest.raises(
        CoMoViError, match="folder of filename_prefix 'comovi/afile/clip' .*afile is a file, not a folder"
    ):
        export.execute(model, motion, "npz", "comovi/afile/clip")
    assert (out / "comovi" / "afile").read_text() == "x"


def test_cogeneration_nodes_on_tiny_weights(ext, quick_fit, monkeypatch):
    import comfy.model_management as mm
    import comfy.utils
    from tiny_files import write_tiny_weights

    base = ext["base"] / "models"
    write_tiny_weights(
        base / "diffusers" / "Wan2.2-TI2V-5B-Diffusers", base / "diffusion_models" / "comovi_tiny.safetensors"
    )
    nodes = ext["nodes"]
    loader = nodes["CoMoViLoadModels"]
    options = {i.id: i.options for i in loader.define_schema().inputs if i.options}
    assert options["base"][0] == "Wan2.2-TI2V-5B-Diffusers" and options["base"][1].startswith("tiny demo")
    assert options["comovi"][1:] == ["comovi_tiny.safetensors"]
    comovi = loader.execute(
        "Wan2.2-TI2V-5B-Diffusers", "comovi_tiny.safetensors", "float32", False, 0, False, "tiny"
    ).args[0]
    assert "3D head: 57 tensors" in comovi.summary
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    start = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    image = torch.rand(1, 48, 80, 3)
    args = (comovi, model, start, image, "a person jumps", "", 64, 64, 5, 2, 6.0, 5.0, 1, "unipc", "cogenerate")
    video, motion_map, motion, _ = nodes["CoMoViDualSampler"].execute(*args).args
    assert video.shape == motion_map.shape == (5, 64, 64, 3) and 0 <= float(video.min()) and float(video.max()) <= 1
    assert motion.num_frames == 5 and motion.camera.image_size == (64, 64)
    bar = comfy.utils.ProgressBar.instances[-1]
    assert bar.current == bar.total == 2
    again = nodes["CoMoViDualSampler"].execute(*args).args
    assert torch.equal(again[0], video)  # same seed, same output
    unused = (
        nodes["CoMoViDualSampler"]
        .execute(*args, fit_estimator="tiny demo (random weights, built in memory: the motion is noise)")
        .args[3]
    )
    assert unused.endswith(
        "\nfit_estimator not used: these weights have a 3D head (it starts the fit of weights without a 3D head)"
    )
    head, comovi.transformer.smpl_head = comovi.transformer.smpl_head, None  # weights without a 3D head
    assert nodes["CoMoViDualSampler"].execute(*args, False).args[2] is None  # fit_motion off: no motion
    sampler_module = sys.modules[nodes["CoMoViDualSampler"].__module__]  # its bar counts the fit's steps too
    host_package = sampler_module.__name__.rsplit(".nodes.", 1)[0]
    fitting = sys.modules[host_package + ".comovi_core.recovery.fitting"]  # the host's copy
    monkeypatch.setattr(fitting, "fit_motion", functools.partial(fitting.fit_motion, options=quick_fit))
    monkeypatch.setattr(
        sampler_module, "progress_steps", functools.partial(sampler_module.progress_steps, options=quick_fit)
    )
    fitted = nodes["CoMoViDualSampler"].execute(*args, True).args[2]
    bar = comfy.utils.ProgressBar.instances[-1]
    # 2 sampler steps + the fit (PLUMBING_FIT: no colour stage): 4 tracked frames + 40 joint summary steps + 20
    # relabel steps + 10 steps locking the feet (counted whether a foot stands or not)
    assert bar.current == bar.total == 2 + 4 + 40 + 20 + 10
    assert sampler_module.progress_steps.func(5) == 4 + 100 + 50 + 4 + 60 + 30  # defaults (candidates: one batch)
    assert fitted.num_frames == 5 and np.allclose(fitted.body_pose[0], start.body_pose[0], atol=1e-6)
    choices = next(i for i in nodes["CoMoViDualSampler"].define_schema().inputs if i.id == "fit_estimator").options
    assert choices[:2] == [sampler_module.FIT_FROM_START, sampler_module.DEMO_ESTIMATOR]
    # the fit started from an estimator's per-frame bodies of the generated video: no tracked frames
    fitted, info = nodes["CoMoViDualSampler"].execute(*args, True, fit_estimator=choices[1]).args[2:]
    bar = comfy.utils.ProgressBar.instances[-1]
    assert bar.current == bar.total == 2 + 40 + 20 + 10
    started = "fit started from per-frame estimates of the video by " + sampler_module.graph_estimator().name
    assert f"; {started}; the estimate kept in 0 of 4 frames; feet" in info  # PLUMBING_FIT: no colour stage, no choice
    assert fitted.num_frames == 5 and np.allclose(fitted.body_pose[0], start.body_pose[0], atol=1e-6)
    comovi.transformer.smpl_head = head
    mm.INTERRUPT["flag"] = True  # cancelled between layers, not only between steps
    with pytest.raises(mm.InterruptProcessingException):
        nodes["CoMoViDualSampler"].execute(*args)
    assert comovi.transformer.layer_callback is None


TINY_DEMO_ARGS = ("none (base only: untrained copy)", "bfloat16", False, 0, False, "wan2.2-ti2v-5b")


def _tiny_demo(ext, loader="CoMoViLoadModels"):
    schema = ext["nodes"][loader].define_schema()
    demo = next(o for o in next(i for i in schema.inputs if i.id == "base").options if o.startswith("tiny demo"))
    return ext["nodes"][loader].execute(demo, *TINY_DEMO_ARGS).args[0]


def test_tiny_demo_runs_without_files_and_previews_every_step(ext):
    """Both loaders offer the built-in demo; the sampler shows RGB | motion-map estimates at every step."""
    import comfy.utils
    import latent_preview

    nodes = ext["nodes"]
    single = _tiny_demo(ext, "CoMoViLoadTransformer")
    comovi = _tiny_demo(ext)
    assert "NOT a trained model" in comovi.summary and single.vae is not None and single.text_encoder is not None
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    start = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    args = (
        comovi,
        model,
        start,
        torch.rand(1, 64, 64, 3),
        "a person jumps",
        "",
        64,
        128,
        9,
        3,
        6.0,
        5.0,
        1,
        "unipc",
        "cogenerate",
    )
    video, motion_map, motion, info = nodes["CoMoViDualSampler"].execute(*args).args
    assert video.shape == motion_map.shape == (9, 128, 64, 3) and motion.num_frames == 9
    assert info.startswith("3D motion from the 3D head, 9 frames") and "silhouette IoU" in info
    bar = comfy.utils.ProgressBar.instances[-1]
    assert [value for value, _ in bar.previews] == [1, 2, 3]  # one preview per step
    kind, image, size = bar.previews[-1][1]
    assert kind == "JPEG" and image.size == (2 * 4, 8)  # two (64/16 x 128/16) latent frames side by side
    latent_preview.METHOD["name"] = "none"  # the user turned previews off
    try:
        nodes["CoMoViDualSampler"].execute(*args)
    finally:
        latent_preview.METHOD["name"] = "latent2rgb"
    assert comfy.utils.ProgressBar.instances[-1].previews == []


def test_preview_shows_the_middle_generated_frame_of_both_branches(ext):

    previews = sys.modules["comovi_ext.nodes.previews"]
    previewer = previews.wan22_previewer()
    rgb, motion = torch.zeros(1, 48, 5, 2, 3), torch.zeros(1, 48, 5, 2, 3)
    rgb[:, 0, 2], motion[:, 1, 2] = 16.0, 16.0  # frame 2 of 5: red left (channel 0 -> R), green right (channel 1 -> G)
    _, image, _ = previews.side_by_side_preview(previewer, rgb, motion)
    pixels = np.asarray(image)
    assert pixels.shape == (2, 6, 3) and [tuple(p) for p in pixels[0, [0, 3]]] == [(255, 127, 127), (127, 255, 127)]
    assert previews.side_by_side_preview(None, rgb, motion) is None


def test_comfyui_manages_the_models(ext):
    """Loaded through ComfyUI (listed, sized), evicted by "Unload models", handed back at once with offload."""
    import comfy.model_management as mm

    from comovi_core.model.memory import resident_bytes

    nodes = ext["nodes"]
    comovi = _tiny_demo(ext)
    patchers = comovi.get_models()
    assert len(patchers) == 3 and {p.model_size() for p in patchers} == {
        resident_bytes(m) for m in (comovi.transformer, comovi.vae, comovi.text_encoder.model)
    }
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    start = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    args = (
        model,
        start,
        torch.rand(1, 64, 64, 3),
        "a person jumps",
        "",
        64,
        64,
        5,
        1,
        1.0,
        5.0,
        1,
        "euler",
        "cogenerate",
    )
    nodes["CoMoViDualSampler"].execute(comovi, *args)
    assert all(p in mm.current_loaded_models and p.loaded_size() == p.model_size() > 0 for p in patchers)
    patchers[0].detach(unpatch_all=False)  # what ComfyUI does to a model it loads again: it must stay loaded
    assert patchers[0].loaded_size() == patchers[0].model_size()
    mm.unload_all_models()  # the "Unload models" button
    assert not any(p in mm.current_loaded_models for p in patchers) and all(p.loaded_size() == 0 for p in patchers)
    offloaded = _tiny_demo(ext)
    offloaded.offload = True
    nodes["CoMoViDualSampler"].execute(offloaded, *args)
    assert [p for p in mm.LOADS[-4:]] == [
        offloaded.patchers[id(m)]
        for m in (  # text, VAE, transformer, VAE: each in turn
            offloaded.text_encoder.model,
            offloaded.vae,
            offloaded.transformer,
            offloaded.vae,
        )
    ]
    assert not any(p in mm.current_loaded_models for p in offloaded.get_models())


def test_video_to_motion_takes_a_video_of_another_size(ext):
    nodes = ext["nodes"]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    start = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    video = torch.rand(5, 48, 80, 3)
    args = (
        _tiny_demo(ext),
        model,
        start,
        torch.rand(1, 64, 64, 3),
        "a person jumps",
        "",
        64,
        64,
        5,
        1,
        1.0,
        5.0,
        1,
        "euler",
        "video_to_motion",
        False,
    )
    rgb, _, _, _ = nodes["CoMoViDualSampler"].execute(*args, given_video=video).args
    assert rgb.shape == (5, 64, 64, 3)
    with pytest.raises(sys.modules["comovi_ext.comovi_core.errors"].CoMoViError, match=r"T >= 5.*got \(3, 64, 64, 3\)"):
        nodes["CoMoViDualSampler"].execute(*args, given_video=video[:3])


def test_estimate_node_reads_pose_keypoints(ext):
    """POSE_KEYPOINT as comfyui_controlnet_aux gives it (a list of OpenPose-style frame dicts) -> a start pose."""
    from comovi_core.body.mannequin import demo_motion
    from comovi_core.conditions.keypoints import BODY_KEYPOINTS, joint_keypoints
    from comovi_core.recovery.estimate import reprojection_error_px

    model = ext["nodes"]["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    truth = demo_motion(num_frames=4, height=352, width=640)
    with torch.no_grad():
        joints = model(
            torch.as_tensor(truth.global_orient[1:2]),
            torch.as_tensor(truth.body_pose[1:2]),
            None,
            torch.as_tensor(truth.transl[1:2]),
        ).joints[0]
    uv = truth.camera.project(joint_keypoints(joints)) - 0.5  # OpenPose JSON: pixel centres at integers
    flat = [0.0] * 54
    for k, coco in enumerate(BODY_KEYPOINTS):
        flat[3 * coco : 3 * coco + 3] = [float(uv[k, 0]), float(uv[k, 1]), 0.9]
    frames = [
        {"people": [{"pose_keypoints_2d": flat, "face_keypoints_2d": None}], "canvas_height": 352, "canvas_width": 640}
    ]
    start = ext["nodes"]["CoMoViEstimateSMPL"].execute(model, frames, 0, 50.0).args[0]
    assert start.num_frames == 1 and start.camera.image_size == (352, 640)
    assert reprojection_error_px(model, start, np.asarray(flat, np.float32).reshape(18, 3)) < 3.0
    CoMoViError = sys.modules["comovi_ext.comovi_core.errors"].CoMoViError
    with pytest.raises(CoMoViError, match="empty"):
        ext["nodes"]["CoMoViEstimateSMPL"].execute(model, [], 0, 50.0)


def test_estimate_node_from_the_start_image(ext):
    """IMAGE + POSE_KEYPOINT + an estimator from models/smpl_estimators (a tiny HMR2 here) -> the start pose on the
    image's camera and a preview with the body drawn over the picture; IMAGE + MASK without keypoints works too."""
    from comovi_core.body.mannequin import demo_motion
    from comovi_core.conditions.keypoints import BODY_KEYPOINTS, joint_keypoints
    from comovi_core.recovery.estimate import reprojection_error_px
    from comovi_core.recovery.hmr.config import PRESETS
    from comovi_core.recovery.hmr.loading import save_hmr2
    from comovi_core.recovery.hmr.model import HMR2

    folder = ext["base"] / "models" / "smpl_estimators"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_hmr2(HMR2(PRESETS["tiny"]).eval(), folder / "hmr2_tiny.safetensors")
    node = ext["nodes"]["CoMoViEstimateSMPL"]
    assert "hmr2_tiny.safetensors" in node.define_schema().inputs[4].options
    model = ext["nodes"]["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    truth = demo_motion(num_frames=4, height=352, width=640)
    with torch.no_grad():
        joints = model(
            torch.as_tensor(truth.global_orient[1:2]),
            torch.as_tensor(truth.body_pose[1:2]),
            None,
            torch.as_tensor(truth.transl[1:2]),
        ).joints[0]
    uv = truth.camera.project(joint_keypoints(joints)) - 0.5  # OpenPose JSON: pixel centres at integers
    flat = [0.0] * 54
    for k, coco in enumerate(BODY_KEYPOINTS):
        flat[3 * coco : 3 * coco + 3] = [float(uv[k, 0]), float(uv[k, 1]), 0.9]
    frames = [
        {"people": [{"pose_keypoint_2d": None, "pose_keypoints_2d": flat}], "canvas_height": 352, "canvas_width": 640}
    ]
    image = torch.full((1, 352, 640, 3), 0.25)
    start, preview = node.execute(model, frames, 0, 50.0, "hmr2_tiny.safetensors", False, image).args
    assert start.num_frames == 1 and start.camera.focal_length == truth.camera.focal_length  # 50-degree default
    assert start.camera.image_size == (352, 640) and preview.shape == (1, 352, 640, 3)
    drawn = (preview - image).abs().amax(-1)[0] > 0.01  # where the body covers the picture
    assert 0.01 < float(drawn.float().mean()) < 0.5
    keypoints = np.asarray(flat, np.float32).reshape(18, 3)
    assert reprojection_error_px(model, start, keypoints) < 30.0  # refined from a random network's start
    mask = torch.zeros(1, 352, 640)
    mask[0, 60:300, 260:380] = 1
    start, _ = node.execute(model, None, 0, 50.0, "hmr2_tiny.safetensors", False, image, mask).args
    assert start.transl[0, 2] > 0 and np.abs(start.betas).sum() > 0
    with pytest.raises(sys.modules["comovi_ext.comovi_core.errors"].CoMoViError, match="needs the start IMAGE"):
        node.execute(model, None, 0, 50.0)


def test_estimate_node_with_camerahmr_and_its_focal_network(ext):
    """CameraHMR and its FLNet file in models/smpl_estimators (tiny, random weights): both are listed, the focal
    network is found next to CameraHMR by default and sets the start pose's camera; 'none' gives the fov_degrees
    camera, a chosen FLNet file the same as 'auto'; FLNet chosen as the estimator says what to choose instead."""
    from tiny_files import write_tiny_camerahmr

    body_nodes = sys.modules["comovi_ext.nodes.body_nodes"]
    folder = ext["base"] / "models" / "smpl_estimators"
    camerahmr, flnet = write_tiny_camerahmr(folder)
    node = ext["nodes"]["CoMoViEstimateSMPL"]
    inputs = {i.id: i for i in node.define_schema().inputs}
    assert [i.id for i in node.define_schema().inputs][-1] == "focal_network"  # appended: saved graphs keep working
    assert {"camerahmr_checkpoint_cleaned.safetensors", "cam_model_cleaned.safetensors"} <= set(
        inputs["estimator"].options
    ) and inputs["focal_network"].options[:2] == [body_nodes.FOCAL_AUTO, body_nodes.FOCAL_NONE]
    model = ext["nodes"]["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    image = torch.rand(1, 352, 640, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 352, 640)
    mask[0, 60:300, 260:380] = 1
    args = (model, None, 0, 50.0, "camerahmr_checkpoint_cleaned.safetensors", False, image, mask)
    estimator = sys.modules["comovi_ext.comovi_core.recovery.hmr.loading"].load_estimator(camerahmr)
    fl_net = sys.modules["comovi_ext.comovi_core.recovery.hmr.fl_net"]
    expected, _ = fl_net.estimate_camera(estimator.focal_net, image[0])
    start, preview = node.execute(*args).args
    assert start.camera == expected and start.transl[0, 2] > 0 and preview.shape == (1, 352, 640, 3)
    chosen, _ = node.execute(*args, "cam_model_cleaned.safetensors").args
    assert chosen.camera == expected
    fov, _ = node.execute(*args, body_nodes.FOCAL_NONE).args
    assert fov.camera == sys.modules["comovi_ext.comovi_core.body.camera"].PinholeCamera.default_for(352, 640, 50.0)
    error = sys.modules["comovi_ext.comovi_core.errors"].CoMoViError
    with pytest.raises(error, match="is CameraHMR's focal-length network"):
        node.execute(model, None, 0, 50.0, "cam_model_cleaned.safetensors", False, image, mask)


class _HostVAE:
    """ComfyUI's VAE calling convention around a diffusers VAE: (T, H, W, 3) in [0, 1] in, raw latents out;
    decode gives (1, T, H, W, 3) in [0, 1]."""

    def __init__(self, vae, latent_channels=48):
        self.vae, self.latent_channels, self.calls = vae, latent_channels, 0

    def encode(self, pixels):
        self.calls += 1
        return self.vae.encode(pixels.movedim(-1, 0)[None] * 2 - 1).latent_dist.mode()

    def decode(self, raw):
        self.calls += 1
        return ((self.vae.decode(raw).sample + 1) / 2).clamp(0, 1).movedim(1, -1)


def test_single_files_with_the_hosts_vae_and_conditioning(ext):
    """Single-file transformer + ComfyUI-style VAE and CONDITIONING give what the diffusers-folder path gives."""
    from tiny_files import write_tiny_weights

    from comovi_core.codecs.vae_files import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD
    from comovi_core.inference.tiny import tiny_transformer
    from comovi_core.model.saving import save_checkpoint

    models = ext["base"] / "models"
    write_tiny_weights(
        models / "diffusers" / "Wan2.2-TI2V-5B-Diffusers", models / "diffusion_models" / "comovi_tiny.safetensors"
    )
    save_checkpoint(tiny_transformer(0), models / "diffusion_models" / "wan2.2_ti2v_tiny.safetensors", "wan_original")
    nodes = ext["nodes"]
    folder = (
        nodes["CoMoViLoadModels"]
        .execute("Wan2.2-TI2V-5B-Diffusers", "comovi_tiny.safetensors", "float32", False, 0, False, "tiny")
        .args[0]
    )
    single = (
        nodes["CoMoViLoadTransformer"]
        .execute("wan2.2_ti2v_tiny.safetensors", "comovi_tiny.safetensors", "float32", False, 0, True, "tiny")
        .args[0]
    )
    assert single.vae is None and single.text_encoder is None and "3D head: 57 tensors" in single.summary
    assert single.offload and not folder.offload
    folder.vae.register_to_config(latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD))
    host_vae = _HostVAE(folder.vae)
    text = folder.text_encoder
    positive, negative = [[text(["a person jumps"])[:, :10], {}]], [[text(["blurry"])[:, :7], {}]]
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    start = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(5))
    sampler = nodes["CoMoViDualSampler"]
    common = (model, start, image)
    settings = (64, 64, 5, 2, 6.0, 5.0, 3, "unipc", "cogenerate")
    want = sampler.execute(folder, *common, "a person jumps", "blurry", *settings).args
    got = sampler.execute(single, *common, "", "", *settings, vae=host_vae, positive=positive, negative=negative).args
    assert host_vae.calls == 4  # start image, start motion map, two decodes
    import comfy.model_management as mm

    assert mm.LOADS[-1] is single.patchers[id(single.transformer)]  # ComfyUI loaded it (making room) before it ran
    assert single.patchers[id(single.transformer)] not in mm.current_loaded_models  # offload: handed back after use
    assert torch.allclose(got[0], want[0], atol=1e-4) and torch.allclose(got[1], want[1], atol=1e-4)
    assert np.allclose(got[2].body_pose, want[2].body_pose, atol=1e-4) and float(want[0].std()) > 0.01
    CoMoViError = sys.modules["comovi_ext.comovi_core.errors"].CoMoViError  # the extension's own copy of the class
    with pytest.raises(CoMoViError, match="connect Load VAE"):
        sampler.execute(single, *common, "a person jumps", "", *settings)
    with pytest.raises(CoMoViError, match="no text encoder"):
        sampler.execute(single, *common, "a person jumps", "", *settings, vae=host_vae)
    with pytest.raises(CoMoViError, match=r"needs \(1, tokens, 48\)"):
        sampler.execute(
            single,
            *common,
            "",
            "",
            *settings,
            vae=host_vae,
            positive=[[torch.zeros(1, 9, 4096), {}]],
            negative=negative,
        )
    with pytest.raises(CoMoViError, match="48 channels"):
        sampler.execute(
            single, *common, "", "", *settings, vae=_HostVAE(folder.vae, 16), positive=positive, negative=negative
        )


def test_core_never_imports_comfyui():
    code = (
        "import importlib, pkgutil, sys, comovi_core\n"
        "names = [m.name for m in pkgutil.walk_packages(comovi_core.__path__, 'comovi_core.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths', 'server', "
        "'nodes')]\n"
        "print(len(names), bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) >= 15 and out[1] == "[]"


def test_block_swap_and_fp8_under_comfyui_management(ext):
    """ComfyUI counts only what stays resident, and the memory modes give the plain model's video."""
    from tiny_files import write_tiny_weights

    from comovi_core.model.memory import resident_bytes

    models = ext["base"] / "models"
    write_tiny_weights(
        models / "diffusers" / "Wan2.2-TI2V-5B-Diffusers", models / "diffusion_models" / "comovi_tiny.safetensors"
    )
    loader, nodes = ext["nodes"]["CoMoViLoadModels"], ext["nodes"]

    def load(fp8, swap):
        return loader.execute(
            "Wan2.2-TI2V-5B-Diffusers", "comovi_tiny.safetensors", "float32", fp8, swap, False, "tiny"
        ).args[0]

    plain, swapped, fp8 = load(False, 0), load(False, 1), load(True, 0)

    def size(m):
        return m.patchers[id(m.transformer)].model_size()

    pair = sum(p.numel() * p.element_size() for m in swapped.transformer.pair_modules(1) for p in m.parameters())
    assert size(swapped) == size(plain) - pair == resident_bytes(swapped.transformer) and size(fp8) < size(plain)
    model = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    start = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    args = (
        model,
        start,
        torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(2)),
        "a person jumps",
        "",
        64,
        64,
        5,
        2,
        6.0,
        5.0,
        1,
        "euler",
        "cogenerate",
    )
    want = nodes["CoMoViDualSampler"].execute(plain, *args).args[0]
    assert (
        torch.equal(nodes["CoMoViDualSampler"].execute(swapped, *args).args[0], want)
        and swapped.transformer.block_swap.moves > 0
    )
    assert (nodes["CoMoViDualSampler"].execute(fp8, *args).args[0] - want).abs().max() < 0.05


def test_loaders_set_the_attention_kernel_and_compile(ext):
    """The loaders' attention and compile widgets reach the transformer (single files and the tiny demo); a kernel
    the device cannot run is refused when the model loads, with what it needs."""
    from tiny_files import write_tiny_weights

    from comovi_core.model.memory import attention_backend

    CoMoViError = sys.modules["comovi_ext.comovi_core.errors"].CoMoViError  # the extension's own copy of the class

    models = ext["base"] / "models"
    write_tiny_weights(
        models / "diffusers" / "Wan2.2-TI2V-5B-Diffusers", models / "diffusion_models" / "comovi_tiny.safetensors"
    )
    nodes = ext["nodes"]
    files = ("Wan2.2-TI2V-5B-Diffusers", "comovi_tiny.safetensors", "float32", False, 0, False, "tiny")
    loaded = nodes["CoMoViLoadModels"].execute(*files, "sdpa_math", False).args[0]
    assert attention_backend(loaded.transformer) == "sdpa_math"
    assert attention_backend(nodes["CoMoViLoadModels"].execute(*files).args[0].transformer) == "sdpa"  # old templates
    tiny = "tiny demo (random weights, built in memory: pictures are noise)"
    demo = nodes["CoMoViLoadTransformer"].execute(tiny, "none", "bfloat16", False, 0, False, "auto", "sdpa_math", True)
    assert attention_backend(demo.args[0].transformer) == "sdpa_math"
    blocks = sum(
        1 for m in demo.args[0].transformer.modules() if type(m).__name__ in ("WanTransformerBlock", "SMPLDecoderLayer")
    )
    assert f"torch.compile: {blocks} blocks" in demo.args[0].summary
    with pytest.raises(CoMoViError, match="attention backend 'flash' needs flash-attn .* and a CUDA GPU"):
        nodes["CoMoViLoadModels"].execute(*files, "flash", False)
