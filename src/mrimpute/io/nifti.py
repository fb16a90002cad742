"""Reading, checking and writing NIfTI volumes; internal arrays are in RAS+ voxel order."""

from __future__ import annotations

import contextlib
import gzip
import logging
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from ..errors import GridMismatchError, InputError, OutputError
from .atomic import write_atomically

CANONICAL = axcodes2ornt(("R", "A", "S"))
AFFINE_TOLERANCE_MM = 1e-3
MAX_AXIS = 1024  # voxels per axis a header may declare
MAX_VOXELS = 2**28  # voxels in all a header may declare (1 GiB as float32)
MIN_AXIS = 16  # at most one axis may be shorter than this (a thin slab is a volume; 2x2x2 is not)
MIN_BRAIN_VOXELS = 64  # nonzero voxels an input volume needs
MAX_INTEGER = 2**31  # integer voxel values beyond this are a wrong voxel type or wrapped negatives
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst")
NIBABEL_LOGGERS = ("nibabel", "nibabel.global")


@dataclass
class Volume:
    """A 3D volume: its data reordered to RAS+ axes, and the image it came from (header kept untouched)."""

    path: Path
    image: nib.Nifti1Image
    data: np.ndarray  # float32, RAS+ axis order

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.image.shape[:3])

    @property
    def affine(self) -> np.ndarray:
        return self.image.affine

    @property
    def orientation(self) -> str:
        return "".join(nib.aff2axcodes(self.affine))


def _to_canonical_transform(affine: np.ndarray) -> np.ndarray:
    return ornt_transform(io_orientation(affine), CANONICAL)


def _from_canonical_transform(affine: np.ndarray) -> np.ndarray:
    return ornt_transform(CANONICAL, io_orientation(affine))


def _missing_reason(path: Path) -> str:
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return "unreadable file (symlink loop)"
        except OSError:
            return "broken symlink (its target does not exist)"
    return "file not found"


def canonical_affine(volume: Volume) -> np.ndarray:
    """The voxel-to-world affine of volume.data (the RAS+-reordered array)."""
    return volume.affine @ inv_ornt_aff(_to_canonical_transform(volume.affine), volume.shape)


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Silence nibabel's own logging and warnings about a header while we read it (our error says it all)."""
    loggers = [logging.getLogger(name) for name in NIBABEL_LOGGERS]
    saved = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, disabled in zip(loggers, saved):
            logger.disabled = disabled


def _check_regular_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: {_missing_reason(path)}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a NIfTI file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (a FIFO, device or socket); give a NIfTI file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")


def _read_image(path: Path) -> nib.Nifti1Image:
    try:
        _check_regular_file(path)
        with _quiet_nibabel():
            image = nib.load(str(path))
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, gzip.BadGzipFile, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # nibabel raises HeaderDataError, KeyError, ... for a malformed header
        raise InputError(f"{path}: malformed NIfTI header ({type(exc).__name__}: {exc})") from None
    if not isinstance(image, (nib.Nifti1Pair, nib.Nifti2Pair)):  # the pairs' subclasses are the single files
        raise InputError(f"{path}: not a NIfTI file ({type(image).__name__})")
    return image


def _declared_shape(path: Path, image: nib.Nifti1Image) -> tuple[int, ...]:
    """The header's shape without trailing length-1 axes; refuse anything but a sane 3D grid."""
    full = tuple(int(n) for n in image.header.get_data_shape())
    shape = full
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {full}")
    if min(shape) < 1:
        raise InputError(f"{path}: volume has an empty axis, shape {full}")
    if max(shape) > MAX_AXIS:
        raise InputError(f"{path}: header declares shape {full}; at most {MAX_AXIS} voxels per axis are supported")
    if int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        raise InputError(f"{path}: header declares {int(np.prod(shape, dtype=np.int64))} voxels; at most "
                         f"{MAX_VOXELS} (2^28) are supported")
    if sum(n < MIN_AXIS for n in shape) >= 2:
        raise InputError(f"{path}: volume of shape {full} is too small (two axes under {MIN_AXIS} voxels)")
    return shape


def _check_file_length(path: Path, image: nib.Nifti1Image, shape: tuple[int, ...]) -> None:
    """An uncompressed image file must hold every voxel its header declares (checked before reading)."""
    data_file = Path(image.file_map["image"].filename or path)
    if data_file.name.endswith(COMPRESSED_SUFFIXES):
        return  # its length is known only by decompressing; MAX_VOXELS bounds the memory instead
    header = image.header
    needed = int(header.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * header.get_data_dtype().itemsize
    try:
        size = data_file.stat().st_size
    except OSError as exc:
        raise InputError(f"{data_file}: cannot read the image data ({exc.strerror or exc})") from None
    if size < needed:
        raise InputError(f"{data_file}: file is shorter ({size} bytes) than its header declares ({needed} bytes)")


def _check_scaling(path: Path, image: nib.Nifti1Image) -> None:
    slope = float(getattr(image.dataobj, "slope", 1.0))  # nibabel moves scl_slope from the header to the proxy
    if np.isfinite(slope) and slope < 0:
        raise InputError(f"{path}: negative scl_slope ({slope:g}) would invert the intensities")


def _check_header(path: Path, image: nib.Nifti1Image) -> None:
    """Everything that can be refused from the header alone, before any voxel is read."""
    shape = _declared_shape(path, image)
    _check_file_length(path, image, shape)
    _check_scaling(path, image)


def _check_integer_range(path: Path, data: np.ndarray) -> None:
    if np.issubdtype(data.dtype, np.integer) and data.size:
        low, high = int(data.min()), int(data.max())
        if high >= MAX_INTEGER or low < -MAX_INTEGER:
            extreme = high if high >= MAX_INTEGER else low
            raise InputError(f"{path}: integer voxel value {extreme} is outside the 32-bit range "
                             "(a wrong voxel type or wrapped negative values?)")


def _read_array(path: Path, image: nib.Nifti1Image) -> np.ndarray:
    try:
        with _quiet_nibabel():
            data = np.asanyarray(image.dataobj)
    except (OSError, ValueError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: truncated or corrupt image data ({type(exc).__name__}: {exc})") from None
    except MemoryError:
        raise InputError(f"{path}: not enough memory to read the image data") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {tuple(image.shape)}")
    if min(data.shape) < 1:
        raise InputError(f"{path}: volume has an empty axis, shape {tuple(image.shape)}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(f"{path}: unsupported voxel type {data.dtype}")
    _check_integer_range(path, data)
    data = data.astype(np.float32, copy=False) if data.dtype != np.float64 else data
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(f"{path}: {bad} voxels are NaN or Inf")
    return data


def _check_affine(path: Path, affine: np.ndarray) -> None:
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(f"{path}: the affine (voxel-to-world matrix) is singular or not finite")


def load_volume(path: str | Path) -> Volume:
    """Read a NIfTI volume, check it, and return its data reordered to RAS+ as float32."""
    path = Path(path)
    image = _read_image(path)
    _check_header(path, image)
    _check_affine(path, image.affine)
    data = _read_array(path, image)
    if float(np.abs(data).max(initial=0.0)) > 1e30:
        raise InputError(f"{path}: voxel values beyond 1e30 cannot be processed")
    canonical = apply_orientation(data, _to_canonical_transform(image.affine))
    return Volume(path=path, image=image, data=np.ascontiguousarray(canonical, dtype=np.float32))


def require_brain(volume: Volume) -> None:
    """Refuse an input whose brain (nonzero voxels) is too small to synthesise from."""
    count = int(np.count_nonzero(volume.data))
    if count == 0:
        raise InputError(f"{volume.path}: the volume is empty (every voxel is zero)")
    if count < MIN_BRAIN_VOXELS:
        raise InputError(f"{volume.path}: only {count} nonzero voxels; a brain needs at least {MIN_BRAIN_VOXELS}")


def require_finite(data: np.ndarray, path: str | Path) -> None:
    """Refuse to write an output with NaN or Inf voxels (a corrupt model or a numerical failure)."""
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise OutputError(f"{path}: the result has {bad} NaN or Inf voxels; nothing was written "
                         "(is the model corrupt?)")


def check_same_grid(volumes: list[Volume]) -> None:
    """Refuse volumes that do not share one grid (shape and affine within AFFINE_TOLERANCE_MM)."""
    reference = volumes[0]
    for other in volumes[1:]:
        if other.shape != reference.shape:
            raise GridMismatchError(
                f"{other.path}: grid shape {other.shape} differs from {reference.path} {reference.shape}; "
                "co-register the inputs first")
        if not np.allclose(other.affine, reference.affine, atol=AFFINE_TOLERANCE_MM):
            raise GridMismatchError(
                f"{other.path}: voxel-to-world affine differs from {reference.path}; "
                "the inputs are not on one grid (co-register them first)")


DESCRIP_BYTES = 79  # NIfTI-1 descrip is char[80]: at most 79 bytes and a terminating NUL


def fit_descrip(text: str) -> bytes:
    """A description as a NIfTI descrip: ASCII (other characters as '?'), cut to DESCRIP_BYTES."""
    return text.encode("ascii", "replace")[:DESCRIP_BYTES]


def save_like(data_canonical: np.ndarray, reference: Volume, path: str | Path, force: bool = False,
              dtype: type = np.float32, descrip: str | None = None) -> Path:
    """Write a RAS+ array on the reference's grid: same shape, affine, qform/sform and codes; float32 voxels
    (or `dtype`, e.g. uint8 for a label volume). cal_min/cal_max are the written array's own range (never the
    reference's display window); `descrip` replaces the reference's description (cut to 79 bytes)."""
    path = Path(path)
    array = apply_orientation(data_canonical, _from_canonical_transform(reference.affine))
    if tuple(array.shape) != reference.shape:
        raise ValueError(f"array shape {array.shape} does not match reference grid {reference.shape}")
    header = reference.image.header.copy()
    header.set_data_dtype(dtype)
    unused_pixdim = header["pixdim"][4:].copy()
    header.set_data_shape(reference.shape)
    header["pixdim"][4:] = unused_pixdim  # set_data_shape resets them to 1; scanners often write 0
    image = type(reference.image)(np.asarray(array, dtype=dtype), reference.image.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    finite = np.asarray(array)[np.isfinite(array)] if np.size(array) else np.zeros(1)
    image.header["cal_min"] = float(finite.min()) if finite.size else 0.0
    image.header["cal_max"] = float(finite.max()) if finite.size else 0.0
    if descrip is not None:
        image.header["descrip"] = fit_descrip(descrip)

    def _write(tmp: Path) -> None:
        nib.save(image, str(tmp))

    write_atomically(path, _write, force=force)
    return path
