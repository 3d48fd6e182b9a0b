// The sandbox's qrconnect page: long-poll the session, say what the phone did, and go on to
// redirect_uri?code=…&state=… (confirmed) or redirect_uri?state=… (cancelled), as WeChat does.
(function () {
  "use strict";
  var box = document.getElementById("qrconnect");
  var text = document.getElementById("status");
  var poll = box.getAttribute("data-poll");
  var last = box.getAttribute("data-status");

  function show(status) {
    var message = text.getAttribute("data-" + status);
    if (message) {
      text.textContent = message;
    }
    box.setAttribute("data-status", status);
  }

  function next(delay) {
    window.setTimeout(ask, delay);
  }

  function ask() {
    fetch(poll + "&last=" + encodeURIComponent(last), { cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("poll answered " + response.status);
        }
        return response.json();
      })
      .then(function (answer) {
        last = answer.status;
        show(answer.status);
        if (answer.location) {
          window.location.replace(answer.location);
        } else if (answer.status !== "expired") {
          next(200);
        }
      })
      .catch(function () {
        next(2000);
      });
  }

  next(0);
})();
