"""The JS-SDK area: wx.config signatures for an app's pages (/wechat/jssdk/config)."""
