"""A synthesis session: one checkpoint opened once (network, config, normaliser) and the steps of a synthesis,
plan -> run -> write, shared by `synth` (one subject or a dataset), `add-lesion`, `demo`, `eval` and `bench`.

`plan` checks a request once, before any work (the model has the inputs and targets, the outputs may be written,
the folders made for them); `run` synthesises (the engine in runtime.synthesize); `write` writes the volumes, the
maps and the provenance sidecars. `synthesize` does all three; `synthesize_subject` is `mrimpute synth`'s one call.
`normalise` and `products` are the lower entry points for arrays already loaded (eval, bench).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..data.normaliser import Normaliser
from ..errors import InputError, MrimputeError
from ..io.checksum import sha256_file
from ..io.sidecar import sidecar_path, write_sidecar
from ..model.network import SynthesisNet
from .device import set_threads
from .map_files import plan_maps, write_maps
from .model_loading import ModelShelf, OpenModel, open_model
from .native import NativeTarget, plan_native, write_native_outputs
from .outputs import check_outputs, create_folders, plan_outputs, refuse_collisions, remove_empty, write_outputs
from .prepared_inputs import NormalisedInputs, normalise_inputs, refuse_findings
from .reporting import Reporter
from .result_sidecar import result_sidecar
from .synthesize import Product, SynthesisResult, check_extras, check_request, run_synthesis, synthesize_products
from .views import parse_views

NO_INPUT = "give at least one input volume (e.g. --t1 t1.nii.gz)"


@dataclass(frozen=True)
class SynthesisRequest:
    """One subject's synthesis as asked: its inputs (modality -> file, co-registered), where the outputs go (--out
    FILE, its target from --target or the name; --out-dir DIR, every missing contrast; or `outputs`, target -> file,
    named by the caller), the maps beside them and how to run."""

    inputs: dict[str, Path]
    out: Path | None = None
    target: str | None = None
    out_dir: Path | None = None
    outputs: dict[str, Path] | None = None
    uncertainty: Path | None = None
    explain: Path | None = None
    axis: str | None = None
    views: str | None = None  # comma-separated slice axes, merged by `merge`
    merge: str = "mean"
    mirror: bool = False  # average with the synthesis of the inputs' left-right mirror image
    lesion_mask: Path | None = None
    native_ref: str | None = None
    manifest: Path | None = None
    strict: bool = False
    skull_strip: bool = False
    exact: bool = True
    batch_size: int = 0
    force: bool = False
    sidecars: bool = True  # a provenance JSON beside each synthesised volume
    also_written: tuple[Path, ...] = ()  # the caller's own files (a preview, a metrics file): checked with ours
    protected: tuple[Path, ...] = ()  # files never overwritten, besides the inputs (e.g. a lesion mask)
    provenance_inputs: list[dict] | None = None  # the sidecars' Inputs (default: each input's path and sha256)
    provenance_extra: dict | None = None  # further sidecar fields (dataset mode: Sources as BIDS URIs)


@dataclass
class SynthesisPlan:
    """A request checked once against the model and the file system: which target goes to which file, the maps
    and the sidecars, the slice axes, the raw scan of --native-ref, and the folders made for the outputs (removed
    again when the run is refused)."""

    request: SynthesisRequest
    outputs: dict[str, Path]
    maps: dict[str, Path]
    sidecars: dict[str, Path]
    views: list[str] | None
    native: NativeTarget | None
    created: list[Path]


@dataclass
class Synthesis:
    """What a session did with a request: its plan, the result, and the files written (each target's, then each
    map's, by name) with the model that made them."""

    plan: SynthesisPlan
    result: SynthesisResult
    files: dict[str, Path]
    model: Path


class SynthesisSession:
    """A checkpoint opened once, and the steps of a synthesis with it: plan -> run -> write."""

    def __init__(self, model: OpenModel) -> None:
        self.model = model

    @classmethod
    def open(cls, model: str | Path | OpenModel | None = None, device: str | torch.device = "auto"
             ) -> SynthesisSession:
        """A session on the checkpoint at `model` (default: the shipped one), read once."""
        return cls(open_model(model, device))

    @property
    def path(self) -> Path:
        """The checkpoint file."""
        return self.model.path

    @property
    def network(self) -> SynthesisNet:
        return self.model.network

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def normaliser(self) -> Normaliser:
        return self.model.normaliser

    def plan(self, request: SynthesisRequest) -> SynthesisPlan:
        """Check the request before any work (inputs and targets against the model, the maps, the views, the raw
        scan of --native-ref, the outputs against the inputs and the disk) and make the outputs' folders."""
        given = dict(request.inputs)
        if not given:
            raise InputError(NO_INPUT)
        outputs = self._targets(request)
        maps = plan_maps(outputs, request.uncertainty, request.explain)
        views = parse_views(request.axis, request.views, request.merge)
        native = plan_native(request.native_ref, request.manifest, given,
                             {"--uncertainty": request.uncertainty, "--explain": request.explain})
        sidecars = {t: sidecar_path(p) for t, p in outputs.items()} if request.sidecars else {}
        refuse_collisions(outputs, maps, sidecars)  # provenance beside each synthesis, never over another output
        check_extras(self.model, request.explain is not None, request.lesion_mask)
        if request.skull_strip:
            from ..preprocess.skullstrip import choose_source

            choose_source(given, next(iter(given.values())))
        ours = [*outputs.values(), *maps.values()]
        created = create_folders([*ours, *request.also_written])  # missing output folders are created
        try:
            check_outputs([*ours, *sidecars.values(), *request.also_written],
                          [*given.values(), *request.protected, *([native.raw.path] if native else [])],
                          request.force)
        except MrimputeError:
            remove_empty(created)  # a refusal leaves nothing behind, not even the folders made for the outputs
            raise
        return SynthesisPlan(request, outputs, maps, sidecars, views, native, created)

    def _targets(self, request: SynthesisRequest) -> dict[str, Path]:
        if request.outputs is None:
            return plan_outputs(self.model, dict(request.inputs), request.out, request.target, request.out_dir)
        check_request(self.config.inputs, self.config.outputs, list(request.inputs), list(request.outputs),
                      self.path)
        return dict(request.outputs)

    def run(self, plan: SynthesisPlan, reporter: Reporter | None = None,
            lesion: np.ndarray | None = None) -> SynthesisResult:
        """Synthesise what the plan says (`lesion`: a mask already on the inputs' grid, instead of the request's
        file); a refusal (--strict, an unreadable input) takes back the folders the plan made."""
        request = plan.request
        try:
            return run_synthesis(self.model, request.inputs, list(plan.outputs), request.batch_size, reporter,
                                 views=plan.views, merge=request.merge, uncertainty=request.uncertainty is not None,
                                 explain=request.explain is not None,
                                 lesion=request.lesion_mask if lesion is None else lesion, exact=request.exact,
                                 skull_strip=request.skull_strip,
                                 check_findings=refuse_findings if request.strict else None,
                                 mirror=request.mirror)
        except MrimputeError:
            remove_empty(plan.created)
            raise

    def write(self, result: SynthesisResult, plan: SynthesisPlan) -> dict[str, Path]:
        """Write the targets (on the first input's grid, or the raw scan's with --native-ref), the maps and the
        sidecars, atomically; returns each target's and each map's file by name."""
        request, force = plan.request, plan.request.force
        written = (write_native_outputs(result.outputs, result.reference, plan.outputs, plan.native, force,
                                        result.inputs)
                   if plan.native else write_outputs(result, plan.outputs, force))
        files = {**dict(zip(plan.outputs, written)), **write_maps(result, plan.maps, force)}
        if plan.sidecars:
            records = request.provenance_inputs or [{"modality": m, "path": str(p), "sha256": sha256_file(p)}
                                                    for m, p in request.inputs.items()]
            for target, side in plan.sidecars.items():
                write_sidecar(side, result_sidecar(target, result, records, self.path, self.model.sha256,
                                                   request.provenance_extra), force)
        return files

    def synthesize(self, request: SynthesisRequest, reporter: Reporter | None = None,
                   warn: Callable[[str], None] | None = None) -> Synthesis:
        """Plan, run and write one request; each warning about the inputs goes to `warn` (`<file>: <message>`;
        default: the reporter's messages) before anything is written."""
        reporter = reporter or Reporter()
        plan = self.plan(request)
        result = self.run(plan, reporter)
        for line in result.warnings:
            (warn or (lambda text: reporter.message(f"warning: {text}")))(line)
        return Synthesis(plan, result, self.write(result, plan), self.path)

    def normalise(self, volumes: dict[str, np.ndarray], voxel_ml: float = 0.001) -> NormalisedInputs:
        """Arrays (RAS+) in the model's units: its checkpoint's normaliser, the brain mask, the findings."""
        return normalise_inputs(volumes, self.normaliser, voxel_ml)

    def products(self, inputs: dict[str, np.ndarray], mask: np.ndarray, products: list[Product],
                 batch_size: int = 0, reporter: Reporter | None = None, axis: str | None = None,
                 lesion: np.ndarray | None = None, exact: bool = True,
                 mirror: bool = False) -> dict[Product, np.ndarray]:
        """Each product (a synthesis, its uncertainty or the fusion's winner, from a subset of the inputs) from
        normalised arrays, slice by slice along `axis` (default: the model's): see synthesize_products."""
        return synthesize_products(self.network, inputs, mask, products, self.device, batch_size, reporter, axis,
                                   lesion, exact, mirror)


def synthesize_subject(request: SynthesisRequest, model: str | Path | None = None, device: str = "auto",
                       threads: int = 0, reporter: Reporter | None = None, warn: Callable[[str], None] | None = None,
                       say: Callable[[str], None] | None = None) -> Synthesis:
    """`mrimpute synth` for one subject, in one call: the model (the one given, else the shipped one for these
    inputs: `say` is told when that is not the default), then plan, run and write."""
    if not request.inputs:
        raise InputError(NO_INPUT)
    set_threads(threads)
    opened, note = ModelShelf(model, device).choose(request.inputs)  # dwi/adc: models/diffusion.pt
    if note and say is not None:
        say(note)
    return SynthesisSession(opened).synthesize(request, reporter, warn)
