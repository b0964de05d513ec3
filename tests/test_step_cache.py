"""Step caching (comovi_core.model.step_cache): off is exact, the schedule is exact, the pair skips together, reuse adds
residuals."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch

from comovi_core.errors import CoMoViError
from comovi_core.inference.generate import main
from comovi_core.inference.sampling import sample
from comovi_core.inference.tiny import tiny_transformer
from comovi_core.model.step_cache import StepCache, StepCacheConfig, describe_evaluations, modulated_input, relative_l1

HUGE = 1e9


@pytest.fixture(scope="module")
def setup():
    model = tiny_transformer(0)  # random coupling and 3D head: the branches really mix
    cfg = model.comovi_config
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(1, cfg.in_channels, 1, 4, 4, generator=g)
    emb, neg = (torch.randn(1, cfg.text_len, cfg.text_dim, generator=g) for _ in range(2))
    return dict(model=model, cond=cond, emb=emb, neg=neg, pose=torch.randn(1, 144, generator=g) * 0.1)


def _sample(setup, steps=10, **kw):
    with torch.no_grad():
        return sample(
            setup["model"],
            setup["cond"],
            -setup["cond"],
            3,
            setup["emb"],
            negative_prompt_embeds=setup["neg"],
            start_pose_6d=setup["pose"],
            steps=steps,
            generator=torch.Generator().manual_seed(0),
            **kw,
        )


@pytest.fixture
def block_calls(setup):
    """Per model call (= step), which blocks of each branch ran: {"rgb": [[indices], ...], "motion": ...}."""
    model, calls = setup["model"], {"rgb": [], "motion": []}
    hooks = [model.register_forward_pre_hook(lambda m, a: (calls["rgb"].append([]), calls["motion"].append([]))[-1])]
    for name in calls:
        for i, block in enumerate(getattr(model, name).blocks):
            hooks.append(block.register_forward_pre_hook(lambda m, a, name=name, i=i: calls[name][-1].append(i)))
    yield calls
    for hook in hooks:
        hook.remove()


def test_off_and_threshold_zero_are_bit_identical_to_no_cache(setup, block_calls):
    plain = _sample(setup)
    for config in (None, StepCacheConfig(threshold=0), StepCacheConfig(threshold=None)):
        cached = _sample(setup, step_cache=config)
        assert torch.equal(cached.rgb, plain.rgb) and torch.equal(cached.motion, plain.motion)
        assert torch.equal(cached.smpl_6d, plain.smpl_6d)
        assert cached.evaluations == {"computed": 10, "reused": 0}
    assert block_calls["rgb"] == block_calls["motion"] == [[0, 1]] * 40  # every step ran every block, 4 runs
    assert plain.evaluations == {"computed": 10, "reused": 0}


@pytest.mark.parametrize(
    "steps,start,end,computed",
    [
        (10, 0.2, 0.7, [0, 1, 7, 8, 9]),  # reusable: steps 2..6
        (30, 0.1, 0.9, [0, 1, 2, 27, 28, 29]),  # the defaults
        (10, 0.3, 0.3, list(range(10))),  # an empty window
        (10, 0.0, 1.0, [0]),  # step 0 computes: there is nothing to reuse yet
    ],
)
def test_huge_threshold_computes_only_the_forced_steps(setup, block_calls, steps, start, end, computed):
    result = _sample(setup, steps, step_cache=StepCacheConfig(HUGE, start, end))
    ran = [i for i, blocks in enumerate(block_calls["rgb"]) if blocks]
    assert ran == computed and sum(len(b) for b in block_calls["rgb"]) == 2 * len(
        computed
    )  # 2 RGB blocks per computed step
    assert result.evaluations == {"computed": len(computed), "reused": steps - len(computed)}
    assert set(StepCacheConfig(HUGE, start, end).cacheable_steps(steps)) == set(range(steps)) - set(computed)


def test_both_branches_always_skip_together(setup, block_calls):
    result = _sample(setup, 20, step_cache=StepCacheConfig(0.05, 0.1, 0.9))
    rgb, motion = block_calls["rgb"], block_calls["motion"]
    assert len(rgb) == len(motion) == 20 and all(r in ([], [0, 1]) for r in rgb)  # a step runs all blocks or none
    assert rgb == motion  # the pair: both branches, same steps
    assert 0 < result.evaluations["reused"] < 20 - 4 and result.evaluations["computed"] == sum(1 for r in rgb if r)
    plain = _sample(setup, 20)
    deviation = (result.rgb - plain.rgb).norm() / plain.rgb.norm()
    assert 0 < deviation < 0.05  # an approximation, close to the uncached run


def _fake_blocks(log):
    def blocks(x_rgb, x_motion):
        log.append(1)
        return x_rgb * 2 + 1, x_motion.sin() + x_rgb, x_motion * 3 - x_rgb

    return blocks


@torch.no_grad()
def test_reused_step_returns_input_plus_stored_residual_per_row(setup):
    """Batch of 2 (cond, uncond): one decision, each row its own residual; the 3D head's fused features alike."""
    model = setup["model"]
    d, g = model.comovi_config.hidden_size, torch.Generator().manual_seed(5)
    proj = torch.randn(2, 12, 6, d, generator=g)  # per-token timestep projection (TI2V)
    cache, log = StepCache(StepCacheConfig(HUGE, 0.0, 1.0), 3), []
    x0 = torch.randn(2, 12, d, generator=g), torch.randn(2, 12, d, generator=g)
    cache.begin_step(0)
    out0 = cache.run(model, _fake_blocks(log), *x0, proj)
    x1 = x0[0] + 0.01 * torch.randn(2, 12, d, generator=g), x0[1] - 0.01
    cache.begin_step(1)
    out1 = cache.run(model, _fake_blocks(log), *x1, proj)
    assert log == [1] and cache.decisions == [True, False]  # step 1 never ran the blocks
    assert torch.equal(out1[0], x1[0] + (out0[0] - x0[0])) and torch.equal(out1[1], x1[1] + (out0[1] - x0[1]))
    assert torch.equal(out1[2], x1[1] + (out0[2] - x0[1]))  # fused = motion input + fused residual
    assert not torch.equal(out1[0][0] - x1[0][0], out1[0][1] - x1[0][1])  # per-row residuals


@torch.no_grad()
def test_the_larger_change_of_the_two_branches_decides(setup):
    model, g = setup["model"], torch.Generator().manual_seed(6)
    d = model.comovi_config.hidden_size
    proj = torch.randn(1, 6, d, generator=g)  # one timestep for all tokens (Wan2.1 layout) works too
    x = torch.randn(1, 12, d, generator=g), torch.randn(1, 12, d, generator=g)
    for moved, threshold in ((0, 0.5), (1, 0.5)):
        cache, log = StepCache(StepCacheConfig(threshold, 0.0, 1.0), 3), []
        cache.begin_step(0)
        cache.run(model, _fake_blocks(log), *x, proj)
        changed = list(x)
        changed[moved] = torch.randn(1, 12, d, generator=g)  # one branch's input changes completely
        cache.begin_step(1)
        cache.run(model, _fake_blocks(log), *changed, proj)
        assert cache.decisions == [True, True], f"a change of branch {moved} alone must make the pair compute"
    delta = 0.05 * torch.randn(1, 12, d, generator=g)
    inputs = [(x[0] + step * delta, x[1]) for step in range(4)]  # small changes of the RGB input only
    mod = [modulated_input(model.rgb.blocks[0], rgb, proj) for rgb, _ in inputs]
    changes = [float(relative_l1(mod[s], mod[s - 1])) for s in range(1, 4)]
    cache, log = StepCache(StepCacheConfig(changes[0] + changes[1] + changes[2] / 2, 0.0, 1.0), 4), []
    for step, pair in enumerate(inputs):  # they accumulate until they reach the threshold
        cache.begin_step(step)
        cache.run(model, _fake_blocks(log), *pair, proj)
    assert cache.decisions == [True, False, False, True] and cache.accumulated == 0.0 and len(log) == 2


def test_config_is_checked_and_described():
    with pytest.raises(CoMoViError, match="threshold must be 0 \\(off\\) or more, got -0.1"):
        StepCacheConfig(-0.1)
    with pytest.raises(CoMoViError, match="0 <= start <= end <= 1, got start 0.8 and end 0.2"):
        StepCacheConfig(0.1, 0.8, 0.2)
    assert not StepCacheConfig(0).enabled and not StepCacheConfig(None).enabled and StepCacheConfig().enabled
    assert (
        describe_evaluations({"computed": 20, "reused": 30})
        == "step cache: 20 of 50 transformer evaluations computed, 30 reused (2.50x fewer)"
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--cache-threshold", "-0.1"], r"--cache-threshold must be 0 \(off\) or more, got -0.1"),
        (["--cache-threshold", "nan"], r"--cache-threshold must be 0 \(off\) or more, got nan"),
        (["--cache-start", "0.2"], "--cache-start/--cache-end need --cache-threshold"),
        (
            ["--cache-threshold", "0.1", "--cache-start", "0.8", "--cache-end", "0.5"],
            "--cache-start/--cache-end: .*got start 0.8 and end 0.5",
        ),
    ],
)
def test_bad_cache_flags_fail_before_work(tmp_path, caplog, argv, message):
    assert main(["--preset", "tiny", "--out", str(tmp_path / "o"), *argv]) == 2
    assert re.search(message, caplog.text) and not (tmp_path / "o").exists()


def test_cli_reports_evaluations_in_meta(tmp_path, caplog):
    out = tmp_path / "run"
    assert (
        main(
            [
                "--preset",
                "tiny",
                "--out",
                str(out),
                "--steps",
                "10",
                "--cache-threshold",
                "1000",
                "--cache-start",
                "0.2",
                "--cache-end",
                "0.7",
                "--height",
                "64",
                "--width",
                "64",
                "--frames",
                "5",
            ]
        )
        == 0
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["step_cache"] == {"threshold": 1000.0, "start": 0.2, "end": 0.7}
    assert meta["transformer_evaluations"] == {"computed": 5, "reused": 5}
    assert "step cache: 5 of 10 transformer evaluations computed, 5 reused" in caplog.text


def test_step_cache_node_feeds_the_sampler(ext):
    nodes = ext["nodes"]
    CoMoViError = sys.modules["comovi_ext.comovi_core.errors"].CoMoViError
    node = nodes["CoMoViStepCache"]
    assert [i.id for i in node.define_schema().inputs] == ["threshold", "start", "end"]
    config = node.execute(1000.0, 0.2, 0.7).args[0]
    assert (config.threshold, config.start, config.end) == (1000.0, 0.2, 0.7)
    with pytest.raises(CoMoViError, match="start 0.9 and end 0.5"):
        node.execute(0.1, 0.9, 0.5)
    sampler = nodes["CoMoViDualSampler"]
    assert next(i for i in sampler.define_schema().inputs if i.id == "step_cache").optional
    loader = nodes["CoMoViLoadModels"]
    demo = next(
        o for o in next(i for i in loader.define_schema().inputs if i.id == "base").options if o.startswith("tiny demo")
    )
    comovi = loader.execute(
        demo, "none (base only: untrained copy)", "bfloat16", False, 0, False, "wan2.2-ti2v-5b"
    ).args[0]
    body = nodes["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    start = nodes["CoMoViLoadSMPLMotion"].execute("demo: mannequin waving (built-in)").args[0]
    args = (
        comovi,
        body,
        start,
        torch.rand(1, 64, 64, 3),
        "a person jumps",
        "",
        64,
        64,
        5,
        10,
        6.0,
        5.0,
        1,
        "unipc",
        "cogenerate",
    )
    plain = sampler.execute(*args).args
    cached = sampler.execute(*args, step_cache=config).args
    assert "step cache" not in plain[3]
    first, last = cached[3].split("\n")
    assert first.startswith("3D motion from the 3D head, 5 frames")  # the motion line as without the cache
    assert last == "step cache: 5 of 10 transformer evaluations computed, 5 reused (2.00x fewer)"
    assert cached[0].shape == plain[0].shape and not torch.equal(cached[0], plain[0])
