/* Sandbox demo: ask the service for WeChat's authorization URL, then go there. */
(function () {
  "use strict";
  var origin = window.location.protocol + "//" + window.location.host;
  var buttons = document.querySelectorAll("button[data-scope]");

  function start(scope) {
    var query = "redirectUri=" + encodeURIComponent(origin + "/demo/landing") +
      "&callback=" + encodeURIComponent(origin + "/wechat/callback") +
      "&scope=" + encodeURIComponent(scope);
    var xhr = new XMLHttpRequest();
    xhr.open("GET", "/wechat/authorize?" + query, true);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.onload = function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 401 && body && body.details && body.details.fieldValue) {
        window.location.assign(body.details.fieldValue);
      } else {
        var error = document.getElementById("demo-error");
        error.textContent = (body && body.message) || ("Unexpected answer " + xhr.status);
        error.className = "error";
      }
    };
    xhr.send();
  }

  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", function (event) {
      start(event.currentTarget.getAttribute("data-scope"));
    });
  }
})();
