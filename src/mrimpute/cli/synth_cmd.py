"""`mrimpute synth`: synthesise missing contrasts of one subject from whichever contrasts it has."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options
from .console import console, error_console, make_table, reporting, run_guarded
from .modality_options import with_modality_options

INPUT_HELP = "Input volume ({name}), co-registered with the other inputs."

Out = Annotated[Optional[Path], typer.Option(help="Output NIfTI for one target contrast.")]
Target = Annotated[Optional[str], typer.Option(help="Contrast to write to --out (default: from --out's name, e.g. "
                                               "flair_synth.nii.gz, sub-01_FLAIR.nii.gz, *_ce-gd_T1w.nii.gz = t1c).")]
OutDir = Annotated[Optional[Path], typer.Option(help="Write every contrast the model has that was not given here, "
                                                "as DIR/<contrast>_synth.nii.gz (DIR is created if missing).")]
Exact = Annotated[bool, typer.Option(help="Crop each batch of slices to the brain grown by the network's receptive "
                                     "field: the whole slices' values to float rounding. --no-exact crops to the "
                                     "brain itself: about 1.5x faster, values near the brain's edge differ "
                                     "slightly.")]
Dataset = Annotated[Optional[Path], typer.Option(
    help="Dataset mode: every subject of a BIDS (or plain/BraTS) dataset; --out is then the derivative folder "
         "(default ROOT/derivatives/mrimpute).")]
DryRun = Annotated[bool, typer.Option(help="With --dataset: show the plan, write nothing.")]
Jobs = Annotated[int, typer.Option(min=1, help="With --dataset: subjects processed in parallel (CPU).")]
ParticipantLabel = Annotated[Optional[list[str]], typer.Option(
    "--participant-label", metavar="LABEL",
    help="With --dataset: only these subjects, BIDS-Apps style (01 02, or sub-01 sub-02; every session of each).")]
MoreLabels = Annotated[Optional[list[str]], typer.Argument(hidden=True, metavar="LABEL",
                                                          help="The further labels of --participant-label 01 02 ...")]
Axis = Annotated[Optional[str], typer.Option(help="Apply the model along this slice axis: axial, coronal or sagittal "
                                             "(default: the axis it was trained on).")]
Views = Annotated[Optional[str], typer.Option(help="Synthesise along each of these axes and merge, e.g. "
                                              "axial,coronal,sagittal.")]
Merge = Annotated[str, typer.Option(help="With --views: merge voxel-wise by mean or median.")]
Mirror = Annotated[bool, typer.Option(help="Also synthesise the inputs' left-right mirror image and average the two "
                                      "(a test-time ensemble over the flip the model was trained with; twice "
                                      "the time).")]
Uncertainty = Annotated[Optional[Path], typer.Option(
    help="Also write an uncertainty map: the expected absolute error (models with error heads, train-uncertainty), "
         "else the spread (sd) between the target decoded from each input alone and from all fused (one target: "
         "--out).")]
LesionMask = Annotated[Optional[Path], typer.Option(help="Lesion mask on the inputs' grid for a lesion-aware model "
                                                    "(train --lesion-channel): lesions are drawn there.")]
Explain = Annotated[Optional[Path], typer.Option(help="Also write which input wins the max fusion per voxel (label "
                                                 "volume, with a .json label map and a .png beside it).")]
NativeRef = Annotated[Optional[str], typer.Option(
    "--native-ref", help="For inputs written by `mrimpute preprocess`: write the outputs on this modality's "
                         "ORIGINAL raw grid and header.")]
Manifest = Annotated[Optional[Path], typer.Option(help="With --native-ref: the preprocess manifest (default: "
                                                  "manifest.json beside the first input).")]
Strict = Annotated[bool, typer.Option("--strict", help="Refuse (exit 1, nothing written) inputs that draw a warning "
                                      "(z-scored or min-max scaled, a head around the brain, clipped outliers).")]
SkullStrip = Annotated[bool, typer.Option("--skull-strip", help="Brain-extract first: deepbet's mask of the T1 "
                                          "(else T1c) input, applied to every input (for heads that are not "
                                          "skull-stripped; the model expects brains).")]


@with_modality_options(INPUT_HELP)  # --t1, --t1c, --t2, --flair, ...: one per row of the modality table
def synth_command(
    inputs: dict[str, Path] = None,  # filled by with_modality_options
    out: Out = None,
    target: Target = None,
    out_dir: OutDir = None,
    model: options.Model = None,
    device: options.Device = "auto",
    batch_size: options.SliceBatch = 0,
    threads: options.Threads = 0,
    exact: Exact = True,
    force: options.Force = False,
    dataset: Dataset = None,
    dry_run: DryRun = False,
    jobs: Jobs = 1,
    participant_label: ParticipantLabel = None,
    more_labels: MoreLabels = None,
    axis: Axis = None,
    views: Views = None,
    merge: Merge = "mean",
    mirror: Mirror = False,
    uncertainty: Uncertainty = None,
    lesion_mask: LesionMask = None,
    explain: Explain = None,
    native_ref: NativeRef = None,
    manifest: Manifest = None,
    strict: Strict = False,
    skull_strip: SkullStrip = False,
) -> None:
    """Synthesise missing contrasts; outputs keep the first input's grid and header (float32, mean-normalised)."""

    labels = [*(participant_label or []), *(more_labels or [])]
    if more_labels and not participant_label:  # a stray word is no participant label
        run_guarded(lambda: _refuse_argument(more_labels[0]))
    if dataset is not None:
        single = {**{f"--{name}": path for name, path in inputs.items()}, "--target": target,
                  "--out-dir": out_dir, "--axis": axis, "--views": views, "--uncertainty": uncertainty,
                  "--explain": explain, "--native-ref": native_ref, "--manifest": manifest,
                  "--no-exact": None if exact else True, "--mirror": True if mirror else None}
        run_guarded(lambda: _dataset_job(dataset, [name for name, value in single.items() if value is not None],
                                         out, model, device, batch_size, threads, force, dry_run, jobs, strict,
                                         skull_strip, labels))
        return
    from ..runtime.session import SynthesisRequest

    request = SynthesisRequest(dict(inputs), out, target, out_dir, uncertainty=uncertainty, explain=explain,
                               axis=axis, views=views, merge=merge, mirror=mirror, lesion_mask=lesion_mask,
                               native_ref=native_ref, manifest=manifest, strict=strict, skull_strip=skull_strip,
                               exact=exact, batch_size=batch_size, force=force)
    run_guarded(lambda: _subject_job(request, model, device, threads, dry_run or jobs > 1 or bool(labels)))


def _subject_job(request, model: Optional[Path], device: str, threads: int, dataset_only: bool) -> None:
    """One subject: the pipeline's one call (model, plan, run, write), then the table of what was written."""
    from ..errors import InputError
    from ..runtime.session import synthesize_subject

    if dataset_only:
        raise InputError("--dry-run, --jobs and --participant-label apply only with --dataset ROOT")
    with reporting() as reporter:
        done = synthesize_subject(request, model, device, threads, reporter, warn=warn, say=say)
    inputs_used = "+".join(done.result.factors)
    console.print(make_table("synthesised", [{"contrast": name, "file": str(path), "from": inputs_used}
                                             for name, path in done.files.items()]))


def _refuse_argument(word: str) -> None:
    from ..errors import InputError

    raise InputError(f"{word}: unexpected argument (synth takes options only; subject labels follow "
                     "--participant-label)")


def warn(text: str) -> None:
    """One warning line on stderr: `warning: <file>: <message>`."""
    from rich.markup import escape

    error_console.print(f"[bold yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """One line of information on stdout (e.g. which shipped model was chosen), never folded."""
    console.print(text, highlight=False, soft_wrap=True)


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
        from ..runtime.device import set_threads

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
