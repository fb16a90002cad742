"""`mrimpute tune-uncertainty`: choose, on validation subjects, how much each error head's map is blurred."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options
from .console import console, make_table, reporting, run_guarded


def tune_uncertainty_command(
    model: Annotated[Path, typer.Option(help="Model with error heads (train-uncertainty); only read.")],
    data: Annotated[Path, typer.Option(help="Folder of subject folders holding the validation subjects.")],
    out: Annotated[Path, typer.Option(help="The tuned copy (same weights; '<out>.md' its card, '<out>.csv' and "
                                      "'<out>.json' the scores).")],
    split: Annotated[Optional[Path], typer.Option(help="A split file (models/split.toml): tune on its validation "
                                                  "subjects.")] = None,
    subjects: Annotated[str, typer.Option(help="Comma-separated subjects instead of --split (never the model's "
                                          "training subjects).")] = "",
    subsets: Annotated[str, typer.Option(help="Input subsets per target, as eval --subsets.")] = "single+rest",
    sigmas: Annotated[str, typer.Option(help="Gaussian sigmas (voxels) to try; 0 is the map as it is.")] =
    "0,1,2,3,5",
    device: options.Device = "cpu",
    threads: options.Threads = 0,
    force: options.Force = False,
) -> None:
    """Per target, the blur of the error map (inside the brain) that ranks the absolute error best, on validation
    subjects; written into a copy of the model, which synth --uncertainty and eval --uncertainty then apply."""
    run_guarded(lambda: _tune(model, data, out, split, subjects, subsets, sigmas, device, threads, force))


def _tune(model: Path, data: Path, out: Path, split: Optional[Path], subjects: str, subsets: str, sigmas: str,
          device: str, threads: int, force: bool) -> None:
    from ..errors import InputError
    from ..io.atomic import check_writable, write_atomically
    from ..pipeline.uncertainty_tuning import measure_blurs, write_tuned
    from ..runtime.device import set_threads

    chosen = [s for s in subjects.split(",") if s]
    if split is not None:
        from ..data.split import load_split

        if chosen:
            raise InputError("--split chooses the subjects: give --subjects or --split, not both")
        chosen = list(load_split(split).part("validation"))
    if not chosen:
        raise InputError("give --split (its validation subjects) or --subjects to tune on")
    try:
        grid = tuple(sorted({float(s) for s in sigmas.split(",") if s.strip()}))
    except ValueError:
        raise InputError(f"--sigmas '{sigmas}': expected comma-separated numbers of voxels") from None
    if not grid or min(grid) < 0:
        raise InputError(f"--sigmas '{sigmas}': expected one or more sigmas of 0 or more")
    reports = {suffix: out.with_suffix(suffix) for suffix in (".csv", ".json")}
    for path in (out, *reports.values()):
        check_writable(path, force)
    set_threads(threads)
    with reporting() as reporter:
        tuning = measure_blurs(model, data, chosen, subsets, grid, device, reporter)
    write_tuned(model, out, tuning, chosen, force)
    columns = [f"sigma {s:g}" for s in grid]
    table = [{"target": t, **{c: round(m[s], 4) for c, s in zip(columns, grid)},
              "chosen sigma": f"{tuning.chosen[t]:g}"} for t, m in tuning.means.items()]

    def _csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["subject", "target", "subset", *columns])
            writer.writeheader()
            writer.writerows({**{k: r[k] for k in ("subject", "target", "subset")},
                              **{c: r[s] for c, s in zip(columns, grid)}} for r in tuning.rows)

    write_atomically(reports[".csv"], _csv, force=force)
    write_atomically(reports[".json"], lambda tmp: tmp.write_text(json.dumps(
        {"subjects": chosen, "subsets": subsets, "sigmas": list(grid), "mean_spearman": table,
         "chosen": tuning.chosen}, indent=2) + "\n"), force=force)
    console.print(make_table(f"mean Spearman of the blurred error map with |error| ({', '.join(chosen)})", table))
    console.print(f"tuned model: {out} (card {out.with_suffix('.md')}, scores {reports['.csv']}); {model} is "
                  "unchanged")
