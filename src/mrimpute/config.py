"""Model settings: a plain dataclass stored in every checkpoint so the network can be rebuilt from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol


class FusionRules(Protocol):
    """What the configuration needs of a fusion (the classes are in model/fusion.py)."""

    def encoder_channels(self, latent: int) -> int: ...

    def check(self, latent: int) -> None: ...


# The fusion registry, name -> instance: filled by model/fusion.py's classes (this layer may not import the model),
# which any import of mrimpute.model runs. Max, mean, hemis, output-mean, mean-max (a learnt mix of max and mean).
FUSIONS: dict[str, FusionRules] = {}
SLICE_AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}  # axes of the internal RAS+ array


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network: modalities, latent size, width, fusion, input channels."""

    inputs: list[str]
    outputs: list[str]
    latent: int = 16
    width: float = 1.0
    fusion: str = "max"
    lesion_channel: bool = False
    slice_axis: str = "axial"
    extra: dict = field(default_factory=dict)
    error_heads: list[str] = field(default_factory=list)  # outputs with a learnt |error| head (uncertainty maps)

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            known = ", ".join(FUSIONS) or "none registered (import mrimpute.model)"
            raise ValueError(f"unknown fusion '{self.fusion}': expected one of {known}")
        FUSIONS[self.fusion].check(self.latent)
        if self.slice_axis not in SLICE_AXES:
            raise ValueError(f"unknown slice axis '{self.slice_axis}'")
        if self.width <= 0:
            raise ValueError("width must be positive")
        if set(self.error_heads) - set(self.outputs):
            raise ValueError("an error head needs the output it predicts the error of")

    @property
    def encoder_latent(self) -> int:
        """Channels each encoder produces (the fusion says: half the latent for HeMIS, which concatenates mean and
        variance)."""
        return FUSIONS[self.fusion].encoder_channels(self.latent)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return cls(**values)
