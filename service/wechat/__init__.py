"""WeChat API access."""
