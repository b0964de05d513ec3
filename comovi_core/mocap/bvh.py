"""BVH files in: parse any BVH and retarget it to a SMPL world motion.

``parse_bvh`` reads the hierarchy and the frames: any channel order, a rotation order per joint (the rotation
channels multiply in the order listed, intrinsic, degrees), position channels on any joint (they replace the
joint's OFFSET in that frame, as Blender reads them). ``read_bvh`` recognises the skeleton by its bone names
(CMU, Mixamo with or without its ``mixamorig:`` prefix, our own SMPL export, UE5, VRM) and maps it onto SMPL
with ``retarget.from_skeleton``: the file's rest pose (zero rotations) is its rest, and each bone's world
rotation relative to rest turns the SMPL joint it carries. The units (metres, centimetres) are told from the
rest skeleton's height and logged; the root's path is scaled by SMPL's leg length over the file's, so it fits
the SMPL body whatever the units and the performer's size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..body.smpl import BodyModel
from ..body.world import WorldMotion
from ..errors import CoMoViError
from ..retarget.animation import SkeletonAnimation, rest_positions
from ..retarget.mapping import from_skeleton, shortest_turn
from ..retarget.skeletons import SKELETONS, TargetSkeleton

log = logging.getLogger(__name__)

DETECTED = ("smpl", "mixamo", "ue5", "vrm", "cmu")  # the skeletons "auto" tells apart, by their bone names


@dataclass
class BVHFile:
    animation: SkeletonAnimation  # rotations and positions as the file has them (its units)
    channels: list[list[str]]  # per bone, its channel names in file order
    height: float  # the rest skeleton's height, file units
    unit: str  # "metres", "centimetres" or "unknown"


def _fail(path: Path, what: str) -> CoMoViError:
    return CoMoViError(f"BVH file {path}: {what}")


def _axis_rotations(axis: str, degrees: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations about x, y or z by ``degrees`` (N,)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros((len(a), 3, 3))
    i, j = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[axis]
    k = "XYZ".index(axis)
    out[:, k, k] = 1.0
    out[:, i, i], out[:, i, j], out[:, j, i], out[:, j, j] = c, -s, s, c
    return out


def _unit(height: float) -> str:
    if 0.5 <= height <= 3.0:
        return "metres"
    if 50.0 <= height <= 300.0:
        return "centimetres"
    return "unknown"


def parse_bvh(path: str | Path) -> BVHFile:
    """Read a BVH file (see the module docstring); a bad file raises ``CoMoViError`` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CoMoViError(f"BVH file {path} not found")
    lines = path.read_text(errors="replace").splitlines()
    motion_at = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if motion_at is None:
        raise _fail(path, "no MOTION section: the file is truncated or not a BVH file")
    tokens = " ".join(lines[:motion_at]).replace("{", " { ").replace("}", " } ").split()
    if not tokens or tokens[0].upper() != "HIERARCHY":
        raise _fail(path, "it does not start with HIERARCHY: not a BVH file")

    names, parents, offsets, channels, ends = [], [], [], [], {}
    stack: list[int | None] = []  # open joints (None: an End Site)
    pending: str | None = None
    k = 1
    try:
        while k < len(tokens):
            word = tokens[k]
            if word in ("ROOT", "JOINT"):
                pending = tokens[k + 1]
                k += 2
            elif word == "End":
                pending, k = "", k + 2  # "End Site"
            elif word == "{":
                if pending is None:
                    raise _fail(path, "a '{' with no joint before it")
                if pending == "":
                    stack.append(None)
                else:
                    names.append(pending)
                    parents.append(next((j for j in reversed(stack) if j is not None), -1))
                    offsets.append(np.zeros(3))
                    channels.append([])
                    stack.append(len(names) - 1)
                pending, k = None, k + 1
            elif word == "}":
                stack.pop()
                k += 1
            elif word == "OFFSET":
                value = np.array([float(v) for v in tokens[k + 1 : k + 4]])
                if stack[-1] is None:
                    ends[next(j for j in reversed(stack) if j is not None)] = value
                else:
                    offsets[stack[-1]] = value
                k += 4
            elif word == "CHANNELS":
                count = int(tokens[k + 1])
                channels[stack[-1]] = tokens[k + 2 : k + 2 + count]
                k += 2 + count
            else:
                raise _fail(path, f"unexpected word {word!r} in the HIERARCHY")
    except (IndexError, ValueError, StopIteration) as err:
        raise _fail(path, f"the HIERARCHY is malformed ({type(err).__name__}: {err})") from None
    if not names or stack:
        raise _fail(path, "the HIERARCHY has no joints or unbalanced braces")
    for b, chans in enumerate(channels):
        bad = [c for c in chans if c[1:].lower() not in ("position", "rotation") or c[0].upper() not in "XYZ"]
        if bad:
            raise _fail(path, f"joint {names[b]} has unknown channels {bad}")

    header = [line.strip() for line in lines[motion_at + 1 : motion_at + 3]]
    try:
        frames = int(header[0].split(":", 1)[1]) if header[0].lower().startswith("frames:") else None
        frame_time = float(header[1].split(":", 1)[1]) if header[1].lower().startswith("frame time:") else None
    except (IndexError, ValueError):
        frames = frame_time = None
    if frames is None or frame_time is None:
        raise _fail(path, "MOTION must be followed by 'Frames: N' and 'Frame Time: seconds' lines")
    if frames < 1:
        raise _fail(path, f"it has {frames} frames: there is no motion to read")
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise _fail(path, f"Frame Time must be a positive number of seconds, got {frame_time}")
    rows = [(motion_at + 4 + i, line) for i, line in enumerate(lines[motion_at + 3 :]) if line.strip()]
    if len(rows) < frames:
        raise _fail(path, f"truncated: 'Frames: {frames}' but only {len(rows)} frame lines")
    width = sum(len(c) for c in channels)
    values = np.zeros((frames, width))
    for f, (number, line) in enumerate(rows[:frames]):
        parts = line.split()
        if len(parts) != width:
            raise _fail(path, f"line {number} (frame {f}) has {len(parts)} values, the HIERARCHY's channels {width}")
        try:
            values[f] = [float(v) for v in parts]
        except ValueError:
            raise _fail(path, f"line {number} (frame {f}) has a value that is not a number") from None
        if not np.isfinite(values[f]).all():
            raise _fail(path, f"line {number} (frame {f}) has NaN or infinite values")

    count = len(names)
    rotations = np.tile(np.eye(3), (frames, count, 1, 1))
    translations = np.broadcast_to(np.array(offsets), (frames, count, 3)).copy()
    column = 0
    for b, chans in enumerate(channels):
        for name in chans:
            axis, kind = name[0].upper(), name[1:].lower()
            if kind == "rotation":
                rotations[:, b] = rotations[:, b] @ _axis_rotations(axis, values[:, column])
            else:  # a position channel replaces the OFFSET on its axis
                translations[:, b, "XYZ".index(axis)] = values[:, column]
            column += 1
    moved = any(c[1:].lower() == "position" for chans in channels[1:] for c in chans)
    end_sites = np.zeros((count, 3))
    for b, value in ends.items():
        end_sites[b] = value
    animation = SkeletonAnimation(
        names,
        parents,
        np.array(offsets),
        rotations,
        translations[:, 0],
        1.0 / frame_time,
        end_sites=end_sites,
        translations=translations if moved else None,
    )
    rest = rest_positions(animation)
    height = float(rest[:, 1].max() - rest[:, 1].min())
    return BVHFile(animation, channels, height, _unit(height))


def detect_skeleton(names: list[str], source: str = "the file") -> TargetSkeleton:
    """The skeleton whose bones ``names`` has (a ``namespace:`` prefix is ignored); the most names matched wins."""
    plain = {name.rsplit(":", 1)[-1] for name in names}
    found, missing = [], {}
    for key in DETECTED:
        skeleton = SKELETONS[key]
        needed = [n for j, n in skeleton.mapped.items() if j not in (22, 23)]
        lacking = [n for n in needed if n not in plain]
        if lacking:
            missing[key] = lacking
        else:
            found.append((len(plain & {b.name for b in skeleton.bones}), -DETECTED.index(key), skeleton))
    if not found:
        expected = "; ".join(f"{key}: {', '.join(n for n in SKELETONS[key].mapped.values())}" for key in DETECTED)
        raise CoMoViError(
            f"{source} has an unknown skeleton (bones {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}); "
            f"expected the bone names of one of these skeletons ({expected}); closest: "
            + ", ".join(f"{key} lacks {', '.join(v[:4])}" for key, v in sorted(missing.items(), key=_count)[:2])
        )
    return max(found, key=lambda f: f[:2])[2]


def _count(item: tuple[str, list]) -> int:
    return len(item[1])


def read_bvh(
    path: str | Path, model: BodyModel, *, skeleton: str = "auto", betas: np.ndarray | None = None
) -> WorldMotion:
    """A BVH file as a SMPL motion in the y-up world on ``model``'s body of shape ``betas`` (default zeros).

    ``skeleton``: "auto" (told by the bone names) or one of ``retarget.skeletons.SKELETONS``."""
    path = Path(path)
    bvh = parse_bvh(path)
    names = bvh.animation.names
    if skeleton == "auto":
        target = detect_skeleton(names, f"BVH file {path}")
    elif skeleton in SKELETONS:
        target = SKELETONS[skeleton]
    else:
        raise CoMoViError(f"skeleton must be 'auto' or one of {', '.join(SKELETONS)}, got {skeleton!r}")
    animation = _upright(bvh.animation, target, path)
    log.info(
        "%s: %s skeleton, %d frames at %.4g fps, rest height %.4g file units (%s); root motion scaled to the body",
        path.name,
        target.name,
        bvh.animation.num_frames,
        bvh.animation.fps,
        bvh.height,
        bvh.unit if bvh.unit != "unknown" else "units not metres or centimetres",
    )
    return from_skeleton(model, animation, target, betas=betas, source=str(path))


def _upright(animation: SkeletonAnimation, skeleton: TargetSkeleton, path: Path) -> SkeletonAnimation:
    """``animation`` turned into a y-up world when its rest skeleton stands along another axis (a Z-up file, as
    3ds Max or Blender write without axis conversion): the axis nearest the pelvis-to-head direction becomes +y
    by the shortest turn (so Z-up's -y forward becomes +z, SMPL's forward)."""
    plain = [name.rsplit(":", 1)[-1] for name in animation.names]
    pelvis, head = skeleton.mapped[0], skeleton.mapped[15]
    if pelvis not in plain or head not in plain:
        return animation  # from_skeleton names the missing bones
    rest = rest_positions(animation)
    up = rest[plain.index(head)] - rest[plain.index(pelvis)]
    axis = int(np.argmax(np.abs(up)))
    if axis == 1 and up[1] > 0:
        return animation
    was = np.eye(3)[axis] * np.sign(up[axis])
    turn = shortest_turn(was, np.array([0.0, 1.0, 0.0]))
    log.info("%s stands along %s: turned to y-up", path.name, ("-" if up[axis] < 0 else "+") + "xyz"[axis])
    return SkeletonAnimation(
        animation.names,
        animation.parents,
        animation.offsets @ turn.T,
        turn @ animation.rotations @ turn.T,
        animation.root_position @ turn.T,
        animation.fps,
        end_sites=None if animation.end_sites is None else animation.end_sites @ turn.T,
        translations=None if animation.translations is None else animation.translations @ turn.T,
    )
