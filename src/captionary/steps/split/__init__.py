"""Fan-out steps: each input makes new items (crops, flipped copies)."""
