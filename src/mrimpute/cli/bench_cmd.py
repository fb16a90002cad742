"""`mrimpute bench`: synthesis and training speed and peak memory, each beside a plain eager reference."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import console, make_table, reporting, run_guarded

QUICK_KEEPS = ("device", "threads", "amp", "ablation", "isolate", "synth_batch", "kinds", "requests")  # --quick


def bench_command(
    data: Optional[Path] = typer.Option(None, help="Folder of subject folders (e.g. ../shared/data/coregistered); "
                                                   "default: the bundled sample only."),
    subjects: str = typer.Option("gli00001,ms07", help="Subjects of --data: the first also gets the 3 -> 4 case "
                                                       "and the training case."),
    models: str = typer.Option("shipped,full", help="shipped (the default model), full (the paper's width 1, "
                                                    "random weights), tiny (width 0.125, random)."),
    model: Optional[Path] = typer.Option(None, help="The 'shipped' checkpoint (default: models/default.pt)."),
    repeats: int = typer.Option(3, min=1, help="Timed runs per case after a warm-up (the table shows the median)."),
    reference_slices: int = typer.Option(16, min=0, help="Slices timed on the eager reference, evenly spaced and "
                                                         "scaled to the volume (0: every slice)."),
    train_steps: int = typer.Option(3, min=1, help="Timed training steps per path after a warm-up step."),
    batch_size: int = typer.Option(16, min=1, help="Training crops per step (both paths)."),
    crop: int = typer.Option(96, min=8, help="Training crop size (both paths)."),
    synth_batch: int = typer.Option(0, min=0, help="Slices per forward pass of the fast synthesis (0: automatic)."),
    threads: int = typer.Option(0, min=0, help="CPU threads (0: torch's default)."),
    device: str = typer.Option("cpu", help="cpu or cuda (the reference runs on it too)."),
    amp: bool = typer.Option(True, help="Mixed precision on CUDA for the fast paths."),
    ablation: bool = typer.Option(False, help="Also time the fast loops with the plain layers (what the layers give)."),
    isolate: bool = typer.Option(True, help="Run each case in a fresh process (peak memory per case)."),
    only: str = typer.Option("synthesis,training", help="Which cases: synthesis, training or both."),
    requests: str = typer.Option("3->1,3->4", help="Synthesis cases of the first subject: 3->1 (T1+T1c+T2 -> FLAIR) "
                                                   "and/or 3->4 (-> all four); the other subjects: 3->1."),
    quick: bool = typer.Option(False, help="A seconds-long smoke run on a phantom subject and a tiny random model."),
    profile: bool = typer.Option(False, help="Instead: time the first synthesis case's fast path once in this "
                                             "process and show where its CPU time goes (torch.profiler)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report (rows, raw runs) as JSON."),
    force: bool = typer.Option(False, help="Overwrite an existing --json file."),
) -> None:
    """Time synthesis (s/volume) and training (slices/s) against a plain eager reference, with peak memory."""

    def job() -> None:
        from ..pipeline.bench.job import run_bench

        options = dict(data=data, subjects=_split(subjects), model_path=model, repeats=repeats,
                       reference_slices=reference_slices, train_steps=train_steps, batch_size=batch_size, crop=crop,
                       synth_batch=synth_batch, threads=threads, device=device, amp=amp, ablation=ablation,
                       isolate=isolate, models=_split(models), kinds=tuple(_split(only)),
                       requests=tuple(_split(requests)))
        settings = _settings(options, quick)
        if profile:
            _show_profile(settings, json_out)
            return
        with reporting() as reporter:
            report = run_bench(settings, reporter, json_out, force)
        _show_report(report, json_out)

    run_guarded(job)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _settings(options: dict, quick: bool):
    """The bench's settings; --quick keeps only the options that say how to run (device, threads, cases...)."""
    from ..pipeline.bench.job import BenchSettings, quick_settings

    if quick:
        return quick_settings(**{k: v for k, v in options.items() if k in QUICK_KEEPS})
    return BenchSettings(**options)


def _show_profile(settings, json_out: Optional[Path]) -> None:
    from ..errors import InputError
    from ..pipeline.bench.job import profile_synthesis

    if json_out is not None:
        raise InputError(f"{json_out}: --profile prints its table only; leave out --json")
    found = profile_synthesis(settings)
    console.print(make_table(f"{found['case']}: {found['seconds']:.2f} s in this process, "
                             f"{found['threads']} threads; operators by CPU time", found["ops"]))


def _show_report(report: dict, json_out: Optional[Path]) -> None:
    shown = [{k: (f"{v:.3g}" if isinstance(v, float) else "" if v is None else v) for k, v in row.items()}
             for row in report["rows"]]
    console.print(make_table("mrimpute bench: medians; speed-up over the eager reference of the same case", shown))
    machine = report["machine"]
    console.print(f"{machine['cpus']} CPUs, {machine['threads']} torch threads, torch {machine['torch']}, "
                  f"device {machine['device']}" + (f"; wrote {json_out}" if json_out else ""))
