"""The account's base access_token handed to the team's other backends (WeChat's 中控服务器)."""
