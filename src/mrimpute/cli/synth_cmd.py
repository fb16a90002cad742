"""`mrimpute synth`: synthesise missing contrasts of one subject from whichever contrasts it has."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, error_console, make_table, reporting, run_guarded
from .modality_options import with_modality_options

INPUT_HELP = "Input volume ({name}), co-registered with the other inputs."


@with_modality_options(INPUT_HELP)  # --t1, --t1c, --t2, --flair, ...: one per row of the modality table
def synth_command(
    inputs: dict[str, Path] = None,  # filled by with_modality_options
    out: Optional[Path] = typer.Option(None, help="Output NIfTI for one target contrast."),
    target: Optional[str] = typer.Option(None, help="Contrast to write to --out (default: from --out's name, e.g. "
                                         "flair_synth.nii.gz, sub-01_FLAIR.nii.gz, *_ce-gd_T1w.nii.gz = t1c)."),
    out_dir: Optional[Path] = typer.Option(None, help="Write every contrast the model has that was not given here, "
                                           "as DIR/<contrast>_synth.nii.gz (DIR is created if missing)."),
    model: Optional[Path] = typer.Option(None, help="Model checkpoint (default: the shipped model)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    batch_size: int = typer.Option(0, min=0, help="Slices per forward pass (0: chosen from the slice size)."),
    threads: int = typer.Option(0, min=0, help="CPU threads (0: torch's default)."),
    exact: bool = typer.Option(True, help="Crop each batch of slices to the brain grown by the network's receptive "
                               "field: the whole slices' values to float rounding. --no-exact crops to the brain "
                               "itself: about 1.5x faster, values near the brain's edge differ slightly."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
    dataset: Optional[Path] = typer.Option(
        None, help="Dataset mode: every subject of a BIDS (or plain/BraTS) dataset; --out is then the derivative "
                   "folder (default ROOT/derivatives/mrimpute)."),
    dry_run: bool = typer.Option(False, help="With --dataset: show the plan, write nothing."),
    jobs: int = typer.Option(1, min=1, help="With --dataset: subjects processed in parallel (CPU)."),
    participant_label: Optional[list[str]] = typer.Option(
        None, "--participant-label", metavar="LABEL",
        help="With --dataset: only these subjects, BIDS-Apps style (01 02, or sub-01 sub-02; every session of each)."),
    more_labels: Optional[list[str]] = typer.Argument(None, hidden=True, metavar="LABEL",
                                                      help="The further labels of --participant-label 01 02 ..."),
    axis: Optional[str] = typer.Option(None, help="Apply the model along this slice axis: axial, coronal or sagittal "
                                       "(default: the axis it was trained on)."),
    views: Optional[str] = typer.Option(None, help="Synthesise along each of these axes and merge, e.g. "
                                        "axial,coronal,sagittal."),
    merge: str = typer.Option("mean", help="With --views: merge voxel-wise by mean or median."),
    uncertainty: Optional[Path] = typer.Option(None, help="Also write an uncertainty map: the expected absolute "
                                               "error (models with error heads, train-uncertainty), else the spread "
                                               "(sd) between the target decoded from each input alone and from all "
                                               "fused (one target: --out)."),
    lesion_mask: Optional[Path] = typer.Option(None, help="Lesion mask on the inputs' grid for a lesion-aware model "
                                               "(train --lesion-channel): lesions are drawn there."),
    explain: Optional[Path] = typer.Option(None, help="Also write which input wins the max fusion per voxel (label "
                                           "volume, with a .json label map and a .png beside it)."),
    native_ref: Optional[str] = typer.Option(None, "--native-ref", help="For inputs written by `mrimpute preprocess`: "
                                             "write the outputs on this modality's ORIGINAL raw grid and header."),
    manifest: Optional[Path] = typer.Option(None, help="With --native-ref: the preprocess manifest (default: "
                                            "manifest.json beside the first input)."),
    strict: bool = typer.Option(False, "--strict", help="Refuse (exit 1, nothing written) inputs that draw a warning "
                                "(z-scored or min-max scaled, a head around the brain, clipped outliers)."),
    skull_strip: bool = typer.Option(False, "--skull-strip", help="Brain-extract first: deepbet's mask of the T1 "
                                     "(else T1c) input, applied to every input (for heads that are not "
                                     "skull-stripped; the model expects brains)."),
) -> None:
    """Synthesise missing contrasts; outputs keep the first input's grid and header (float32, mean-normalised)."""

    labels = [*(participant_label or []), *(more_labels or [])]
    if more_labels and not participant_label:  # a stray word is no participant label
        run_guarded(lambda: _refuse_argument(more_labels[0]))
    if dataset is not None:
        single = {**{f"--{name}": path for name, path in inputs.items()}, "--target": target,
                  "--out-dir": out_dir, "--axis": axis, "--views": views, "--uncertainty": uncertainty,
                  "--explain": explain, "--native-ref": native_ref, "--manifest": manifest,
                  "--no-exact": None if exact else True}
        run_guarded(lambda: _dataset_job(dataset, [name for name, value in single.items() if value is not None],
                                         out, model, device, batch_size, threads, force, dry_run, jobs, strict,
                                         skull_strip, labels))
        return

    def job() -> None:

        from ..errors import InputError
        from ..pipeline.map_files import plan_maps, write_maps
        from ..pipeline.model_loading import choose_shipped_model, open_model
        from ..pipeline.native import plan_native, write_native_outputs
        from ..pipeline.outputs import check_outputs, plan_outputs, write_outputs
        from ..pipeline.synthesize import synthesize
        from ..pipeline.views import parse_views

        if threads:
            from ..pipeline.device import set_threads

            set_threads(threads)
        given = dict(inputs)  # modality -> path, in table order
        if dry_run or jobs > 1 or labels:
            raise InputError("--dry-run, --jobs and --participant-label apply only with --dataset ROOT")
        if not given:
            raise InputError("give at least one input volume (e.g. --t1 t1.nii.gz)")
        chosen, note = (model, None) if model else choose_shipped_model(given)  # dwi/adc: models/diffusion.pt
        opened = open_model(chosen, device)  # read once: planning, synthesis, provenance
        if note:
            console.print(note, highlight=False, soft_wrap=True)
        model_path = opened.path
        paths = plan_outputs(opened, given, out, target, out_dir)
        maps = plan_maps(paths, uncertainty, explain)
        view_axes = parse_views(axis, views, merge)
        native = plan_native(native_ref, manifest, given, {"--uncertainty": uncertainty, "--explain": explain})
        from ..errors import MrimputeError
        from ..io.checksum import sha256_file
        from ..io.folders import ensure_parent_folders
        from ..io.sidecar import sidecar_path, write_sidecar
        from ..pipeline.cohort import refuse_findings
        from ..pipeline.result_sidecar import result_sidecar

        sidecars = {t: sidecar_path(p) for t, p in paths.items()}  # provenance beside each synthesis
        _refuse_collisions(paths, maps, sidecars)
        if skull_strip:
            from ..preprocess.skullstrip import choose_source

            choose_source(given, next(iter(given.values())))
        created = _missing_folders(list(paths.values()) + list(maps.values()))
        ensure_parent_folders(list(paths.values()) + list(maps.values()))  # missing output folders are created
        try:
            check_outputs(list(paths.values()) + list(maps.values()) + list(sidecars.values()),
                          list(given.values()) + ([native.raw.path] if native else []), force)
            with reporting() as reporter:
                result = synthesize(given, list(paths), opened, device, batch_size, reporter, views=view_axes,
                                    merge=merge, uncertainty=uncertainty is not None, explain=explain is not None,
                                    lesion=lesion_mask, exact=exact, skull_strip=skull_strip,
                                    check_findings=refuse_findings if strict else None)
        except MrimputeError:
            _remove_empty(created)  # a refusal leaves nothing behind, not even the folders made for the outputs
            raise
        for path, messages in result.findings.items():
            for message in messages:
                warn(f"{path}: {message}")
        written = (write_native_outputs(result.outputs, result.reference, paths, native, force, result.inputs)
                   if native else write_outputs(result, paths, force))
        written_maps = write_maps(result, maps, force)
        model_sum = sha256_file(model_path)
        records = [{"modality": m, "path": str(p), "sha256": sha256_file(p)} for m, p in given.items()]
        for target_name, side in sidecars.items():
            write_sidecar(side, result_sidecar(target_name, result, records, model_path, model_sum), force)
        inputs_used = "+".join(result.factors)
        console.print(make_table("synthesised", [{"contrast": t, "file": str(p), "from": inputs_used}
                                                 for t, p in zip(paths, written)]
                                 + [{"contrast": name, "file": str(p), "from": inputs_used}
                                    for name, p in written_maps.items()]))

    run_guarded(job)


def _refuse_argument(word: str) -> None:
    from ..errors import InputError

    raise InputError(f"{word}: unexpected argument (synth takes options only; subject labels follow "
                     "--participant-label)")


def warn(text: str) -> None:
    """One warning line on stderr: `warning: <file>: <message>`."""
    from rich.markup import escape

    error_console.print(f"[bold yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)


def _refuse_collisions(paths: dict, maps: dict, sidecars: dict) -> None:
    """A sidecar may not be another output (e.g. --explain E.nii.gz writes E.json)."""
    import os

    from ..errors import InputError

    taken = {os.path.realpath(p): name for name, p in [*paths.items(), *maps.items()]}
    for target_name, side in sidecars.items():
        if os.path.realpath(side) in taken:
            raise InputError(f"{side}: would be written twice (as the sidecar of {target_name} and as "
                             f"{taken[os.path.realpath(side)]}); choose other names")


def _missing_folders(paths: list[Path]) -> list[Path]:
    """Folders (and parents) of the outputs that do not exist yet, deepest first."""
    missing: set[Path] = set()
    for path in paths:
        for folder in Path(path).absolute().parents:
            if folder.exists():
                break
            missing.add(folder)
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def _dataset_job(dataset: Path, conflicting: list[str], out: Optional[Path], model: Optional[Path], device: str,
                 batch_size: int, threads: int, force: bool, dry_run: bool, jobs: int, strict: bool = False,
                 skull_strip: bool = False, participants: Optional[list[str]] = None) -> None:
    """`synth --dataset ROOT`: every missing contrast of every subject, as a BIDS derivative."""

    from ..errors import InputError
    from ..pipeline.cohort import run_cohort

    if conflicting:
        raise InputError(f"{dataset}: --dataset processes whole subjects; it cannot be combined with "
                         f"{', '.join(conflicting)}")
    if threads:
        from ..pipeline.device import set_threads

        set_threads(threads)
    with reporting() as reporter:
        rows = run_cohort(dataset, out, model, device, batch_size, dry_run, jobs, force, reporter, strict=strict,
                          skull_strip=skull_strip, warn=warn, participants=participants or None)
    counts = {status: sum(row["status"] == status for row in rows)
              for status in ("planned", "done", "skipped", "failed")}
    console.print(make_table("dry run: planned outputs" if dry_run else "dataset synthesis", rows))
    if dry_run:
        console.print(f"{counts['planned']} planned, {counts['skipped']} skipped; nothing written", highlight=False)
    else:
        console.print(f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed",
                      highlight=False)
    if counts["failed"]:
        raise typer.Exit(1)
