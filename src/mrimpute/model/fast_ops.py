"""Exact, cheaper forms of the network's building blocks (the same numbers as the plain layers, up to float rounding).

- replicate padding as one copy with a cheap backward (aten's replication-pad backward is a slow scatter);
- an activation written straight into the interior of the next layer's padded buffer (inference: no separate pad,
  activation and concatenation passes);
- a 3x3 convolution of a nearest-neighbour 2x upsampling computed at the low resolution (four 2x2 phase kernels:
  16 instead of 36 multiply-adds per low-resolution pixel and output channel, and no upsampled copy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SLOPE = 0.2  # the encoders' LeakyReLU slope


def empty_padded(like: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """An uninitialised (N, channels, height + 2, width + 2) buffer in like's dtype, device and memory format."""
    layout = torch.channels_last if like.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return torch.empty((like.shape[0], channels, height + 2, width + 2), dtype=like.dtype, device=like.device,
                       memory_format=layout)


def interior(padded: torch.Tensor) -> torch.Tensor:
    """The view of a padded buffer without its one-pixel border."""
    return padded[:, :, 1:-1, 1:-1]


def fill_border(padded: torch.Tensor) -> torch.Tensor:
    """Replicate the interior's edge pixels into the one-pixel border (corners included), in place."""
    padded[:, :, 1:-1, 0] = padded[:, :, 1:-1, 1]
    padded[:, :, 1:-1, -1] = padded[:, :, 1:-1, -2]
    padded[:, :, 0] = padded[:, :, 1]
    padded[:, :, -1] = padded[:, :, -2]
    return padded


def activate_into(x: torch.Tensor, out: torch.Tensor, leaky: bool) -> None:
    """LeakyReLU (slope 0.2) or ReLU of x written into out (a view, e.g. a padded buffer's interior).

    Into a view that holds every channel of its buffer the activation writes directly; into a slice of the
    channels (strided writes that do not vectorise) x is activated in place and copied.
    """
    dense = out.dim() == 4 and out.stride(1) == 1 and out.stride(3) == out.shape[1]
    if dense and leaky:
        torch.ops.aten.leaky_relu.out(x, SLOPE, out=out)
    elif dense:
        torch.clamp_min(x, 0.0, out=out)
    else:
        out.copy_(F.leaky_relu_(x, SLOPE) if leaky else x.clamp_min_(0.0))


def _pad_copy(x: torch.Tensor) -> torch.Tensor:
    padded = empty_padded(x, x.shape[1], x.shape[2], x.shape[3])
    interior(padded).copy_(x)
    return fill_border(padded)


class _ReplicatePad(torch.autograd.Function):
    """Replicate padding by one pixel: a copy forward, the border's gradient folded onto the edges backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _pad_copy(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        inner = interior(grad).clone()
        inner[:, :, :, 0] += grad[:, :, 1:-1, 0]
        inner[:, :, :, -1] += grad[:, :, 1:-1, -1]
        inner[:, :, 0, :] += grad[:, :, 0, 1:-1]
        inner[:, :, -1, :] += grad[:, :, -1, 1:-1]
        for row in (0, -1):
            for col in (0, -1):
                inner[:, :, row, col] += grad[:, :, row, col]
        return inner


def replicate_pad(x: torch.Tensor) -> torch.Tensor:
    """x padded by one pixel on each side with its edge values (F.pad(mode='replicate'), cheaper backward)."""
    return _ReplicatePad.apply(x) if torch.is_grad_enabled() and x.requires_grad else _pad_copy(x)


_PHASES = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def upsampling_weights(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The 3x3 kernel (O, I, 3, 3) as four 2x2 phase kernels (4O, I, 2, 2) acting on the low-resolution image.

    Output pixel (2i + a, 2j + b) of conv3x3(upsample2(h)) reads h rows i-1, i, i (a = 0) or i, i, i+1 (a = 1):
    the taps that read the same low-resolution pixel are summed (differentiable, so training learns the 3x3 kernel).
    """
    mix = weight.new_tensor(_PHASES)  # (phase, 2 taps, 3 taps)
    phases = torch.einsum("apk,oikl,bql->aboipq", mix, weight, mix)  # (2, 2, O, I, 2, 2)
    out_channels = weight.shape[0]
    stacked = phases.reshape(4 * out_channels, weight.shape[1], 2, 2)
    return stacked, (bias.repeat(4) if bias is not None else None)


def upsampling_conv_phases(padded: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> list[tuple]:
    """conv3x3(replicate-pad(upsample2(h))) from replicate-pad(h): a list of ((a, b), (N, O, H, W) phase) whose
    phase (a, b) holds the output pixels (2i + a, 2j + b)."""
    stacked_weight, stacked_bias = upsampling_weights(weight, bias)
    result = F.conv2d(padded, stacked_weight, stacked_bias)  # (N, 4O, H + 1, W + 1)
    height, width = padded.shape[2] - 2, padded.shape[3] - 2
    groups = result.chunk(4, dim=1)
    return [((a, b), groups[2 * a + b][:, :, a : a + height, b : b + width]) for a in (0, 1) for b in (0, 1)]


def upsampling_conv(padded: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv3x3 (replicate padding) of the nearest-neighbour 2x upsampling of h, from replicate-pad(h)."""
    n, _, height, width = padded.shape
    out = torch.empty((n, weight.shape[0], 2 * (height - 2), 2 * (width - 2)), dtype=padded.dtype, device=padded.device,
                      memory_format=torch.channels_last if padded.is_contiguous(memory_format=torch.channels_last)
                      else torch.contiguous_format)
    for (a, b), phase in upsampling_conv_phases(padded, weight, bias):
        out[:, :, a::2, b::2] = phase
    return out
