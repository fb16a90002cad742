"""`mrimpute bench`: synthesis seconds per volume, training slices per second and peak memory, each beside a plain
eager reference measured in the same run, so that the speed-up is a ratio that survives a noisy machine.

The reference is the straightforward loop: every slice of the volume whole (zero-padded at its end to a multiple
of 4), batch 1, no crop, no channels_last, the network's plain layers (per-convolution replicate padding,
nn.Upsample, concatenation, stacked fusion); for training, the full c1 (every latent decoded to every output).
The fast path is what `mrimpute synth` and `mrimpute train` run: for synthesis each batch of slices on its brain's
box grown by the network's receptive radius (the reference's results, to float rounding); the tight path is
`synth --no-exact`, each batch on its brain's box itself. Each case runs in a fresh process (peak resident memory
per case), with a warm-up before its timed runs; pipeline.bench.cases measures one case, this module plans the
cases, runs them and makes the table and the JSON report.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ...errors import InputError
from ...io.atomic import check_writable, write_atomically
from ...phantom import write_subject
from ...runtime.device import autocast, choose_precision, resolve_device, set_threads
from ...runtime.reporting import Reporter
from ...runtime.synthesize import Product
from ..demo import SAMPLE_DIR
from .cases import INPUTS, REQUESTS, build_session, model_config, normalised_inputs, run_case, timed

# reference: the plain eager loop; fast: what synth/train run (synthesis: each batch of slices on its brain box
# grown by the receptive radius, exact); tight: synth --no-exact, each batch on its brain box itself; full-c1: the
# fast training step with the reference's exact c1 (every latent decoded to every output) instead of its sampled
# estimate; plain-layers (--ablation): the fast loop with the reference's layers
PATH_LABELS = {"reference": "reference", "plain-layers": "plain layers", "fast": "fast", "tight": "tight crop",
               "full-c1": "fast, full c1"}


@dataclass
class BenchSettings:
    """What `mrimpute bench` measures and how often."""

    data: Path | None = None  # folder of subject folders; None: the bundled sample (182x218x182) only
    subjects: list[str] = field(default_factory=lambda: ["gli00001", "ms07"])  # the 240x240x155 and 182x218x182
    models: list[str] = field(default_factory=lambda: ["shipped", "full"])  # full: the paper's width 1, random
    model_path: Path | None = None  # the shipped model (default: models/default.pt)
    repeats: int = 3
    reference_slices: int = 16  # slices timed on the reference path (evenly spaced; 0: every slice)
    train_steps: int = 3
    batch_size: int = 16  # training crops per step (both paths)
    crop: int = 96
    synth_batch: int = 0  # slices per forward pass of the fast synthesis (0: its automatic choice)
    threads: int = 0
    device: str = "cpu"
    amp: bool = True
    ablation: bool = False
    isolate: bool = True  # each case in a fresh process (peak memory per case)
    kinds: tuple[str, ...] = ("synthesis", "training")  # which cases to run
    requests: tuple[str, ...] = tuple(REQUESTS)  # synthesis cases of the first subject (the others: 3->1 only)
    quick: bool = False  # a seconds-long smoke run: a phantom subject, a tiny random model


def quick_settings(**overrides) -> BenchSettings:
    """The --quick smoke run: phantom subject, width-0.125 random model, tiny crops, two runs each."""
    values = dict(models=["tiny"], repeats=2, reference_slices=3, train_steps=2, batch_size=4, crop=16, quick=True)
    values.update(overrides)
    return BenchSettings(**values)


def _subject_folders(settings: BenchSettings, scratch: Path) -> list[Path]:
    if settings.quick:
        return [write_subject(scratch / "phantom", shape=(44, 40, 10))["t1"].parent]
    if settings.data is None:
        return [SAMPLE_DIR]
    folders = [Path(settings.data) / name for name in settings.subjects]
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such subject folder")
    return folders


def _model_spec(name: str, settings: BenchSettings) -> dict:
    if name == "shipped":
        return {"name": name, "path": str(settings.model_path) if settings.model_path else None}
    widths = {"full": 1.0, "tiny": 0.125}
    if name not in widths:
        raise InputError(f"unknown bench model '{name}': use shipped, full or tiny")
    return {"name": name, "width": widths[name]}


def plan_cases(settings: BenchSettings, scratch: Path) -> list[dict]:
    """Every (case, path) to run: synthesis 3->1 and 3->4 on the first subject, 3->1 on the others, and training,
    each for every model; the reference path first."""
    folders = _subject_folders(settings, scratch)
    ablation = ["plain-layers"] if settings.ablation else []
    common = {k: v for k, v in asdict(settings).items()
              if k not in ("data", "subjects", "models", "model_path", "kinds", "requests")}
    cases = []
    for model in settings.models:
        spec = _model_spec(model, settings)
        for index, folder in enumerate(folders if "synthesis" in settings.kinds else []):
            for request in (settings.requests if index == 0 else ["3->1"]):
                cases += [{**common, "kind": "synthesis", "subject": str(folder), "request": request, "model": spec,
                           "path": path} for path in ["reference", *ablation, "fast", "tight"]]
        cases += [{**common, "kind": "training", "subject": str(folders[0]), "model": spec, "path": path}
                  for path in ["reference", *ablation, "full-c1", "fast"] if "training" in settings.kinds]
    return cases


def profile_synthesis(settings: BenchSettings, top: int = 10) -> dict:
    """The first synthesis case's fast path (what synth runs; --no-exact's crop with exact=False) timed once in
    this process after a warm-up, then run once under torch.profiler: its wall seconds and the operators with the
    most CPU time (share of the profiled CPU time, calls)."""
    set_threads(settings.threads)
    device = resolve_device(settings.device)
    with tempfile.TemporaryDirectory(prefix="mrimpute-profile-") as scratch:
        cases = [c for c in plan_cases(settings, Path(scratch)) if c["kind"] == "synthesis" and c["path"] == "fast"]
        if not cases:
            raise InputError("--profile profiles a synthesis case: leave out --only training")
        case = cases[0]
        inputs, mask = normalised_inputs(case)
    session = build_session(case["model"], device)
    products = [Product("synthesis", INPUTS, t) for t in REQUESTS[case["request"]]]
    precision = choose_precision(device, case["amp"])

    def run() -> None:
        with autocast(device, precision):
            session.products(inputs, mask, products, case["synth_batch"])

    run()  # warm-up
    seconds = timed(run, 1, device)[0][0]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        run()
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ops = [{"operator": e.key, "self CPU %": f"{100 * e.self_cpu_time_total / total:.1f}", "calls": e.count}
           for e in events[:top]]
    label = f"{_label(case, {'shape': list(mask.shape)})}, {_model_label(case['model'], session.config.width)}"
    return {"case": label, "seconds": seconds, "threads": torch.get_num_threads(), "ops": ops}



def _run_isolated(case: dict) -> dict:
    code = "from mrimpute.pipeline.bench.cases import case_main; case_main()"
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(case), capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise RuntimeError(f"bench case {case['kind']} {case['path']} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _label(case: dict, measured: dict) -> str:
    if case["kind"] == "training":
        return f"train {case['batch_size']}x{case['crop']}px"
    shape = "x".join(str(n) for n in measured["shape"])
    return f"synth {shape} " + ("3->flair" if case["request"] == "3->1" else "3->all 4")


def _model_label(spec: dict, width: float) -> str:
    return f"{spec['name']} w{width:g}"


def _median_value(measured: dict, training: bool) -> float:
    """Median seconds per volume, or slices per second for training."""
    median = statistics.median(measured["seconds"])
    return measured["slices_per_step"] / median if training else median


def summarise(cases: list[dict], results: list[dict], widths: dict[str, float]) -> list[dict]:
    """One row per case and path: its median, its speed-up over the eager reference of the same case (in wall
    time, and in CPU time, which other load on the machine disturbs less), its peak memory, and the largest
    in-brain difference of its synthesis from the reference's (max |diff|)."""
    references = {}
    for case, measured in zip(cases, results):
        if case["path"] == "reference":
            references[(case["kind"], case["subject"], case.get("request"), case["model"]["name"])] = measured
    rows = []
    for case, measured in zip(cases, results):
        training = case["kind"] == "training"
        reference = references[(case["kind"], case["subject"], case.get("request"), case["model"]["name"])]
        value, base = _median_value(measured, training), _median_value(reference, training)
        cpu = statistics.median(reference["cpu_seconds"]) / statistics.median(measured["cpu_seconds"])
        rows.append({"case": _label(case, measured),
                     "model": _model_label(case["model"], widths[case["model"]["name"]]),
                     "path": PATH_LABELS[case["path"]], "unit": "slices/s" if training else "s/volume",
                     "median": value, "speed-up": value / base if training else base / value,
                     "speed-up CPU": cpu, "peak MB": measured["peak_rss_mb"],
                     "max |diff|": measured.get("max_abs_diff")})
    return rows


def check_json_output(path: Path | None, force: bool) -> None:
    """Before any work: refuse an existing --json file without force, or an unwritable folder."""
    if path is not None:
        check_writable(Path(path), force)


def run_bench(settings: BenchSettings, reporter: Reporter | None = None, json_path: Path | None = None,
              force: bool = False) -> dict:
    """Run every case (each in a fresh process unless settings.isolate is off) and return the report:
    the rows of the table, every case's raw measurements and the machine; write it as JSON when asked."""
    reporter = reporter or Reporter()
    check_json_output(json_path, force)
    if settings.repeats < 1 or settings.train_steps < 1:
        raise InputError("--repeats and --train-steps must be at least 1")
    if not settings.requests or set(settings.requests) - set(REQUESTS):
        raise InputError(f"--requests {','.join(settings.requests)}: give {' and/or '.join(REQUESTS)}")
    if not settings.kinds or set(settings.kinds) - {"synthesis", "training"}:
        raise InputError(f"--only {','.join(settings.kinds)}: give synthesis, training or both")
    with tempfile.TemporaryDirectory(prefix="mrimpute-bench-") as scratch:
        cases = plan_cases(settings, Path(scratch))
        widths = {name: model_config(_model_spec(name, settings)).width for name in settings.models}
        reporter.start("benchmark cases", len(cases))
        results = []
        for case in cases:
            results.append(_run_isolated(case) if settings.isolate else run_case(case))
            reporter.message(f"{case['kind']} {case.get('request', '')} {case['model']['name']} {case['path']}: "
                             f"median {statistics.median(results[-1]['seconds']):.3f} s")
            reporter.advance()
        reporter.finish()
    report = {
        "rows": summarise(cases, results, widths),
        "cases": [{"case": c, "measured": r} for c, r in zip(cases, results)],
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(), "device": settings.device,
                    "threads": results[0]["threads"] if results else None, "isolated": settings.isolate},
    }
    if json_path is not None:
        text = json.dumps(report, indent=2, default=str) + "\n"
        write_atomically(Path(json_path), lambda tmp: tmp.write_text(text), force=force)
    return report
