"""One modality table: names, aliases, BIDS names and the CLI options of synth, preprocess and add-lesion come from it,
so adding a contrast is one row (shown here with a made-up `swi` row and a model that has an encoder for it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mrimpute import modalities
from mrimpute.cli.app import app
from mrimpute.config import ModelConfig
from mrimpute.data.bids import bids_modality, discover_dataset
from mrimpute.io.checkpoint import save_checkpoint
from mrimpute.modalities import Modality, canonical_modality, modality_from_filename
from mrimpute.model.network import SynthesisNet
from mrimpute.phantom import write_subject
from mrimpute.pipeline.cohort import output_path

RUNNER = CliRunner()
SWI = Modality("swi", "susceptibility-weighted", ("swiw",), "swi")
COMMANDS = ("synth", "preprocess", "add-lesion")


def _help(command: str) -> str:
    result = RUNNER.invoke(app, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_table_is_consistent() -> None:
    rows = modalities.table()
    names = [m.name for m in rows]
    assert len(set(names)) == len(names) and all(n.isidentifier() and n == n.lower() for n in names)
    aliases = modalities.aliases()
    assert not set(aliases) & set(names)
    assert all(canonical_modality(alias.upper()) == name for alias, name in aliases.items())
    assert all(m.registers_via in (None, *names) for m in rows)
    assert {"t1", "t1c", "t2", "flair", "pd", "dwi", "adc"} <= set(names)
    adc = modalities.row("ADC")
    assert (adc.bids_suffix, adc.bids_folder, adc.registers_via) == ("ADC", "dwi", "dwi")


@pytest.mark.parametrize("name", modalities.names())
def test_bids_names_read_back_as_their_modality(name: str) -> None:
    raw = modalities.bids_name(name, "sub-01_ses-a")
    synthetic = modalities.bids_name(name, "sub-01", desc="synth")
    assert bids_modality(raw) == name
    assert bids_modality(synthetic) is None  # a derivative is never a scan
    assert modality_from_filename(f"{synthetic}.nii.gz") == name
    assert modality_from_filename(f"{name}.nii.gz") == name


def test_t1c_is_t1w_with_a_ce_entity_of_any_label() -> None:
    assert bids_modality("sub-01_ce-gadolinium_T1w") == "t1c" and bids_modality("sub-01_run-2_T1w") == "t1"
    assert modalities.bids_name("t1c", "sub-01", desc="synth") == "sub-01_ce-gd_desc-synth_T1w"
    assert bids_modality("sub-01_ADC") == "adc" and modality_from_filename("sub-01_ADC.nii.gz") == "adc"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_row_is_an_option_and_help_fits_80_columns(command: str) -> None:
    text = _help(command)
    for row in modalities.table():
        assert f"{row.option} " in text and row.label.split()[0] in text
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.fixture
def swi_row(monkeypatch: pytest.MonkeyPatch) -> Modality:
    """The table with one more row, as a contributor would add it."""
    monkeypatch.setattr(modalities, "MODALITIES", (*modalities.MODALITIES, SWI))
    return SWI


@pytest.fixture(scope="module")
def swi_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model with encoders for t1 and swi and a FLAIR decoder."""
    torch.manual_seed(0)
    config = ModelConfig(inputs=["t1", "swi"], outputs=["flair"], width=0.125)
    path = tmp_path_factory.mktemp("swi") / "swi.pt"
    save_checkpoint(path, config, SynthesisNet(config).state_dict(), {"note": "random weights, a swi encoder"})
    return path


def test_a_new_row_is_an_option_of_every_command(swi_row: Modality) -> None:
    for command in COMMANDS:
        assert "--swi " in _help(command) and "susceptibility-weighted" in _help(command)
    assert canonical_modality("SWIw") == "swi"


def test_a_new_row_goes_through_synth(swi_row: Modality, swi_model: Path, tmp_path: Path) -> None:
    subject = write_subject(tmp_path / "s", shape=(32, 32, 8))
    out = tmp_path / "flair_synth.nii.gz"
    result = RUNNER.invoke(app, ["synth", "--swi", str(subject["t2"]), "--out", str(out), "--model", str(swi_model),
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_name("flair_synth.json").read_text())
    assert out.exists() and "swi" in json.dumps(sidecar)


def test_a_new_row_goes_through_preprocess(swi_row: Modality, tmp_path: Path) -> None:
    subject = write_subject(tmp_path / "s", shape=(32, 30, 12))
    result = RUNNER.invoke(app, ["preprocess", "--ref", f"t1={subject['t1']}", "--swi", str(subject["t2"]),
                                 "--out-dir", str(tmp_path / "pre"), "--threads", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "pre" / "manifest.json").read_text())
    assert set(manifest["outputs"]) == {"t1", "swi"} and "swi" in manifest["registration"]
    assert (tmp_path / "pre" / "transforms" / "swi_to_t1.tfm").exists()


def test_a_new_row_is_found_and_named_in_bids(swi_row: Modality, tmp_path: Path) -> None:
    for name in ("sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_swi.nii.gz",
                 "sub-02/ses-1/anat/sub-02_ses-1_swi.nii.gz", "sub-02/ses-1/anat/sub-02_ses-1_desc-x_swi.nii.gz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    entries = {e.name: e for e in discover_dataset(tmp_path)}
    assert set(entries["sub-01"].files) == {"t1", "swi"}
    assert entries["sub-02_ses-1"].files == {"swi": tmp_path / "sub-02/ses-1/anat/sub-02_ses-1_swi.nii.gz"}
    target = output_path(tmp_path / "derivatives", entries["sub-02_ses-1"], "swi")
    assert target == tmp_path / "derivatives/sub-02/ses-1/anat/sub-02_ses-1_desc-synth_swi.nii.gz"


def test_without_the_row_the_option_is_unknown(swi_model: Path, tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["synth", "--swi", "x.nii.gz", "--out", str(tmp_path / "f.nii.gz")])
    assert result.exit_code != 0 and "--swi" in result.output and "Traceback" not in result.output
