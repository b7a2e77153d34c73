"""Remote code of tiny random models (copied into a model folder next to `config.json`, whose
`auto_map` names them), mimicking the interface of models that ship their own code: Phi-3-Vision,
Molmo and BLIP-3 (xGen-MM). The network inside is tiny_core.TinyVLM, shared by all three."""
