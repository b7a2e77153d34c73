"""captionary: prepare image datasets for text-to-image fine-tuning.

from captionary import Load, FilterBySize, Resize, Save, Workspace

with Workspace("ws") as ws:
    ws.run(Load("photos") >> FilterBySize(min_edge=512) >> Resize(max_edge=1024) >> Save("out"))
"""

from __future__ import annotations

import importlib
import typing

from captionary import builtin_steps as _builtin_steps
from captionary import orchestration  # noqa: F401  registers how Workspace.run runs pipelines
from captionary.core.item import Item
from captionary.core.workspace import Workspace
from captionary.errors import (
    CaptionaryError,
    ConfigError,
    ItemError,
    ParamError,
    PipelineWarning,
    RegistryError,
    RunAborted,
    UnknownStepError,
    WorkspaceError,
)
from captionary.executors.summary import RunSummary, StepStats
from captionary.pipeline.function_step import step
from captionary.pipeline.pipeline import Pipeline, concat
from captionary.pipeline.registry import STEPS
from captionary.pipeline.step import (
    BatchStep,
    Child,
    FanOut,
    Filter,
    GlobalStep,
    ImageMap,
    Map,
    Outcome,
    Runtime,
    Sink,
    Source,
    Step,
)
from captionary.pipeline.yaml_loader import load_pipeline, parse_pipeline
from captionary.review import serve as _review_serve  # noqa: F401  registers the review app host

STEPS.declare(_builtin_steps.step_modules())
_LAZY = _builtin_steps.lazy_exports()

if typing.TYPE_CHECKING:  # for type checkers and editors; at run time each is imported when first used
    from captionary.pipeline.model_step import ImageBatchStep, ModelStep
    from captionary.sinks.save import Save
    from captionary.sources.folder import Load
    from captionary.sources.huggingface import LoadHuggingFace
    from captionary.sources.manifest import LoadManifest
    from captionary.sources.prompts import LoadPrompts
    from captionary.sources.web.booru import LoadBooru
    from captionary.sources.webdataset import LoadWebDataset
    from captionary.steps.captions.map_caption import MapCaption
    from captionary.steps.captions.set_caption import SetCaption
    from captionary.steps.captions.tags import AddTags, RemoveTags, RewriteTags
    from captionary.steps.custom.where import Apply, FilterWhere
    from captionary.steps.dedup.dedup import Dedup, ExactDedup
    from captionary.steps.dedup.phash import PerceptualHash, WindowHashes
    from captionary.steps.filters.aspect import FilterByAspectRatio
    from captionary.steps.filters.monochrome import FilterMonochrome
    from captionary.steps.filters.size import FilterBySize
    from captionary.steps.generate.class_images import ClassImages
    from captionary.steps.generate.generate_image import GenerateImage
    from captionary.steps.human.base import HumanStep
    from captionary.steps.human.human_caption import HumanCaption
    from captionary.steps.human.human_filter import HumanFilter
    from captionary.steps.human.human_rank import HumanRank
    from captionary.steps.human.human_tag import HumanTag
    from captionary.steps.scores.aesthetic import Aesthetic
    from captionary.steps.scores.clip_embed import ClipEmbed
    from captionary.steps.scores.clip_score import ClipScore
    from captionary.steps.scores.faces import Faces
    from captionary.steps.scores.filter_by_score import FilterByScore
    from captionary.steps.scores.monochrome import Monochrome
    from captionary.steps.scores.nsfw import Nsfw
    from captionary.steps.scores.sharpness import Sharpness
    from captionary.steps.scores.smart_filter import SmartFilter
    from captionary.steps.scores.text_area import TextArea
    from captionary.steps.scores.watermark import Watermark
    from captionary.steps.select.main_subject import MainSubject
    from captionary.steps.select.shuffle import Shuffle
    from captionary.steps.select.take import Take
    from captionary.steps.split.crop_boxes import CropBoxes
    from captionary.steps.split.crop_faces import CropFaces
    from captionary.steps.split.crop_heads import CropHeads
    from captionary.steps.split.flip import Flip
    from captionary.steps.split.split_persons import SplitPersons
    from captionary.steps.split.three_stage import ThreeStageSplit
    from captionary.steps.tags.smart_tag import SmartTag
    from captionary.steps.tags.tag import Tag
    from captionary.steps.transforms.convert import Convert
    from captionary.steps.transforms.crop import CropToAspect
    from captionary.steps.transforms.region import CropRegion, Mirror
    from captionary.steps.transforms.resize import Resize
    from captionary.steps.vlm.caption import Caption
    from captionary.steps.vlm.compose import ComposeCaption
    from captionary.steps.vlm.variations import CaptionVariations

__version__ = "0.1.0"


def __getattr__(name: str) -> typing.Any:
    """A step class (or another class of captionary/builtin_steps.py), imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'captionary' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(globals().keys() | _LAZY.keys())


__all__ = [
    "STEPS",
    "AddTags",
    "Aesthetic",
    "Apply",
    "BatchStep",
    "Caption",
    "CaptionVariations",
    "CaptionaryError",
    "Child",
    "ClassImages",
    "ClipEmbed",
    "ClipScore",
    "ComposeCaption",
    "ConfigError",
    "Convert",
    "CropBoxes",
    "CropFaces",
    "CropHeads",
    "CropRegion",
    "CropToAspect",
    "Dedup",
    "ExactDedup",
    "Faces",
    "FanOut",
    "Filter",
    "FilterByAspectRatio",
    "FilterByScore",
    "FilterBySize",
    "FilterMonochrome",
    "FilterWhere",
    "Flip",
    "GenerateImage",
    "GlobalStep",
    "HumanCaption",
    "HumanFilter",
    "HumanRank",
    "HumanStep",
    "HumanTag",
    "ImageBatchStep",
    "ImageMap",
    "Item",
    "ItemError",
    "Load",
    "LoadBooru",
    "LoadHuggingFace",
    "LoadManifest",
    "LoadPrompts",
    "LoadWebDataset",
    "MainSubject",
    "Map",
    "MapCaption",
    "Mirror",
    "ModelStep",
    "Monochrome",
    "Nsfw",
    "Outcome",
    "ParamError",
    "PerceptualHash",
    "Pipeline",
    "PipelineWarning",
    "RegistryError",
    "RemoveTags",
    "Resize",
    "RewriteTags",
    "RunAborted",
    "RunSummary",
    "Runtime",
    "Save",
    "SetCaption",
    "Sharpness",
    "Shuffle",
    "Sink",
    "SmartFilter",
    "SmartTag",
    "Source",
    "SplitPersons",
    "Step",
    "StepStats",
    "Tag",
    "Take",
    "TextArea",
    "ThreeStageSplit",
    "UnknownStepError",
    "Watermark",
    "WindowHashes",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "concat",
    "load_pipeline",
    "parse_pipeline",
    "step",
]
