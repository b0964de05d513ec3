"""Configurations of the image estimators with named presets: HMR 2.0 (4D-Humans, ``PRESETS``), CameraHMR
(``CAMERAHMR_PRESETS``) and CameraHMR's focal-length network FLNet (``FLNET_PRESETS``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...errors import CoMoViError


@dataclass(frozen=True)
class HMR2Config:
    # --- ViT backbone (ViTPose layout) ---
    image_size: int = 256  # side of the square crop fed to the model (pixels)
    crop_width: int = 192  # the backbone sees the middle crop_width columns of the square crop
    patch_size: int = 16  # patch side; the patch convolution pads 2 pixels, as ViTPose
    embed_dim: int = 1280  # ViT width (ViT-H)
    depth: int = 32  # ViT blocks
    num_heads: int = 16  # ViT attention heads
    mlp_ratio: int = 4  # ViT feed-forward width / embed_dim
    # --- SMPL transformer-decoder head ---
    head_dim: int = 1024  # width of the decoder token
    head_depth: int = 6  # decoder layers (self-attention, cross-attention to the image tokens, feed-forward)
    head_heads: int = 8  # decoder attention heads
    head_dim_head: int = 64  # channels per decoder head (inner width = head_heads * head_dim_head)
    head_mlp_dim: int = 1024  # decoder feed-forward hidden size
    num_body_joints: int = 23  # SMPL body joints (plus the global orientation)
    # --- camera and image statistics of the training set-up ---
    focal_length: float = 5000.0  # focal length (pixels) of the crop camera at image_size; weak-perspective scale
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # RGB mean, images in 0..1
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # RGB std

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise CoMoViError(f"HMR2 embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.crop_width > self.image_size or (self.image_size - self.crop_width) % 2:
            raise CoMoViError(f"crop_width {self.crop_width} must be <= image_size {self.image_size}, same parity")

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of image tokens: a 16-pixel patch with 2 pixels of padding, as ViTPose."""
        return tuple((side + 4 - self.patch_size) // self.patch_size + 1 for side in (self.image_size, self.crop_width))

    @property
    def npose(self) -> int:
        """6D rotations of the global orientation and the body joints."""
        return 6 * (self.num_body_joints + 1)

    def replace(self, **changes) -> HMR2Config:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, HMR2Config] = {
    "vit-h": HMR2Config(),  # the released HMR 2.0 (ViT-H backbone, 6-layer head)
    "tiny": HMR2Config(
        image_size=64,
        crop_width=48,
        embed_dim=32,
        depth=2,
        num_heads=4,
        head_dim=48,
        head_depth=2,
        head_heads=2,
        head_dim_head=16,
        head_mlp_dim=64,
    ),  # tests and the parity fixture
}


@dataclass(frozen=True)
class CameraHMRConfig(HMR2Config):
    """CameraHMR (Patel and Black, 3DV 2025): HMR 2.0's ViT-H and decoder; only the head's token differs (CLIFF:
    the box's place and size in the full image, divided by the focal length, and the mean parameters)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.npose != 144:
            raise CoMoViError(f"CameraHMR predicts 24 SMPL rotations, got num_body_joints={self.num_body_joints}")

    @property
    def token_dim(self) -> int:
        """bbox info (3) + mean pose (6D, 144) + mean betas (10) + mean camera (3)."""
        return 3 + self.npose + 10 + 3


CAMERAHMR_PRESETS: dict[str, CameraHMRConfig] = {
    "vit-h": CameraHMRConfig(),  # the released CameraHMR (camerahmr_checkpoint_cleaned.ckpt)
    "tiny": CameraHMRConfig(
        **{**dataclasses.asdict(PRESETS["tiny"]), "image_size": 96, "crop_width": 32}
    ),  # tests: the reference cuts 32 columns off each side of the crop, so the tiny crop is 96 -> 96 x 32
}


@dataclass(frozen=True)
class FLNetConfig:
    """CameraHMR's field-of-view network: HRNet on the whole picture, its four branches pooled, a linear readout."""

    image_size: int = 256  # side of the square the whole picture is fitted into (white borders)
    width: int = 48  # HRNet channels of the highest-resolution branch (W48); branch b has width * 2**b
    stem_blocks: int = 4  # bottleneck blocks after the stem (64 -> 256 channels)
    stage_modules: tuple[int, int, int] = (1, 4, 3)  # multi-resolution modules of stages 2, 3, 4
    stage_blocks: int = 4  # basic blocks per branch in each module
    hidden: int = 1024  # width of the readout layer
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # channel mean, images in 0..1
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # channel std

    @property
    def features(self) -> int:
        """Channels of the pooled feature: the four branches concatenated (15 * width; 720 for W48)."""
        return 15 * self.width

    def replace(self, **changes) -> FLNetConfig:
        return dataclasses.replace(self, **changes)


FLNET_PRESETS: dict[str, FLNetConfig] = {
    "w48": FLNetConfig(),  # the released FLNet (cam_model_cleaned.ckpt)
    "tiny": FLNetConfig(image_size=64, width=4, stem_blocks=1, stage_modules=(1, 1, 1), stage_blocks=1, hidden=16),
}
