"""Latent cache: VAE latents of each training image, computed once, stored as safetensors files.

A file is named by the sample id and a hash of every setting that changes the tensor: the image's
content fingerprint, bucket, resize, crop, interpolation, normalisation, the VAE id and dtype. Change
any of them (e.g. the resolution) and the old file is simply not found. A random augmentation would
be frozen by a cache, so random crops are refused and flips need `flip_variant` (both stored).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captionary.core.atomic import write_atomic
from captionary.core.hashing import canonical_json
from captionary.core.locations import is_http
from captionary.errors import ConfigError
from captionary.loader.records import Record, WorkspaceImage

if TYPE_CHECKING:
    from captionary.loader.dataset import ImageCaptionDataset
    from captionary.loader.image_transforms import ImageTransform

VERSION = 2  # 2: JPEGs far above the bucket are decoded at a reduced DCT scale


class LatentCache:
    """`LatentCache(folder, vae, vae_id="stabilityai/sdxl-vae")`; pass it as `ImageCaptionDataset(latents=)`.

    Samples then carry `latents` (an `AutoencoderKL`'s posterior mean, or an `AutoencoderTiny`'s
    latents; not scaled by `scaling_factor`) instead of `pixel_values`. A miss encodes the image with
    `vae` (call `prepare(dataset)` first to encode everything in batches, pixels made in DataLoader
    workers; training workers then only read files). Without a `vae`, a miss is an error that says
    to prepare the cache.
    """

    def __init__(
        self,
        folder: str | Path,
        vae: Any = None,
        *,
        vae_id: str,
        flip_variant: bool = False,
        dtype: str = "float32",
        device: str = "cpu",
    ):
        self.folder = Path(folder)
        self.vae = vae
        self.vae_id = vae_id
        self.flip_variant = flip_variant
        self.dtype = dtype
        self.device = device
        self.encoded = 0  # VAE calls made by this object (in this process)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "vae": None}  # workers read files; the VAE stays in the main process

    def check(self, transform: ImageTransform) -> None:
        """Refuse settings under which a cached tensor would freeze a random augmentation."""
        if transform.crop == "random":
            raise ConfigError(
                "image.crop='random' with a latent cache would freeze one random crop for every epoch; "
                "use crop='center' or train without the latent cache"
            )
        if transform.flip_p > 0 and not self.flip_variant:
            raise ConfigError(
                f"image.flip_p={transform.flip_p} with a latent cache would freeze one flip for every epoch; "
                "pass LatentCache(flip_variant=True) to cache both variants, or set flip_p to 0"
            )
        if not transform.normalize:
            raise ConfigError(
                "a VAE expects pixels in [-1, 1]: image.normalize must be true with a latent cache"
            )

    def path(self, dataset: ImageCaptionDataset, index: int, geometry: dict[str, Any]) -> Path:
        record = dataset.records[index]
        settings = {
            "version": VERSION,
            "source": _fingerprint(record),
            "bucket": geometry["bucket"],
            "resized_size": geometry["resized_size"],
            "crop_top_left": geometry["crop_top_left"],
            "transform": {k: v for k, v in dataset.image_transform.settings().items() if k != "flip_p"},
            "flip_variant": self.flip_variant,
            "vae_id": self.vae_id,
            "dtype": self.dtype,
        }
        settings_hash = hashlib.blake2b(canonical_json(settings).encode(), digest_size=12).hexdigest()
        sample = hashlib.blake2b(record.id.encode(), digest_size=8).hexdigest()
        return self.folder / sample[:2] / f"{sample}-{settings_hash}.safetensors"

    def get(self, dataset: ImageCaptionDataset, index: int, geometry: dict[str, Any]) -> Any:
        """The sample's latents, from the file or (on a miss, with a VAE) encoded and stored."""
        from safetensors.torch import load_file

        path = self.path(dataset, index, geometry)
        if not path.exists():
            self._store(dataset, [index], [geometry], [path])
        tensors = load_file(path)
        return tensors["flipped" if geometry["flipped"] else "latents"]

    def prepare(
        self, dataset: ImageCaptionDataset, batch_size: int = 8, num_workers: int = 0, progress: bool = True
    ) -> int:
        """Encode every sample not cached yet, `batch_size` images of one bucket at a time (pixels made
        in `num_workers` DataLoader processes, the VAE in this one); returns how many were encoded."""
        import torch.utils.data
        from tqdm import tqdm

        todo: dict[tuple[int, int], list[tuple[int, dict[str, Any], Path]]] = {}
        for index in range(len(dataset)):
            geometry = {**dataset.geometry(index, 0), "flipped": False}
            path = self.path(dataset, index, geometry)
            if not path.exists():
                todo.setdefault(geometry["bucket"], []).append((index, geometry, path))
        entries = [entry for group in todo.values() for entry in group]
        batches, start = [], 0
        for group in todo.values():
            positions = list(range(start, start + len(group)))
            batches += [positions[i : i + batch_size] for i in range(0, len(positions), batch_size)]
            start += len(group)
        pixels = _Pixels(dataset, [(e[0], e[1]) for e in entries])
        loader = torch.utils.data.DataLoader(pixels, batch_sampler=batches, num_workers=num_workers)
        with tqdm(total=len(entries), desc="latents", disable=not progress or not entries) as bar:
            for positions, batch in zip(batches, loader):
                self._write(batch, [entries[p][2] for p in positions])
                bar.update(len(positions))
        return len(entries)

    def _store(
        self,
        dataset: ImageCaptionDataset,
        indices: list[int],
        geometries: list[dict[str, Any]],
        paths: list[Path],
    ) -> None:
        import torch

        if self.vae is None:
            record = dataset.records[indices[0]]
            raise ConfigError(
                f"latent cache miss for {record.where or record.id} "
                f"in {self.folder}: call LatentCache(..., vae=...).prepare(dataset) first"
            )
        pixels = torch.stack(
            [dataset.pixels(i, {**g, "flipped": False}) for i, g in zip(indices, geometries)]
        )
        self._write(pixels, paths)

    def _write(self, pixels: Any, paths: list[Path]) -> None:
        import torch
        from safetensors.torch import save

        if self.vae is None:
            raise ConfigError(f"LatentCache.prepare needs a VAE: LatentCache({self.folder}, vae=...)")
        tensors = {"latents": self._encode(pixels)}
        if self.flip_variant:
            tensors["flipped"] = self._encode(torch.flip(pixels, dims=[3]))
        for number, path in enumerate(paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            data = save(
                {k: v[number].contiguous() for k, v in tensors.items()}, metadata={"vae_id": self.vae_id}
            )
            write_atomic(str(path), data)

    def _encode(self, pixels: Any) -> Any:
        import torch

        dtype = getattr(torch, self.dtype)
        with torch.no_grad():
            output = self.vae.encode(pixels.to(self.device, dtype))
            self.encoded += pixels.shape[0]
            posterior = getattr(output, "latent_dist", None)  # AutoencoderKL: the posterior's mean
            latents = posterior.mode() if posterior is not None else output.latents  # AutoencoderTiny
            return latents.float().cpu()


class _Pixels:
    """The unflipped training tensors of the samples to encode (a map-style dataset for workers)."""

    def __init__(self, dataset: ImageCaptionDataset, entries: list[tuple[int, dict[str, Any]]]):
        self.dataset = dataset
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, position: int) -> Any:
        index, geometry = self.entries[position]
        return self.dataset.pixels(index, geometry)


def _fingerprint(record: Record) -> str:
    """What identifies the image's content: size + mtime of a file, the hash of bytes, an item's image."""
    image = record.image
    if isinstance(image, WorkspaceImage):
        return image.item.image_hash
    if isinstance(image, bytes):
        return hashlib.sha256(image).hexdigest()
    if is_http(image):
        return image
    stat = os.stat(image)
    return f"{stat.st_size}:{stat.st_mtime_ns}"
