"""The bad-input corpus of `mrimpute synth`: case -> message -> exit code -> input unchanged.

One definition of every bad case, shared by tests/test_bad_inputs.py (which runs them in-process and asserts)
and by this script (which runs each through the real `mrimpute` command in a subprocess and prints a table
for the release note):

    .venv/bin/python benchmarks/bad_input_corpus.py [--model PATH] [--csv FILE] [--only NAME,NAME]

Without --model a small untrained model (t1, t1c, t2, flair -> t1, t1c, t2, flair) is built in the temporary
folder. The script exits 1 when any case misbehaves: exit code 0 or not the expected one, a traceback, an error
that is not one `error: <offender>: ...` line matching the case's problem, an input (or the model) created,
removed or changed, or anything left in the output folder.

This module depends on neither pytest nor tests/conftest.py; its phantom subject comes from mrimpute.phantom.
"""

from __future__ import annotations

import argparse
import csv
import errno
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from mrimpute.phantom import oblique_affine, phantom, write_subject

MODALITIES = ("t1", "t1c", "t2", "flair")
FULL_DISK_FILE_SIZE_LIMIT = 64  # bytes: RLIMIT_FSIZE of the "disk full" subprocess; any NIfTI output is larger


class Skip(Exception):
    """A case that cannot be set up here (the test turns it into pytest.skip, the script into a 'skipped' row)."""


def build_random_model(path: Path, seed: int = 0) -> Path:
    """A small untrained model (inputs and outputs t1, t1c, t2, flair) saved as a checkpoint at path."""
    import torch

    from mrimpute.config import ModelConfig
    from mrimpute.io.checkpoint import save_checkpoint
    from mrimpute.model.network import SynthesisNet

    torch.manual_seed(seed)
    config = ModelConfig(inputs=list(MODALITIES), outputs=list(MODALITIES), width=0.125)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"note": "random weights for the bad-input corpus"}
    save_checkpoint(path, config, SynthesisNet(config).state_dict(), metadata)
    return path


# --------------------------------------------------------------------------------------------- helpers


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksums(*roots: Path) -> dict[str, str]:
    """Every entry under the roots (symlinks not followed): sha256 of files, the target of links, '<dir>' of folders."""
    entries: dict[str, str] = {}
    for root in roots:
        if root.is_file():
            entries[str(root)] = sha256(root)
            continue
        for folder, dirs, names in os.walk(root):
            for name in dirs + names:
                path = Path(folder) / name
                if path.is_symlink():
                    entries[str(path)] = "-> " + os.readlink(path)
                elif path.is_dir():
                    entries[str(path)] = "<dir>"
                elif not path.is_file():  # a FIFO or device: never open it
                    entries[str(path)] = "<special>"
                else:
                    entries[str(path)] = sha256(path)
    return entries


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write data as NIfTI with qform code 1 and sform code 2 (as the phantom writer does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = oblique_affine() if affine is None else affine
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    nib.save(image, path)
    return path


def t1_data() -> np.ndarray:
    return phantom()["t1"]


def _chattr(flag: str, folder: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", flag, str(folder)], capture_output=True)
    return done.returncode == 0


def release_folder(folder: Path) -> None:
    """Undo what output_folder_read_only did (the immutable flag first: chmod fails on an immutable folder)."""
    if not folder.exists():
        return
    if os.geteuid() == 0:
        _chattr("-i", folder)
    folder.chmod(0o755)


def simulate_full_disk(setattr_: Callable[[object, str, object], None]) -> None:
    """In-process 'disk full': every mrimpute atomic write writes its temporary file, then fails with ENOSPC.

    setattr_ is pytest's monkeypatch.setattr (or anything with its signature, undone by the caller). The writer
    really writes the temporary file first, so the check that no temporary file is left behind means something.
    """
    from mrimpute.io import atomic

    def fail_after_writing(tmp, path, *args, **kwargs):
        # the writer has already written tmp; failing here, not by replacing write_atomically itself, also covers
        # modules that imported write_atomically by name (even ones first imported while the patch is active)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    setattr_(atomic, "_commit", fail_after_writing)


def _full_disk_preexec() -> None:
    """Subprocess 'disk full': files may not grow past a few bytes; writes then fail with EFBIG, not SIGXFSZ."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_FILE_SIZE_LIMIT, FULL_DISK_FILE_SIZE_LIMIT))


# --------------------------------------------------------------------------------------------- bad cases


@dataclass
class Bad:
    """What a case runs and what the error must say."""

    args: list[object]  # everything after `synth` except --model
    offender: Path  # the file (or folder, or model) the message must name
    problem: str  # regex (case-insensitive) the message must match once paths are removed
    full_disk: bool = False  # run with writes failing (see simulate_full_disk / _full_disk_preexec)
    model: Path | None = None  # a model of the case's own instead of the corpus model


@dataclass
class Case:
    name: str
    build: Callable[[Path, dict[str, Path], Path], Bad]
    code: int = 1
    marks: list = field(default_factory=list)  # pytest marks for the test's parametrisation; ignored here


def _standard(root: Path, subject: dict[str, Path], t1: Path | None = None, t2: Path | None = None,
              offender: Path | None = None, problem: str = "", extra: list[object] | None = None) -> Bad:
    t1 = subject["t1"] if t1 is None else t1
    t2 = subject["t2"] if t2 is None else t2
    out = root / "out" / "flair.nii.gz"
    return Bad(["--t1", t1, "--t2", t2, "--out", out, *(extra or [])], offender or t1, problem)


def truncated_gzip(root, subject, model):
    data = subject["t1"].read_bytes()
    bad = root / "bad" / "t1.nii.gz"
    bad.parent.mkdir()
    bad.write_bytes(data[: len(data) // 2])
    return _standard(root, subject, t1=bad, problem=r"truncated|corrupt")


def not_nifti(root, subject, model):
    bad = root / "bad" / "t1.nii.gz"
    bad.parent.mkdir()
    bad.write_text("this is a text file, not a NIfTI image\n" * 20)
    return _standard(root, subject, t1=bad, problem=r"nifti")


def empty_file(root, subject, model):
    bad = root / "bad" / "t1.nii.gz"
    bad.parent.mkdir()
    bad.touch()
    return _standard(root, subject, t1=bad, problem=r"empty")


def image_2d(root, subject, model):
    bad = save_nifti(root / "bad" / "t1.nii.gz", t1_data()[:, :, 6])
    return _standard(root, subject, t1=bad, problem=r"3d")


def image_4d(root, subject, model):
    volume = t1_data()
    bad = save_nifti(root / "bad" / "t1.nii.gz", np.stack([volume, volume, volume], axis=-1))
    return _standard(root, subject, t1=bad, problem=r"3d")


def nan_voxels(root, subject, model):
    volume = t1_data()
    volume[20, 18, 3:9] = np.nan
    bad = save_nifti(root / "bad" / "t1.nii.gz", volume)
    return _standard(root, subject, t1=bad, problem=r"\bnan\b")


def inf_voxels(root, subject, model):
    volume = t1_data()
    volume[20, 18, 6] = np.inf
    volume[21, 18, 6] = -np.inf
    bad = save_nifti(root / "bad" / "t1.nii.gz", volume)
    return _standard(root, subject, t1=bad, problem=r"\binf\b")


def extreme_values(root, subject, model):
    volume = t1_data()
    volume[20, 18, 6] = np.float32(1e35)  # finite in float32, far beyond what the network can take
    bad = save_nifti(root / "bad" / "t1.nii.gz", volume)
    assert nib.load(bad).get_data_dtype() == np.float32 and np.isfinite(nib.load(bad).get_fdata()).all()
    return _standard(root, subject, t1=bad, problem=r"\b1e\+?30\b|value limit")


def all_zero(root, subject, model):
    bad = save_nifti(root / "bad" / "t1.nii.gz", np.zeros_like(t1_data()))
    return _standard(root, subject, t1=bad, problem=r"empty|zero")


def zero_affine(root, subject, model):
    image = nib.Nifti1Image(t1_data(), None)
    image.header.set_sform(np.zeros((4, 4)), code=2)
    image.header.set_qform(None, code=0)
    bad = root / "bad" / "t1.nii.gz"
    bad.parent.mkdir()
    nib.save(image, bad)
    assert not np.linalg.det(nib.load(bad).affine[:3, :3])  # the case is what it says
    return _standard(root, subject, t1=bad, problem=r"singular")


def other_shape(root, subject, model):
    bad = write_subject(root / "other", shape=(40, 36, 10))["t2"]
    return _standard(root, subject, t2=bad, offender=bad, problem=r"grid|shape")


def shifted_affine(root, subject, model):
    affine = oblique_affine()
    affine[:3, 3] += [5.0, 0.0, 0.0]
    bad = save_nifti(root / "bad" / "t2.nii.gz", phantom()["t2"], affine)
    return _standard(root, subject, t2=bad, offender=bad, problem=r"affine|grid")


def missing_file(root, subject, model):
    return _standard(root, subject, t1=root / "nowhere" / "t1.nii.gz", problem=r"not found|no such file|missing")


def modality_the_model_lacks(root, subject, model):
    return _standard(root, subject, offender=model, problem=r"\bpd\b", extra=["--pd", subject["t2"]])


def existing_output(root, subject, model):
    (root / "out" / "flair.nii.gz").write_bytes(b"an earlier result the user wants to keep")
    return _standard(root, subject, offender=root / "out" / "flair.nii.gz", problem=r"exists|--force")


def output_folder_missing(root, subject, model):
    """A missing output folder is created (issue 18), but not where a file stands in its way."""
    blocker = root / "out" / "a_file"
    blocker.write_bytes(b"not a folder")
    out = blocker / "flair.nii.gz"
    return Bad(["--t1", subject["t1"], "--t2", subject["t2"], "--out", out], blocker, r"cannot create.*is a file")


def out_dir_missing(root, subject, model):
    """As above, for --out-dir: a folder inside a file cannot be created."""
    blocker = root / "out" / "a_file"
    blocker.write_bytes(b"not a folder")
    out_dir = blocker / "imputed"
    return Bad(["--t1", subject["t1"], "--t2", subject["t2"], "--out-dir", out_dir], out_dir,
               r"cannot create.*is a file")


def output_folder_read_only(root, subject, model):
    """chmod 555; as root (which ignores permission bits) the folder is made immutable with chattr +i instead.

    The caller must call release_folder(root / "out") afterwards (in a finally), whatever happens.
    """
    folder = root / "out"
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permissions
        folder.chmod(0o755)
        if not (os.geteuid() == 0 and _chattr("+i", folder)):
            raise Skip("privileged process can write to a chmod 555 folder, and chattr +i is unavailable here")
        probe = folder / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:  # the file system ignores the immutable flag
            probe.unlink()
            release_folder(folder)
            raise Skip("privileged process can write to a chmod 555 folder, and chattr +i has no effect here")
        if os.access(folder, os.W_OK):
            release_folder(folder)
            raise Skip("the immutable folder still reports as writable (os.access)")
    return _standard(root, subject, offender=folder / "flair.nii.gz", problem=r"not writable|permission|read-only")


def output_is_an_input(root, subject, model):
    return Bad(["--t1", subject["t1"], "--t2", subject["t2"], "--out", subject["t2"], "--target", "flair", "--force"],
               subject["t2"], r"input")


def symlink_loop(root, subject, model):
    loop = root / "bad" / "t1.nii.gz"
    loop.parent.mkdir()
    os.symlink(loop, loop)
    return _standard(root, subject, t1=loop, problem=r"loop|symbolic link")


def disk_full(root, subject, model):
    bad = _standard(root, subject, offender=root / "out" / "flair.nii.gz",
                    problem=r"cannot write|no space|too large")
    bad.full_disk = True
    return bad


# --------------------------------------------------------------------------------------------- issue 17 cases


def _bad_dir(root: Path) -> Path:
    folder = root / "bad"
    folder.mkdir(exist_ok=True)
    return folder


def header_only(path: Path, shape: tuple[int, ...], dtype: type = np.float32, payload: bytes = b"") -> Path:
    """A NIfTI-1 file that declares shape/dtype in its header but holds only `payload` after it (gzip for .gz)."""
    import gzip

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_data_offset(352)
    header.set_qform(oblique_affine(), code=1)
    header.set_sform(oblique_affine(), code=2)
    content = header.binaryblock + b"\0" * 4 + payload
    path.write_bytes(gzip.compress(content) if path.name.endswith(".gz") else content)
    return path


def edited_header(path: Path, offset: int, fmt: str, value: float) -> Path:
    """The phantom T1 as uncompressed NIfTI with one header field overwritten (little-endian struct format)."""
    import struct

    save_nifti(path, t1_data())
    content = bytearray(path.read_bytes())
    content[offset:offset + struct.calcsize(fmt)] = struct.pack("<" + fmt, value)
    path.write_bytes(bytes(content))
    return path


def bomb_1000_cubed(root, subject, model):
    bad = header_only(_bad_dir(root) / "t1.nii", (1000, 1000, 1000))
    return _standard(root, subject, t1=bad, problem=r"2\^28|voxels")


def bomb_30000_cubed(root, subject, model):
    bad = header_only(_bad_dir(root) / "t1.nii.gz", (30000, 30000, 30000))
    return _standard(root, subject, t1=bad, problem=r"1024 voxels per axis")


def bomb_gzip_1024_cubed(root, subject, model):
    bad = header_only(_bad_dir(root) / "t1.nii.gz", (1024, 1024, 1024), payload=bytes(4 << 20))
    return _standard(root, subject, t1=bad, problem=r"2\^28|voxels")


def shorter_than_declared(root, subject, model):
    bad = save_nifti(_bad_dir(root) / "t1.nii", t1_data())
    bad.write_bytes(bad.read_bytes()[:-1000])
    return _standard(root, subject, t1=bad, problem=r"shorter")


def five_axes(root, subject, model):
    bad = header_only(_bad_dir(root) / "t1.nii.gz", (40, 36, 12, 2, 2))
    return _standard(root, subject, t1=bad, problem=r"3d")


def dim0_eight(root, subject, model):
    bad = edited_header(_bad_dir(root) / "t1.nii", 40, "h", 8)
    return _standard(root, subject, t1=bad, problem=r"header")


def bool_datatype(root, subject, model):
    bad = edited_header(_bad_dir(root) / "t1.nii", 70, "h", 1)
    return _standard(root, subject, t1=bad, problem=r"header")


def datatype_9999(root, subject, model):
    bad = edited_header(_bad_dir(root) / "t1.nii", 70, "h", 9999)
    return _standard(root, subject, t1=bad, problem=r"header")


def nan_scl_inter(root, subject, model):
    bad = edited_header(_bad_dir(root) / "t1.nii", 116, "f", float("nan"))
    return _standard(root, subject, t1=bad, problem=r"header")


def negative_scl_slope(root, subject, model):
    bad = edited_header(_bad_dir(root) / "t1.nii", 112, "f", -1.0)
    return _standard(root, subject, t1=bad, problem=r"negative scl_slope")


def uint64_near_2_63(root, subject, model):
    values = np.round(t1_data() / t1_data().max() * 1000).astype(np.uint64) + np.uint64(2**63 - 2000)
    image = nib.Nifti1Image(values, oblique_affine(), dtype=np.uint64)
    image.set_qform(oblique_affine(), code=1)
    image.set_sform(oblique_affine(), code=2)
    bad = _bad_dir(root) / "t1.nii.gz"
    nib.save(image, bad)
    assert nib.load(bad).get_data_dtype() == np.uint64
    return _standard(root, subject, t1=bad, problem=r"outside the 32-bit range")


def tiny_volume(size: int) -> Callable:
    def build(root, subject, model):
        bad = save_nifti(_bad_dir(root) / "t1.nii.gz", np.ones((size,) * 3, dtype=np.float32))
        return _standard(root, subject, t1=bad, problem=r"too small")
    return build


def one_voxel_brain(root, subject, model):
    volume = np.zeros_like(t1_data())
    volume[20, 18, 6] = 100.0
    bad = save_nifti(_bad_dir(root) / "t1.nii.gz", volume)
    return _standard(root, subject, t1=bad, problem=r"1 nonzero voxels.*64")


def fifo_input(root, subject, model):
    if not hasattr(os, "mkfifo"):
        raise Skip("no FIFOs on this system")
    bad = _bad_dir(root) / "t1.nii.gz"
    os.mkfifo(bad)
    return _standard(root, subject, t1=bad, problem=r"not a regular file")


def device_input(root, subject, model):
    if not Path("/dev/zero").exists():
        raise Skip("no /dev/zero on this system")
    return _standard(root, subject, t1=Path("/dev/zero"), problem=r"not a regular file")


def _edited_model(root: Path, name: str, edit: Callable[[dict], None]) -> Path:
    import torch

    path = _bad_dir(root) / name
    payload = torch.load(build_random_model(path), map_location="cpu", weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def model_case(name: str, edit: Callable[[dict], None], problem: str) -> Callable:
    def build(root, subject, model):
        bad_model = _edited_model(root, name, edit)
        bad = _standard(root, subject, offender=bad_model, problem=problem)
        bad.model = bad_model
        return bad
    return build


def _nan_weight(payload: dict) -> None:
    first = next(iter(payload["state_dict"]))
    payload["state_dict"][first].view(-1)[:3] = float("nan")


def dangling_symlink_output(root, subject, model):
    out = root / "out" / "flair.nii.gz"
    os.symlink(root / "nowhere" / "flair.nii.gz", out)
    return _standard(root, subject, offender=out, problem=r"exists|--force")


def output_extension(name: str) -> Callable:
    def build(root, subject, model):
        out = root / "out" / name
        return Bad(["--t1", subject["t1"], "--t2", subject["t2"], "--out", out, "--target", "flair"], out,
                   r"\.nii or \.nii\.gz")
    return build


def too_many_threads(root, subject, model):
    return _standard(root, subject, offender=Path("--threads 10000"), problem=r"at most 256",
                     extra=["--threads", "10000"])


ISSUE_17_CASES = [
    Case("header-bomb-1000-cubed", bomb_1000_cubed),
    Case("header-bomb-30000-cubed", bomb_30000_cubed),
    Case("header-bomb-gzip-1024-cubed", bomb_gzip_1024_cubed),
    Case("file-shorter-than-header", shorter_than_declared),
    Case("five-axes", five_axes),
    Case("header-dim0-8", dim0_eight),
    Case("header-bool-datatype", bool_datatype),
    Case("header-datatype-9999", datatype_9999),
    Case("header-nan-scl-inter", nan_scl_inter),
    Case("negative-scl-slope", negative_scl_slope),
    Case("uint64-near-2^63", uint64_near_2_63),
    Case("volume-1x1x1", tiny_volume(1)),
    Case("volume-2x2x2", tiny_volume(2)),
    Case("one-voxel-brain", one_voxel_brain),
    Case("fifo-input", fifo_input),
    Case("dev-zero-input", device_input),
    Case("model-nan-weights", model_case("nan.pt", _nan_weight, r"tensor '[^']+' holds 3 NaN")),
    Case("model-format-version-string", model_case(
        "version.pt", lambda p: p.update(format_version="1"), r"format_version is a str")),
    Case("model-no-config", model_case("noconfig.pt", lambda p: p.pop("config"), r"config is missing")),
    Case("model-config-string", model_case(
        "strconfig.pt", lambda p: p.update(config="t1->flair"), r"config is a str")),
    Case("model-metadata-string", model_case(
        "strmeta.pt", lambda p: p.update(metadata="none"), r"metadata is a str")),
    Case("output-dangling-symlink", dangling_symlink_output),
    Case("output-extension-txt", output_extension("flair.txt")),
    Case("output-extension-img", output_extension("flair.img")),
    Case("output-extension-hdr", output_extension("flair.hdr")),
    Case("output-extension-mgz", output_extension("flair.mgz")),
    Case("output-no-extension", output_extension("flair")),
    Case("threads-10000", too_many_threads),
]


CASES = [
    Case("truncated-gzip", truncated_gzip),
    Case("not-nifti", not_nifti),
    Case("empty-file", empty_file),
    Case("2d-image", image_2d),
    Case("4d-image-3-volumes", image_4d),
    Case("nan-voxels", nan_voxels),
    Case("inf-voxels", inf_voxels),
    Case("extreme-values-1e35", extreme_values),
    Case("all-zero-volume", all_zero),
    Case("zero-affine", zero_affine),
    Case("grid-shape-differs", other_shape),
    Case("grid-affine-shifted", shifted_affine),
    Case("missing-file", missing_file),
    Case("modality-model-lacks", modality_the_model_lacks),
    Case("existing-output-no-force", existing_output),
    Case("output-folder-missing", output_folder_missing),
    Case("out-dir-missing", out_dir_missing),
    Case("output-folder-read-only", output_folder_read_only),
    Case("output-is-an-input", output_is_an_input),
    Case("symlink-loop", symlink_loop),
    Case("disk-full", disk_full),
    *ISSUE_17_CASES,
]


# --------------------------------------------------------------------------------------------- the script


@dataclass
class Outcome:
    name: str
    code: int | None  # None: skipped
    expected: int
    message: str  # the stderr text, paths shortened to file names
    traceback: bool = False
    one_line: bool = True
    names_offender: bool = True
    matches_problem: bool = True
    input_unchanged: bool = True
    no_partial_output: bool = True
    skipped: str = ""

    @property
    def ok(self) -> bool:
        if self.skipped:
            return True
        return (self.code not in (0, None) and self.code == self.expected and not self.traceback and self.one_line
                and self.names_offender and self.matches_problem and self.input_unchanged and self.no_partial_output)


def mrimpute_command() -> list[str]:
    """The venv's `mrimpute` console script beside this interpreter, else `python -m mrimpute`."""
    script = Path(sys.executable).parent / "mrimpute"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mrimpute"]


def shorten(text: str, *paths: Path) -> str:
    """Replace every absolute path under the given roots by its file name."""
    for root in sorted({str(p) for p in paths}, key=len, reverse=True):
        text = re.sub(re.escape(root) + r"(/[^\s:;,()'\"]*)?",
                      lambda m: Path(m.group(0)).name or m.group(0), text)
    return text


def run_case(case: Case, workdir: Path, model: Path, timeout: float = 300) -> Outcome:
    """Build the case under workdir, run `mrimpute synth` on it in a subprocess, and judge the result."""
    root = workdir / case.name
    root.mkdir(parents=True)
    subject = write_subject(root / "subject")
    (root / "out").mkdir()
    try:
        try:
            bad = case.build(root, subject, model)
        except Skip as reason:
            return Outcome(case.name, None, case.code, "", skipped=str(reason))
        before = checksums(root, model)
        out_before = sorted(os.listdir(root / "out"))
        env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
        done = subprocess.run([*mrimpute_command(), "synth", *(str(a) for a in bad.args),
                               "--model", str(bad.model or model)],
                              capture_output=True, text=True, env=env, timeout=timeout,
                              preexec_fn=_full_disk_preexec if bad.full_disk else None)
        after = checksums(root, model)
        out_after = sorted(os.listdir(root / "out"))
    finally:
        release_folder(root / "out")
    stderr = done.stderr
    lines = stderr.strip("\n").splitlines()
    message = lines[0] if len(lines) == 1 else stderr.strip()
    scrubbed = message.replace(str(bad.offender), "<file>").replace(str(root), "<tmp>").replace(str(model), "<model>")
    return Outcome(
        name=case.name, code=done.returncode, expected=case.code,
        message=shorten(message, root, model.parent),
        traceback="Traceback" in stderr or "Traceback" in done.stdout,
        one_line=len(lines) == 1,
        names_offender=message.startswith(f"error: {bad.offender}: "),
        matches_problem=bool(re.search(bad.problem, scrubbed, re.IGNORECASE)),
        input_unchanged=after == before,
        no_partial_output=out_after == out_before,
    )


def run_corpus(cases: list[Case], model: Path | None, workdir: Path) -> list[Outcome]:
    """Run the cases (with a freshly built random model when model is None)."""
    if model is None:
        model = build_random_model(workdir / "model" / "random.pt")
    return [run_case(case, workdir / "cases", model.resolve()) for case in cases]


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def rows(outcomes: list[Outcome]) -> list[dict[str, str]]:
    table = []
    for o in outcomes:
        if o.skipped:
            table.append({"case": o.name, "exit code": "-", "message": f"skipped: {o.skipped}",
                          "input unchanged": "-", "no partial output": "-", "ok": "skipped"})
            continue
        problems = [text for bad, text in [(o.code == 0, "exit 0"), (o.code != o.expected, f"expected {o.expected}"),
                                           (o.traceback, "traceback"), (not o.one_line, "not one line"),
                                           (not o.names_offender, "offender not named first"),
                                           (not o.matches_problem, "problem not stated")] if bad]
        table.append({"case": o.name, "exit code": str(o.code), "message": o.message,
                      "input unchanged": _yes(o.input_unchanged), "no partial output": _yes(o.no_partial_output),
                      "ok": "yes" if o.ok else "NO: " + ", ".join(problems or ["see columns"])})
    return table


def print_table(table: list[dict[str, str]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(title=title)
    for key in table[0] if table else []:
        view.add_column(key, overflow="fold")
    for row in table:
        view.add_row(*row.values())
    Console(width=max(shutil.get_terminal_size((200, 24)).columns, 160)).print(view)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained model to use instead of a small random one")
    parser.add_argument("--csv", type=Path, help="also write the table as CSV here")
    parser.add_argument("--only", help="comma-separated case names to run (default: all)")
    args = parser.parse_args(argv)
    cases = CASES
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {c.name for c in CASES})
        if unknown:
            parser.error(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(c.name for c in CASES)}")
        cases = [c for c in CASES if c.name in wanted]
    if args.model is not None and not args.model.is_file():
        parser.error(f"{args.model}: model file not found")
    with tempfile.TemporaryDirectory(prefix="mrimpute-corpus-") as tmp:
        outcomes = run_corpus(cases, args.model, Path(tmp))
    table = rows(outcomes)
    print_table(table, "mrimpute synth: bad-input corpus")
    if args.csv is not None:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    failed = [o.name for o in outcomes if not o.ok]
    if failed:
        print(f"{len(failed)} case(s) misbehaved: {', '.join(failed)}", file=sys.stderr)
        return 1
    skipped = sum(1 for o in outcomes if o.skipped)
    print(f"{len(outcomes) - skipped} case(s) refused cleanly" + (f", {skipped} skipped" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
