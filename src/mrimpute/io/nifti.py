"""Reading, checking and writing NIfTI volumes; internal arrays are in RAS+ voxel order."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from ..errors import GridMismatchError, InputError
from .atomic import write_atomically

CANONICAL = axcodes2ornt(("R", "A", "S"))
AFFINE_TOLERANCE_MM = 1e-3


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


def _read_image(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise InputError(f"{path}: {_missing_reason(path)}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a NIfTI file")
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: file is empty")
        image = nib.load(str(path))
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, gzip.BadGzipFile, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI file ({type(image).__name__})")
    return image


def _read_array(path: Path, image: nib.Nifti1Image) -> np.ndarray:
    try:
        data = np.asanyarray(image.dataobj)
    except (OSError, ValueError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: truncated or corrupt image data ({type(exc).__name__}: {exc})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {tuple(image.shape)}")
    if min(data.shape) < 1:
        raise InputError(f"{path}: volume has an empty axis, shape {tuple(image.shape)}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(f"{path}: unsupported voxel type {data.dtype}")
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
    _check_affine(path, image.affine)
    data = _read_array(path, image)
    if float(np.abs(data).max(initial=0.0)) > 1e30:
        raise InputError(f"{path}: voxel values beyond 1e30 cannot be processed")
    canonical = apply_orientation(data, _to_canonical_transform(image.affine))
    return Volume(path=path, image=image, data=np.ascontiguousarray(canonical, dtype=np.float32))


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


def save_like(data_canonical: np.ndarray, reference: Volume, path: str | Path, force: bool = False,
              dtype: type = np.float32) -> Path:
    """Write a RAS+ array on the reference's grid: same shape, affine, qform/sform and codes; float32 voxels
    (or `dtype`, e.g. uint8 for a label volume)."""
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

    def _write(tmp: Path) -> None:
        nib.save(image, str(tmp))

    write_atomically(path, _write, force=force)
    return path
