"""`mrimpute add-lesion`: draw a lesion mask (brought onto the recipient's grid by lesions.transfer) into a
lesion-aware synthesis, measure the drawn lesions (lesions.measures) and write the synthesis, the mask as used, a
preview and the measures."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, InputError
from ..io.atomic import check_writable, refuse_overwrite, write_atomically
from ..io.folders import ensure_parent_folders
from ..io.nifti import load_volume, save_like
from ..lesions.measures import lesion_report
from ..lesions.transfer import transfer_lesion_mask
from ..modalities import canonical_modality
from ..preview import save_montage
from ..runtime.reporting import Reporter


@dataclass
class AddLesionResult:
    output: Path
    mask_output: Path | None
    how: str
    report: dict[str, float]
    preview: Path | None
    report_file: Path | None = None

    @property
    def written(self) -> list[Path]:
        """Every file written: the synthesis, then the mask, the preview and the report (those asked for)."""
        return [p for p in (self.output, self.mask_output, self.preview, self.report_file) if p is not None]


def _source_subject(folder: Path, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A source subject's real target image, lesion mask, brain mask and T1 (RAS+, target brain-mean units)."""
    from ..data.subjects import discover_subjects, load_subject

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: --source-subject is not a folder (give the subject folder the mask came from)")
    found = [s for s in discover_subjects(folder.parent) if s.name == folder.name]
    if not found:
        raise InputError(f"{folder}: --source-subject is not a subject folder with NIfTI volumes")
    needed = [m for m in dict.fromkeys([target, "t1"]) if m not in found[0].files]
    if needed:
        raise InputError(f"{folder}: --source-subject has no {' and no '.join(needed)} volume (it needs the target "
                         f"{target}, t1 and lesion.nii.gz)")
    loaded = load_subject(found[0], [target, "t1"], lesion_source="expert")
    if not loaded.lesion.any():
        raise InputError(f"{folder}: has no expert lesion mask (lesion.nii.gz) to compare with")
    return loaded.targets[target], loaded.lesion, loaded.mask, loaded.targets["t1"]


def _check_files(out: Path, given: list[Path], mask_out: Path | None, preview: Path | None,
                 report: Path | None, force: bool) -> None:
    """The outputs are different files, and the report (JSON, any name) may be written; the rest is checked with
    the synthesis's plan."""
    outputs = [p for p in (out, mask_out, preview, report) if p is not None]
    if len({os.path.realpath(p) for p in outputs}) < len(outputs):
        raise InputError(f"{out}: --out, --mask-out, --preview and --report must be different files")
    if report is not None:
        refuse_overwrite([report], given, force)
        check_writable(report, force)


def add_lesion(inputs: dict[str, Path], lesion_mask: Path, target: str, out: Path, model_path: Path | None = None,
               lesion_ref: Path | None = None, mask_out: Path | None = None, source_subject: Path | None = None,
               preview: Path | None = None, device: str = "auto", batch_size: int = 0, force: bool = False,
               reporter: Reporter | None = None, report: Path | None = None, threads: int = 0) -> AddLesionResult:
    """`mrimpute add-lesion`: synthesise `target` from the inputs with the lesions of `lesion_mask` drawn in,
    measure them, and write the synthesis (and the mask as used, a preview, the measures as JSON when asked).

    Every argument (the model, default the shipped lesion model; the target, the outputs, the source subject, the
    mask's grid) is checked before the synthesis, and the measures are computed before anything is written: a
    refusal leaves no file behind."""
    from ..runtime.device import set_threads
    from ..runtime.model_loading import lesion_model_path
    from ..runtime.session import SynthesisRequest, SynthesisSession

    set_threads(threads)
    if not inputs:
        raise InputError("give at least one input volume of the recipient (e.g. --t1 t1.nii.gz)")
    target = canonical_modality(target)
    given = [*inputs.values(), lesion_mask, *([lesion_ref] if lesion_ref else [])]
    ensure_parent_folders([out, mask_out, preview, report])  # missing output folders are created
    _check_files(out, given, mask_out, preview, report, force)
    session = SynthesisSession.open(model_path or lesion_model_path(), device)  # read once: checks, synthesis
    if not session.config.lesion_channel:
        raise CheckpointError(f"{session.path}: not a lesion-aware model (train one with --lesion-channel)")
    plan = session.plan(SynthesisRequest(
        inputs, out, target, batch_size=batch_size, force=force, sidecars=False,
        also_written=tuple(p for p in (mask_out, preview) if p is not None), protected=tuple(given[len(inputs):])))
    source = _source_subject(Path(source_subject), target) if source_subject else (None, None, None, None)
    first = next(m for m in session.config.inputs if m in inputs)
    transferred = transfer_lesion_mask(Path(lesion_mask), load_volume(inputs[first]), lesion_ref)
    result = session.run(plan, reporter, lesion=transferred.mask)
    synthetic = result.outputs[target]
    t1 = load_normalised(inputs["t1"], result.mask) if "t1" in inputs else None  # for white matter
    measures = lesion_report(synthetic, transferred.mask, result.mask, t1, *source)
    session.write(result, plan)
    if mask_out is not None:
        save_like(transferred.mask.astype(np.uint8), result.reference, mask_out, force=force, dtype=np.uint8)
    if preview is not None:
        _save_preview(preview, inputs, target, synthetic, transferred.mask, result.mask, force)
    if report is not None:
        text = json.dumps({"output": str(out), "lesion_mask": str(lesion_mask), "how": transferred.how,
                           **measures}, indent=2) + "\n"
        write_atomically(report, lambda tmp: tmp.write_text(text), force=force)
    return AddLesionResult(out, mask_out, transferred.how, measures, preview, report)


def _save_preview(path: Path, inputs: dict[str, Path], target: str, synthetic: np.ndarray, lesion: np.ndarray,
                  brain: np.ndarray, force: bool) -> None:
    """PNG montage: the inputs, the mask and the synthesis (the mask outlined) through the lesions."""
    window = float(np.percentile(synthetic[brain], 99.5))
    columns = {m: load_normalised(p, brain) for m, p in inputs.items()}
    columns |= {"lesion mask": lesion * window, f"synthetic {target}": synthetic}
    save_montage(path, columns, brain, force=force, slice_mask=lesion,
                 contours={f"synthetic {target}": lesion},  # the mask outlined on the synthesis
                 title=f"{target} synthesised from {'+'.join(inputs)} with the lesion mask drawn in; axial "
                       "slices through the lesions; intensities in brain-mean units")


def load_normalised(path: Path, brain: np.ndarray) -> np.ndarray:
    """A volume divided by its mean over the brain (negatives clipped), as the model's inputs are."""
    data = np.clip(load_volume(path).data, 0, None)
    return data / float(data[brain].mean())
