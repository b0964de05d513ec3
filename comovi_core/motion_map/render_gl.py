"""OpenGL motion-map backend through pyrender, headless on EGL or OSMesa.

Implements the backend contract of ``render.py``::

    render_frames(vertices, faces, colors, normals, camera, shading) -> (images, depth)

How the picture is made (and why it matches the torch backend and the release's PyTorch3D render):

* Geometry. Vertices come in OpenCV camera space (x right, y down, z forward). The camera node sits at
  the origin with the identity pose (OpenGL camera: y up, looking down -z) and the mesh node carries
  ``diag(1, -1, -1, 1)``, which flips y and z for rasterisation only; the shader still receives the
  untouched OpenCV positions and normals for shading. ``pyrender.IntrinsicsCamera(fx, fy, cx, cy)``
  maps a point to window x = fx * X / Z + cx and, after pyrender flips the read-back image upside
  down, to row coordinate v = fy * Y / Z + cy, so pixel (r, c) samples (u, v) = (c + 0.5, r + 0.5),
  the convention of ``camera.py`` (tests check it against an independent ray caster).
* No anti-aliasing. In its normal mode pyrender calls ``glEnable(GL_MULTISAMPLE)`` and (with EGL)
  draws into a 4x multisampled framebuffer, which would blend silhouettes with the background. We
  render through pyrender's segmentation path (``RenderFlags.SEG``), which calls
  ``glDisable(GL_MULTISAMPLE)``: with multisampling disabled every sample of a pixel takes the
  value of the fragment at the pixel centre, so the resolve blit is exact and each pixel shows only
  the closest surface at its centre - hard rasterisation as PyTorch3D's. (OSMesa draws into a
  single-sample buffer, so there is no multisampling there at all.)
* Two-sided. The segmentation path always culls back faces, so every triangle is uploaded twice, once
  with each winding; exactly one of the pair faces the camera and is drawn. Closest surface wins by
  the depth test (GL_LESS).
* Shading. Our own GLSL program (the ``ProgramCache`` built by ``_program_classes`` replaces the
  renderer's shader cache and returns it for whatever pyrender asks for; the GLSL source lives in this
  file, so nothing has to be shipped as package data) interpolates position, normal and colour
  perspective-correctly (GL's default) and applies ``shading.py``'s formula per fragment, in float32:
  ``comovi_v1`` = c * (0.5 + 0.3 * max(0, n . l)) + 0.2 with l = unit((0, 1, 0) - P), ``flat`` = c.
  The program is compiled once per ``render_frames`` call, not per frame.
* Read-back. pyrender reads the colour buffer as 8-bit RGB (there is no float read-back): values are
  quantised to the nearest of 256 levels, an error of at most 0.5/255 - below what the uint8 video
  keeps anyway. The shader writes 1 - colour so that the SEG pass's black clear reads back as a white
  background with no extra pass. Depth comes from the 24-bit depth buffer, linearised by pyrender
  into camera z (0 where nothing was drawn); it is the coverage.
* Speed. One OffscreenRenderer per call (created at the start, freed at the end: no state survives a
  call); per frame only the mesh node is replaced, i.e. one vertex-buffer upload, and copying the
  read-back frame into the output overlaps drawing the next (timings: docs/motion_map.md,
  benchmarks/bench_motion_map.py).

Platform. PyOpenGL binds its windowing platform (GLX, EGL, OSMesa) once, when ``OpenGL.platform`` is
first imported, from the ``PYOPENGL_PLATFORM`` environment variable. Importing this module imports
neither OpenGL nor pyrender and changes no environment variable; at first use, if
``PYOPENGL_PLATFORM`` is unset and OpenGL is not yet imported, we pick a headless platform and set the
variable (see ``_choose_platform``). A ``PYOPENGL_PLATFORM`` set by the user is always respected.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..body.camera import PinholeCamera
from ..errors import BackendUnavailableError, CoMoViError
from .backend_inputs import check_frame_inputs
from .shading import AMBIENT, DIFFUSE, LIGHT_POSITION, SPECULAR

log = logging.getLogger(__name__)

PLATFORM_ENV = "PYOPENGL_PLATFORM"
HEADLESS_PLATFORMS = ("egl", "osmesa")
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software rasterizer")
PROBE_TIMEOUT_S = 60.0
INSTALL_HINT = (
    "`pip install pyrender-maintained PyOpenGL` and, on Linux, an off-screen OpenGL driver: "
    "`apt install libosmesa6` (software rendering, any machine) or a GPU's EGL driver (NVIDIA's driver "
    "ships one; Mesa: `apt install libegl1 libegl-mesa0`); or use `--backend torch` (backend='torch'), "
    "which needs no OpenGL"
)
# OpenCV camera space -> OpenGL camera space (flip y and z); applied to the mesh node for rasterisation.
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])

# GLSL. pyrender compiles programs with `defines` naming the attribute locations of the primitive's
# buffers (positions are location 0); we substitute them with str.format.
_VERTEX_SHADER = """#version 330 core
layout(location = 0) in vec3 position;          // OpenCV camera space
layout(location = {NORMAL_LOC}) in vec3 normal;  // OpenCV camera space, unit
layout(location = {COLOR_0_LOC}) in vec4 color_0;  // output channel order (sem, ny, nx)
layout(location = {INST_M_LOC}) in mat4 inst_m;

uniform mat4 P;
uniform mat4 V;
uniform mat4 M;

out vec3 cv_position;
out vec3 cv_normal;
out vec3 vertex_color;

void main()
{{
    cv_position = position;
    cv_normal = normal;
    vertex_color = color_0.rgb;
    gl_Position = P * V * M * inst_m * vec4(position, 1.0);
}}
"""

_FRAGMENT_SHADER = """#version 330 core
#define FLAT_SHADING {FLAT}
in vec3 cv_position;
in vec3 cv_normal;
in vec3 vertex_color;

out vec4 frag_color;

// as torch.nn.functional.normalize(v, eps=1e-6)
vec3 unit(vec3 v)
{{
    return v / max(length(v), 1e-6);
}}

void main()
{{
#if FLAT_SHADING
    vec3 c = vertex_color;
#else
    const vec3 light = vec3({LX}, {LY}, {LZ});  // OpenCV camera space
    float lambert = max(dot(unit(cv_normal), unit(light - cv_position)), 0.0);
    vec3 c = vertex_color * ({AMBIENT} + {DIFFUSE} * lambert) + {SPECULAR};
#endif
    // Written inverted: pyrender's SEG pass clears to black, so the background reads back as
    // 1 - 0 = 1 (white) with no extra pass over the image (see _store_frame).
    frag_color = vec4(1.0 - c, 1.0);
}}
"""


# --------------------------------------------------------------------------------------------------
# Platform choice and availability
# --------------------------------------------------------------------------------------------------


def _bound_platform() -> str | None:
    """The platform PyOpenGL is already bound to in this process, or None if OpenGL is not imported."""
    module = sys.modules.get("OpenGL.platform")
    if module is None:
        return None
    name = type(getattr(module, "PLATFORM", None)).__name__.lower()
    return next((p for p in HEADLESS_PLATFORMS if p in name), name)


# Run in a child Python: make a 16 x 16 context on the platform given by PYOPENGL_PLATFORM, report GL_RENDERER.
_PROBE_CODE = """
import pyrender
renderer = pyrender.OffscreenRenderer(16, 16)
renderer._platform.make_current()
from OpenGL.GL import GL_RENDERER, glGetString
print("RENDERER=" + glGetString(GL_RENDERER).decode("utf-8", "replace"), flush=True)
renderer.delete()
"""


def _probe_platforms(platforms: tuple[str, ...]) -> dict[str, tuple[bool, str]]:
    """Try each platform in its own child Python, all at once (this process's PyOpenGL stays unbound).

    Returns {platform: (ok, GL_RENDERER string when ok, else why it failed)}.
    """
    children = {}
    for platform in platforms:  # the child sees this process's import path, whatever set it up
        env = dict(os.environ, **{PLATFORM_ENV: platform, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        try:
            children[platform] = subprocess.Popen(
                [sys.executable, "-c", _PROBE_CODE], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            children[platform] = exc
    results = {}
    for platform, child in children.items():
        if isinstance(child, OSError):
            results[platform] = (False, f"could not start a probe ({child})")
            continue
        try:
            out, err = child.communicate(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            results[platform] = (False, f"no context within {PROBE_TIMEOUT_S:.0f} s")
            continue
        renderer = [line[len("RENDERER=") :] for line in out.splitlines() if line.startswith("RENDERER=")]
        why = (err.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        results[platform] = (True, renderer[0]) if renderer else (False, why)
    return results


def _is_software(gl_renderer: str) -> bool:
    return any(name in gl_renderer.lower() for name in SOFTWARE_RENDERERS)


def _pick(results: dict[str, tuple[bool, str]]) -> str | None:
    """EGL on real hardware, else OSMesa, else EGL on a software rasteriser; None if neither works.

    Where both are Mesa's llvmpipe, OSMesa is the faster (docs/motion_map.md): pyrender's EGL path draws into a
    4x multisampled framebuffer and resolves it with a blit; OSMesa draws into a plain buffer.
    """
    egl_ok, egl_renderer = results.get("egl", (False, ""))
    if egl_ok and not _is_software(egl_renderer):
        return "egl"
    if results.get("osmesa", (False, ""))[0]:
        return "osmesa"
    return "egl" if egl_ok else None


def _choose_platform() -> str:
    """Decide the OpenGL platform for this process; export it as PYOPENGL_PLATFORM if we chose it.

    Must run before anything imports ``OpenGL.platform``: PyOpenGL binds the platform once, at that
    import, from PYOPENGL_PLATFORM. A value set by the user is used as is. Otherwise, on Linux, EGL
    and OSMesa are each tried in a child Python (in parallel, about a second, once per process) so
    that the choice - see ``_pick`` - can still fall back. On other systems the variable is left unset
    and pyrender uses its windowed (pyglet) context.
    """
    user = os.environ.get(PLATFORM_ENV)
    if user:
        log.info("OpenGL platform: %s, from PYOPENGL_PLATFORM", user)
        return user
    bound = _bound_platform()
    if bound is not None:
        if bound not in HEADLESS_PLATFORMS:
            raise BackendUnavailableError(
                f"OpenGL was imported (platform {bound!r}) before comovi_core could choose a headless one; set "
                "PYOPENGL_PLATFORM=egl or PYOPENGL_PLATFORM=osmesa in the environment before starting Python"
            )
        os.environ[PLATFORM_ENV] = bound  # pyrender reads the variable to pick its context class
        return bound
    if not sys.platform.startswith("linux"):
        return "pyglet"
    results = _probe_platforms(HEADLESS_PLATFORMS)
    chosen = _pick(results)
    summary = "; ".join(f"{p}: {'ok, ' if ok else 'failed, '}{info}" for p, (ok, info) in results.items())
    if chosen is None:
        raise BackendUnavailableError(f"no headless OpenGL context could be made ({summary})")
    log.info("OpenGL platform: chose %s (%s)", chosen, summary)
    os.environ[PLATFORM_ENV] = chosen
    return chosen


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[bool, str]:
    """Choose the platform, then make one tiny context in this process.

    Cached: the answer is a fact about this process (PyOpenGL cannot be rebound once imported).
    Returns (available, why not).
    """
    for module in ("pyrender", "OpenGL"):
        if importlib.util.find_spec(module) is None:
            return False, f"{module} is not installed"
    try:
        platform = _choose_platform()
        import pyrender

        _close_renderer(pyrender.OffscreenRenderer(16, 16))
    except BackendUnavailableError as exc:
        return False, str(exc)
    except Exception as exc:  # import errors, missing libraries, driver errors: all mean "no OpenGL here"
        return False, f"{type(exc).__name__}: {exc}".strip()
    log.info("OpenGL backend available (platform %s)", platform)
    return True, ""


def is_available() -> bool:
    """True when pyrender can make an off-screen OpenGL context in this process."""
    return _probe()[0]


def unavailable_reason() -> str:
    """Why ``is_available()`` is False ('' when it is True)."""
    return _probe()[1]


def require_available() -> None:
    """Raise BackendUnavailableError, saying what to install, when no OpenGL context can be made."""
    ok, reason = _probe()
    if not ok:
        raise BackendUnavailableError(
            f"the pyrender (OpenGL) backend cannot run here: {reason}. To fix: {INSTALL_HINT}."
        )


# --------------------------------------------------------------------------------------------------
# Shader program handed to pyrender
# --------------------------------------------------------------------------------------------------


def _program_classes():
    """Classes that subclass pyrender's; built on demand so that importing this module imports no OpenGL."""
    from pyrender.shader_program import ShaderProgram, ShaderProgramCache

    class MotionMapProgram(ShaderProgram):
        """A pyrender ShaderProgram compiled from source strings instead of files."""

        def __init__(self, sources: dict[str, str]):
            super().__init__("motion_map.vert", "motion_map.frag")
            self._sources = sources

        def _load(self, shader_filename):
            return self._sources[shader_filename]

    class ProgramCache(ShaderProgramCache):
        """Answers every program request of pyrender's forward pass with the motion-map program.

        One instance per renderer (so per ``render_frames`` call): nothing is shared between calls.
        """

        def __init__(self, shading: str):
            super().__init__()
            self.shading = shading

        def get_program(self, vertex_shader, fragment_shader, geometry_shader=None, defines=None):
            defines = defines or {}
            missing = [k for k in ("NORMAL_LOC", "COLOR_0_LOC", "INST_M_LOC") if k not in defines]
            if missing:
                raise CoMoViError(f"internal: the motion-map mesh lacks vertex buffers {missing}")
            key = (defines["NORMAL_LOC"], defines["COLOR_0_LOC"], defines["INST_M_LOC"])
            if key not in self._program_cache:
                self._program_cache[key] = MotionMapProgram(_shader_sources(self.shading, defines))
            return self._program_cache[key]

    return ProgramCache


def _glsl_float(value: float) -> str:
    """A GLSL float literal (always with a point or an exponent), e.g. 0.5 -> '0.5', 1 -> '1.0'."""
    return repr(float(value))


def _shader_sources(shading: str, defines: dict) -> dict[str, str]:
    """GLSL sources keyed by the names MotionMapProgram loads; defines: pyrender's attribute locations."""
    vert = _VERTEX_SHADER.format(**{k: int(defines[k]) for k in ("NORMAL_LOC", "COLOR_0_LOC", "INST_M_LOC")})
    lx, ly, lz = (_glsl_float(v) for v in LIGHT_POSITION)
    frag = _FRAGMENT_SHADER.format(
        FLAT=int(shading == "flat"),
        LX=lx,
        LY=ly,
        LZ=lz,
        AMBIENT=_glsl_float(AMBIENT),
        DIFFUSE=_glsl_float(DIFFUSE),
        SPECULAR=_glsl_float(SPECULAR),
    )
    return {"motion_map.vert": vert, "motion_map.frag": frag}


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _depth_range(vertices: np.ndarray) -> tuple[float, float]:
    """(znear, zfar) enclosing all vertices in front of the camera; vertices: (T, V, 3) OpenCV."""
    z = vertices[..., 2]
    front = z[z > 0]
    if front.size == 0:
        return 0.01, 1.0
    znear = max(0.5 * float(front.min()), 1e-3)
    return znear, max(2.0 * float(front.max()), 2.0 * znear) + 1.0


def _two_sided(faces: np.ndarray) -> np.ndarray:
    """(F, 3) -> (2F, 3) uint32: each face with both windings (pyrender's SEG pass culls back faces)."""
    faces = np.asarray(faces, dtype=np.uint32)
    return np.ascontiguousarray(np.concatenate((faces, faces[:, ::-1])))


def _frame_mesh(pyrender, positions: np.ndarray, normals: np.ndarray, colors: np.ndarray, indices: np.ndarray):
    """One frame's pyrender Mesh. positions, normals, colors: (V, 3) float32; indices: (2F, 3) uint32."""
    primitive = pyrender.Primitive(positions=positions, normals=normals, color_0=colors, indices=indices)
    return pyrender.Mesh([primitive])


def _scene(pyrender, camera: PinholeCamera, znear: float, zfar: float):
    """A pyrender Scene holding only the camera: at the origin, identity pose (OpenGL: looks down -z)."""
    (fx, fy), (cx, cy) = camera.focal_length, camera.principal_point
    scene = pyrender.Scene(bg_color=(1.0, 1.0, 1.0, 1.0), ambient_light=(0.0, 0.0, 0.0))
    scene.add(pyrender.IntrinsicsCamera(fx, fy, cx, cy, znear=znear, zfar=zfar), pose=np.eye(4))
    return scene


def render_frames(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    colors: torch.Tensor,
    normals: torch.Tensor,
    camera: PinholeCamera,
    shading: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise T frames of one mesh with OpenGL.

    vertices, normals: (T, V, 3) OpenCV camera space; colors: (T, V, 3) in output channel order;
    faces: (F, 3) int. Returns images (T, H, W, 3) float32 in [0, 1] (white background) and depth
    (T, H, W) float32 camera z (0 where empty), on the device of ``vertices``.
    """
    check_frame_inputs(vertices, faces, colors, normals, shading)
    require_available()
    import pyrender

    verts, norms, cols = _cpu_float32(vertices), _cpu_float32(normals), _cpu_float32(colors)
    indices = _two_sided(faces.detach().cpu().numpy())
    height, width, num_frames = camera.height, camera.width, verts.shape[0]
    images = torch.empty((num_frames, height, width, 3), dtype=torch.float32)
    depth = torch.empty((num_frames, height, width), dtype=torch.float32)
    if num_frames == 0:
        return images.to(vertices.device), depth.to(vertices.device)
    scene = _scene(pyrender, camera, *_depth_range(verts))
    renderer = pyrender.OffscreenRenderer(width, height)  # one per call, freed below: no state between calls
    try:
        _use_motion_map_program(renderer, shading)
        _render_loop(pyrender, renderer, scene, (verts, norms, cols), indices, images, depth)
    finally:
        _close_renderer(renderer)
    return images.to(vertices.device), depth.to(vertices.device)


def _cpu_float32(x: torch.Tensor) -> np.ndarray:
    """(T, V, 3) tensor on any device -> float32 numpy array on the CPU."""
    return x.detach().to("cpu", torch.float32).numpy()


def _use_motion_map_program(renderer, shading: str) -> None:
    """Give the OffscreenRenderer our shader cache (pyrender has no public hook for this)."""
    gl_renderer = getattr(renderer, "_renderer", None)
    if not hasattr(gl_renderer, "_program_cache"):
        raise BackendUnavailableError(
            "this pyrender version does not keep its shaders where comovi_core expects them; install "
            "`pip install 'pyrender-maintained>=1.0,<2'` or use backend='torch'"
        )
    gl_renderer._program_cache = _program_classes()(shading)


def _render_loop(pyrender, renderer, scene, frames, indices, images, depth) -> None:
    """Draw every frame and fill images (T, H, W, 3) and depth (T, H, W).

    frames: (vertices, normals, colors), each (T, V, 3) float32 numpy. The mesh node is replaced per
    frame (pyrender uploads the new vertex buffer; the program is compiled once per call). Copying a
    read-back frame into the output runs on a worker thread while the next frame is drawn: the GL
    calls and the numpy/torch copies release the GIL, and the copies - mostly first-touch page faults
    of the 14 MB output per 704 x 1280 frame - otherwise take about a third of the time.
    """
    scratch = np.empty(images.shape[1:], dtype=np.uint8)  # one frame in flight at a time
    inference = torch.is_inference_mode_enabled()  # thread-local: the worker must match the caller
    node, pending = None, None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="comovi-gl-store") as pool:
        for t in range(images.shape[0]):
            if node is not None:
                scene.remove_node(node)
            node = scene.add(_frame_mesh(pyrender, *(f[t] for f in frames), indices), pose=CV_TO_GL)
            color, z = renderer.render(scene, flags=pyrender.RenderFlags.SEG, seg_node_map={node: (255, 255, 255)})
            if pending is not None:
                pending.result()  # frees scratch, and re-raises any error of the previous frame
            pending = pool.submit(_store_frame, images[t], depth[t], color, z, scratch, inference)
        if pending is not None:
            pending.result()


def _close_renderer(renderer) -> None:
    """Free the renderer's GL objects and context.

    ``OffscreenRenderer.delete()`` does the same and then runs ``gc.collect()``, which takes 0.15 s
    in a process that has imported torch (more in a large host such as ComfyUI) - paid on every chunk
    of frames - so we release the two parts ourselves and fall back to ``delete()`` if pyrender's
    internals ever change.
    """
    platform, gl_renderer = getattr(renderer, "_platform", None), getattr(renderer, "_renderer", None)
    if not (hasattr(platform, "delete_context") and hasattr(gl_renderer, "delete")):
        renderer.delete()
        return
    platform.make_current()
    gl_renderer.delete()
    platform.delete_context()
    renderer._renderer = renderer._platform = None  # its __del__ then finds nothing left to free


def _store_frame(
    image_out: torch.Tensor,
    depth_out: torch.Tensor,
    color: np.ndarray,
    z: np.ndarray,
    scratch: np.ndarray,
    inference: bool,
) -> None:
    """Write one read-back frame into the output tensors (CPU, contiguous).

    color: (H, W, 3) uint8 as pyrender returns it: 255 * (1 - pixel), 0 where nothing was drawn
    (the shader writes 1 - colour and the SEG pass clears to black); z: (H, W) float32 camera z, 0
    where nothing was drawn. Both are upside-down views, which numpy copies in one pass. scratch:
    (H, W, 3) uint8 work buffer. image_out (H, W, 3) gets the pixel with the background exactly 1.0,
    depth_out (H, W) gets z. inference: whether the caller runs under ``torch.inference_mode``.
    """
    np.subtract(np.uint8(255), color, out=scratch)
    with torch.inference_mode(inference):  # outputs made under inference mode may only be written under it
        image_out.copy_(torch.from_numpy(scratch)).div_(255.0)
        np.copyto(depth_out.numpy(), z)
