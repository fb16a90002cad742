"""The network (torch only: no file formats, no CLI)."""

from . import fusion  # noqa: F401  (registers the fusions in config.FUSIONS before any ModelConfig is checked)
