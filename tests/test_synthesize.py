"""Synthesis internals: output planning, subsets sharing one encoding, batch sizes, background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mrimpute.errors import CheckpointError, InputError
from mrimpute.io.nifti import load_volume
from mrimpute.runtime.model_loading import load_model, open_model
from mrimpute.runtime.outputs import plan_outputs
from mrimpute.runtime.prepared_inputs import normalise_inputs
from mrimpute.runtime.synthesize import Product, auto_batch_size, synthesize_products

from conftest import write_subject


def test_plan_outputs(tmp_path: Path, random_model: Path) -> None:
    random_model = open_model(random_model, "cpu")  # planned from the model opened once
    given = {"t1": tmp_path / "t1.nii.gz", "t2": tmp_path / "t2.nii.gz"}
    assert (plan_outputs(random_model, given, tmp_path / "flair.nii.gz", None, None)
            == {"flair": tmp_path / "flair.nii.gz"})
    assert plan_outputs(random_model, given, tmp_path / "x.nii.gz", "T1ce", None) == {"t1c": tmp_path / "x.nii.gz"}
    with pytest.raises(InputError, match="--target"):
        plan_outputs(random_model, given, tmp_path / "x.nii.gz", None, None)
    assert set(plan_outputs(random_model, given, None, None, tmp_path)) == {"t1c", "flair"}
    with pytest.raises(InputError, match="either --out"):
        plan_outputs(random_model, given, tmp_path / "flair.nii.gz", None, tmp_path)
    with pytest.raises(CheckpointError, match="cannot synthesise pd"):
        plan_outputs(random_model, given, tmp_path / "pd.nii.gz", None, None)


def test_subsets_share_one_encoding_and_match_separate_runs(tmp_path: Path, random_model: Path) -> None:
    model, _ = load_model(random_model, torch.device("cpu"))
    paths = write_subject(tmp_path / "s")
    prepared = normalise_inputs({m: load_volume(paths[m]).data for m in ("t1", "t2", "flair")})
    inputs, mask = prepared.volumes, prepared.mask
    requests = [Product("synthesis", ("t1",), "t1c"), Product("synthesis", ("t1", "t2"), "t1c"),
                Product("synthesis", ("t1", "t2", "flair"), "t2")]
    calls = {m: 0 for m in model.encoders}
    for name, encoder in model.encoders.items():
        encoder.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    together = synthesize_products(model, inputs, mask, requests, torch.device("cpu"), batch_size=64)
    assert calls == {"t1": 1, "t1c": 0, "t2": 1, "flair": 1}  # one batch: each needed encoder ran once
    for request in requests:
        alone = synthesize_products(model, {m: inputs[m] for m in request.subset}, mask, [request],
                                    torch.device("cpu"), batch_size=3)
        assert np.allclose(alone[request], together[request], atol=1e-5)
        assert np.all(together[request][~mask] == 0)


def test_auto_batch_size() -> None:
    assert auto_batch_size(240, 240) == (1 << 20) // (240 * 240)
    assert auto_batch_size(8, 8) == 64 and auto_batch_size(5000, 5000) == 1


def test_batches_without_brain_between_parts_of_the_mask_are_skipped(tmp_path: Path, random_model: Path) -> None:
    model, _ = load_model(random_model, torch.device("cpu"))
    paths = write_subject(tmp_path / "s")
    prepared = normalise_inputs({m: load_volume(paths[m]).data for m in ("t1", "t2")})
    inputs, mask = prepared.volumes, prepared.mask
    gapped = mask.copy()
    gapped[:, :, 3:9] = False  # brain in slices 0-2 and 9-11 only
    for exact in (True, False):
        flair = Product("synthesis", ("t1", "t2"), "flair")
        out = synthesize_products(model, inputs, gapped, [flair], torch.device("cpu"), batch_size=2, exact=exact)[flair]
        assert np.all(out[:, :, 3:9] == 0) and np.all(out[~gapped] == 0) and out[gapped].mean() > 0


def test_dataset_mode_reads_the_model_once(tmp_path: Path, random_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mrimpute.pipeline.cohort import run_cohort
    from mrimpute.runtime import model_loading

    for i, name in enumerate(("a", "b", "c")):
        (write_subject(tmp_path / "data" / name, seed=i)["flair"]).unlink()
    calls = []
    real = model_loading.load_model
    monkeypatch.setattr(model_loading, "load_model", lambda *args: calls.append(args) or real(*args))
    rows = run_cohort(tmp_path / "data", tmp_path / "out", random_model, device="cpu")
    assert sorted(r["status"] for r in rows) == ["done"] * 3 and len(calls) == 1
