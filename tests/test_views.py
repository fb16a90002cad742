"""synth/eval along other slice axes (--axis) and merged views (--views), and the striping measure."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.errors import InputError
from mrimpute.io.nifti import load_volume
from mrimpute.metrics import striping
from mrimpute.runtime.model_loading import load_model
from mrimpute.runtime.prepared_inputs import normalise_inputs
from mrimpute.runtime.synthesize import Product, synthesize_products
from mrimpute.runtime.views import merge_volumes, parse_views

from conftest import write_subject

RUNNER = CliRunner(env={"COLUMNS": "200"})


def test_parse_views() -> None:
    assert parse_views() is None
    assert parse_views(axis="Coronal") == ["coronal"]
    assert parse_views(views="axial, sagittal") == ["axial", "sagittal"]
    for bad, message in (({"axis": "oblique"}, "unknown slice axis"), ({"views": "axial,axial"}, "twice"),
                         ({"axis": "axial", "views": "coronal"}, "not both"), ({"views": ",", }, "empty"),
                         ({"views": "axial", "merge": "max"}, "unknown merge")):
        with pytest.raises(InputError, match=message):
            parse_views(**bad)


def test_merge_volumes() -> None:
    a, b, c = (np.full((2, 2), v, dtype=np.float32) for v in (1.0, 2.0, 6.0))
    assert np.all(merge_volumes([a, b, c], "mean") == 3.0) and np.all(merge_volumes([a, b, c], "median") == 2.0)
    labels = [np.array([1, 2, 3], np.uint8), np.array([1, 3, 2], np.uint8), np.array([2, 3, 1], np.uint8)]
    merged = merge_volumes(labels)
    assert merged.dtype == np.uint8 and merged.tolist() == [1, 3, 1]  # majority; a three-way tie: the smallest


def test_another_axis_is_the_model_run_on_the_permuted_volume(tmp_path: Path, live_model: Path) -> None:
    model, _ = load_model(live_model, torch.device("cpu"))
    paths = write_subject(tmp_path / "s")
    prepared = normalise_inputs({m: load_volume(paths[m]).data for m in ("t1", "t2")})
    inputs, mask = prepared.volumes, prepared.mask
    request = [Product("synthesis", ("t1", "t2"), "flair")]
    coronal = synthesize_products(model, inputs, mask, request, torch.device("cpu"), axis="coronal")[request[0]]
    swapped = {m: np.ascontiguousarray(np.moveaxis(v, 1, 2)) for m, v in inputs.items()}  # coronal slices -> axial
    axial = synthesize_products(model, swapped, np.moveaxis(mask, 1, 2), request, torch.device("cpu"))[request[0]]
    np.testing.assert_allclose(coronal, np.moveaxis(axial, 2, 1), atol=1e-5)
    default = synthesize_products(model, inputs, mask, request, torch.device("cpu"))[request[0]]
    assert not np.allclose(coronal, default, atol=1e-4)  # the view does change the result


def test_striping_measures_slice_to_slice_jumps() -> None:
    volume = np.ones((6, 6, 6))
    volume[:, :, ::2] = 3.0  # stripes across the last axis; mean 2
    mask = np.zeros(volume.shape, bool)
    mask[1:5, 1:5, 1:5] = True
    assert striping(volume, mask, 2) == pytest.approx(1.0)  # |3 - 1| / mean 2, between every pair of slices
    assert striping(volume, mask, 0) == 0.0 and striping(volume, mask, 1) == 0.0
    assert striping(volume * 7, mask, 2) == pytest.approx(1.0)  # brain-mean units


def test_synth_views_is_the_merge_of_single_axes(tmp_path: Path, live_model: Path) -> None:
    paths = write_subject(tmp_path / "s")
    base = ["synth", "--t1", str(paths["t1"]), "--t2", str(paths["t2"]), "--target", "flair", "--model",
            str(live_model)]
    singles = []
    for axis in ("axial", "coronal", "sagittal"):
        out = tmp_path / f"{axis}.nii.gz"
        assert RUNNER.invoke(app, base + ["--out", str(out), "--axis", axis]).exit_code == 0
        singles.append(np.asarray(nib.load(out).dataobj))
    for merge, combine in (("mean", np.mean), ("median", np.median)):
        out = tmp_path / f"{merge}.nii.gz"
        result = RUNNER.invoke(app, base + ["--out", str(out), "--views", "axial,coronal,sagittal", "--merge", merge])
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose(np.asarray(nib.load(out).dataobj), combine(singles, axis=0), atol=1e-6)
    both = RUNNER.invoke(app, base + ["--out", str(tmp_path / "x.nii.gz"), "--axis", "axial", "--views", "coronal"])
    assert both.exit_code == 1 and "not both" in both.output


def test_eval_views_table(tmp_path: Path, live_model: Path) -> None:
    write_subject(tmp_path / "data" / "s0")
    result = RUNNER.invoke(app, ["eval", "--model", str(live_model), "--data", str(tmp_path / "data"), "--targets",
                                 "flair", "--subsets", "t1,t2", "--views", "axial,coronal,sagittal", "--no-qc",
                                 "--out-dir", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    with (tmp_path / "ev" / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["protocol"] == "brain"]
    views = ["axial", "coronal", "sagittal", "mean(axial,coronal,sagittal)"]
    assert [r["view"] for r in rows] == views and {r["striping_axis"] for r in rows} == {"axial"}
    assert len({r["striping_truth"] for r in rows}) == 1 and all(float(r["striping"]) >= 0 for r in rows)
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())["brain"]
    assert [s["view"] for s in summary] == views and all("striping" in s for s in summary)


def test_the_mirror_pass_makes_synthesis_left_right_equivariant(tmp_path: Path, live_model: Path) -> None:
    model, _ = load_model(live_model, torch.device("cpu"))
    paths = write_subject(tmp_path / "s")
    prepared = normalise_inputs({m: load_volume(paths[m]).data for m in ("t1", "t2")})
    inputs, mask = prepared.volumes, prepared.mask
    request = [Product("synthesis", ("t1", "t2"), "flair"), Product("uncertainty", ("t1", "t2"), "flair")]
    mirrored_inputs = {m: np.ascontiguousarray(v[::-1]) for m, v in inputs.items()}  # RAS+: axis 0 is left-right
    cpu = torch.device("cpu")
    plain = synthesize_products(model, inputs, mask, request, cpu)
    plain_of_mirror = synthesize_products(model, mirrored_inputs, mask[::-1].copy(), request, cpu)
    assert not np.allclose(plain[request[0]], plain_of_mirror[request[0]][::-1], atol=1e-4)  # not equivariant
    both = synthesize_products(model, inputs, mask, request, cpu, mirror=True)
    both_of_mirror = synthesize_products(model, mirrored_inputs, mask[::-1].copy(), request, cpu, mirror=True)
    for product in request:  # mirror-averaged: the mirror image's synthesis is the synthesis's mirror image
        np.testing.assert_allclose(both_of_mirror[product][::-1], both[product], atol=1e-5)
        np.testing.assert_allclose(both[product], (plain[product] + plain_of_mirror[product][::-1]) / 2, atol=1e-5)
    assert np.all(both[request[0]][~mask] == 0)


def test_synth_and_eval_mirror(tmp_path: Path, live_model: Path) -> None:
    paths = write_subject(tmp_path / "data" / "s0")
    base = ["synth", "--t1", str(paths["t1"]), "--t2", str(paths["t2"]), "--target", "flair", "--model",
            str(live_model)]
    for name, extra in (("plain", []), ("mirror", ["--mirror"])):
        result = RUNNER.invoke(app, base + ["--out", str(tmp_path / f"{name}.nii.gz")] + extra)
        assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "mirror.json").read_text())
    assert sidecar["Mirror"] is True and sidecar["Views"] == ["axial"]
    assert json.loads((tmp_path / "plain.json").read_text())["Mirror"] is False
    assert not np.allclose(np.asarray(nib.load(tmp_path / "plain.nii.gz").dataobj),
                           np.asarray(nib.load(tmp_path / "mirror.nii.gz").dataobj), atol=1e-4)
    scored = RUNNER.invoke(app, ["eval", "--model", str(live_model), "--data", str(tmp_path / "data"), "--targets",
                                 "flair", "--subsets", "t1,t2", "--mirror", "--no-qc", "--out-dir",
                                 str(tmp_path / "ev")])
    assert scored.exit_code == 0, scored.output
    refused = RUNNER.invoke(app, ["eval", "--model", str(live_model), "--data", str(tmp_path / "data"),
                                  "--baseline", "replica", "--mirror", "--out-dir", str(tmp_path / "ev2")])
    assert refused.exit_code == 1 and "--mirror" in refused.output
