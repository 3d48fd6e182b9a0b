"""For operators: health and readiness, metrics, token status, the API document and its page."""
