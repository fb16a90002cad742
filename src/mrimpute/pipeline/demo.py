"""The embedded demo: FLAIR from T1 + T2 of the bundled open_ms subject, scored against its real FLAIR."""

from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..data.intensity import foreground_mask
from ..io.atomic import write_atomically
from ..io.nifti import load_volume
from ..metrics import in_brain_metrics
from ..preview import save_qc
from ..runtime.reporting import Reporter
from ..runtime.session import SynthesisRequest, SynthesisSession

SAMPLE_DIR = Path(str(files("mrimpute").joinpath("sample", "ms07")))
DEMO_INPUTS = ("t1", "t2")
DEMO_TARGET = "flair"


def run_demo(out_dir: Path, model_path: Path | None = None, device: str = "auto", force: bool = False,
             reporter: Reporter | None = None) -> dict:
    """Synthesise the sample's FLAIR from T1 and T2, write NIfTI, PNG preview and metrics JSON; return the metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nifti, png, report = out_dir / f"{DEMO_TARGET}_synth.nii.gz", out_dir / "preview.png", out_dir / "metrics.json"
    inputs = {m: SAMPLE_DIR / f"{m}.nii.gz" for m in DEMO_INPUTS}
    session = SynthesisSession.open(model_path, device)
    plan = session.plan(SynthesisRequest(inputs, nifti, DEMO_TARGET, force=force, sidecars=False,
                                         also_written=(png, report)))
    started = time.monotonic()
    result = session.run(plan, reporter)
    seconds = time.monotonic() - started
    session.write(result, plan)
    truth = load_volume(SAMPLE_DIR / f"{DEMO_TARGET}.nii.gz").data
    brain = foreground_mask(truth)
    scores = in_brain_metrics(result.outputs[DEMO_TARGET], truth, brain)
    inputs_normalised = {m: np.clip(load_volume(p).data, 0, None) / result.factors[m] for m, p in inputs.items()}
    save_qc(png, inputs_normalised, truth, result.outputs[DEMO_TARGET], brain, DEMO_TARGET, force=force)
    summary = {"subject": "open_ms patient07 (CC-BY)", "inputs": list(DEMO_INPUTS), "target": DEMO_TARGET,
               "synthesis_seconds": round(seconds, 2), "in_brain": {k: round(v, 4) for k, v in scores.items()},
               "files": {"nifti": str(nifti), "preview": str(png)}}
    write_atomically(report, lambda tmp: tmp.write_text(json.dumps(summary, indent=2)), force=force)
    return summary
