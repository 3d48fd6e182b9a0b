"""wechat-oa-auth: sign users in through a WeChat Official Account."""
