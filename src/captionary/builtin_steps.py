"""Where each builtin step is defined, so that `import captionary` imports none of them: a pipeline
imports the steps it names (the registry looks the name up here), `from captionary import Resize`
imports that one module, and `captionary steps` or a "did you mean" hint imports them all. A new
builtin step gets a line here; tests/test_step_contract.py fails until it has one."""

from __future__ import annotations

# step name: (module that defines and registers it, class name)
STEP_CLASSES: dict[str, tuple[str, str]] = {
    "add_tags": ("captionary.steps.captions.tags", "AddTags"),
    "aesthetic": ("captionary.steps.scores.aesthetic", "Aesthetic"),
    "apply": ("captionary.steps.custom.where", "Apply"),
    "caption": ("captionary.steps.vlm.caption", "Caption"),
    "caption_variations": ("captionary.steps.vlm.variations", "CaptionVariations"),
    "class_images": ("captionary.steps.generate.class_images", "ClassImages"),
    "clip_embed": ("captionary.steps.scores.clip_embed", "ClipEmbed"),
    "clip_score": ("captionary.steps.scores.clip_score", "ClipScore"),
    "compose_caption": ("captionary.steps.vlm.compose", "ComposeCaption"),
    "convert": ("captionary.steps.transforms.convert", "Convert"),
    "crop_boxes": ("captionary.steps.split.crop_boxes", "CropBoxes"),
    "crop_faces": ("captionary.steps.split.crop_faces", "CropFaces"),
    "crop_heads": ("captionary.steps.split.crop_heads", "CropHeads"),
    "crop_region": ("captionary.steps.transforms.region", "CropRegion"),
    "crop_to_aspect": ("captionary.steps.transforms.crop", "CropToAspect"),
    "dedup": ("captionary.steps.dedup.dedup", "Dedup"),
    "exact_dedup": ("captionary.steps.dedup.dedup", "ExactDedup"),
    "faces": ("captionary.steps.scores.faces", "Faces"),
    "filter": ("captionary.steps.custom.where", "FilterWhere"),
    "filter_by_aspect_ratio": ("captionary.steps.filters.aspect", "FilterByAspectRatio"),
    "filter_by_score": ("captionary.steps.scores.filter_by_score", "FilterByScore"),
    "filter_by_size": ("captionary.steps.filters.size", "FilterBySize"),
    "filter_monochrome": ("captionary.steps.filters.monochrome", "FilterMonochrome"),
    "flip": ("captionary.steps.split.flip", "Flip"),
    "generate_image": ("captionary.steps.generate.generate_image", "GenerateImage"),
    "human_caption": ("captionary.steps.human.human_caption", "HumanCaption"),
    "human_filter": ("captionary.steps.human.human_filter", "HumanFilter"),
    "human_rank": ("captionary.steps.human.human_rank", "HumanRank"),
    "human_tag": ("captionary.steps.human.human_tag", "HumanTag"),
    "load": ("captionary.sources.folder", "Load"),
    "load_booru": ("captionary.sources.web.booru", "LoadBooru"),
    "load_hf": ("captionary.sources.huggingface", "LoadHuggingFace"),
    "load_manifest": ("captionary.sources.manifest", "LoadManifest"),
    "load_prompts": ("captionary.sources.prompts", "LoadPrompts"),
    "load_webdataset": ("captionary.sources.webdataset", "LoadWebDataset"),
    "main_subject": ("captionary.steps.select.main_subject", "MainSubject"),
    "map_caption": ("captionary.steps.captions.map_caption", "MapCaption"),
    "mirror": ("captionary.steps.transforms.region", "Mirror"),
    "monochrome": ("captionary.steps.scores.monochrome", "Monochrome"),
    "nsfw": ("captionary.steps.scores.nsfw", "Nsfw"),
    "phash": ("captionary.steps.dedup.phash", "PerceptualHash"),
    "phash_windows": ("captionary.steps.dedup.phash", "WindowHashes"),
    "remove_tags": ("captionary.steps.captions.tags", "RemoveTags"),
    "resize": ("captionary.steps.transforms.resize", "Resize"),
    "rewrite_tags": ("captionary.steps.captions.tags", "RewriteTags"),
    "save": ("captionary.sinks.save", "Save"),
    "set_caption": ("captionary.steps.captions.set_caption", "SetCaption"),
    "sharpness": ("captionary.steps.scores.sharpness", "Sharpness"),
    "shuffle": ("captionary.steps.select.shuffle", "Shuffle"),
    "smart_filter": ("captionary.steps.scores.smart_filter", "SmartFilter"),
    "smart_tag": ("captionary.steps.tags.smart_tag", "SmartTag"),
    "split_persons": ("captionary.steps.split.split_persons", "SplitPersons"),
    "tag": ("captionary.steps.tags.tag", "Tag"),
    "take": ("captionary.steps.select.take", "Take"),
    "text_area": ("captionary.steps.scores.text_area", "TextArea"),
    "three_stage_split": ("captionary.steps.split.three_stage", "ThreeStageSplit"),
    "watermark": ("captionary.steps.scores.watermark", "Watermark"),
}

OTHER_EXPORTS: dict[str, str] = {
    "HumanStep": "captionary.steps.human.base",
    "ImageBatchStep": "captionary.pipeline.model_step",
    "ModelStep": "captionary.pipeline.model_step",
}
"""Public classes that are not steps themselves, imported when first used: class name -> module."""


def step_modules() -> dict[str, str]:
    """Step name -> the module that registers it when imported."""
    return {name: module for name, (module, _) in STEP_CLASSES.items()}


def lazy_exports() -> dict[str, str]:
    """Every name `captionary` exports lazily: class name -> the module that defines it."""
    return {cls: module for module, cls in STEP_CLASSES.values()} | OTHER_EXPORTS
