"""One small adapter per site family (URL patterns, paging, fields)."""
