"""Lesion masks for lesion-aware synthesis: bring a mask onto a subject's grid, and measure drawn lesions."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import lesion_measures
from ..data.lesions import binarise
from ..errors import CheckpointError, InputError
from ..io.atomic import check_writable, refuse_overwrite, write_atomically
from ..io.folders import ensure_parent_folders
from ..io.nifti import AFFINE_TOLERANCE_MM, Volume, check_same_grid, load_volume, save_like
from ..modalities import canonical_modality
from ..preprocess import spatial
from ..preview import save_montage
from .preprocess_steps import to_sitk
from .reporting import Reporter


@dataclass
class TransferredMask:
    """A binary lesion mask (RAS+) on the target's grid, and what was done to put it there."""

    mask: np.ndarray
    how: str


def _same_grid(a: Volume, b: Volume) -> bool:
    return a.shape == b.shape and np.allclose(a.affine, b.affine, atol=AFFINE_TOLERANCE_MM)


def transfer_lesion_mask(mask_path: Path, target: Volume, mask_reference: Path | None = None,
                         seed: int = 0) -> TransferredMask:
    """The lesion mask on the target's grid: as is when it already lies there; otherwise resampled (nearest
    neighbour) through a rigid registration of `mask_reference` (the image the mask was drawn on) onto the
    target."""
    mask_volume = load_volume(mask_path)
    mask = binarise(mask_volume.data, mask_path)
    if _same_grid(mask_volume, target):
        return TransferredMask(mask, f"{mask_path.name} lies on the grid of {target.path.name}: used as is")
    if mask_reference is None:
        raise InputError(f"{mask_path}: lesion mask grid {mask_volume.shape} differs from {target.path} "
                         f"{target.shape}; give --lesion-ref (the image the mask was drawn on) to register it")
    reference = load_volume(mask_reference)
    check_same_grid([reference, mask_volume])
    # rigid: on this project's MNI-space subjects and atlas, Mattes-MI affine drifted into shear and scale
    # (ms19 onto the ICBM atlas: +83% lesion volume) while rigid stays near the true, identity, alignment
    result = spatial.register(to_sitk(target), to_sitk(reference), None, affine=False, seed=seed)
    mask_image = spatial.image_from_array(mask.astype(np.float32), mask_volume.affine)
    moved = spatial.resample(mask_image, to_sitk(target), result.transform, nearest=True)
    resampled = spatial.array_from_image(moved) > 0.5
    if not resampled.any():
        raise InputError(f"{mask_path}: no lesion voxel lands inside {target.path} after registration")
    return TransferredMask(resampled, f"registered {reference.path.name} onto {target.path.name} (rigid, Mattes MI "
                                      f"{result.metric:.3f}) and resampled {mask_path.name} by nearest neighbour")


def _ratio(image: np.ndarray, region: np.ndarray, reference: np.ndarray) -> float:
    """Lesion-to-NAWM contrast, NaN where no normal-appearing white matter was found."""
    try:
        return lesion_measures.contrast_ratio(image, region, reference)
    except ValueError:
        return float("nan")


def lesion_report(synthetic: np.ndarray, inserted: np.ndarray, brain: np.ndarray, recipient_t1: np.ndarray | None,
                  source_image: np.ndarray | None = None, source_lesion: np.ndarray | None = None,
                  source_brain: np.ndarray | None = None, source_t1: np.ndarray | None = None,
                  recipient_lesion: np.ndarray | None = None) -> dict[str, float]:
    """Contrast of the drawn lesions against normal-appearing white matter (needs the recipient's T1), the same
    for the source's real lesions when given, and the Dice of a hyperintensity segmentation of the synthetic image
    with the mask (the recipient's own lesions, when given, are left out of the segmentation)."""
    inserted = inserted & brain
    if not inserted.any():
        raise InputError("the lesion mask has no voxel inside the brain")
    report: dict[str, float] = {"lesion_voxels": int(inserted.sum())}
    if recipient_t1 is not None:
        own = [recipient_lesion] if recipient_lesion is not None else []
        nawm = lesion_measures.normal_white_matter(recipient_t1, brain, [inserted, *own])
        report["synthetic_lesion_to_nawm"] = _ratio(synthetic, inserted, nawm)
    if source_image is not None and source_lesion is not None and source_brain is not None and source_t1 is not None:
        source_nawm = lesion_measures.normal_white_matter(source_t1, source_brain, [source_lesion])
        report["real_lesion_to_nawm"] = _ratio(source_image, source_lesion & source_brain, source_nawm)
    segmented = lesion_measures.hyperintensities(synthetic, brain)
    if recipient_lesion is not None:  # the recipient's own lesions are not the drawn ones
        segmented &= ~(recipient_lesion & ~inserted)
    report["hyperintense_voxels"] = int(segmented.sum())
    report["dice_hyperintensities_vs_mask"] = lesion_measures.dice(segmented, inserted)
    return report


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
    from .device import set_threads
    from .model_loading import lesion_model_path
    from .session import SynthesisRequest, SynthesisSession

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
