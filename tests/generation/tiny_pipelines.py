"""Tiny random-weight text-to-image pipelines built offline from configs (no hub, no download).

Each `build_*` writes a folder that `DiffusionPipeline.from_pretrained` / `AutoPipelineForText2Image`
load like a real checkpoint (`model_index.json`, one sub-folder per component): FLUX-shaped
(`FluxTransformer2DModel`, CLIP + T5 text encoders), SD3-shaped (`SD3Transformer2DModel`, two CLIPs +
T5) and SDXL-shaped (`UNet2DConditionModel`, two CLIPs). Tokenizers are word-level ones built from a
small corpus. A tiny pipeline makes a 32x32 image in well under a second on a CPU.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CORPUS = [
    "a photo of a dog sitting on the grass",
    "a red backpack on a wooden floor",
    "a cat lying on a sofa in the sun",
    "a teapot on a table",
    "a close-up photo of a person smiling",
    "a toy robot in front of a white wall",
    "a colorful sneaker and a blue car",
]


def word_tokenizer(max_length: int) -> Any:
    """A word-level fast tokenizer over CORPUS, padding to `max_length` (as CLIP's and T5's do)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    basics = ["<pad>", "</s>", "<unk>", "<s>"]
    words = sorted({w for line in CORPUS for w in re.findall(r"\w+|[^\w\s]", line.lower())})
    vocab = {t: i for i, t in enumerate([*basics, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=max_length,
    )


def _clip(tok: Any, projection: bool = False, hidden: int = 32) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def _t5(tok: Any, d_model: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(
        vocab_size=len(tok),
        d_model=d_model,
        d_ff=37,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    return T5EncoderModel(cfg).eval()


def _vae(latent_channels: int, blocks: tuple[int, ...] = (4,), **extra: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=1 if blocks == (4,) else 32,
        **{"sample_size": 32, **extra},
    )


def _save(pipe: Any, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out)
    return out


def build_flux(out: Path, seed: int = 0) -> Path:
    """A FLUX.1-dev-shaped pipeline (FluxPipeline): FluxTransformer2DModel, CLIP-L + T5 encoders."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,  # FLUX.1-dev: guidance_scale is an input of the transformer
    )
    vae = _vae(1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    tok, tok2 = word_tokenizer(77), word_tokenizer(32)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_clip(tok),
        tokenizer=tok,
        text_encoder_2=_t5(tok2),
        tokenizer_2=tok2,
        transformer=transformer,
    )
    return _save(pipe, out)


def build_sd3(out: Path, seed: int = 0) -> Path:
    """An SD3.5-shaped pipeline (StableDiffusion3Pipeline): SD3Transformer2DModel, two CLIPs + T5."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
    )
    vae = _vae(4, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    tok, tok2, tok3 = word_tokenizer(77), word_tokenizer(77), word_tokenizer(32)
    pipe = StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_clip(tok, projection=True),
        tokenizer=tok,
        text_encoder_2=_clip(tok2, projection=True),
        tokenizer_2=tok2,
        text_encoder_3=_t5(tok3),
        tokenizer_3=tok3,
        transformer=transformer,
    )
    return _save(pipe, out)


def build_sdxl(out: Path, seed: int = 0) -> Path:
    """An SDXL-shaped pipeline (StableDiffusionXLPipeline): UNet2DConditionModel, two CLIPs."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 * 8 time ids + 32 pooled text
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    vae = _vae(4, blocks=(32, 64), sample_size=128)
    tok, tok2 = word_tokenizer(77), word_tokenizer(77)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=_clip(tok),
        tokenizer=tok,
        text_encoder_2=_clip(tok2, projection=True),
        tokenizer_2=tok2,
        unet=unet,
        scheduler=scheduler,
    )
    return _save(pipe, out)


BUILDERS = {"flux": build_flux, "sd3": build_sd3, "sdxl": build_sdxl}


def _oom_backend() -> type:
    from captionary.backends.base import OutOfMemory
    from captionary.backends.diffusers import DiffusersBackend

    class FitsOne(DiffusersBackend):
        """A diffusers backend on a device that holds one image at a time: a larger batch raises
        OutOfMemory (as torch.OutOfMemoryError becomes in the real backend). Records batch sizes."""

        sizes: list[int] = []

        def generate(self, requests):  # type: ignore[no-untyped-def]
            FitsOne.sizes.append(len(requests))
            if len(requests) > 1:
                raise OutOfMemory(f"{len(requests)} images did not fit")
            return super().generate(requests)

    return FitsOne


EVENTS: list[str] = []


def _gpu_backend() -> type:
    from captionary.backends.diffusers import DiffusersBackend

    class OnGpu(DiffusersBackend):
        """Says its pipeline occupies `cuda:0` (it runs on the CPU here) and logs load and release, so a
        test sees the executor's device hand-off between model steps."""

        def accelerator(self) -> str | None:
            return "cuda:0"

        def load(self) -> None:
            if self.pipe is None:
                EVENTS.append("load generator")
            super().load()

        def close(self) -> None:
            if self.pipe is not None:
                EVENTS.append("release generator")
            super().close()

    return OnGpu


def __getattr__(name: str) -> Any:  # `backend: "tiny_pipelines:FitsOne"` imports diffusers lazily
    makers = {"FitsOne": _oom_backend, "OnGpu": _gpu_backend}
    if name in makers:
        globals()[name] = cls = makers[name]()
        return cls
    raise AttributeError(name)
