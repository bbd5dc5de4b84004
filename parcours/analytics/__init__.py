"""Analytics computed from the landed data."""
