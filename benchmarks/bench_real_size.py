"""The real-size model on a CPU-only machine: file layouts, load RAM, one denoising step, the VAE (issue 28).

    OMP_NUM_THREADS=2 python benchmarks/bench_real_size.py [--cache /work/real_size_cache] [--threads 2]
    python benchmarks/bench_real_size.py --smoke        # tiny preset, temp folder, seconds

Random weights in the real shapes are written once, in the real file layouts, to ``--cache`` (a file already
there with the right size is kept; each is written under a hidden temp name, then renamed): ComfyUI's
``wan2.2_ti2v_5B_fp16.safetensors`` (RGB branch + shared embeddings, fp16, original names), the diffusers folder
``Wan2.2-TI2V-5B-Diffusers/transformer/`` (bf16, sharded, config.json + index json), the CoMoVi file in the
release layout with what CoMoVi adds on top of the base (motion branch, zero-linears, 3D head; bf16) and the
Wan2.2 VAE as ComfyUI's ``wan2.2_vae.safetensors`` (original names, fp16: ComfyUI's file is ~1.4 GB for 705M
parameters, i.e. 16-bit). The files are streamed (a small safetensors writer, one tensor in memory at a time).
Every measurement then runs in a fresh child process (a parent thread stops a child whose anonymous memory
passes ``--max-gib`` or when the machine has under 0.5 GiB available, instead of letting it OOM the machine).

Printed lines (one per measurement; ``--smoke`` prints the same lines):
    file[NAME]: SIZE GiB, TENSORS tensors, written in S s | cached         one per file, checked with safe_open
    load[LAYOUT fp8]: wall, cpu, peak (anon, file), resident               ``load_transformer`` (the generate path)
        with fp8 storage on the CPU. wall/cpu: seconds of the load (cpu: all threads of the child). peak: VmHWM
        above nothing (the whole process, libraries included; baseline printed apart), its split into anonymous
        memory and mapped file pages (RssAnon / RssFile sampled every 20 ms; file pages of mmap.d
        safetensors are clean page cache the kernel can drop, anon is what must fit). resident: resident_bytes.
    load[LAYOUT bf16 -> meta]: the bf16 path streaming each tensor to a device that keeps nothing in host memory
        (``device="meta"`` stands in for a GPU): the host peak a GPU load needs.
    patcher[LAYOUT fp8]: the size the ComfyUI ModelPatcher (nodes/managed.py CoMoViPatcher) is given, which must
        equal resident_bytes, the sum of numel*element_size, and the bytes of the unique storages.
    step[FxHxW fp8]: one denoising step of CoMoViPipeline (steps=1, CFG with random (1, 512, 4096) prompt
        embeddings, the real VAE for the conditioning and the decode, the 3D head: no motion fit); denoise: the
        transformer step alone; total: the whole pipeline call; finite: every output finite.
    vae[FxHxW]: encode and decode of a random video with the real VAE (fp32, tiling on as ``generate`` does).
    summary: the peaks against ``--target-gib`` (16 GiB: a 32 GB machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

GIB = 2**30
DTYPE_NAMES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
REAL, TINY = "wan2.2-ti2v-5b", "tiny"
COMFY_FILE = "wan2.2_ti2v_5B_fp16.safetensors"
DIFFUSERS_DIR = "Wan2.2-TI2V-5B-Diffusers"
COMOVI_FILE = "CoMoVi/comovi_release_bf16.safetensors"
VAE_FILE = "wan2.2_vae.safetensors"
SHARD_BYTES = 4_500_000_000  # the Wan2.2-TI2V-5B-Diffusers transformer comes in 3 shards
# the Wan2.2 VAE (AutoencoderKLWan arguments of Wan2.2-TI2V-5B-Diffusers/vae/config.json), 705M parameters
REAL_VAE = dict(
    base_dim=160,
    decoder_base_dim=256,
    z_dim=48,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    temperal_downsample=[False, True, True],
    is_residual=True,
    in_channels=12,
    out_channels=12,
    patch_size=2,
    scale_factor_spatial=16,
    scale_factor_temporal=4,
)


# ---------------------------------------------------------------- streaming safetensors writer


@dataclass
class Spec:
    name: str  # key in the file
    shape: tuple
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def _header(specs: list[Spec], metadata: dict | None) -> bytes:
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for s in specs:
        header[s.name] = {
            "dtype": DTYPE_NAMES[s.dtype],
            "shape": list(s.shape),
            "data_offsets": [offset, offset + s.nbytes],
        }
        offset += s.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)


def file_size(specs: list[Spec], metadata: dict | None = None) -> int:
    return 8 + len(_header(specs, metadata)) + sum(s.nbytes for s in specs)


def _fill(spec: Spec, generator: torch.Generator) -> torch.Tensor:
    """Seeded random values: normal * 0.02; norm weights and gammas 1 + normal * 0.02 (keeps activations sane)."""
    last = spec.name.rsplit(".", 1)[-1]
    is_norm = last == "gamma" or (last == "weight" and ".norm" in spec.name)
    t = torch.empty(spec.shape, dtype=torch.float32)
    t.normal_(1.0 if is_norm else 0.0, 0.02, generator=generator)
    return t.to(spec.dtype)


def write_safetensors(path: Path, specs: list[Spec], seed: int, metadata: dict | None = None) -> tuple[str, float]:
    """Write ``specs`` as a safetensors file, one tensor in memory at a time; kept if already there with the right
    size. Written under a hidden temp name (loaders skip names starting with "."), then renamed. -> (what, seconds)"""
    if path.is_file() and path.stat().st_size == file_size(specs, metadata):
        return "cached", 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    t0 = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    header = _header(specs, metadata)
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for s in specs:
            f.write(_fill(s, generator).reshape(-1).view(torch.uint8).numpy())
    os.replace(tmp, path)
    return "written", time.perf_counter() - t0


def check_file(path: Path, specs: list[Spec]) -> None:
    """The file opens with safetensors' safe_open and holds exactly ``specs`` (names, shapes, dtypes)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        names = set(fh.keys())
        if names != {s.name for s in specs}:
            raise SystemExit(f"{path}: keys differ from what was written")
        for s in specs[:: max(1, len(specs) // 8)]:
            sl = fh.get_slice(s.name)
            if tuple(sl.get_shape()) != tuple(s.shape) or sl.get_dtype() != DTYPE_NAMES[s.dtype]:
                raise SystemExit(f"{path}: {s.name} stored as {sl.get_shape()} {sl.get_dtype()}")
        last = fh.get_tensor(specs[-1].name)
        if not torch.isfinite(last.float()).all():
            raise SystemExit(f"{path}: {specs[-1].name} is not finite")


# ---------------------------------------------------------------- the layouts


def model_shapes(preset: str) -> tuple[dict[str, tuple], object]:
    """Our key -> shape of the preset's model (built on the meta device: no memory), and the model's RGB config."""
    from comovi_core.model.config import get_config
    from comovi_core.model.loading import build_model

    model = build_model(get_config(preset), "meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}, dict(model.rgb.config)


def layouts(preset: str) -> dict[str, list[tuple[Path, list[Spec], dict | None]]]:
    """name -> [(relative path, tensors, metadata)] in each layout; see the module docstring."""
    from comovi_core.codecs.vae_files import diffusers_to_original_vae_key
    from comovi_core.model.keys import ours_to_release, wan_diffusers_to_original

    shapes, rgb_config = model_shapes(preset)
    rgb = {k[len("rgb.") :]: v for k, v in shapes.items() if k.startswith("rgb.")}
    comfy = [Spec(wan_diffusers_to_original(k), v, torch.float16) for k, v in rgb.items()]
    diffusers, shards, size = [Spec(k, v, torch.bfloat16) for k, v in sorted(rgb.items())], [[]], 0
    for s in diffusers:
        if size and size + s.nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(s)
        size += s.nbytes
    folder = Path(DIFFUSERS_DIR) / "transformer"
    n = len(shards)
    names = [f"diffusion_pytorch_model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    comovi = [Spec(ours_to_release(k), v, torch.bfloat16) for k, v in shapes.items() if not k.startswith("rgb.")]
    if any(s.name is None for s in comfy + comovi):
        raise SystemExit("a key has no name in the target layout")
    vae_specs = []
    for k, shape, nres in _vae_shapes(preset):
        vae_specs.append(Spec(diffusers_to_original_vae_key(k, nres), shape, torch.float16))
    return {
        "comfy": [(Path(COMFY_FILE), comfy, {"format": "pt"})],
        "diffusers": [(folder / name, shard, {"format": "pt"}) for name, shard in zip(names, shards)],
        "comovi": [(Path(COMOVI_FILE), comovi, {"format": "pt"})],
        "vae": [(Path(VAE_FILE), vae_specs, {"format": "pt"})],
        "_diffusers_meta": (folder, names, shards, rgb_config),
    }


def _vae_shapes(preset: str):
    from diffusers import AutoencoderKLWan

    if preset == TINY:
        from comovi_core.codecs.tiny import tiny_vae

        vae = tiny_vae()
    else:
        with torch.device("meta"):
            vae = AutoencoderKLWan(**REAL_VAE)
    nres = vae.config.num_res_blocks
    return [(k, tuple(v.shape), nres) for k, v in vae.state_dict().items()]


def write_files(preset: str, cache: Path) -> dict[str, Path]:
    """Every layout's files under ``cache`` (written once); prints one line per file. -> name -> path to load."""
    plan = layouts(preset)
    seed = 0
    for name in ("comfy", "diffusers", "comovi", "vae"):
        for rel, specs, meta in plan[name]:
            seed += 1
            what, seconds = write_safetensors(cache / rel, specs, seed, meta)
            check_file(cache / rel, specs)
            size = (cache / rel).stat().st_size
            done = f"written in {seconds:.1f} s" if what == "written" else "cached"
            print(f"file[{name}:{rel.name}]: {size / GIB:.2f} GiB, {len(specs)} tensors, {done}", flush=True)
    folder, names, shards, rgb_config = plan["_diffusers_meta"]
    folder = cache / folder
    index = {
        "metadata": {"total_size": sum(s.nbytes for shard in shards for s in shard)},
        "weight_map": {s.name: name for name, shard in zip(names, shards) for s in shard},
    }
    config = {"_class_name": "WanTransformer3DModel", "_diffusers_version": "0.35.0", **rgb_config}
    for fname, text in (
        ("diffusion_pytorch_model.safetensors.index.json", json.dumps(index, indent=1)),
        ("config.json", json.dumps(config, indent=1, default=list)),
    ):
        tmp = folder / f".{fname}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / fname)
    return {
        "comfy": cache / COMFY_FILE,
        "diffusers": cache / DIFFUSERS_DIR,
        "comovi": cache / COMOVI_FILE,
        "vae": cache / VAE_FILE,
    }


# ---------------------------------------------------------------- child processes


def _status() -> dict[str, int]:
    """Memory fields of /proc/self/status, KiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0])
    return out


class PeakSampler:
    """Resets VmHWM, then samples RssAnon / RssFile every ``interval`` s in a thread: the split at the highest RSS,
    and the highest anonymous memory on its own."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.stop_flag = interval, threading.Event()
        self.at_peak, self.max_anon = {}, 0

    def _sample(self) -> None:
        s = _status()
        if s["VmRSS"] >= self.at_peak.get("VmRSS", 0):
            self.at_peak = s
        self.max_anon = max(self.max_anon, s["RssAnon"])

    def _run(self) -> None:
        while not self.stop_flag.wait(self.interval):
            self._sample()

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        self.base = _status()
        self._sample()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall0, time.process_time() - self.cpu0
        self.stop_flag.set()
        self.thread.join()
        self._sample()
        self.hwm = _status()["VmHWM"]

    def result(self) -> dict:
        return {
            "wall": self.wall,
            "cpu": self.cpu,
            "peak_gib": self.hwm / 2**20,
            "anon_gib": self.at_peak["RssAnon"] / 2**20,
            "file_gib": self.at_peak["RssFile"] / 2**20,
            "max_anon_gib": self.max_anon / 2**20,
            "base_gib": self.base["VmRSS"] / 2**20,
        }


def _tensor_bytes(module: torch.nn.Module) -> dict:
    """resident_bytes, the sum of numel*element_size of parameters and buffers, and the bytes of their unique
    storages (what the tensors actually occupy)."""
    from comovi_core.model.memory import resident_bytes

    tensors = list(module.parameters()) + list(module.buffers())
    counted = sum(t.numel() * t.element_size() for t in tensors)
    storages = {}
    for t in tensors:
        if t.device.type != "meta":
            st = t.untyped_storage()
            storages[st.data_ptr()] = st.nbytes()
    return {"resident": resident_bytes(module), "numel_bytes": counted, "storage_bytes": sum(storages.values())}


def _patcher_size(module: torch.nn.Module) -> tuple[int | None, str]:
    """The size ComfyUI's ModelPatcher gets for ``module`` (nodes/managed.py CoMoViPatcher in the stand-in host
    tests/comfy_stub), or None and why not."""
    import importlib.util

    try:
        sys.path.insert(0, str(ROOT / "tests" / "comfy_stub"))
        if "comovi_ext" not in sys.modules:  # the extension package without running its __init__ (no nodes needed)
            spec = importlib.util.spec_from_file_location(
                "comovi_ext", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
            )
            sys.modules["comovi_ext"] = importlib.util.module_from_spec(spec)
        from comovi_ext.nodes.managed import CoMoViPatcher

        return CoMoViPatcher(
            module, torch.device("cpu"), torch.device("cpu")
        ).model_size(), "nodes.managed.CoMoViPatcher"
    except Exception as exc:  # report, and fall back to what CoMoViPatcher passes
        return None, f"{type(exc).__name__}: {exc}"


def _warm_imports() -> None:
    """Import what the load imports on first use, so the measured peak and time are the load's own."""
    import accelerate  # noqa: F401
    import diffusers  # noqa: F401

    import comovi_core.model.dual  # noqa: F401
    import comovi_core.model.loading  # noqa: F401


def child_load(job: dict) -> dict:
    from comovi_core.inference.components import TransformerOptions, load_transformer

    _warm_imports()
    if job.get("reader", "copy") != "copy":  # the loader's reader swapped, to compare (the library reads "copy")
        import functools

        import comovi_core.model.loading as loading

        loading.open_safetensors = functools.partial(loading.open_safetensors, reader=job["reader"])
    options = TransformerOptions(model_config=None, dtype=torch.bfloat16, device=job["device"], fp8=job["fp8"])
    with PeakSampler() as peak:
        transformer, summary = load_transformer([Path(p) for p in job["paths"]], options)
    out = {"load": peak.result(), "summary": summary, **_tensor_bytes(transformer)}
    if job["device"] == "meta":
        return out
    out["patcher"], out["patcher_how"] = _patcher_size(transformer)
    if job.get("step"):
        out["step"] = _step(transformer, job["step"])
    return out


def _step(transformer, job: dict) -> dict:
    from comovi_core.body.mannequin import demo_motion
    from comovi_core.body.smpl import load_body_model
    from comovi_core.codecs.loading import load_vae
    from comovi_core.inference.pipeline import CoMoViPipeline

    frames, height, width = job["frames"], job["height"], job["width"]
    config = transformer.comovi_config
    vae = load_vae(Path(job["vae"]), device="cpu")
    vae.enable_tiling()  # as load_components does
    pipe = CoMoViPipeline(transformer, vae, None, load_body_model(None), device="cpu")
    g = torch.Generator().manual_seed(0)
    embeds = [torch.randn(1, config.text_len, config.text_dim, generator=g) for _ in range(2)]
    image = torch.rand(3, height, width, generator=g)
    start = demo_motion(num_frames=1, height=height, width=width)
    with PeakSampler() as peak:
        result = pipe(
            image,
            "",
            start=start,
            num_frames=frames,
            steps=1,
            guidance=job["guidance"],
            prompt_embeds=embeds[0],
            negative_prompt_embeds=embeds[1],
            fit_motion=False,
        )
    outputs = [result.rgb, result.motion_map]
    finite = all(bool(torch.isfinite(t).all()) for t in outputs)
    if result.motion is not None:
        import numpy as np

        finite = finite and bool(np.isfinite(result.motion.full_pose).all())
    return {
        **peak.result(),
        "denoise": result.timings.get("denoise"),
        "finite": finite,
        "motion_source": result.motion_source,
        "shapes": [list(t.shape) for t in outputs],
    }


def child_vae(job: dict) -> dict:
    from comovi_core.codecs.loading import load_vae
    from comovi_core.codecs.vae import decode_latents, encode_frames

    _warm_imports()
    with PeakSampler() as load_peak:
        vae = load_vae(Path(job["vae"]), device="cpu")
    vae.enable_tiling()
    g = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, job["frames"], job["height"], job["width"], generator=g) * 2 - 1
    with torch.no_grad(), PeakSampler() as peak:
        t0 = time.perf_counter()
        latents = encode_frames(vae, video)
        encode_s = time.perf_counter() - t0
        decoded = decode_latents(vae, latents)
    return {
        "load": load_peak.result(),
        **peak.result(),
        "encode": encode_s,
        "decode": peak.wall - encode_s,
        "latents": list(latents.shape),
        "decoded": list(decoded.shape),
        "finite": bool(torch.isfinite(latents).all() and torch.isfinite(decoded).all()),
        "params": sum(p.numel() for p in vae.parameters()),
    }


def run_in_process(job: dict) -> dict:
    """``job`` in this process (``--smoke`` without ``--fresh-children``: no interpreter start per job)."""
    import gc

    gc.collect()
    try:
        return child_load(job) if job["kind"] == "load" else child_vae(job)
    finally:
        gc.collect()


def run_child(job: dict, max_gib: float, timeout: float) -> dict:
    """``job`` in a fresh process (this file with --child); stopped when its anonymous memory passes ``max_gib``,
    when the machine has under 0.5 GiB available, or after ``timeout`` s. -> its result, or {"error": why}."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    stopped, t0 = [], time.time()

    def guard():
        while proc.poll() is None:
            try:
                anon = next(int(x.split()[1]) for x in open(f"/proc/{proc.pid}/status") if x.startswith("RssAnon"))
                avail = next(int(x.split()[1]) for x in open("/proc/meminfo") if x.startswith("MemAvailable"))
            except (OSError, StopIteration):
                return
            why = None
            if anon > max_gib * 2**20:
                why = f"its anonymous memory passed --max-gib {max_gib:g} GiB"
            elif avail < 0.5 * 2**20:
                why = f"the machine had {avail / 2**20:.2f} GiB available"
            elif time.time() - t0 > timeout:
                why = f"it ran past {timeout:g} s"
            if why:
                stopped.append(why)
                os.kill(proc.pid, signal.SIGKILL)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=guard, daemon=True)
    thread.start()
    out, err = proc.communicate()
    thread.join()
    if stopped:
        return {"error": f"stopped: {stopped[0]}"}
    if proc.returncode != 0:
        tail = err.strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- report


def _peak(r: dict) -> str:
    return f"peak {r['peak_gib']:.2f} GiB (anon {r['anon_gib']:.2f}, file {r['file_gib']:.2f})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny preset and tiny VAE in a temp folder (seconds)")
    p.add_argument("--cache", type=Path, help="folder for the real-size files (default /work/real_size_cache)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads in each child (OMP_NUM_THREADS too)")
    p.add_argument("--max-gib", type=float, default=21.0, help="stop a child whose anonymous memory passes this")
    p.add_argument("--target-gib", type=float, default=16.0, help="the load peak to stay under (a 32 GB machine)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds after which a child is stopped")
    p.add_argument("--guidance", type=float, default=6.0, help="guidance of the step (> 1: CFG, a batch of 2)")
    p.add_argument(
        "--reader",
        default="copy",
        choices=["copy", "mmap"],
        help="how the loads read safetensors (files.weights.checked_safe_open): copy (what comovi_core does: each "
        "tensor in memory of its own, safetensors' pread reader) or mmap (tensors may stay backed by the mapped file)",
    )
    p.add_argument("--step-size", default="5x64x64", help="frames x height x width of the denoising step")
    p.add_argument("--vae-size", default="5x704x1280", help="frames x height x width of the VAE encode/decode")
    p.add_argument("--skip", nargs="*", default=[], choices=["diffusers", "meta", "step", "vae"], help="parts to skip")
    p.add_argument(
        "--fresh-children",
        action="store_true",
        help="with --smoke: each job in a fresh child process as at full size (default: in this process, faster)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        torch.set_num_threads(job["threads"])
        result = child_load(job) if job["kind"] == "load" else child_vae(job)
        print(json.dumps(result))
        return 0
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    preset = TINY if args.smoke else REAL
    if args.smoke and args.cache is None:
        with tempfile.TemporaryDirectory() as tmp:
            return _bench(args, preset, Path(tmp))
    return _bench(args, preset, args.cache or Path("/work/real_size_cache"))


def _size(text: str) -> tuple[int, int, int]:
    f, h, w = (int(x) for x in text.lower().split("x"))
    return f, h, w


def _bench(args, preset: str, cache: Path) -> int:
    print(f"preset {preset}, files in {cache}, {args.threads} threads", flush=True)
    files = write_files(preset, cache)
    if args.smoke and not args.fresh_children:
        torch.set_num_threads(args.threads)
        run = run_in_process
    else:
        run = lambda job: run_child({"threads": args.threads, **job}, args.max_gib, args.timeout)  # noqa: E731
    peaks, problems = {}, []
    sf, sh, sw = _size(args.step_size)
    step = (
        None
        if "step" in args.skip
        else dict(frames=sf, height=sh, width=sw, vae=str(files["vae"]), guidance=args.guidance)
    )
    tag = "" if args.reader == "copy" else f", {args.reader}"
    cases = [(f"comfy+comovi fp8{tag}", [files["comfy"], files["comovi"]], True, "cpu", step)]
    if "diffusers" not in args.skip:
        cases.append((f"diffusers+comovi fp8{tag}", [files["diffusers"], files["comovi"]], True, "cpu", None))
    if "meta" not in args.skip:
        cases.append((f"comfy+comovi bf16 -> meta{tag}", [files["comfy"], files["comovi"]], False, "meta", None))
    for name, paths, fp8, device, step_job in cases:
        job = dict(kind="load", paths=[str(x) for x in paths], fp8=fp8, device=device, step=step_job)
        r = run({**job, "reader": args.reader})
        if "error" in r:
            print(f"load[{name}]: FAILED {r['error']}", flush=True)
            problems.append(f"load[{name}] {r['error']}")
            continue
        ld = r["load"]
        where = "on the device (meta: not in host memory)" if device == "meta" else "in host memory"
        print(
            f"load[{name}]: wall {ld['wall']:.1f} s, cpu {ld['cpu']:.1f} s, {_peak(ld)}, "
            f"resident {r['resident'] / GIB:.2f} GiB {where} (baseline {ld['base_gib']:.2f} GiB, "
            f"max anon {ld['max_anon_gib']:.2f} GiB)",
            flush=True,
        )
        peaks[f"load[{name}]"] = ld["peak_gib"]
        if device != "meta":
            size = r["patcher"] if r["patcher"] is not None else r["resident"]
            ok = size == r["resident"] == r["numel_bytes"] == r["storage_bytes"]
            how = (
                ""
                if r["patcher"] is not None
                else f" (CoMoViPatcher not importable: {r['patcher_how']}; resident_bytes)"
            )
            print(
                f"patcher[{name}]: size {size / GIB:.3f} GiB, resident_bytes {r['resident'] / GIB:.3f} GiB, "
                f"numel*element_size {r['numel_bytes'] / GIB:.3f} GiB, storages {r['storage_bytes'] / GIB:.3f} GiB: "
                f"{'equal' if ok else 'DIFFER'}{how}",
                flush=True,
            )
            if not ok:
                problems.append(f"patcher[{name}] sizes differ")
        if "step" in r:
            s = r["step"]
            print(
                f"step[{sf}x{sh}x{sw} fp8]: denoise {s['denoise']:.1f} s, total wall {s['wall']:.1f} s, "
                f"cpu {s['cpu']:.1f} s, {_peak(s)}, finite {'yes' if s['finite'] else 'NO'}, "
                f"motion {s['motion_source']}, guidance {args.guidance:g}",
                flush=True,
            )
            peaks["step"] = s["peak_gib"]
            if not s["finite"]:
                problems.append("step outputs not finite")
    if "vae" not in args.skip:
        vf, vh, vw = _size(args.vae_size) if not args.smoke else (5, 64, 64)
        r = run(dict(kind="vae", vae=str(files["vae"]), frames=vf, height=vh, width=vw))
        if "error" in r:
            print(f"vae[{vf}x{vh}x{vw}]: FAILED {r['error']}", flush=True)
            problems.append(f"vae {r['error']}")
        else:
            print(
                f"vae[{vf}x{vh}x{vw}]: encode {r['encode']:.1f} s, decode {r['decode']:.1f} s, cpu {r['cpu']:.1f} s, "
                f"{_peak(r)}, load peak {r['load']['peak_gib']:.2f} GiB, {r['params'] / 1e6:.1f}M parameters fp32, "
                f"tiled, finite {'yes' if r['finite'] else 'NO'}",
                flush=True,
            )
            peaks["vae"] = r["peak_gib"]
    loads = {k: v for k, v in peaks.items() if k.startswith("load")}
    worst = max(loads.values(), default=float("nan"))
    over = [k for k, v in peaks.items() if v > args.target_gib]
    verdict = (
        "ok" if not over and not problems else "; ".join([f"over target: {', '.join(over)}"] * bool(over) + problems)
    )
    highest = max(peaks.values(), default=0.0)
    print(
        f"summary[{preset}]: highest load peak {worst:.2f} GiB, highest of all {highest:.2f} GiB "
        f"(target {args.target_gib:g} GiB): {verdict}",
        flush=True,
    )
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
