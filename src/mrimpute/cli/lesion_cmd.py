"""`mrimpute add-lesion`: synthesise a contrast with lesions drawn where a mask says, and measure them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options
from .console import console, make_table, reporting, run_guarded
from .modality_options import with_modality_options

INPUT_HELP = "Input volume ({name}) of the recipient subject, co-registered with its other inputs."

LesionMask = Annotated[Path, typer.Option(help="Lesion mask (labels or probabilities) to draw; from any subject.")]
Out = Annotated[Path, typer.Option(help="Output NIfTI of the synthesised target, on the first input's grid.")]
Target = Annotated[str, typer.Option(help="Contrast to synthesise.")]
LesionRef = Annotated[Optional[Path], typer.Option(
    help="The image the mask was drawn on, when the mask is on another grid: it is registered (rigid) onto the "
         "first input and the mask resampled by nearest neighbour.")]
MaskOut = Annotated[Optional[Path], typer.Option(help="Also write the mask as used, on the output's grid.")]
SourceSubject = Annotated[Optional[Path], typer.Option(
    help="Subject folder the mask came from (with lesion.nii.gz, t1 and the target): reports its real "
         "lesion-to-white-matter contrast beside the synthetic one.")]
Preview = Annotated[Optional[Path], typer.Option(help="PNG montage: inputs, mask and synthesis through the lesions.")]
Report = Annotated[Optional[Path], typer.Option(help="JSON file for the lesion measures.")]
LesionModel = Annotated[Optional[Path], typer.Option(help="Lesion-aware checkpoint (default: the shipped "
                                                     "models/lesion.pt).")]


@with_modality_options(INPUT_HELP)  # one --<modality> option per row of the modality table
def add_lesion_command(
    lesion_mask: LesionMask,
    inputs: dict[str, Path] = None,  # filled by with_modality_options
    out: Out = ...,
    target: Target = "flair",
    lesion_ref: LesionRef = None,
    mask_out: MaskOut = None,
    source_subject: SourceSubject = None,
    preview: Preview = None,
    report: Report = None,
    model: LesionModel = None,
    device: options.Device = "auto",
    batch_size: options.SliceBatch = 0,
    threads: options.Threads = 0,
    force: options.Force = False,
) -> None:
    """Draw lesions into a synthesised contrast with a lesion-aware model (Chartsias et al. 2018, VI-H)."""

    def job() -> None:
        from ..pipeline.add_lesion import add_lesion

        with reporting() as reporter:
            result = add_lesion(dict(inputs), lesion_mask, target, out, model, lesion_ref, mask_out, source_subject,
                                preview, device, batch_size, force, reporter, report=report, threads=threads)
        console.print(f"lesion mask: {result.how}", highlight=False)
        console.print(make_table(f"lesions drawn into {out}", [result.report]))
        console.print("wrote " + ", ".join(str(p) for p in result.written), highlight=False)

    run_guarded(job)
