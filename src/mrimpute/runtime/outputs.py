"""Where a synthesis goes: which target to which file, the checks made before any work (never an input, never a
real scan, nothing existing without --force, NIfTI volumes only), and the atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, OutputError
from ..io.atomic import check_output_extension, check_writable, refuse_overwrite
from ..io.folders import ensure_parent_folders
from ..io.nifti import require_finite, save_like
from ..io.sidecar import synthetic_descrip
from ..modalities import canonical_modality, is_synthetic_name, modality_from_filename
from .model_loading import OpenModel
from .synthesize import SynthesisResult, check_request

REPORT_SUFFIXES = (".png", ".json", ".csv")  # outputs beside the volumes that are not volumes


def check_outputs(paths: list[Path], inputs: list[Path], force: bool) -> None:
    """Before any work: refuse to overwrite an input, a real scan of the subject (even with force), an existing
    output without force, or an unwritable folder."""
    for path in paths:
        if Path(path).suffix.lower() not in REPORT_SUFFIXES:  # volumes: NIfTI only
            check_output_extension(Path(path))
    refuse_overwrite(paths, inputs, force)
    refuse_real_scans(paths, inputs)
    for path in paths:
        check_writable(Path(path), force)


def refuse_real_scans(paths: list[Path], inputs: list[Path]) -> None:
    """Refuse, even with --force, to replace an existing file that is one of the subject's real contrasts: beside
    an input and named as a contrast (`flair.nii.gz`, `sub-01_FLAIR.nii.gz`) without a synthetic marker (`synth`)."""
    input_folders = {os.path.realpath(Path(p).parent) for p in inputs}
    for path in map(Path, paths):
        if not path.is_file() or os.path.realpath(path.parent) not in input_folders or is_synthetic_name(path.name):
            continue
        contrast = modality_from_filename(path.name)
        if contrast is not None:
            raise OutputError(f"{path}: is the subject's real {contrast} (named as a real scan, beside the inputs); "
                              "a synthetic contrast never replaces it, even with --force: write it under another "
                              f"name (e.g. {contrast}_synth.nii.gz)")


def plan_outputs(model: OpenModel, given: dict[str, Path], out: Path | None, target: str | None,
                 out_dir: Path | None) -> dict[str, Path]:
    """Which target goes to which file: --out (target from --target, the file name -- `flair_synth.nii.gz`, BIDS
    `sub-01_FLAIR`, `sub-01_desc-synth_FLAIR`, `*_ce-gd_T1w` = t1c -- or the only one missing), or --out-dir
    (every output of the model not given as input, as <dir>/<contrast>_synth.nii.gz: named as synthetic, never as
    a real scan). A target that was given as an input is refused. Folders are not checked here: the caller creates
    missing ones (io.folders)."""
    config, model_path = model.config, model.path
    check_request(config.inputs, config.outputs, list(given), [], model_path)
    missing = [m for m in config.outputs if m not in given]
    if (out is None) == (out_dir is None):
        raise InputError("give either --out FILE (one contrast) or --out-dir DIR (every missing contrast)")
    if out is not None:
        named = modality_from_filename(out.name)
        if target:
            chosen = canonical_modality(target)
        elif named is not None:
            chosen = named
        elif len(missing) == 1:
            chosen = missing[0]
        else:
            raise InputError(f"{out}: say which contrast to write with --target (one of {', '.join(missing)}); the "
                             "file name does not say (e.g. flair_synth.nii.gz, sub-01_desc-synth_FLAIR.nii.gz)")
        if chosen in given:
            raise InputError(f"{'--target' if target else out}: {chosen} was given as an input (--{chosen} "
                             f"{given[chosen]}); to synthesise it from the other inputs, leave --{chosen} out")
        check_request(config.inputs, config.outputs, list(given), [chosen], model_path)
        return {chosen: out}
    if not missing:
        raise InputError(f"{model_path}: every output of the model was given as input; nothing to synthesise")
    return {m: out_dir / f"{m}_synth.nii.gz" for m in missing}


def refuse_collisions(paths: dict[str, Path], maps: dict[str, Path], sidecars: dict[str, Path]) -> None:
    """A sidecar may not be another output (e.g. --explain E.nii.gz writes E.json)."""
    taken = {os.path.realpath(p): name for name, p in [*paths.items(), *maps.items()]}
    for target_name, side in sidecars.items():
        if os.path.realpath(side) in taken:
            raise InputError(f"{side}: would be written twice (as the sidecar of {target_name} and as "
                             f"{taken[os.path.realpath(side)]}); choose other names")


def create_folders(paths: list[Path]) -> list[Path]:
    """Create the missing folders of the outputs (io.folders); returns those created, deepest first, for
    remove_empty to take back when the run is refused."""
    missing: set[Path] = set()
    for path in paths:
        for folder in Path(path).absolute().parents:
            if folder.exists():
                break
            missing.add(folder)
    ensure_parent_folders(paths)
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def remove_empty(folders: list[Path]) -> None:
    """Remove these folders where they are (still) empty: a refusal leaves nothing behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def write_outputs(result: SynthesisResult, paths: dict[str, Path], force: bool = False) -> list[Path]:
    """Write each synthesised target on the reference input's grid, atomically (the paths were checked with
    check_outputs before the synthesis; an atomic write still never replaces a file without force); its header
    says what it is (descrip 'mrimpute synthetic <target> from <inputs>', cal_min/cal_max its own range)."""
    for target, path in paths.items():
        require_finite(result.outputs[target], path)
    return [save_like(result.outputs[t], result.reference, p, force=force,
                      descrip=synthetic_descrip(t, result.inputs)) for t, p in paths.items()]
