"""Tagging steps: `tag` (WD14-style ONNX taggers) and what it is made of."""
