"""A tiny random vision-language network: token embeddings, an image projection added at the image
placeholder positions, one GRU layer, a language-model head, and greedy or sampled decoding."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


class TinyVLMConfig(PretrainedConfig):
    model_type = "tiny_vlm"

    def __init__(self, vocab_size: int = 64, hidden_size: int = 32, image_token_id: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.image_token_id = image_token_id


class TinyVLMBase(PreTrainedModel):
    config_class = TinyVLMConfig
    base_model_prefix = "tiny"
    main_input_name = "input_ids"

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.image_proj = nn.Linear(3 * 4 * 4, config.hidden_size)
        self.rnn = nn.GRU(config.hidden_size, config.hidden_size, batch_first=True)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        for p in module.parameters(recurse=False):
            nn.init.normal_(p, std=1.0)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, 3, H, W) -> (batch, hidden): the image pooled to 4x4, projected."""
        pooled = nn.functional.adaptive_avg_pool2d(pixel_values.float(), 4).flatten(1)
        return self.image_proj(pooled.to(self.image_proj.weight.dtype))

    def decode(
        self,
        input_ids: torch.Tensor,
        image_features: torch.Tensor | None,
        max_new_tokens: int,
        eos_token_id: int | list[int] | None,
        do_sample: bool = False,
        temperature: float | None = None,
        pad_token_id: int = 0,
        **unused: object,
    ) -> torch.Tensor:
        """The new tokens only, (batch, <= max_new_tokens); rows that ended are padded."""
        eos = set(eos_token_id if isinstance(eos_token_id, list) else [eos_token_id]) - {None}
        ids = input_ids.clamp(min=0)
        embeds = self.embed(ids)
        if image_features is not None:
            is_image = (input_ids == self.config.image_token_id) | (input_ids < 0)
            embeds = embeds + is_image.unsqueeze(-1) * image_features.unsqueeze(1)
        out, state = self.rnn(embeds)
        logits = self.head(out[:, -1])
        done = torch.zeros(len(ids), dtype=torch.bool)
        new = []
        for _ in range(max_new_tokens):
            if do_sample:
                probs = torch.softmax(logits / (temperature or 1.0), dim=-1)
                token = torch.multinomial(probs, 1).squeeze(1)
            else:
                token = logits.argmax(-1)
            token = torch.where(done, torch.full_like(token, pad_token_id), token)
            new.append(token)
            done |= torch.tensor([int(t) in eos for t in token])
            if bool(done.all()):
                break
            out, state = self.rnn(self.embed(token).unsqueeze(1), state)
            logits = self.head(out[:, -1])
        return torch.stack(new, dim=1)
