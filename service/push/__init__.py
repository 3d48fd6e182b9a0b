"""WeChat's pushes to the server URL: verified, de-duplicated, acted on after the reply."""
