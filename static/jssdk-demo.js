/* Sandbox demo: sign this page's URL with /wechat/jssdk/config and run wx.config with it. */
(function () {
  "use strict";
  var strings = {};
  try {
    strings = JSON.parse(document.getElementById("page-strings").textContent) || {};
  } catch (e) {
    strings = {};
  }

  function t(key, values) {
    var text = Object.prototype.hasOwnProperty.call(strings, "jssdk." + key) ? strings["jssdk." + key] : key;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  var status = document.getElementById("jssdk-status");
  var error = document.getElementById("jssdk-error");

  function failed(message) {
    status.textContent = t("failed", { message: message });
    status.setAttribute("data-result", "error");
    error.textContent = message;
    error.classList.remove("hidden");
  }

  // The URL as WeChat signs it: the page's, without its #fragment (the service drops it too).
  var xhr = new XMLHttpRequest();
  xhr.open("GET", "/wechat/jssdk/config?url=" + encodeURIComponent(window.location.href), true);
  xhr.onload = function () {
    var body;
    try {
      body = JSON.parse(xhr.responseText);
    } catch (e) {
      failed("HTTP " + xhr.status);
      return;
    }
    if (xhr.status !== 200) {
      failed(body.name + ": " + body.message);
      return;
    }
    status.textContent = t("configuring");
    window.wx.ready(function () {
      status.textContent = t("ok");
      status.setAttribute("data-result", "ok");
    });
    window.wx.error(function (res) {
      failed(res.errMsg);
    });
    window.wx.config({
      debug: false,
      appId: body.appId,
      timestamp: body.timestamp,
      nonceStr: body.nonceStr,
      signature: body.signature,
      jsApiList: ["updateAppMessageShareData"]
    });
  };
  xhr.onerror = function () {
    failed("network error");
  };
  xhr.send();
})();
