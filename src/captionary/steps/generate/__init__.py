"""Steps and sources that make images from text: `generate_image`, `class_images`."""
