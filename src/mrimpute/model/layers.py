"""The layer description: the encoder and the decoder as short lists of layer specs, the one place they are written.

Every form of the network reads these lists: the nn.Modules are built from them (state-dict keys
`<spec name>.<index>.weight`, in the order of the list), the plain reference (model/reference.py) and the fast autograd
and inference paths (model/fast_paths.py) walk them, and the receptive radius and pooling grid follow from them. An
architecture variant (another depth, more input channels for 2.5D slabs, other widths) is a change of these lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..config import ModelConfig
from .fast_ops import SLOPE

ENCODER_LEVELS = (32, 64, 128)  # the paper's encoder channels per resolution at width 1, finest first
DECODER_CHANNELS = 32  # the decoder's channels at width 1
DECODER_BLOCKS = 2  # the decoder's densely connected blocks before its 1x1 head


@dataclass(frozen=True)
class Convs:
    """3x3 convolutions (replicate padding), each followed by the activation: nn.Sequential `name`."""

    name: str
    channels: tuple[int, ...]


@dataclass(frozen=True)
class Dense:
    """Convs whose input is concatenated after their output (the decoder's densely connected blocks)."""

    name: str
    channels: tuple[int, ...]


@dataclass(frozen=True)
class Pool:
    """Keep the current activation as a skip connection, then 2x2 max pooling."""


@dataclass(frozen=True)
class UpSkip:
    """Nearest-neighbour 2x upsampling, one 3x3 convolution + activation, then the last kept skip connection
    concatenated after it."""

    name: str
    channels: int


@dataclass(frozen=True)
class Head:
    """A 1x1 convolution + activation (none for an unbounded output, e.g. a log-scale)."""

    name: str
    channels: int
    activation: bool = True


Step = Convs | Dense | Pool | UpSkip | Head


@dataclass(frozen=True)
class Layers:
    """A network as layer specs: its input channels, its steps in order, and its activation after every
    convolution (LeakyReLU with slope SLOPE, or ReLU)."""

    in_channels: int
    steps: tuple[Step, ...]
    leaky: bool

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps if not isinstance(s, Pool)]
        if len(set(names)) != len(names):
            raise ValueError("layer names must be unique")
        open_skips = 0
        for step in self.steps:
            open_skips += isinstance(step, Pool) - isinstance(step, UpSkip)
            if open_skips < 0:
                raise ValueError(f"{step.name} upsamples with no skip connection left")
        if open_skips:
            raise ValueError("every pool needs an upsampling step to take its skip connection")

    @property
    def pools(self) -> int:
        """How many 2x2 poolings: an input's height and width must be multiples of 2 ** pools."""
        return sum(isinstance(s, Pool) for s in self.steps)

    def skip_partners(self) -> dict[int, UpSkip]:
        """Each pool's index in steps -> the upsampling step that takes its skip connection."""
        partners, open_pools = {}, []
        for index, step in enumerate(self.steps):
            if isinstance(step, Pool):
                open_pools.append(index)
            elif isinstance(step, UpSkip):
                partners[open_pools.pop()] = step
        return partners


def scaled(base: int, width: float) -> int:
    """Channels of a layer with `base` channels at width 1 (at least 4)."""
    return max(4, int(round(base * width)))


def encoder_layers(in_channels: int, latent: int, width: float, levels: tuple[int, ...] = ENCODER_LEVELS) -> Layers:
    """The U-Net encoder (LeakyReLU): per level but the last two 3x3 convs and a pool, the bottom's two convs, then
    per level, coarse to fine, an upsampling conv, its skip connection and two convs; a 3x3 conv to the latent."""
    c = [scaled(base, width) for base in levels]
    down = [s for k in range(len(c) - 1) for s in (Convs(f"level{k + 1}", (c[k], c[k])), Pool())]
    up = [s for k in reversed(range(len(c) - 1)) for s in (UpSkip(f"up{k + 1}", c[k]),
                                                          Convs(f"merge{k + 1}", (c[k], c[k])))]
    return Layers(in_channels, (*down, Convs("bottom", (c[-1], c[-1])), *up, Convs("to_latent", (latent,))), True)


def decoder_layers(latent: int, width: float, blocks: int = DECODER_BLOCKS, bounded: bool = True) -> Layers:
    """The shallow decoder (ReLU): densely connected blocks of two 3x3 convs, then a 1x1 conv to one channel (and a
    ReLU unless not `bounded`: an error head's log-scale output)."""
    c = scaled(DECODER_CHANNELS, width)
    head = Head("head", 1, activation=bounded)
    return Layers(latent, (*(Dense(f"block{k + 1}", (c, c)) for k in range(blocks)), head), False)


def network_layers(config: ModelConfig) -> tuple[Layers, Layers]:
    """The layers of a configuration's encoders and of its decoders (and error heads)."""
    in_channels = 2 if config.lesion_channel else 1  # a lesion-aware model reads the lesion plane as a second channel
    return encoder_layers(in_channels, config.encoder_latent, config.width), decoder_layers(config.latent, config.width)


def _conv(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, padding_mode="replicate" if kernel > 1 else "zeros")


def build_modules(layers: Layers) -> dict[str, nn.Sequential]:
    """The layers' nn.Sequentials by name, in order (conv, activation, conv, activation, ...)."""
    act = nn.LeakyReLU(SLOPE) if layers.leaky else nn.ReLU()
    modules: dict[str, nn.Sequential] = {}
    current, skips = layers.in_channels, []
    for step in layers.steps:
        if isinstance(step, Pool):
            skips.append(current)
        elif isinstance(step, Head):
            activation = [act] if step.activation else []
            modules[step.name] = nn.Sequential(_conv(current, step.channels, kernel=1), *activation)
            current = step.channels
        elif isinstance(step, UpSkip):
            modules[step.name] = nn.Sequential(_conv(current, step.channels), act)
            current = step.channels + skips.pop()
        else:
            sizes = (current, *step.channels)
            modules[step.name] = nn.Sequential(*(m for a, b in zip(sizes, sizes[1:]) for m in (_conv(a, b), act)))
            current = step.channels[-1] + (current if isinstance(step, Dense) else 0)
    return modules


def _reach(layers: Layers, low: int, high: int) -> tuple[int, int]:
    """The pixels (at the output's resolution) that the input pixels low..high change, along one axis."""
    skips = []
    for step in layers.steps:
        if isinstance(step, Pool):
            skips.append((low, high))
            low, high = low // 2, high // 2
        elif isinstance(step, UpSkip):
            skip = skips.pop()
            low, high = min(2 * low - 1, skip[0]), max(2 * high + 2, skip[1])
        elif not isinstance(step, Head):
            low, high = low - len(step.channels), high + len(step.channels)
    return low, high


def receptive_radius(*stacks: Layers) -> int:
    """How far (in pixels, at the worst phase of the poolings) an output of the stacks run in turn sees."""
    grid = 2 ** sum(layers.pools for layers in stacks)
    radius = 0
    for phase in range(grid):
        low, high = phase, phase
        for layers in stacks:
            low, high = _reach(layers, low, high)
        radius = max(radius, phase - low, high - phase)
    return radius
