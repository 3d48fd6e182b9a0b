"""Tokens without manual action: the base access_token, users' web tokens, their upkeep."""
