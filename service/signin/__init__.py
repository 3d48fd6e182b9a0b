"""Web authorization (OAuth2): authorize, login, retry, the code exchange, the callback page."""
