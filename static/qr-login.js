/* Desktop "scan to sign in": create a session, show its QR code, long-poll until confirmed. */
(function () {
  "use strict";
  var POLL_SECONDS = 25;
  var strings = {};
  try {
    strings = JSON.parse(document.getElementById("page-strings").textContent) || {};
  } catch (e) {
    strings = {};
  }

  // The text of `key` (qr.json, in the page's language) with its {names} filled in.
  function t(key, values) {
    var text = Object.prototype.hasOwnProperty.call(strings, "qr." + key) ? strings["qr." + key] : key;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  var reference = document.getElementById("qr-ref");
  var image = document.getElementById("qr-image");
  var status = document.getElementById("qr-status");
  var error = document.getElementById("qr-error");
  var renew = document.getElementById("qr-renew");
  var phone = document.getElementById("qr-phone");
  var origin = window.location.protocol + "//" + window.location.host;

  function request(method, url, done) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, url, true);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.onload = function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      done(xhr.status, body, xhr);
    };
    xhr.onerror = function () { done(0, null, xhr); };
    xhr.send();
  }

  // Say what went wrong, with the answer's id (which the service logs) when there is one.
  function fail(message, ref) {
    error.textContent = message;
    error.className = "error";
    document.getElementById("qr-ref-id").textContent = ref || "";
    reference.className = ref ? "muted small" : "muted small hidden";
    renew.className = "";
  }

  // An error answer (not a session's state) in the reader's language.
  function failedAnswer(code, body, xhr, fallback) {
    var ref = body && body.id;
    if (code === 429) {
      var seconds = parseInt(xhr.getResponseHeader("Retry-After"), 10);
      fail(t("rate", { seconds: isNaN(seconds) ? 5 : seconds }), ref);
    } else {
      fail(t(fallback, { status: code }), ref);
    }
  }

  function poll(session) {
    request("GET", session.poll + "?wait=" + POLL_SECONDS, function (code, body, xhr) {
      if (code === 200 && body && body.status === "confirmed") {
        status.textContent = t("signed_in");
        window.location.replace("/demo/landing#token=" + encodeURIComponent(body.token) +
          "&tokenType=" + encodeURIComponent(body.tokenType) +
          "&expiresIn=" + encodeURIComponent(body.expiresIn));
      } else if (code === 200 && body && body.status === "expired") {
        status.textContent = t("expired");
        image.className = "hidden";
        renew.className = "primary";
      } else if (code === 200 && body && body.status === "scanned" && body.problem) {
        // WeChat did not confirm that the scanner follows the account: this code is done.
        status.textContent = t("not_signed_in");
        image.className = "hidden";
        var known = "problem." + body.problem.code;
        fail(Object.prototype.hasOwnProperty.call(strings, "qr." + known) ? t(known) : body.problem.message);
      } else if (code === 200 && body) {
        status.textContent = t(body.status === "scanned" ? "scanned" : "waiting");
        poll(session);
      } else if (code === 0) {
        // The network dropped the long poll; try again shortly.
        window.setTimeout(function () { poll(session); }, 2000);
      } else {
        failedAnswer(code, body, xhr, "failed");
      }
    });
  }

  function start() {
    error.className = "error hidden";
    reference.className = "muted small hidden";
    renew.className = "hidden";
    status.textContent = t("creating");
    var url = "/wechat/qrcode/login?redirectUri=" + encodeURIComponent(origin + "/demo/landing");
    request("POST", url, function (code, body, xhr) {
      if (code !== 201 || !body) {
        failedAnswer(code, body, xhr, "create_failed");
        return;
      }
      image.src = body.image;
      image.className = "";
      phone.href = "/sandbox/_sandbox/phone?ticket=" + encodeURIComponent(body.ticket);
      phone.className = "button";
      status.textContent = t("waiting");
      poll(body);
    });
  }

  renew.addEventListener("click", start);
  start();
})();
