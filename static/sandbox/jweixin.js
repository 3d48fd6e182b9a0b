/* The emulator's stand-in for WeChat's jweixin.js: wx.config, wx.ready and wx.error only.
 *
 * As the real JS-SDK has WeChat check wx.config's signature, this one asks the emulator
 * (POST <emulator>/_sandbox/jssdk/verify) with the page's URL (without its #fragment) and the
 * values given to wx.config; then it runs the wx.ready callbacks, or the wx.error ones with
 * {errMsg: "config:invalid signature"}. The emulator's base is where this script was served. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = script ? script.src.replace(/_sandbox\/static\/jweixin\.js(\?.*)?$/, "") : "/sandbox/";
  var readyCallbacks = [];
  var errorCallbacks = [];
  var outcome = null; // {ok, errMsg} once the check answered

  function settle(result) {
    outcome = result;
    var callbacks = result.ok ? readyCallbacks : errorCallbacks;
    for (var i = 0; i < callbacks.length; i++) {
      callbacks[i](result.ok ? undefined : { errMsg: result.errMsg });
    }
  }

  window.wx = {
    config: function (options) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", base + "_sandbox/jssdk/verify", true);
      xhr.setRequestHeader("Content-Type", "application/json");
      xhr.onload = function () {
        var body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (e) {
          body = null;
        }
        settle(body && typeof body.ok === "boolean" ? body : { ok: false, errMsg: "config:fail" });
      };
      xhr.onerror = function () {
        settle({ ok: false, errMsg: "config:fail" });
      };
      xhr.send(
        JSON.stringify({
          appId: options.appId,
          timestamp: String(options.timestamp),
          nonceStr: options.nonceStr,
          signature: options.signature,
          url: window.location.href.split("#")[0]
        })
      );
    },
    ready: function (callback) {
      readyCallbacks.push(callback);
      if (outcome && outcome.ok) callback();
    },
    error: function (callback) {
      errorCallbacks.push(callback);
      if (outcome && !outcome.ok) callback({ errMsg: outcome.errMsg });
    }
  };
})();
