"""The measurement of one `mrimpute bench` case (see pipeline.bench.job), run in a fresh process of its own
(`case_main`, the case as JSON on stdin) or in the bench's process: the plain eager reference and the fast paths of
synthesis and of a training step, each timed after a warm-up, with its peak memory."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ...config import SLICE_AXES, ModelConfig
from ...data.slices import TARGET_PREFIX, SliceSampler
from ...data.subjects import discover_subjects, load_subject
from ...io.checkpoint import load_checkpoint
from ...io.nifti import load_volume
from ...model.losses import SynthesisLoss, synthesis_loss
from ...model.network import SynthesisNet, use_reference_layers
from ...runtime.device import autocast, choose_precision, grad_scaler, resolve_device, set_threads
from ...runtime.model_loading import OpenModel, default_model_path
from ...runtime.prepared_inputs import normalise_inputs
from ...runtime.session import SynthesisSession
from ...runtime.synthesize import Product
from ...runtime.train_settings import TrainSettings
from ...runtime.train_steps import Stepper, train_step

MODALITIES = ["t1", "t1c", "t2", "flair"]
INPUTS = ("t1", "t1c", "t2")
REQUESTS = {"3->1": ["flair"], "3->4": MODALITIES}  # t1+t1c+t2 -> flair, and -> every output of the model


def model_config(spec: dict) -> ModelConfig:
    if spec["name"] == "shipped":
        return ModelConfig.from_dict(load_checkpoint(spec["path"] or default_model_path())["config"])
    return ModelConfig(inputs=MODALITIES, outputs=MODALITIES, width=spec["width"])


def build_session(spec: dict, device: torch.device) -> SynthesisSession:
    """A synthesis session on the shipped model as `synth` opens it, or on a seeded random one (timing does not
    depend on the weights)."""
    if spec["name"] == "shipped":
        return SynthesisSession.open(spec["path"], device)
    torch.manual_seed(0)
    network = SynthesisNet(model_config(spec)).to(device).to(memory_format=torch.channels_last).eval()
    return SynthesisSession(OpenModel(Path(f"random-{spec['name']}"), network, {}, device))


def _subject(folder: str):
    return next(s for s in discover_subjects(Path(folder).parent) if s.name == Path(folder).name)


def _pad4(image: np.ndarray) -> np.ndarray:
    return np.pad(image, [(0, (-n) % 4) for n in image.shape])


@torch.inference_mode()
def reference_synthesis(model: SynthesisNet, inputs: dict[str, np.ndarray], mask: np.ndarray, subset: tuple[str, ...],
                        targets: list[str], axis: int, slices: list[int],
                        device: torch.device) -> dict[str, np.ndarray]:
    """The plain eager path on the given slices: each slice whole (zero-padded to a multiple of 4), batch 1;
    (len(slices), h, w) per target, background zero."""
    results = {}
    for i, k in enumerate(slices):
        images = {m: torch.from_numpy(_pad4(np.take(inputs[m], k, axis=axis)))[None, None].to(device) for m in subset}
        latents = list(model.encode(images).values())
        inside = np.take(mask, k, axis=axis)
        for target in targets:
            image = model.decode_fused(latents, target)[0, 0, : inside.shape[0], : inside.shape[1]].cpu().numpy()
            results.setdefault(target, np.zeros((len(slices), *inside.shape), np.float32))[i] = image * inside
    return results


def timed(run, repeats: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of `repeats` calls of run()."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def normalised_inputs(case: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    subject = _subject(case["subject"])
    prepared = normalise_inputs({m: load_volume(subject.files[m]).data for m in INPUTS})
    inputs, mask = prepared.volumes, prepared.mask
    return inputs, mask


def _synthesis_case(case: dict, device: torch.device) -> dict:
    inputs, mask = normalised_inputs(case)
    axis = SLICE_AXES["axial"]
    targets = REQUESTS[case["request"]]
    count = mask.shape[axis]
    wanted = case["reference_slices"] or count
    slices = sorted({int(k) for k in np.linspace(0, count - 1, min(wanted, count)).round()})
    session = build_session(case["model"], device)
    model = session.network
    result = {"shape": list(mask.shape), "slices": count}
    if case["path"] == "reference":
        model = use_reference_layers(model.to(memory_format=torch.contiguous_format))
        reference_synthesis(model, inputs, mask, INPUTS, targets, axis, slices[:1], device)  # warm-up
        walls, cpus = timed(lambda: reference_synthesis(model, inputs, mask, INPUTS, targets, axis, slices, device),
                             case["repeats"], device)
        scale = count / len(slices)  # every slice costs the same on this path: the timed ones stand for all
        return {**result, "timed_slices": len(slices), "seconds": [w * scale for w in walls],
                "cpu_seconds": [c * scale for c in cpus], "peak_rss_mb": _peak_rss_mb()}
    use_reference_layers(model, case["path"] == "plain-layers")
    precision = choose_precision(device, case["amp"])
    products = [Product("synthesis", INPUTS, t) for t in targets]

    def run() -> dict:  # what synth runs: the session's products from the normalised inputs
        with autocast(device, precision):
            return session.products(inputs, mask, products, case["synth_batch"], exact=case["path"] != "tight")

    outputs = run()  # warm-up
    walls, cpus = timed(run, case["repeats"], device)
    peak = _peak_rss_mb()
    reference = reference_synthesis(use_reference_layers(model.to(memory_format=torch.contiguous_format)), inputs,
                                    mask, INPUTS, targets, axis, slices, device)  # untimed, for the difference
    inside = np.take(mask, slices, axis=axis)
    fast = {p.target: np.moveaxis(np.take(outputs[p], slices, axis=axis), axis, 0) for p in products}
    difference = max(float(np.abs(fast[t] - reference[t])[np.moveaxis(inside, axis, 0)].max(initial=0.0))
                     for t in targets)
    return {**result, "seconds": walls, "cpu_seconds": cpus, "peak_rss_mb": peak, "max_abs_diff": difference,
            "precision": precision.name}


def _training_case(case: dict, device: torch.device) -> dict:
    config = model_config(case["model"])
    loaded = load_subject(_subject(case["subject"]), MODALITIES)
    sampler = SliceSampler([loaded], MODALITIES, SLICE_AXES["axial"], case["crop"], targets=True)
    settings = TrainSettings(data=Path(case["subject"]), out=Path("unused.pt"),
                             model=ModelConfig(inputs=MODALITIES, outputs=MODALITIES, width=config.width),
                             batch_size=case["batch_size"], crop=case["crop"], amp=case["amp"],
                             sample_c1_outputs=case["path"] != "full-c1")
    torch.manual_seed(0)
    model = SynthesisNet(config).to(device)
    rng = np.random.default_rng(0)
    if case["path"] == "reference":
        use_reference_layers(model)
        optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)

        def step() -> None:
            batch = torch.from_numpy(sampler.batch(settings.batch_size, rng)).to(device)
            tensors = {m: batch[i].unsqueeze(1) for i, m in enumerate(sampler.plane_names(tuple(MODALITIES)))}
            targets = {m: tensors[TARGET_PREFIX + m] for m in MODALITIES}
            loss, _ = synthesis_loss(model, {m: tensors[m] for m in MODALITIES}, targets, settings.terms)  # full c1
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    else:
        use_reference_layers(model.to(memory_format=torch.channels_last), case["path"] == "plain-layers")
        precision = choose_precision(device, case["amp"])
        stepper = Stepper(SynthesisLoss(model, settings.terms), torch.optim.Adam(model.parameters(), lr=settings.lr),
                          grad_scaler(device, precision), device, precision)

        def step() -> None:
            train_step(stepper, sampler, settings, rng)

    step()  # warm-up
    walls, cpus = timed(step, case["train_steps"], device)
    return {"seconds": walls, "cpu_seconds": cpus, "slices_per_step": settings.batch_size,
            "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_case(case: dict) -> dict:
    """Run one case in this process and return its measurements."""
    set_threads(case["threads"])
    device = resolve_device(case["device"])
    measured = _synthesis_case(case, device) if case["kind"] == "synthesis" else _training_case(case, device)
    if device.type == "cuda":
        measured["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return {**measured, "threads": torch.get_num_threads()}


def case_main() -> None:
    """Entry point of a case's own process: the case as JSON on stdin, the result as JSON on stdout's last line."""
    result = run_case(json.loads(sys.stdin.read()))
    print(json.dumps(result))

