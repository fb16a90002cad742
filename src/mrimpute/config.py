"""Model settings: a plain dataclass stored in every checkpoint so the network can be rebuilt from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

FUSIONS: tuple[str, ...] = ("max", "mean", "hemis", "output-mean", "mean-max")  # mean-max: learned mix of the two
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
            raise ValueError(f"unknown fusion '{self.fusion}': expected one of {', '.join(FUSIONS)}")
        if self.fusion == "hemis" and self.latent % 2:
            raise ValueError("hemis fusion needs an even latent size (mean and variance halves)")
        if self.slice_axis not in SLICE_AXES:
            raise ValueError(f"unknown slice axis '{self.slice_axis}'")
        if self.width <= 0:
            raise ValueError("width must be positive")
        if set(self.error_heads) - set(self.outputs):
            raise ValueError("an error head needs the output it predicts the error of")

    @property
    def encoder_latent(self) -> int:
        """Channels each encoder produces (half the latent for HeMIS fusion, which concatenates mean and variance)."""
        return self.latent // 2 if self.fusion == "hemis" else self.latent

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        return cls(**values)
