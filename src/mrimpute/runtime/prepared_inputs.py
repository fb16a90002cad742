"""Inputs as the model's encoders expect them: each normalised by the checkpoint's normaliser, the brain mask, and
what a user should be warned of."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.normaliser import HANDLED, Normaliser, Scaling, as_input, findings
from ..errors import InputError


@dataclass
class NormalisedInputs:
    """Inputs in encoder units, the brain mask (the union of their foregrounds), and how each was scaled."""

    volumes: dict[str, np.ndarray]
    mask: np.ndarray
    scalings: dict[str, Scaling]
    findings: dict[str, list[str]]

    @property
    def factors(self) -> dict[str, float]:
        return {m: s.target_scale for m, s in self.scalings.items()}


def normalise_inputs(volumes: dict[str, np.ndarray], normaliser: Normaliser = Normaliser(),
                     voxel_ml: float = 0.001) -> NormalisedInputs:
    """Each input as the model's encoders expect it (its checkpoint's normaliser), with what was noticed."""
    masks = {m: normaliser.foreground(v) for m, v in volumes.items()}
    mask = np.logical_or.reduce(list(masks.values()))
    normalised, scalings, notes = {}, {}, {}
    for m, volume in volumes.items():
        scalings[m] = normaliser.scaling(volume, mask & masks[m])
        normalised[m] = as_input(volume, mask & masks[m], scalings[m])
        notes[m] = _findings(volume, normaliser, voxel_ml) if normaliser.legacy else \
            findings(volume, mask & masks[m], scalings[m], voxel_ml)
    return NormalisedInputs(normalised, mask, scalings, notes)


def _findings(volume: np.ndarray, legacy: Normaliser, voxel_ml: float) -> list[str]:
    """What a model with the legacy normaliser should warn of: the same findings, seen by the robust normaliser."""
    robust = Normaliser()
    brain = robust.foreground(volume)
    notes = findings(volume, brain, robust.scaling(volume, brain), voxel_ml)
    caveat = (f"; this model predates the robust normaliser ({legacy.name}: negatives clipped to 0): "
              "expect a poor result")
    return [n.replace(HANDLED, caveat) for n in notes]


def refuse_findings(findings: dict[str, list[str]]) -> None:
    """`synth --strict`: the first warning about an input, as a one-line error (nothing is written)."""
    notes = [(path, message) for path, messages in findings.items() for message in messages]
    if notes:
        path, message = notes[0]
        more = f" (and {len(notes) - 1} more warning(s))" if len(notes) > 1 else ""
        raise InputError(f"{path}: {message}{more}; --strict refuses inputs with warnings")
