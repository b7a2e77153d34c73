"""Deduplication: exact (same pixels), perceptual-hash near duplicates, and semantic (embeddings)."""
