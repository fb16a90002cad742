"""The fast forms of a described network (model/layers.py): what model/reference.py computes, cheaper.

- autograd (training): explicit replicate padding with a cheap backward, and each upsampling convolution computed at
  the low resolution (fast_ops);
- inference (no autograd): each activation written straight into the padded input buffer of the convolution that
  reads it; a skip connection and its upsampling convolution into one merge buffer; a densely connected block's
  output and input into one buffer; a 1x1 head summing its parts' contributions instead of reading a concatenation.

The inference walk keeps its current value in one of four states: ("padded", buffer) activated and padded by one
pixel; ("raw", y) a convolution's output before its activation; ("dense", y, buffer) a dense block's raw output
and its padded input, not yet concatenated; ("out", t) activated, unpadded. Each step asks for the form it reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fast_ops import (
    SLOPE,
    activate_into,
    empty_padded,
    fill_border,
    interior,
    replicate_pad,
    upsampling_conv,
    upsampling_conv_phases,
)
from .layers import Dense, Head, Layers, Pool, UpSkip


def _act_(y: torch.Tensor, leaky: bool) -> torch.Tensor:
    """The activation, in place."""
    return F.leaky_relu(y, SLOPE, inplace=True) if leaky else torch.relu_(y)


def autograd_forward(stack: nn.Module, layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """The reference's function with explicit cheap padding and low-resolution upsampling convolutions."""
    skips = []
    for step in layers.steps:
        if isinstance(step, Pool):
            skips.append(x)
            x = F.max_pool2d(x, 2)
        elif isinstance(step, UpSkip):
            conv = getattr(stack, step.name)[0]
            up = upsampling_conv(replicate_pad(x), conv.weight, conv.bias)
            x = torch.cat([_act_(up, layers.leaky), skips.pop()], dim=1)
        elif isinstance(step, Head):
            x = getattr(stack, step.name)(x)
        else:  # Convs, Dense
            y = x
            for conv in (m for m in getattr(stack, step.name) if isinstance(m, nn.Conv2d)):
                y = _act_(F.conv2d(replicate_pad(y), conv.weight, conv.bias), layers.leaky)
            x = torch.cat([y, x], dim=1) if isinstance(step, Dense) else y
    return x


def _into(y: torch.Tensor, out: torch.Tensor | None = None, leaky: bool = True) -> torch.Tensor:
    """The activation of y written into out, or into a new padded buffer whose border is then filled."""
    if out is None:
        padded = empty_padded(y, y.shape[1], y.shape[2], y.shape[3])
        activate_into(y, interior(padded), leaky)
        return fill_border(padded)
    activate_into(y, out, leaky)
    return out


def _pixelwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A bias-free 1x1 convolution (weight: out x in channels) as one matrix product over the channels."""
    return torch.matmul(x.permute(0, 2, 3, 1), weight.t()).permute(0, 3, 1, 2)


def _padded(state: tuple, leaky: bool) -> torch.Tensor:
    """The state as an activated buffer padded by one pixel (border filled)."""
    kind, value = state[0], state[1]
    if kind == "padded":
        return value
    if kind == "raw":
        return _into(value, leaky=leaky)
    if kind == "out":
        return replicate_pad(value)
    rest = state[2]  # dense: its output first, then its input, in one buffer
    merged = empty_padded(rest, value.shape[1] + rest.shape[1], value.shape[2], value.shape[3])
    interior(merged)[:, value.shape[1]:] = interior(rest)
    _into(value, interior(merged)[:, : value.shape[1]], leaky)
    return fill_border(merged)


def _unpadded(state: tuple, leaky: bool) -> torch.Tensor:
    """The state as an activated tensor without a border."""
    kind, value = state[0], state[1]
    if kind == "raw":
        return _act_(value, leaky)
    if kind == "out":
        return value
    return interior(_padded(state, leaky)).clone()


def _pool(state: tuple, first: int, leaky: bool, skips: list[torch.Tensor]) -> tuple:
    """The pooled state; the merge buffer holding the skip connection after `first` channels (where the upsampling
    convolution goes) joins skips."""
    if state[0] != "raw":
        padded = _padded(state, leaky)
        merge = empty_padded(padded, first + padded.shape[1], padded.shape[2] - 2, padded.shape[3] - 2)
        interior(merge)[:, first:] = interior(padded)
        skips.append(merge)
        return ("padded", replicate_pad(F.max_pool2d(interior(padded), 2)))
    y = state[1]
    merge = empty_padded(y, first + y.shape[1], y.shape[2], y.shape[3])
    pooled = F.max_pool2d(y, 2)  # before the activation (y's, in place next): max commutes with a monotone one
    _into(y, interior(merge)[:, first:], leaky)
    skips.append(merge)
    return ("padded", _into(pooled, leaky=leaky))


def _convs(layer: nn.Sequential, state: tuple, dense: bool, leaky: bool) -> tuple:
    """A block of 3x3 convolutions; its last one's output left raw (and, for a dense block, beside its input)."""
    h = _padded(state, leaky)
    state, block_input = None, h if dense else None  # each buffer freed as soon as it has been read
    convs = [m for m in layer if isinstance(m, nn.Conv2d)]
    for conv in convs[:-1]:
        h = F.conv2d(h, conv.weight, conv.bias)
        h = _into(h, leaky=leaky)
    y = F.conv2d(h, convs[-1].weight, convs[-1].bias)
    return ("dense", y, block_input) if dense else ("raw", y)


def _up_skip(conv: nn.Conv2d, padded: torch.Tensor, merge: torch.Tensor, leaky: bool) -> tuple:
    """The upsampling convolution's four phases activated into the merge buffer's first channels."""
    half = interior(merge)[:, : conv.out_channels]
    for (a, b), phase in upsampling_conv_phases(padded, conv.weight, conv.bias):
        _into(phase, half[:, :, a::2, b::2], leaky)
    return ("padded", fill_border(merge))


def _head(conv: nn.Conv2d, state: tuple, leaky: bool, activation: bool = True) -> tuple:
    """A 1x1 convolution (and its activation); after a dense block, the sum of its output's and its input's parts (no
    concatenation)."""
    weight, bias = conv.weight[:, :, 0, 0], conv.bias
    if state[0] == "dense":
        top, rest = _act_(state[1], leaky), state[2]
        image = _pixelwise(top, weight[:, : top.shape[1]]) + interior(_pixelwise(rest, weight[:, top.shape[1]:]))
    else:
        image = _pixelwise(_unpadded(state, leaky), weight)
    image = image + bias.view(1, -1, 1, 1) if bias is not None else image
    return ("out", _act_(image, leaky) if activation else image)


def inference_forward(stack: nn.Module, layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """No autograd: the reference's function with every activation written into the buffer its reader needs."""
    leaky, skips, partners = layers.leaky, [], layers.skip_partners()
    held = [("padded", replicate_pad(x))]  # the current state, only here: each step pops it, so that it can free it
    for index, step in enumerate(layers.steps):
        if isinstance(step, Pool):
            first = getattr(stack, partners[index].name)[0].out_channels
            held.append(_pool(held.pop(), first, leaky, skips))
        elif isinstance(step, UpSkip):
            held.append(_up_skip(getattr(stack, step.name)[0], _padded(held.pop(), leaky), skips.pop(), leaky))
        elif isinstance(step, Head):
            held.append(_head(getattr(stack, step.name)[0], held.pop(), leaky, step.activation))
        else:  # Convs, Dense
            held.append(_convs(getattr(stack, step.name), held.pop(), isinstance(step, Dense), leaky))
    return _unpadded(held.pop(), leaky)
