"""`synth --uncertainty/--explain`: where the maps go, and writing them beside the synthesis."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..data.subjects import nifti_stem
from ..errors import InputError
from ..io.atomic import write_atomically
from ..io.nifti import save_like
from ..io.sidecar import map_descrip
from ..preview import save_label_montage, save_montage
from .synthesize import SynthesisResult


def plan_maps(outputs: dict[str, Path], uncertainty: Path | None = None,
              explain: Path | None = None) -> dict[str, Path]:
    """Where the maps go: for --uncertainty U.nii.gz the map ('uncertainty'; it needs exactly one target) and its PNG
    preview ('uncertainty_png': U.png), and for --explain E.nii.gz the label volume ('explain'), its JSON
    label -> input sidecar ('explain_json': E.json) and PNG montage ('explain_png': E.png)."""
    maps: dict[str, Path] = {}
    if uncertainty is not None:
        if len(outputs) != 1:
            raise InputError(f"{uncertainty}: --uncertainty maps one target, but {len(outputs)} are asked for "
                             f"({', '.join(outputs)}); use --out (with --target) for one contrast")
        maps["uncertainty"] = Path(uncertainty)
        if stem := nifti_stem(Path(uncertainty).name):
            maps["uncertainty_png"] = Path(uncertainty).with_name(f"{stem}.png")
    if explain is not None:
        stem = nifti_stem(Path(explain).name)
        if not stem:
            raise InputError(f"{explain}: --explain writes a NIfTI label volume; name it .nii.gz or .nii")
        explain = Path(explain)
        maps.update(explain=explain, explain_json=explain.with_name(f"{stem}.json"),
                    explain_png=explain.with_name(f"{stem}.png"))
    seen: dict[str, str] = {}
    for name, path in [*outputs.items(), *maps.items()]:
        key = os.path.realpath(path)
        if key in seen:
            raise InputError(f"{path}: would be written twice (as {seen[key]} and as {name})")
        seen[key] = name
    return maps


def write_maps(result: SynthesisResult, maps: dict[str, Path], force: bool = False) -> dict[str, Path]:
    """Write the maps planned by plan_maps: the uncertainty on the reference grid (float32), the explanation as a
    uint8 label volume with its JSON sidecar and a PNG montage over the reference input (the paths were checked
    with the outputs before the synthesis)."""
    written = {}
    if "uncertainty" in maps:
        (target,) = result.uncertainty
        written["uncertainty"] = save_like(result.uncertainty[target], result.reference, maps["uncertainty"],
                                           force=force, descrip=map_descrip("uncertainty", target, result.inputs))
        if "uncertainty_png" in maps:
            written["uncertainty_png"] = save_uncertainty_png(result, target, maps["uncertainty_png"], force)
    if "explain" in maps and result.explanation is not None:
        written["explain"] = save_like(result.explanation, result.reference, maps["explain"], force=force,
                                       dtype=np.uint8, descrip=map_descrip("explain", None, result.inputs))
        sidecar = {
            "Description": "per voxel, the input whose latent holds the maximum in the most latent channels (max "
                           "fusion; Chartsias et al. 2018, Fig. 7); inputs tied on the most channels are told apart "
                           "by their mean latent (the larger wins)",
            "Labels": {"0": "background", **{str(i + 1): m for i, m in enumerate(result.inputs)}},
            "Inputs": {m: str(p) for m, p in zip(result.inputs, result.input_paths)},
            "Views": result.views,
        }
        write_atomically(maps["explain_json"], lambda tmp: tmp.write_text(json.dumps(sidecar, indent=2) + "\n"),
                         force=force)
        reference = np.clip(result.reference.data, 0, None) / result.factors[result.inputs[0]]
        written["explain_json"] = maps["explain_json"]
        written["explain_png"] = save_label_montage(
            maps["explain_png"], reference, result.explanation, result.inputs, result.mask, force=force,
            title=f"which input wins the max fusion, per voxel; left: the {result.inputs[0]} input; axial slices")
    return written


def save_uncertainty_png(result: SynthesisResult, target: str, path: Path, force: bool = False) -> Path:
    """The uncertainty map's preview: the reference input, the synthesis and the map (colour bar from 0 to its
    99.5th percentile in the brain), same axial slices."""
    brain = result.mask
    uncertainty = result.uncertainty[target] * brain
    high = float(np.percentile(uncertainty[brain], 99.5)) if brain.any() else 0.0
    reference = np.clip(result.reference.data, 0, None) / result.factors[result.inputs[0]]
    synthetic = f"synthetic {target} from {'+'.join(result.inputs)}"
    columns = {result.inputs[0]: reference, synthetic: result.outputs[target], "uncertainty": uncertainty}
    return save_montage(path, columns, brain, error_columns=("uncertainty",), force=force,
                        ranges={"uncertainty": high or 1.0},
                        title=f"uncertainty of the synthetic {target} from {'+'.join(result.inputs)}; axial slices; "
                              "brain-mean units")
