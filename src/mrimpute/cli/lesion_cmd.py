"""`mrimpute add-lesion`: synthesise a contrast with lesions drawn where a mask says, and measure them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded
from .modality_options import with_modality_options

INPUT_HELP = "Input volume ({name}) of the recipient subject, co-registered with its other inputs."


@with_modality_options(INPUT_HELP)  # one --<modality> option per row of the modality table
def add_lesion_command(
    lesion_mask: Path = typer.Option(..., help="Lesion mask (labels or probabilities) to draw; from any subject."),
    inputs: dict[str, Path] = None,  # filled by with_modality_options
    out: Path = typer.Option(..., help="Output NIfTI of the synthesised target, on the first input's grid."),
    target: str = typer.Option("flair", help="Contrast to synthesise."),
    lesion_ref: Optional[Path] = typer.Option(
        None, help="The image the mask was drawn on, when the mask is on another grid: it is registered (rigid) "
                   "onto the first input and the mask resampled by nearest neighbour."),
    mask_out: Optional[Path] = typer.Option(None, help="Also write the mask as used, on the output's grid."),
    source_subject: Optional[Path] = typer.Option(
        None, help="Subject folder the mask came from (with lesion.nii.gz, t1 and the target): reports its real "
                   "lesion-to-white-matter contrast beside the synthetic one."),
    preview: Optional[Path] = typer.Option(None, help="PNG montage: inputs, mask and synthesis through the lesions."),
    report: Optional[Path] = typer.Option(None, help="JSON file for the lesion measures."),
    model: Optional[Path] = typer.Option(None, help="Lesion-aware checkpoint (default: the shipped models/lesion.pt)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    batch_size: int = typer.Option(0, min=0, help="Slices per forward pass (0: chosen from the slice size)."),
    threads: int = typer.Option(0, min=0, help="CPU threads (0: torch's default)."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    """Draw lesions into a synthesised contrast with a lesion-aware model (Chartsias et al. 2018, VI-H)."""

    def job() -> None:
        import json
        import os

        from ..errors import InputError
        from ..io.atomic import check_writable, refuse_overwrite, write_atomically
        from ..io.folders import ensure_parent_folders
        from ..modalities import canonical_modality
        from ..pipeline.device import set_threads
        from ..pipeline.lesion import add_lesion
        from ..pipeline.model_loading import lesion_model_path

        set_threads(threads)
        given = dict(inputs)  # modality -> path, in table order
        if not given:
            raise InputError("give at least one input volume of the recipient (e.g. --t1 t1.nii.gz)")
        # every argument is checked before the synthesis (add_lesion checks the rest, --source-subject included)
        files = [*given.values(), lesion_mask, *([lesion_ref] if lesion_ref else [])]
        ensure_parent_folders([out, mask_out, preview, report])  # missing output folders are created
        outputs = [p for p in (out, mask_out, preview, report) if p is not None]
        if len({os.path.realpath(p) for p in outputs}) < len(outputs):
            raise InputError(f"{out}: --out, --mask-out, --preview and --report must be different files")
        if report is not None:
            refuse_overwrite([report], files, force)
            check_writable(report, force)
        with reporting() as reporter:
            result = add_lesion(given, lesion_mask, canonical_modality(target), out, model or lesion_model_path(),
                                lesion_ref, mask_out, source_subject, preview, device, batch_size, force, reporter)
        console.print(f"lesion mask: {result.how}", highlight=False)
        console.print(make_table(f"lesions drawn into {out}", [result.report]))
        if report is not None:
            text = json.dumps({"output": str(out), "lesion_mask": str(lesion_mask), "how": result.how,
                               **result.report}, indent=2) + "\n"
            write_atomically(report, lambda tmp: tmp.write_text(text), force=force)
        written = [p for p in (out, result.mask_output, result.preview, report) if p is not None]
        console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)

    run_guarded(job)
