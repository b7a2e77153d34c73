"""Human steps: review tasks answered in the review app (filter, tag, caption)."""
