"""Model settings: a plain dataclass stored in every checkpoint so the network can be rebuilt from it."""

from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any, Protocol

from .errors import InputError


class FusionRules(Protocol):
    """What the configuration needs of a fusion (the classes are in model/fusion.py)."""

    def encoder_channels(self, latent: int) -> int: ...

    def check(self, latent: int) -> None: ...


class ConfigError(InputError, ValueError):
    """Settings no network can be built from: one line for the user (an InputError), and still a ValueError for
    code that reads a checkpoint's settings and reports them as its own error."""


# The fusion registry, name -> instance: filled by model/fusion.py's classes (this layer may not import the model),
# which any import of mrimpute.model runs. Max, mean, hemis, output-mean, mean-max (a learnt mix of max and mean).
FUSIONS: dict[str, FusionRules] = {}
SLICE_AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}  # axes of the internal RAS+ array
PAPER_CONTRASTS = ("t1", "t1c", "t2", "flair")  # the paper's inputs and outputs


def field_default(field_: Field) -> Any:
    """A dataclass field's default value (a fresh one for a default factory); MISSING when it has none."""
    if field_.default is not MISSING:
        return field_.default
    if field_.default_factory is not MISSING:
        return field_.default_factory()
    return MISSING


def default_of(cls: type, name: str) -> Any:
    """The default of one field of a dataclass: what the CLI shows and uses when the option is not given."""
    for item in fields(cls):
        if item.name == name:
            return field_default(item)
    raise KeyError(f"{cls.__name__} has no field {name}")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network: modalities, latent size, width, fusion, input channels. The defaults
    are the paper's network (four contrasts in and out, 16 latent channels, width 1, max fusion, axial slices)."""

    inputs: list[str] = field(default_factory=lambda: list(PAPER_CONTRASTS))
    outputs: list[str] = field(default_factory=lambda: list(PAPER_CONTRASTS))
    latent: int = 16
    width: float = 1.0
    fusion: str = "max"
    lesion_channel: bool = False  # each encoder also reads a lesion mask, as a second channel
    slice_axis: str = "axial"
    extra: dict = field(default_factory=dict)
    error_heads: list[str] = field(default_factory=list)  # outputs with a learnt |error| head (uncertainty maps)
    # what an error head outputs: "log" (the log of the expected |error|; fitted as model/error_head.py says) or
    # "relu" (the expected |error| itself through a ReLU, fitted by L1: the first form, read for its checkpoints)
    error_head_form: str = "log"
    # per output with an error head: the Gaussian sigma (voxels) its map is blurred with inside the brain, chosen on
    # validation subjects by `tune-uncertainty` (absent: not blurred)
    error_map_blur: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse settings no network can be built from, with one line (ConfigError)."""
        if self.fusion not in FUSIONS:
            known = ", ".join(FUSIONS) or "none registered (import mrimpute.model)"
            raise ConfigError(f"unknown fusion '{self.fusion}': expected one of {known}")
        try:
            FUSIONS[self.fusion].check(self.latent)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.slice_axis not in SLICE_AXES:
            raise ConfigError(f"unknown slice axis '{self.slice_axis}': expected one of {', '.join(SLICE_AXES)}")
        if not self.width > 0:
            raise ConfigError(f"width {self.width}: must be positive")
        if set(self.error_heads) - set(self.outputs):
            raise ConfigError("an error head needs the output it predicts the error of")
        if set(self.error_map_blur) - set(self.error_heads) or any(
                not float(v) >= 0 for v in self.error_map_blur.values()):
            raise ConfigError("an error map blur needs an error head and a sigma of 0 or more")
        if self.error_head_form not in ("log", "relu"):
            raise ConfigError(f"unknown error head form '{self.error_head_form}': expected log or relu")

    @property
    def encoder_latent(self) -> int:
        """Channels each encoder produces (the fusion says: half the latent for HeMIS, which concatenates mean and
        variance)."""
        return FUSIONS[self.fusion].encoder_channels(self.latent)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        if values.get("error_heads") and "error_head_form" not in values:  # heads saved before the form was recorded
            values = {**values, "error_head_form": "relu"}
        return cls(**values)
