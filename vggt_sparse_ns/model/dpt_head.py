"""DPT head: dense per-pixel predictions (depth or world points, plus confidence) from four
aggregator rounds, fused coarse-to-fine.

Split in two for memory: ``project`` (norm + 1x1 conv of one round's patch tokens) runs while
the aggregator works, so only the projected maps are kept, not the rounds' 2C-wide tokens;
``forward`` decodes them in chunks of frames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Activation = Literal["exp", "inv_log"]


def uv_grid(width: int, height: int, aspect_ratio: float, device: torch.device) -> Tensor:
    """Normalised pixel-centre coordinates [height, width, 2] (x, y) spanning the unit diagonal."""
    diagonal = (aspect_ratio**2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diagonal, 1.0 / diagonal
    xs = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width, device=device)
    ys = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1)


def sincos_embedding(values: Tensor, dim: int, omega_0: float = 100.0) -> Tensor:
    """[N] -> [N, dim] sin/cos features at frequencies omega_0^(-i/(dim/2)), computed in float64."""
    omega = torch.arange(dim // 2, dtype=torch.float64, device=values.device) / (dim / 2.0)
    omega = 1.0 / omega_0**omega
    angles = values.double()[:, None] * omega[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()


def add_uv_embedding(x: Tensor, image_width: int, image_height: int, ratio: float = 0.1) -> Tensor:
    """Add a fixed sinusoidal embedding of each feature-map pixel's position to x [N, C, h, w]."""
    channels, height, width = x.shape[1:]
    grid = uv_grid(width, height, image_width / image_height, x.device).reshape(-1, 2)
    half = channels // 2
    embed = torch.cat((sincos_embedding(grid[:, 0], half), sincos_embedding(grid[:, 1], half)), dim=-1)
    embed = (embed * ratio).reshape(height, width, channels).permute(2, 0, 1)
    return x + embed.to(x.dtype)[None]


class ResidualConvUnit(nn.Module):
    """relu -> conv -> relu -> conv, added to relu(x).

    The original applies an in-place ReLU to its input before the skip connection, so the
    skip carries relu(x); the published weights were trained that way.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FusionBlock(nn.Module):
    """Adds a refined skip feature (if any), refines, upsamples (to ``size`` or 2x), projects."""

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: Sequence[int] | None = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = tuple(size) if size is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Reads patch tokens of four aggregator rounds; outputs per-pixel values and confidence."""

    def __init__(
        self,
        dim_in: int,
        output_dim: int,
        activation: Activation,
        patch_size: int = 14,
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        layer_indices: Sequence[int] = (4, 11, 17, 23),
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.activation = activation
        self.layer_indices = tuple(layer_indices)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, kernel_size=1) for c in out_channels)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = nn.Module()
        for i, channels in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(channels, features, kernel_size=3, padding=1, bias=False))
        self.scratch.refinenet1 = FusionBlock(features)
        self.scratch.refinenet2 = FusionBlock(features)
        self.scratch.refinenet3 = FusionBlock(features)
        self.scratch.refinenet4 = FusionBlock(features, has_residual=False)
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, output_dim, kernel_size=1),
        )

    def project(self, level: int, patch_tokens: Tensor, grid_hw: tuple[int, int]) -> Tensor:
        """The per-round part, run as soon as round ``layer_indices[level]`` exists (in fp32):
        patch tokens [N, P, dim_in] -> projected feature map [N, out_channels[level], gh, gw]."""
        with torch.autocast(patch_tokens.device.type, enabled=False):
            x = self.norm(patch_tokens.float())
            x = x.transpose(1, 2).reshape(x.shape[0], -1, *grid_hw)
            return self.projects[level](x)

    def forward(
        self, projections: Sequence[Tensor], image_hw: tuple[int, int], frames_chunk: int = 8
    ) -> tuple[Tensor, Tensor]:
        """projections: ``project``'s outputs for the four levels, [B, S, c, gh, gw], on the head's device or
        on the host (each chunk then moves to the device as it is decoded).
        Returns (values [B, S, H, W, C], confidence [B, S, H, W]), ``frames_chunk`` frames at a time."""
        batch, frames = projections[0].shape[:2]
        device = self.norm.weight.device
        flat = [p.flatten(0, 1) for p in projections]
        values, confidences = [], []
        for start in range(0, batch * frames, frames_chunk):
            chunk = [p[start : start + frames_chunk].to(device, non_blocking=True) for p in flat]
            value, confidence = self._decode(chunk, image_hw)
            values.append(value)
            confidences.append(confidence)
        return torch.cat(values).unflatten(0, (batch, frames)), torch.cat(confidences).unflatten(0, (batch, frames))

    def _decode(self, projections: list[Tensor], image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        height, width = image_hw
        grid_h, grid_w = projections[0].shape[-2:]
        # cuDNN's tensor-core convolutions run on channels-last data: on CUDA the whole decoder stays in
        # that layout (1.33x faster at 1,000 frames on the H200, docs/benchmarks/README.md); same arithmetic.
        layout = torch.channels_last if projections[0].is_cuda else torch.contiguous_format
        maps = [
            resize(add_uv_embedding(p.float(), width, height).contiguous(memory_format=layout))
            for p, resize in zip(projections, self.resize_layers, strict=True)
        ]
        scratch = self.scratch
        reduced = [getattr(scratch, f"layer{i}_rn")(m) for i, m in enumerate(maps, start=1)]
        out = scratch.refinenet4(reduced[3], size=reduced[2].shape[2:])
        out = scratch.refinenet3(out, reduced[2], size=reduced[1].shape[2:])
        out = scratch.refinenet2(out, reduced[1], size=reduced[0].shape[2:])
        out = scratch.refinenet1(out, reduced[0])
        out = scratch.output_conv1(out)
        out = F.interpolate(
            out, size=(grid_h * self.patch_size, grid_w * self.patch_size), mode="bilinear", align_corners=True
        )
        out = scratch.output_conv2(add_uv_embedding(out, width, height)).permute(0, 2, 3, 1)
        raw_values, raw_conf = out[..., :-1], out[..., -1]
        if self.activation == "exp":
            values = torch.exp(raw_values)
        else:
            values = torch.sign(raw_values) * torch.expm1(raw_values.abs())
        return values, 1 + torch.exp(raw_conf)
