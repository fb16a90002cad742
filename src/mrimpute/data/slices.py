"""2D training samples: random crops of slices that contain brain, and a fixed validation set.

Subjects may have different contrasts: they are grouped by the contrasts they have, and each batch comes from one
group (chosen in proportion to its slices), so a batch's planes are the same for every crop in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .subjects import LoadedSubject

MIN_BRAIN_FRACTION = 0.02  # of the slice's area: emptier slices are not trained on
MIN_LESION_VOXELS = 10  # a lesion component smaller than this (mm³ at 1 mm) is not a crop centre of its own
LESION_SAMPLINGS = ("voxel", "component")
LESION_PLANE = "lesion"
TARGET_PREFIX = "target:"  # a plane holding a contrast in decoder-target units (the plain name: encoder units)


@dataclass
class _Stack:
    """One subject's planes cut to its brain's box: (planes, slices, height, width), the brain and lesion masks."""

    planes: np.ndarray
    mask: np.ndarray
    lesion: np.ndarray | None
    group: tuple[str, ...]


def _window(image: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    """image[:, y0:y0+size, x0:x0+size] with zeros wherever the window reaches beyond the image."""
    out = np.zeros((image.shape[0], size, size), dtype=image.dtype)
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(image.shape[1], y0 + size), min(image.shape[2], x0 + size)
    if ye > ys and xe > xs:
        out[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = image[:, ys:ye, xs:xe]
    return out


class SliceSampler:
    """Draws batches of random crops (brain-centred, random left-right flip) from loaded subjects."""

    def __init__(self, subjects: list[LoadedSubject], modalities: list[str], axis: int, crop: int,
                 lesion: bool = False, lesion_fraction: float = 0.0, targets: bool = False, margin: int = 0,
                 lesion_sampling: str = "voxel") -> None:
        """With `lesion`, each sample carries the subject's lesion mask as the last plane, and about
        `lesion_fraction` of the crops are centred on a lesion voxel (lesions are a small part of the brain:
        without this a model rarely sees one): any slice with lesion, then a lesion voxel in it ("voxel"), or any
        connected lesion (3D, at least MIN_LESION_VOXELS), then a voxel of it ("component": forty small MS
        lesions then count forty times where one tumour counts once). With `targets`, each contrast also comes in
        decoder-target units (planes `target:<contrast>` after the encoder planes). `margin` widens every crop by
        that many pixels on each side (room for a spatial augmentation to rotate into). Subjects lacking some of
        `modalities` train with what they have."""
        if not 0.0 <= lesion_fraction <= 1.0:
            raise ValueError("the lesion fraction must be between 0 and 1")
        if lesion_sampling not in LESION_SAMPLINGS:
            raise ValueError(f"lesion sampling {lesion_sampling!r}: expected {' or '.join(LESION_SAMPLINGS)}")
        self.modalities, self.axis, self.crop, self.margin = list(modalities), axis, crop, margin
        self.lesion, self.targets = lesion, targets
        self.lesion_fraction = lesion_fraction if lesion else 0.0
        self.lesion_sampling = lesion_sampling
        self.stacks: list[_Stack] = []
        self.slices: dict[tuple[str, ...], list[tuple[int, int]]] = {}  # group -> (stack, slice) with brain
        self.lesion_slices: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        self.lesion_components: dict[tuple[str, ...], list[tuple[int, np.ndarray]]] = {}  # (stack, voxels (n, 3))
        for subject in subjects:
            self.add(subject)

    def plane_names(self, group: tuple[str, ...]) -> list[str]:
        """The planes of a batch from one group, in order."""
        return list(group) + ([TARGET_PREFIX + m for m in group] if self.targets else []) + \
            ([LESION_PLANE] if self.lesion else [])

    def add(self, subject: LoadedSubject) -> None:
        """Keep one subject's brain box (the caller may then drop the subject's whole volumes)."""
        if self.lesion and subject.lesion is None:
            raise ValueError("lesion planes asked for, but a subject was loaded without its lesion mask")
        group = tuple(m for m in self.modalities if m in subject.volumes)
        if not group:
            return
        mask = np.moveaxis(subject.mask, self.axis, 0)
        area = mask.shape[1] * mask.shape[2]
        keep = np.flatnonzero(mask.reshape(mask.shape[0], -1).sum(axis=1) > MIN_BRAIN_FRACTION * area)
        if not keep.size:
            return
        rows = np.flatnonzero(mask.any(axis=(0, 2)))
        cols = np.flatnonzero(mask.any(axis=(0, 1)))
        box = (slice(int(keep[0]), int(keep[-1]) + 1), slice(int(rows[0]), int(rows[-1]) + 1),
               slice(int(cols[0]), int(cols[-1]) + 1))
        volumes = [subject.volumes[m] for m in group]
        volumes += [subject.targets[m] for m in group] if self.targets else []
        volumes += [subject.lesion.astype(np.float32)] if self.lesion else []
        planes = np.stack([np.ascontiguousarray(np.moveaxis(v, self.axis, 0)[box]) for v in volumes])
        lesion = np.moveaxis(subject.lesion, self.axis, 0)[box] > 0 if self.lesion_fraction else None
        index = len(self.stacks)
        self.stacks.append(_Stack(planes, np.ascontiguousarray(mask[box]), lesion, group))
        self.slices.setdefault(group, []).extend((index, int(k - keep[0])) for k in keep)
        if lesion is not None:
            self.lesion_slices.setdefault(group, []).extend(
                (index, int(k)) for k in np.flatnonzero(lesion.reshape(lesion.shape[0], -1).any(axis=1)))
            if self.lesion_sampling == "component":
                self.lesion_components.setdefault(group, []).extend(
                    (index, voxels) for voxels in _components(lesion))

    @property
    def groups(self) -> list[tuple[str, ...]]:
        return list(self.slices)

    def _crop(self, stack: int, index: int, rng: np.random.Generator, on_lesion: bool = False) -> np.ndarray:
        entry = self.stacks[stack]
        mask = (entry.lesion if on_lesion else entry.mask)[index]
        ys, xs = np.nonzero(mask)
        pick = rng.integers(len(ys))
        return self._crop_at(stack, index, int(ys[pick]), int(xs[pick]), rng)

    def _crop_at(self, stack: int, index: int, y: int, x: int, rng: np.random.Generator) -> np.ndarray:
        """The crop centred on (y, x) of one slice, flipped left-right half of the time."""
        size = self.crop + 2 * self.margin
        patch = _window(self.stacks[stack].planes[:, index], y - size // 2, x - size // 2, size)
        return patch[:, :, ::-1] if rng.random() < 0.5 else patch

    def _lesion_crop(self, group: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
        """A crop centred on a lesion voxel, drawn as lesion_sampling says."""
        components = self.lesion_components.get(group)
        if not components:
            slices = self.lesion_slices[group]
            return self._crop(*slices[rng.integers(len(slices))], rng, True)
        stack, voxels = components[rng.integers(len(components))]
        k, y, x = (int(v) for v in voxels[rng.integers(len(voxels))])
        return self._crop_at(stack, k, y, x, rng)

    def _group(self, rng: np.random.Generator) -> tuple[str, ...]:
        groups = self.groups
        if len(groups) == 1:
            return groups[0]
        if not groups:
            raise ValueError("no slice of the training set contains brain")
        counts = np.array([len(self.slices[g]) for g in groups], dtype=float)
        return groups[int(rng.choice(len(groups), p=counts / counts.sum()))]

    def batch_with_planes(self, size: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
        """The plane names and an array (planes, batch, crop, crop) of random crops from one group."""
        group = self._group(rng)
        slices, lesion_slices = self.slices[group], self.lesion_slices.get(group, [])
        picks = rng.integers(len(slices), size=size)
        if not (self.lesion_fraction and lesion_slices):  # the plain draw
            return self.plane_names(group), np.stack([self._crop(*slices[p], rng) for p in picks], axis=1)
        on_lesion = rng.random(size) < self.lesion_fraction
        crops = [self._lesion_crop(group, rng) if hit else self._crop(*slices[p], rng)
                 for p, hit in zip(picks, on_lesion)]
        return self.plane_names(group), np.stack(crops, axis=1)

    def batch(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """An array (planes, batch, crop, crop) of random crops (see plane_names for the planes)."""
        return self.batch_with_planes(size, rng)[1]


def _components(lesion: np.ndarray) -> list[np.ndarray]:
    """The voxels (n, 3) of each connected lesion (26-connected) of at least MIN_LESION_VOXELS voxels."""
    labels, count = ndimage.label(lesion, structure=np.ones((3, 3, 3), dtype=bool))
    if not count:
        return []
    order = np.argsort(labels, axis=None, kind="stable")
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    starts = np.cumsum(sizes)[:-1]
    coordinates = np.stack(np.unravel_index(order, labels.shape), axis=1).astype(np.int32)
    return [coordinates[starts[i - 1]:starts[i - 1] + sizes[i]] for i in range(1, count + 1)
            if sizes[i] >= MIN_LESION_VOXELS]


def validation_batches(sampler: SliceSampler, count: int, batch_size: int, seed: int
                       ) -> list[tuple[list[str], np.ndarray]]:
    """A fixed set of crops for validation, the same every epoch: (plane names, array) per batch."""
    rng = np.random.default_rng(seed)
    batches, left = [], count
    while left > 0:
        batches.append(sampler.batch_with_planes(min(batch_size, left), rng))
        left -= batch_size
    return batches
