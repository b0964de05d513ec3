"""FLNet, CameraHMR's field-of-view network: the whole picture -> its vertical field of view -> a focal length.

An HRNet (Sun et al. 2019; W48 in the release) keeps four resolutions in parallel; FLNet brings the three finer
branches down to the coarsest with strided convolutions, concatenates the four (15 * width channels), averages
over the image and reads out two angles with two linear layers (no activation between them, as the release).
The release uses the second angle as the vertical field of view, in radians. Parameter names follow the
release's checkpoint (the usual HRNet names), so its state dict loads as is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...body.camera import PinholeCamera
from ...errors import CoMoViError
from .config import FLNetConfig

STEM_WIDTH = 64  # stem convolutions; its bottlenecks widen to 4 * 64 = 256 channels


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU()] if relu else layers


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (64 -> 256 channels) with a residual (projected when the width changes)."""

    def __init__(self, cin: int, planes: int = STEM_WIDTH):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, 4 * planes, 1, bias=False), nn.BatchNorm2d(4 * planes)
        self.downsample = nn.Sequential(*_conv_bn(cin, 4 * planes, 1, relu=False)) if cin != 4 * planes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions at constant width with a residual."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def _fuse(widths: list[int], i: int, j: int) -> nn.Module:
    """Branch j -> the resolution and width of branch i: 1x1 + nearest upsampling (coarser), strided 3x3 (finer)."""
    if j == i:
        return nn.Identity()
    if j > i:
        return nn.Sequential(*_conv_bn(widths[j], widths[i], 1, relu=False), nn.Upsample(scale_factor=2 ** (j - i)))
    steps = i - j
    return nn.Sequential(
        *(
            nn.Sequential(*_conv_bn(widths[j], widths[i] if k == steps - 1 else widths[j], 3, 2, relu=k < steps - 1))
            for k in range(steps)
        )
    )


class HRModule(nn.Module):
    """One multi-resolution module: residual blocks per branch, then every branch gathers all others."""

    def __init__(self, widths: list[int], blocks: int):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*(BasicBlock(w) for _ in range(blocks))) for w in widths)
        n = len(widths)
        self.fuse_layers = nn.ModuleList(nn.ModuleList(_fuse(widths, i, j) for j in range(n)) for i in range(n))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for fuse in self.fuse_layers:
            y = fuse[0](xs[0])
            for j in range(1, len(xs)):
                y = y + fuse[j](xs[j])
            out.append(F.relu(y))
        return out


def _transition(before: list[int], after: list[int]) -> nn.ModuleList:
    """Existing branches keep their width (identity); a new branch halves the coarsest one's resolution."""
    layers = []
    for i, width in enumerate(after):
        if i < len(before):
            layers.append(nn.Identity() if before[i] == width else nn.Sequential(*_conv_bn(before[i], width)))
        else:
            steps = i + 1 - len(before)
            layers.append(
                nn.Sequential(
                    *(
                        nn.Sequential(*_conv_bn(before[-1], width if k == steps - 1 else before[-1], 3, 2))
                        for k in range(steps)
                    )
                )
            )
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """(B, 3, S, S) -> (B, 15 * width, S / 32, S / 32): the four branches, the finer ones strided down."""

    def __init__(self, config: FLNetConfig):
        super().__init__()
        w = config.width
        self.conv1, self.bn1 = nn.Conv2d(3, STEM_WIDTH, 3, 2, 1, bias=False), nn.BatchNorm2d(STEM_WIDTH)
        self.conv2, self.bn2 = nn.Conv2d(STEM_WIDTH, STEM_WIDTH, 3, 2, 1, bias=False), nn.BatchNorm2d(STEM_WIDTH)
        self.layer1 = nn.Sequential(
            *(Bottleneck(STEM_WIDTH if k == 0 else 4 * STEM_WIDTH) for k in range(config.stem_blocks))
        )
        widths = [4 * STEM_WIDTH]
        for stage, modules in enumerate(config.stage_modules, start=2):
            new = [w * 2**b for b in range(stage)]
            setattr(self, f"transition{stage - 1}", _transition(widths, new))
            setattr(self, f"stage{stage}", nn.Sequential(*(HRModule(new, config.stage_blocks) for _ in range(modules))))
            widths = new
        for b in range(3):  # branch b -> the coarsest resolution: 3 - b strided convolutions
            layers = [m for _ in range(3 - b) for m in _conv_bn(w * 2**b, w * 2**b, 3, 2)]
            setattr(self, f"downsample_stage_{b + 1}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 64, S/2, S/2)
        x = F.relu(self.bn2(self.conv2(x)))  # (B, 64, S/4, S/4)
        xs = [self.layer1(x)]  # (B, 256, S/4, S/4)
        for stage in (2, 3, 4):
            transition = getattr(self, f"transition{stage - 1}")
            xs = [xs[i] if isinstance(t, nn.Identity) else t(xs[-1]) for i, t in enumerate(transition)]
            xs = getattr(self, f"stage{stage}")(xs)  # branch b: (B, width * 2**b, S / 2**(b+2), ...)
        down = [getattr(self, f"downsample_stage_{b + 1}")(xs[b]) for b in range(3)]
        return torch.cat(down + [xs[3]], 1)


class FLNet(nn.Module):
    """(B, 3, S, S) the whole picture (``flnet_input``) -> (B, 2) angles in radians; [:, 1] is the vertical field
    of view. The release's second hidden layer (fc2) is not on its forward path and is not built here."""

    def __init__(self, config: FLNetConfig):
        super().__init__()
        self.config = config
        self.backbone = HRNet(config)
        self.fc1 = nn.Linear(config.features, config.hidden)
        self.fc3 = nn.Linear(config.hidden, 2)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixels).mean((2, 3))  # (B, 15 * width)
        return self.fc3(self.fc1(features))  # (B, 2)


def _area_weights(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) resampling matrix of OpenCV's INTER_AREA: the exact pixel-area average when shrinking;
    when enlarging, OpenCV's linear weights of its area mode."""
    scale = size_in / size_out
    o = torch.arange(size_out, dtype=torch.float64)[:, None]
    i = torch.arange(size_in, dtype=torch.float64)[None]
    if scale >= 1:
        overlap = torch.minimum((o + 1) * scale, i + 1) - torch.maximum(o * scale, i)
        return (overlap.clamp(min=0) / scale).float()
    sx = torch.floor(o * scale)
    fx = (o + 1) - (sx + 1) / scale
    fx = torch.where(fx <= 0, torch.zeros_like(fx), fx - torch.floor(fx))
    left, right = sx.clamp(max=size_in - 1), (sx + 1).clamp(max=size_in - 1)
    return ((i == left) * (1 - fx) + (i == right) * fx).float()


def flnet_input(image: torch.Tensor, config: FLNetConfig) -> torch.Tensor:
    """(H, W, 3) RGB in [0, 1] -> (3, S, S) FLNet's input as the release's demo builds it: the picture shrunk
    (INTER_AREA, 8-bit) so its longer side is S, centred on white, normalised. The demo hands FLNet the picture
    as OpenCV reads it, blue-green-red, and normalises those channels with the RGB statistics: so does this."""
    h, w = image.shape[:2]
    s = config.image_size
    new_w, new_h = (s, int(s / (w / h))) if w > h else (int(s * (w / h)), s)
    if min(new_w, new_h) < 1:
        raise CoMoViError(f"the picture ({h} x {w}) is too elongated for the field-of-view network")
    img = image.float().flip(-1)  # RGB -> BGR
    small = torch.einsum("yh,hwc,xw->yxc", _area_weights(h, new_h), img, _area_weights(w, new_w))
    small = torch.round(small * 255) / 255  # OpenCV resizes the 8-bit picture
    canvas = torch.ones(s, s, 3)
    top, left = (s - new_h) // 2, (s - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = small
    mean, std = torch.tensor(config.image_mean), torch.tensor(config.image_std)
    return ((canvas - mean) / std).permute(2, 0, 1)


PLAUSIBLE_VFOV_DEGREES = (5.0, 150.0)  # a 200 mm telephoto lens to a wide fisheye; outside it the file is broken


@torch.no_grad()
def estimate_camera(flnet: FLNet, image: torch.Tensor) -> tuple[PinholeCamera | None, float]:
    """(H, W, 3) RGB in [0, 1] -> (the centred camera of FLNet's focal length, vertical field of view in degrees).

    The camera is None when the field of view is not finite or outside ``PLAUSIBLE_VFOV_DEGREES`` (a broken or
    wrong file): the caller then keeps its own field of view."""
    h, w = image.shape[:2]
    param = next(flnet.parameters())
    vfov = float(flnet(flnet_input(image.cpu(), flnet.config)[None].to(param))[0, 1])
    degrees = math.degrees(vfov) if math.isfinite(vfov) else vfov
    low, high = PLAUSIBLE_VFOV_DEGREES
    if not (math.isfinite(vfov) and low <= degrees <= high):
        return None, degrees
    focal = h / (2 * math.tan(vfov / 2))
    return PinholeCamera((focal, focal), (w / 2, h / 2), (h, w)), degrees
