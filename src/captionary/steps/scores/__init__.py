"""Score steps: measure images (embeddings, aesthetic, nsfw, faces, text, watermarks) into properties."""
