"""Independent, slow, obviously-correct numpy reference of the motion-map picture (for tests only).

Nothing here comes from ``comovi_core``'s colour, shading or raster code: the motion-map formula is
written again from its definition so that every renderer backend is checked against a separate
computation. Pixel (r, c) casts the ray from the camera centre through
``((c + 0.5 - cx) / fx, (r + 0.5 - cy) / fy, 1)`` in OpenCV camera space (x right, y down, z forward)
and keeps the nearest two-sided triangle hit with t > 0 (Moeller-Trumbore).

Moeller-Trumbore for ray origin O = 0, direction d and triangle (v0, v1, v2), e1 = v1 - v0,
e2 = v2 - v0, s = O - v0 = -v0:

    det = e1 . (d x e2)         u = s . (d x e2) / det      v = d . (s x e1) / det      t = e2 . (s x e1) / det

By the cyclic rule a . (b x c) = b . (c x a) every numerator is a dot product of d with a per-triangle
vector, so a whole block of rays is tested against all triangles with three small matrix products:

    det = d . (e2 x e1)         u = d . (v0 x e2)           v = d . (e1 x v0)           t = (e2 . (e1 x v0)) / det

The hit is P = t * d (so its depth is t, since d_z = 1) with barycentrics (1 - u - v, u, v) for
(v0, v1, v2); those are 3D barycentrics of P, hence exactly the perspective-correct weights.
"""

from __future__ import annotations

import numpy as np

NUM_PARTS = 24
LIGHT = np.array([0.0, 1.0, 0.0])
DET_EPS = 1e-12  # |det| below this: ray parallel to the triangle's plane (or a degenerate triangle)
PIXELS_PER_BLOCK = 256


def reference_vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) vertices, (F, 3) faces -> (V, 3) area-weighted unit normals (eps 1e-6)."""
    tri = vertices[faces]  # (F, 3 corners, 3)
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), length = 2 * area
    summed = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(summed, faces[:, corner], face_normals)
    length = np.linalg.norm(summed, axis=-1, keepdims=True)
    return summed / np.maximum(length, 1e-6)


def reference_vertex_colors(normals: np.ndarray, part_ids: np.ndarray) -> np.ndarray:
    """(V, 3) unit normals, (V,) part ids -> (V, 3) colours in output order (sem, ny/2+0.5, nx/2+0.5)."""
    facing = normals[:, 2] < 0
    sem = np.where(facing, 2 * part_ids + 1, 2 * part_ids + 2) / (2.0 * NUM_PARTS)
    return np.stack((sem, normals[:, 1] / 2 + 0.5, normals[:, 0] / 2 + 0.5), axis=-1)


def pixel_rays(fx: float, fy: float, cx: float, cy: float, height: int, width: int) -> np.ndarray:
    """(H * W, 3) ray directions through pixel centres, row-major, z = 1."""
    rows, cols = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return np.stack(((cols - cx) / fx, (rows - cy) / fy, np.ones_like(cols)), axis=-1).reshape(-1, 3)


def nearest_hits(rays: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, ...]:
    """Nearest two-sided hit per ray.

    rays (P, 3), vertices (V, 3), faces (F, 3) -> face (P,) int64 (-1 = miss), t (P,), u (P,), v (P,).
    """
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))  # (F, 3) each
    e1, e2 = v1 - v0, v2 - v0
    det_vec = np.cross(e2, e1)  # (F, 3): det = d . det_vec
    u_vec = np.cross(v0, e2)  # (F, 3): u * det = d . u_vec
    v_vec = np.cross(e1, v0)  # (F, 3): v * det = d . v_vec
    t_num = np.einsum("fk,fk->f", e2, v_vec)  # (F,): t * det
    face = np.full(len(rays), -1, dtype=np.int64)
    t_best, u_best, v_best = np.zeros(len(rays)), np.zeros(len(rays)), np.zeros(len(rays))
    for start in range(0, len(rays), PIXELS_PER_BLOCK):
        d = rays[start : start + PIXELS_PER_BLOCK]  # (B, 3)
        det = d @ det_vec.T  # (B, F)
        ok = np.abs(det) > DET_EPS
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        u = (d @ u_vec.T) * inv
        v = (d @ v_vec.T) * inv
        t = t_num[None, :] * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        t_masked = np.where(hit, t, np.inf)
        best = np.argmin(t_masked, axis=1)  # (B,)
        rows = np.arange(len(d))
        any_hit = np.isfinite(t_masked[rows, best])
        block = slice(start, start + len(d))
        face[block] = np.where(any_hit, best, -1)
        t_best[block], u_best[block], v_best[block] = t[rows, best], u[rows, best], v[rows, best]
    return face, t_best, u_best, v_best


def raycast_motion_map(
    vertices, faces, part_ids, fx: float, fy: float, cx: float, cy: float, height: int, width: int, shading: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast one frame of the motion map.

    vertices (V, 3) OpenCV camera space, faces (F, 3), part_ids (V,) in 0..23.
    Returns image (H, W, 3) float64 (white background), depth (H, W) float64 (0 = background) and
    face_index (H, W) int64 (-1 = background).
    """
    if shading not in ("comovi_v1", "flat"):
        raise ValueError(f"unknown shading {shading!r}")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    part_ids = np.asarray(part_ids, dtype=np.int64)
    normals = reference_vertex_normals(vertices, faces)  # (V, 3)
    colors = reference_vertex_colors(normals, part_ids)  # (V, 3)

    rays = pixel_rays(fx, fy, cx, cy, height, width)  # (P, 3)
    face, t, u, v = nearest_hits(rays, vertices, faces)
    hit = face >= 0
    corners = faces[face[hit]]  # (N, 3)
    bary = np.stack((1 - u[hit] - v[hit], u[hit], v[hit]), axis=-1)[..., None]  # (N, 3, 1)
    color = (bary * colors[corners]).sum(1)  # (N, 3)
    normal = (bary * normals[corners]).sum(1)  # (N, 3)
    point = t[hit, None] * rays[hit]  # (N, 3)
    if shading == "comovi_v1":
        n = normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-6)
        to_light = LIGHT - point
        to_light = to_light / np.maximum(np.linalg.norm(to_light, axis=-1, keepdims=True), 1e-6)
        diffuse = np.maximum(0.0, (n * to_light).sum(-1, keepdims=True))
        color = color * (0.5 + 0.3 * diffuse) + 0.2

    image = np.ones((height * width, 3))
    depth = np.zeros(height * width)
    image[hit] = color
    depth[hit] = point[:, 2]
    return image.reshape(height, width, 3), depth.reshape(height, width), face.reshape(height, width)
