/* Demo landing page: decode (not verify: the service does that) the JWT in the fragment. */
(function () {
  "use strict";
  var strings = {};
  try {
    strings = JSON.parse(document.getElementById("page-strings").textContent) || {};
  } catch (e) {
    strings = {};
  }

  // The text of `key` (landing.json, in the page's language) with its {names} filled in.
  function t(key, values) {
    var text = Object.prototype.hasOwnProperty.call(strings, "landing." + key) ?
      strings["landing." + key] : key;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  var fragment = window.location.hash.replace(/^#/, "");
  var params = {};
  fragment.split("&").forEach(function (pair) {
    var i = pair.indexOf("=");
    if (i > 0) {
      try {
        params[pair.slice(0, i)] = decodeURIComponent(pair.slice(i + 1));
      } catch (e) {
        params[pair.slice(0, i)] = "";  // a broken escape: treated as absent
      }
    }
  });
  var token = params.token;
  if (!token) {
    document.getElementById("landing-title").textContent = t("no_token.title");
    document.getElementById("landing-text").textContent = t("no_token.text");
    return;
  }
  // Keep the token out of the address bar and the history once read.
  history.replaceState(null, "", window.location.pathname);

  function b64url(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var bytes = atob(b64);
    var escaped = "";
    for (var i = 0; i < bytes.length; i++) {
      escaped += "%" + ("0" + bytes.charCodeAt(i).toString(16)).slice(-2);
    }
    return decodeURIComponent(escaped);
  }

  var claims = JSON.parse(b64url(token.split(".")[1]));
  var table = document.getElementById("claims");
  Object.keys(claims).forEach(function (key) {
    var row = table.insertRow();
    row.insertCell().textContent = key;
    var value = claims[key];
    if ((key === "iat" || key === "exp") && typeof value === "number") {
      value = value + " (" + new Date(value * 1000).toISOString() + ")";
    }
    row.insertCell().textContent = String(value);
  });
  var row = table.insertRow();
  row.insertCell().textContent = "expiresIn";
  row.insertCell().textContent = t("seconds", { seconds: params.expiresIn });
  document.getElementById("raw-token").textContent = token;
})();
