"""What every request passes through: the middleware, rate limits, metrics, page headers."""
