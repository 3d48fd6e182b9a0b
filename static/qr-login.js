/* Desktop "scan to sign in": create a session, show its QR code, long-poll until confirmed. */
(function () {
  "use strict";
  var POLL_SECONDS = 25;
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
      done(xhr.status, body);
    };
    xhr.onerror = function () { done(0, null); };
    xhr.send();
  }

  function fail(message) {
    error.textContent = message;
    error.className = "error";
    renew.className = "";
  }

  function poll(session) {
    request("GET", session.poll + "?wait=" + POLL_SECONDS, function (code, body) {
      if (code === 200 && body && body.status === "confirmed") {
        status.textContent = "Signed in. Taking you on…";
        window.location.replace("/demo/landing#token=" + encodeURIComponent(body.token) +
          "&tokenType=" + encodeURIComponent(body.tokenType) +
          "&expiresIn=" + encodeURIComponent(body.expiresIn));
      } else if (code === 200 && body && body.status === "expired") {
        status.textContent = "This code has expired.";
        image.className = "hidden";
        renew.className = "primary";
      } else if (code === 200 && body && body.status === "scanned" && body.problem) {
        // WeChat did not confirm that the scanner follows the account: this code is done.
        status.textContent = "Scanned, but not signed in.";
        image.className = "hidden";
        fail(body.problem.message);
      } else if (code === 200 && body) {
        status.textContent = body.status === "scanned" ?
          "Scanned: finishing the sign-in…" : "Waiting for the scan…";
        poll(session);
      } else if (code === 0) {
        // The network dropped the long poll; try again shortly.
        window.setTimeout(function () { poll(session); }, 2000);
      } else {
        fail((body && body.message) || ("Unexpected answer " + code));
      }
    });
  }

  function start() {
    error.className = "error hidden";
    renew.className = "hidden";
    status.textContent = "Creating a QR code…";
    var url = "/wechat/qrcode/login?redirectUri=" + encodeURIComponent(origin + "/demo/landing");
    request("POST", url, function (code, body) {
      if (code !== 201 || !body) {
        fail((body && body.message) || ("Could not create a QR code (" + code + ")"));
        return;
      }
      image.src = body.image;
      image.className = "";
      phone.href = "/sandbox/_sandbox/phone?ticket=" + encodeURIComponent(body.ticket);
      phone.className = "button";
      status.textContent = "Waiting for the scan…";
      poll(body);
    });
  }

  renew.addEventListener("click", start);
  start();
})();
