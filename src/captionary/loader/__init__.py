"""The training side: captionary exports (or a workspace) as PyTorch datasets.

from captionary.loader import BucketBatchSampler, ImageCaptionDataset, collate

dataset = ImageCaptionDataset("out/", buckets={"resolution": 1024, "max_bucket_reso": 2048})
sampler = BucketBatchSampler(dataset, batch_size=4, seed=0)
loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=2)

Needs `pip install 'captionary[loader]'` (torch); nothing here imports torch before it is used.
"""

from __future__ import annotations

from captionary.loader.buckets import BucketChoice, BucketConfig, Buckets, make_bucket_resolutions
from captionary.loader.caption_transforms import CaptionTransform
from captionary.loader.collate import collate
from captionary.loader.dataset import ImageCaptionDataset
from captionary.loader.image_transforms import ImageTransform
from captionary.loader.latents import LatentCache
from captionary.loader.preview import preview
from captionary.loader.readers import FORMATS, detect_format, read_records
from captionary.loader.records import Record
from captionary.loader.sampler import BucketBatchSampler, SampleKey
from captionary.loader.text_cache import TextEmbeddingCache
from captionary.loader.tokenizers import PRESETS, Tokenize

__all__ = [
    "FORMATS",
    "PRESETS",
    "BucketBatchSampler",
    "BucketChoice",
    "BucketConfig",
    "Buckets",
    "CaptionTransform",
    "ImageCaptionDataset",
    "ImageTransform",
    "LatentCache",
    "Record",
    "SampleKey",
    "TextEmbeddingCache",
    "Tokenize",
    "collate",
    "detect_format",
    "make_bucket_resolutions",
    "preview",
    "read_records",
]
