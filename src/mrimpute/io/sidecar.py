"""What a synthetic volume is, said inside and beside it: its NIfTI description and its JSON provenance sidecar
(the same for `synth --out/--out-dir/--native-ref` and for `synth --dataset`), so that a synthetic contrast is never
mistaken for a real scan."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from .atomic import write_atomically

OUTPUT_UNITS = "mean over brain = 1"  # what a synthesised volume's values are


def sidecar_path(nifti: str | Path) -> Path:
    """The JSON sidecar beside a .nii.gz / .nii output (BIDS: same name, .json)."""
    nifti = Path(nifti)
    for suffix in (".nii.gz", ".nii"):
        if nifti.name.endswith(suffix):
            return nifti.with_name(nifti.name[: -len(suffix)] + ".json")
    return nifti.with_name(nifti.name + ".json")


def synthetic_descrip(target: str, inputs: list[str]) -> str:
    """The NIfTI descrip of a synthesis: 'mrimpute synthetic <contrast> from <inputs joined with +>'."""
    return f"mrimpute synthetic {target} from {'+'.join(inputs)}"


def map_descrip(kind: str, target: str | None, inputs: list[str]) -> str:
    """The NIfTI descrip of a map written beside a synthesis (uncertainty, explain)."""
    what = {"uncertainty": f"uncertainty (sd) of synthetic {target}", "explain": "fusion winner labels"}[kind]
    return f"mrimpute {what} from {'+'.join(inputs)}"


def source_uri(path: str | Path) -> str:
    """A file:// URI of an input (relative paths from the current folder)."""
    return Path(os.path.abspath(path)).as_uri()


def synthesis_sidecar(target: str, inputs: list[dict], model: dict, version: str, normaliser: str = "",
                      normaliser_description: str = "", scalings: dict | None = None,
                      warnings: list[str] | None = None, brain_extraction: str | None = None,
                      extra: dict | None = None) -> dict:
    """The provenance of one synthesised volume.

    inputs: [{"modality", "path", "sha256"}]; model: {"file", "sha256", "card"}; scalings: per modality, how it was
    put into model units (Scaling.as_dict()); warnings: what was noticed about the inputs (`<file>: <message>`).
    `Sources` is BIDS's field for the files a derivative was made from: file:// URIs of the inputs here (dataset
    mode replaces them with `bids:raw:<path>` URIs); `Inputs` keeps each one's modality and sha256 beside it."""
    content = {
        "Description": f"{target} synthesised by mrimpute from {', '.join(i['modality'] for i in inputs)}",
        "Synthetic": True,
        "Inputs": inputs,
        "Sources": [source_uri(item["path"]) for item in inputs],
        "Model": model,
        "MrimputeVersion": version,
        "Normalisation": OUTPUT_UNITS,
        "Normaliser": {"name": normaliser, "description": normaliser_description},
        "InputScaling": scalings or {},
        "BrainExtraction": brain_extraction,
        "Warnings": list(warnings or []),
        "GeneratedAt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    content.update(extra or {})
    return content


def write_sidecar(path: Path, content: dict, force: bool) -> Path:
    """Write a JSON sidecar atomically."""
    write_atomically(Path(path), lambda tmp: tmp.write_text(json.dumps(content, indent=2) + "\n"), force=force)
    return Path(path)
