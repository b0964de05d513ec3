"""Pure-PyTorch motion-map backend: a batched scan-line rasterizer (no OpenGL; CPU or CUDA).

Implements the backend contract of ``render.py``::

    render_frames(vertices, faces, colors, normals, camera, shading) -> (images, depth)

How the picture is made (the same picture as the release's PyTorch3D render and the pyrender backend):

* Sampling. Pixel (r, c) is sampled at its centre (u, v) = (c + 0.5, r + 0.5) (``camera.py``). No
  anti-aliasing: a pixel shows the closest surface at its centre, or white.
* Coverage, scan line by scan line. Every face is cut into the pixel rows of its bounding box. On a
  row, the face covers the pixel centres between its left edges and its right edges; where an edge
  crosses the row is computed (float64) from the edge's two projected vertices taken in a fixed order,
  so two faces sharing an edge get bit-identical crossings and, with ``floor``/``ceil`` of the same
  number, leave no pixel centre uncovered between them (watertight). Only covered (face, pixel)
  pairs are ever made. No back-face culling (two-sided).
* Closest surface. Inverse depth 1/z is linear in screen space, so each pair gets 1/z from its row's
  start value and slope. The z-buffer keeps, per pixel, the largest key ``(bits(1/z) << 32) | face``
  (``scatter_reduce`` amax): positive floats order like their bit patterns, so this is the nearest
  surface and, among exactly equal depths, the highest face index (deterministic).
* Attributes. For the face that won a pixel, the screen-space barycentrics b are computed at the pixel
  centre and turned into perspective-correct weights w_k = (b_k / z_k) / sum_j (b_j / z_j); colour,
  normal and 3D position are interpolated with w and shaded by ``shading.shade``. The depth is the
  camera z of that point, 1 / sum_j (b_j / z_j).
* Near plane. Faces with any vertex at camera z <= ``NEAR_PLANE`` (1e-3 camera units) are skipped
  whole, not clipped: the body is expected well in front of the camera, and a vertex at or behind the
  camera centre has no meaningful projection.
* Degenerate faces (zero projected area, or non-finite coordinates) cover nothing.

Memory is bounded whatever the triangle sizes: frames go through the z-buffer in chunks of at most
``MAX_BUFFER_PIXELS`` pixels and ``MAX_FACE_INSTANCES`` faces (but at least one frame), faces are cut
into rows at most about ``MAX_ROWS`` at a time, rows are expanded into pixels at most about
``MAX_PAIRS`` at a time and covered pixels are shaded at most ``MAX_SHADE_PIXELS`` at a time.
Per-face and per-row set-up and the barycentrics of covered pixels are float64; the per-(face, pixel)
z-buffer work is float32 and int32 (1-D gathers with int32 indices are several times faster on CPU).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import torch

from ..body.camera import PinholeCamera
from ..errors import CoMoViError
from .backend_inputs import check_frame_inputs
from .shading import BACKGROUND, shade

log = logging.getLogger(__name__)

NEAR_PLANE = 1e-3  # faces with a vertex at camera z <= this are skipped
MAX_BUFFER_PIXELS = 1 << 24  # z-buffer entries (frames x H x W) per frame chunk, 128 MiB (at least one frame)
MAX_FACE_INSTANCES = 1 << 19  # frames x F faces set up per frame chunk, ~200 bytes each (at least one frame)
MAX_ROWS = 1 << 20  # (face, row) pieces set up at once (plus at most one face's height)
MAX_PAIRS = 1 << 22  # (face, pixel) pairs expanded at once (plus at most one row's width); < 2^24
MAX_SHADE_PIXELS = 1 << 20  # covered pixels shaded at once
_FACE_BITS = 32
_FACE_MASK = (1 << _FACE_BITS) - 1


@dataclass
class _Faces:
    """Projected faces of a chunk of frames, one entry per face instance i = t * F + f (N = T * F).

    Row set-up, float64 (N,) each: the face covers, on pixel row r, the centres x with
    ``max(left_k) <= x <= min(right_k)``, where each of the two left and two right edge lines crosses
    the row at ``x = p + (r + 0.5 - y0) * m`` (one real edge may appear twice). ``inv_z = iz_x * x +
    iz_y * y + iz_c`` is the inverse depth over the screen. ``row_lo``, ``rows`` (int64): first row of
    the bounding box and number of rows (0 for faces that are skipped or miss the image).

    Shading, float64 (N,) each: ``x0, y0`` the first corner on screen; ``b1 = a1 dx + e1 dy`` and
    ``b2 = a2 dx + e2 dy`` the screen barycentrics of corners 1 and 2 at offset (dx, dy) from it;
    ``iz0, iz1, iz2`` the corners' inverse depths.
    """

    left_p0: torch.Tensor
    left_y0: torch.Tensor
    left_m0: torch.Tensor
    left_p1: torch.Tensor
    left_y1: torch.Tensor
    left_m1: torch.Tensor
    right_p0: torch.Tensor
    right_y0: torch.Tensor
    right_m0: torch.Tensor
    right_p1: torch.Tensor
    right_y1: torch.Tensor
    right_m1: torch.Tensor
    iz_x: torch.Tensor
    iz_y: torch.Tensor
    iz_c: torch.Tensor
    row_lo: torch.Tensor
    rows: torch.Tensor
    x0: torch.Tensor
    y0: torch.Tensor
    a1: torch.Tensor
    e1: torch.Tensor
    a2: torch.Tensor
    e2: torch.Tensor
    iz0: torch.Tensor
    iz1: torch.Tensor
    iz2: torch.Tensor


@dataclass
class _Runs:
    """Runs of covered pixels, one per (face instance, pixel row) that covers any; R entries.

    face: (R,) int32 face index f; pixel0: (R,) int64 flat index t * H * W + r * W + c of the run's
    first pixel; span: (R,) int64 run length (>= 1); iz0, iz_dx: (R,) float32 inverse depth at the
    first pixel and its change per pixel along the row.
    """

    face: torch.Tensor
    pixel0: torch.Tensor
    span: torch.Tensor
    iz0: torch.Tensor
    iz_dx: torch.Tensor

    def __getitem__(self, index: slice) -> _Runs:
        return _Runs(*(getattr(self, f.name)[index] for f in fields(self)))


def _check_inputs(vertices, faces, colors, normals, shading: str) -> None:
    """``render.check_frame_inputs``, then what this rasteriser needs too: integer faces indexing the vertices
    (int32 counts), all inputs on one device."""
    check_frame_inputs(vertices, faces, colors, normals, shading)
    if faces.dtype.is_floating_point or faces.dtype == torch.bool:
        raise CoMoViError(f"faces must hold integer vertex indices, got dtype {faces.dtype}")
    if faces.shape[0] >= 2**31:  # face indices are int32
        raise CoMoViError(f"at most {2**31 - 1} faces can be rasterised, got {faces.shape[0]}")
    devices = {t.device for t in (vertices, faces, colors, normals)}
    if len(devices) != 1:
        raise CoMoViError(f"vertices, faces, colors and normals must be on one device, got {sorted(map(str, devices))}")
    if int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]:
        raise CoMoViError(f"faces index vertices outside 0..{vertices.shape[1] - 1}")


def _ranges(sizes: torch.Tensor, budget: int) -> list[tuple[int, int]]:
    """Split (n,) non-negative sizes into contiguous index ranges summing to at most budget + max(sizes)."""
    if sizes.numel() == 0:
        return []
    ends = torch.cumsum(sizes, 0)
    starts = ends - sizes  # (n,) exclusive prefix sums
    marks = torch.arange(0, int(ends[-1]) + 1, budget, device=sizes.device, dtype=starts.dtype)
    cuts = sorted(set(torch.searchsorted(starts, marks).tolist()) - {sizes.numel()}) + [sizes.numel()]
    return list(zip(cuts[:-1], cuts[1:]))


def _edge_lines(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three edges of each face as lines x(y) = p + (y - y0) * m; edge k is opposite corner k.

    x, y: (N, 3) float64 screen corners -> p, y0, m: (N, 3) each. Each edge's end points are put in a
    fixed order first (lower y, then lower x), so the two faces sharing an edge get bit-identical lines.
    Horizontal edges get m = 0; callers must not use them as bounds.
    """
    xa, ya = x.roll(-1, 1), y.roll(-1, 1)  # corner k + 1
    xb, yb = x.roll(-2, 1), y.roll(-2, 1)  # corner k + 2
    swap = (yb < ya) | ((yb == ya) & (xb < xa))
    x_first, y_first = torch.where(swap, xb, xa), torch.where(swap, yb, ya)
    rise = torch.where(swap, ya, yb) - y_first
    run = torch.where(swap, xa, xb) - x_first
    slope = torch.where(rise > 0, run / torch.where(rise > 0, rise, torch.ones_like(rise)), torch.zeros_like(rise))
    return x_first, y_first, slope


def _project_faces(vertices: torch.Tensor, faces: torch.Tensor, camera: PinholeCamera) -> _Faces:
    """(T, V, 3) camera-space vertices, (F, 3) faces -> set-up of the T * F face instances."""
    fx, fy = camera.focal_length
    cx, cy = camera.principal_point
    num_frames, num_verts = vertices.shape[:2]
    verts = vertices.to(torch.float64).reshape(-1, 3)  # (T * V, 3)
    z = verts[:, 2]
    in_front = z > NEAR_PLANE  # (T * V,)
    safe_z = torch.where(in_front, z, torch.ones_like(z))
    vx, vy, viz = fx * verts[:, 0] / safe_z + cx, fy * verts[:, 1] / safe_z + cy, 1.0 / safe_z  # (T * V,) each
    offsets = torch.arange(num_frames, device=vertices.device) * num_verts
    corner_index = (offsets[:, None, None] + faces[None]).reshape(-1).to(torch.int32)  # (N * 3,) rows of (T * V)
    x, y, iz = (t.index_select(0, corner_index).view(-1, 3) for t in (vx, vy, viz))  # (N, 3) each
    drawable = in_front.index_select(0, corner_index).view(-1, 3).all(-1)  # (N,)

    ex1, ey1, ex2, ey2 = x[:, 1] - x[:, 0], y[:, 1] - y[:, 0], x[:, 2] - x[:, 0], y[:, 2] - y[:, 0]
    area2 = ex1 * ey2 - ex2 * ey1  # (N,) twice the signed screen area
    drawable &= (area2 != 0) & torch.isfinite(area2)
    inv_area2 = 1.0 / torch.where(drawable, area2, torch.ones_like(area2))
    a1, e1 = ey2 * inv_area2, -ex2 * inv_area2  # gradient of b1 over (x, y)
    a2, e2 = -ey1 * inv_area2, ex1 * inv_area2  # gradient of b2

    # b_k grows toward the inside, so d b_k / dx > 0 marks edge k (opposite corner k) as a left edge
    slopes = torch.stack((-(a1 + a2), a1, a2), -1)  # (N, 3)
    lines = torch.stack(_edge_lines(x, y), 0)  # (3 = p, y0, m; N, 3 edges)
    bounds = []  # the first and the last left edge, then the first and the last right edge
    for side in (slopes > 0, slopes < 0):  # (N, 3) bool; every drawable face has edges on both sides
        first, last = side.int().argmax(-1), 2 - side.flip(-1).int().argmax(-1)  # the same edge when only one
        for edge in (first, last):
            bounds += list(lines.gather(2, edge.view(1, -1, 1).expand(3, -1, 1)).view(3, -1).unbind(0))

    d1, d2 = iz[:, 1] - iz[:, 0], iz[:, 2] - iz[:, 0]
    iz_x, iz_y = a1 * d1 + a2 * d2, e1 * d1 + e2 * d2
    iz_c = iz[:, 0] - iz_x * x[:, 0] - iz_y * y[:, 0]

    height = camera.height
    y_lo = torch.where(drawable, y.amin(-1), torch.zeros_like(area2))
    y_hi = torch.where(drawable, y.amax(-1), torch.full_like(area2, -1.0))
    row_lo = torch.ceil(y_lo - 0.5).clamp(0, height).long()
    row_hi = torch.floor(y_hi - 0.5).clamp(-1, height - 1).long()
    rows = (row_hi - row_lo + 1).clamp_min(0)

    shading_terms = (x[:, 0], y[:, 0], a1, e1, a2, e2, iz[:, 0], iz[:, 1], iz[:, 2])
    return _Faces(*bounds, iz_x, iz_y, iz_c, row_lo, rows, *(t.contiguous() for t in shading_terms))


def _row_runs(pf: _Faces, inst: torch.Tensor, num_faces: int, height: int, width: int) -> _Runs:
    """Runs of covered pixel centres on every row of the face instances ``inst`` (n,) int32."""
    counts = pf.rows.index_select(0, inst)  # (n,)
    total = int(counts.sum())
    position = torch.arange(inst.numel(), device=inst.device, dtype=torch.int32)
    local = torch.repeat_interleave(position, counts, output_size=total)  # (R,) int32
    piece = inst.index_select(0, local)  # (R,) int32 face instance of each row
    first_row = pf.row_lo.index_select(0, inst) - (torch.cumsum(counts, 0) - counts)  # (n,) row minus position
    row = first_row.index_select(0, local) + torch.arange(total, device=inst.device)  # (R,) int64
    yc = row.to(torch.float64) + 0.5  # (R,) pixel-centre y

    def cross(p, y0, m):  # (R,) where an edge line crosses each row; same arithmetic for every face
        return p.index_select(0, piece) + (yc - y0.index_select(0, piece)) * m.index_select(0, piece)

    lower = torch.maximum(cross(pf.left_p0, pf.left_y0, pf.left_m0), cross(pf.left_p1, pf.left_y1, pf.left_m1))
    upper = torch.minimum(cross(pf.right_p0, pf.right_y0, pf.right_m0), cross(pf.right_p1, pf.right_y1, pf.right_m1))
    col_lo = torch.ceil(lower - 0.5).clamp_(0, width).long()  # first centre c + 0.5 >= lower
    col_hi = torch.floor(upper - 0.5).clamp_(-1, width - 1).long()  # last centre c + 0.5 <= upper
    span = col_hi - col_lo + 1
    keep = torch.nonzero(span > 0).squeeze(1).to(torch.int32)  # (R',) rows that cover a pixel centre
    piece, row, col_lo, span, yc = (t.index_select(0, keep) for t in (piece, row, col_lo, span, yc))
    iz_x = pf.iz_x.index_select(0, piece)
    x_start = col_lo.to(torch.float64) + 0.5
    iz_start = iz_x * x_start + pf.iz_y.index_select(0, piece) * yc + pf.iz_c.index_select(0, piece)
    frame = torch.div(piece, num_faces, rounding_mode="floor")
    return _Runs(
        piece - frame * num_faces,
        (frame.long() * height + row) * width + col_lo,
        span,
        iz_start.to(torch.float32),
        iz_x.to(torch.float32),
    )


def _splat_runs(runs: _Runs, keys: torch.Tensor) -> None:
    """Expand runs into (face, pixel) pairs and keep the nearest per pixel in ``keys`` (P,) int64."""
    total = int(runs.span.sum())
    device = keys.device
    run = torch.repeat_interleave(
        torch.arange(runs.span.numel(), device=device, dtype=torch.int32), runs.span.to(torch.int32), output_size=total
    )  # (N,) run of each pair
    first = torch.cumsum(runs.span, 0) - runs.span  # (R,) position of each run's first pair
    position = torch.arange(total, device=device, dtype=torch.int32)  # (N,)
    dx = position.to(torch.float32) - first.to(torch.float32).index_select(0, run)  # (N,) exact: total < 2^24
    inv_z = torch.addcmul(runs.iz0.index_select(0, run), runs.iz_dx.index_select(0, run), dx)  # (N,)
    pixel = (runs.pixel0 - first).to(torch.int32).index_select(0, run) + position  # (N,)
    key = inv_z.view(torch.int32).to(torch.int64).bitwise_left_shift_(_FACE_BITS)
    key.bitwise_or_(runs.face.index_select(0, run))
    keys.scatter_reduce_(0, pixel, key, "amax")


def _zbuffer(pf: _Faces, keys: torch.Tensor, num_faces: int, height: int, width: int) -> None:
    """Fill ``keys`` (T * H * W,) int64 with (bits(1/z) << 32) | face of the nearest surface, -1 elsewhere."""
    keys.fill_(-1)
    inst = torch.nonzero(pf.rows).squeeze(1).to(torch.int32)  # (n,) face instances touching the image
    for f_start, f_end in _ranges(pf.rows.index_select(0, inst), MAX_ROWS):
        runs = _row_runs(pf, inst[f_start:f_end], num_faces, height, width)
        for r_start, r_end in _ranges(runs.span, MAX_PAIRS):
            _splat_runs(runs[r_start:r_end], keys)


def _weights(
    pixel: torch.Tensor, face: torch.Tensor, pf: _Faces, num_faces: int, height: int, width: int
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Covered pixels (M,) int64 into (T * H * W) and their faces (M,) int32 -> the frame (M,) of each pixel, its
    screen barycentrics weighted by 1/z of their corners (3 x (M,) float64) and their sum, 1/z at the pixel (M,)."""
    frame = torch.div(pixel, height * width, rounding_mode="floor")
    in_frame = pixel - frame * (height * width)
    row = torch.div(in_frame, width, rounding_mode="floor")
    col = in_frame - row * width
    inst = (frame * num_faces + face).to(torch.int32)  # (M,)

    def at(t):
        return t.index_select(0, inst)  # (N,) -> (M,) float64

    dx = col.to(torch.float64) + 0.5 - at(pf.x0)
    dy = row.to(torch.float64) + 0.5 - at(pf.y0)
    b1 = at(pf.a1) * dx + at(pf.e1) * dy
    b2 = at(pf.a2) * dx + at(pf.e2) * dy
    # screen barycentrics b_k, weighted by 1/z_k; the clamp only matters on faces seen almost edge-on,
    # where rounding could push b far outside [0, 1] and give colours from outside the face
    b0 = 1 - b1 - b2
    weighted = [b.clamp_min_(0).mul_(at(iz)) for b, iz in ((b0, pf.iz0), (b1, pf.iz1), (b2, pf.iz2))]  # 3 x (M,)
    return frame, weighted, weighted[0] + weighted[1] + weighted[2]


def _shade_pixels(
    pixel: torch.Tensor,
    face: torch.Tensor,
    pf: _Faces,
    attributes: torch.Tensor,
    corners: torch.Tensor,
    num_verts: int,
    shading: str,
    height: int,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shade covered pixels: flat indices (M,) int64 into (T * H * W) and the faces (M,) int32 that won them.

    attributes (9, T * V) float32 per-vertex colour, normal and position (channel-major: one gather
    per channel is much faster than gathering rows); corners (3, F) int32 the faces' vertex indices;
    num_verts = V. Returns colours (M, 3) and depths (M,), float32.
    """
    frame, weighted, inv_z = _weights(pixel, face, pf, corners.shape[1], height, width)
    first_vertex = (frame * num_verts).to(torch.int32)  # (M,) the frame's vertex 0 in (T * V)
    mixed = torch.empty((9, pixel.numel()), dtype=torch.float32, device=pixel.device)  # (9, M)
    value = torch.empty_like(mixed)
    for k in range(3):  # perspective-correct interpolation of colour, normal and position
        vertex = corners[k].index_select(0, face) + first_vertex  # (M,)
        for channel in range(9):
            torch.index_select(attributes[channel], 0, vertex, out=value[channel])
        weight = (weighted[k] / inv_z).to(torch.float32)  # (M,)
        if k == 0:
            torch.mul(value, weight, out=mixed)
        else:
            mixed.addcmul_(value, weight)
    color, normal, point = (mixed[c : c + 3].T.contiguous() for c in (0, 3, 6))  # (M, 3) each
    shaded = shade(color, normal, point, shading).clamp_(0.0, 1.0)
    return shaded, inv_z.reciprocal_().to(torch.float32)


def _covered(vertices: torch.Tensor, faces: torch.Tensor, camera: PinholeCamera):
    """Rasterise chunk by chunk -> yields (frame slice, its faces' set-up, [(covered pixels (M,) int64 into the
    chunk's T' * H * W, the face (M,) int32 that won each)] in pieces of at most ``MAX_SHADE_PIXELS``)."""
    (num_frames, num_verts), num_faces = vertices.shape[:2], faces.shape[0]
    height, width = camera.height, camera.width
    if max(height * width, num_verts, num_faces) >= 2**31:  # pixel, vertex and face indices are int32
        raise CoMoViError(
            f"a {height}x{width} image of a mesh with {num_verts} vertices and {num_faces} faces is too large for "
            "the torch renderer; render at a lower resolution or with a smaller mesh"
        )
    step = max(1, min(MAX_BUFFER_PIXELS // (height * width), MAX_FACE_INSTANCES // num_faces, (2**31 - 1) // num_verts))
    buffer = torch.empty(min(step, num_frames) * height * width, dtype=torch.int64, device=vertices.device)
    for start in range(0, num_frames, step):
        chunk = slice(start, start + step)
        verts = vertices[chunk]
        keys = buffer[: verts.shape[0] * height * width]
        pf = _project_faces(verts, faces, camera)
        _zbuffer(pf, keys, num_faces, height, width)
        covered = torch.nonzero(keys >= 0).squeeze(1)  # (M,) flat pixel indices
        log.debug("torch rasterizer: frames %d-%d, %d pixels covered", start, start + len(verts) - 1, len(covered))
        pieces = [covered[first : first + MAX_SHADE_PIXELS] for first in range(0, covered.numel(), MAX_SHADE_PIXELS)]
        yield chunk, pf, [(p, (keys.index_select(0, p.to(torch.int32)) & _FACE_MASK).to(torch.int32)) for p in pieces]


def render_frames(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    colors: torch.Tensor,
    normals: torch.Tensor,
    camera: PinholeCamera,
    shading: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise T frames of one mesh with PyTorch, on the device of ``vertices``.

    vertices, colors, normals: (T, V, 3) float (OpenCV camera space; colours in output channel order);
    faces: (F, 3) int. Returns images (T, H, W, 3) float32 in [0, 1] (white background) and depth
    (T, H, W) float32 camera z (0 where empty).
    """
    _check_inputs(vertices, faces, colors, normals, shading)
    faces = faces.long()
    (num_frames, num_verts), height, width = vertices.shape[:2], camera.height, camera.width
    device = vertices.device
    images = torch.full((num_frames, height, width, 3), BACKGROUND, dtype=torch.float32, device=device)
    depth = torch.zeros((num_frames, height, width), dtype=torch.float32, device=device)
    corners = faces.T.to(torch.int32).contiguous()  # (3, F)
    with torch.no_grad():
        for chunk, pf, pieces in _covered(vertices, faces, camera):
            attributes = torch.cat((colors[chunk], normals[chunk], vertices[chunk]), -1).to(torch.float32)  # (T', V, 9)
            attributes = attributes.reshape(-1, 9).T.contiguous()  # (9, T' * V): colour, normal, position
            for pixel, face in pieces:
                shaded, z = _shade_pixels(pixel, face, pf, attributes, corners, num_verts, shading, height, width)
                images[chunk].view(-1, 3).index_copy_(0, pixel, shaded)
                depth[chunk].view(-1).index_copy_(0, pixel, z)
    return images, depth


def render_depth(vertices: torch.Tensor, faces: torch.Tensor, camera: PinholeCamera) -> torch.Tensor:
    """Only the depth of ``render_frames`` (bit-identical), without colours, normals or shading: (T, V, 3)
    camera-space vertices, (F, 3) faces -> (T, H, W) float32 camera z, 0 where empty (no gradient)."""
    if vertices.ndim != 3 or vertices.shape[-1] != 3 or faces.ndim != 2 or faces.shape[-1] != 3:
        raise CoMoViError(
            f"vertices must be (T, V, 3) and faces (F, 3), got {tuple(vertices.shape)} and {tuple(faces.shape)}"
        )
    vertices, faces = vertices.to(torch.float32), faces.long()  # as render_motion_map passes them
    depth = torch.zeros((vertices.shape[0], camera.height, camera.width), dtype=torch.float32, device=vertices.device)
    with torch.no_grad():
        for chunk, pf, pieces in _covered(vertices, faces, camera):
            for pixel, face in pieces:
                _, _, inv_z = _weights(pixel, face, pf, faces.shape[0], camera.height, camera.width)
                depth[chunk].view(-1).index_copy_(0, pixel, inv_z.reciprocal_().to(torch.float32))
    return depth
