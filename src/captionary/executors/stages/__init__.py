"""One stage per step kind; each runs in its own thread between two channels."""
