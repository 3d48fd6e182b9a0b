"""What every request passes through: the layer each handler runs in, rate limits, metrics,
page headers."""
