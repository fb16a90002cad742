"""mrimpute: impute missing MRI contrasts with a modality-invariant latent model (Chartsias et al., TMI 2018)."""

__version__ = "0.1.0"
