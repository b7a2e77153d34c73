"""Steps that generate text with a model backend: `caption`, `compose_caption`, `caption_variations`."""
