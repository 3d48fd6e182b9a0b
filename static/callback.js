/* The built-in callback page: WeChat sends the user here with ?code=&state=.
 * Plain ES5 and XMLHttpRequest so it runs in WeChat's in-app browser on old phones too. */
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }

  // The value of a query parameter, "" when absent, null when its percent-escapes are broken
  // (decodeURIComponent throws on "%" or "%E0%A4%A"; uncaught, the page would spin for ever).
  function param(name) {
    var match = new RegExp("[?&]" + name + "=([^&#]*)").exec(window.location.search);
    if (!match) { return ""; }
    try {
      return decodeURIComponent(match[1].replace(/\+/g, " "));
    } catch (e) {
      return null;
    }
  }

  function getJson(url, done) {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", url, true);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.timeout = 20000;
    xhr.onload = function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      done(xhr.status, body);
    };
    xhr.onerror = function () { done(0, null); };
    xhr.ontimeout = function () { done(0, null); };
    xhr.send();
  }

  var code = param("code");
  var state = param("state");

  function problem(title, text, retryLabel, onRetry, ref) {
    $("progress").className = "hidden";
    $("problem").className = "";
    $("problem-title").textContent = title;
    $("problem-text").textContent = text;
    $("problem-ref").textContent = ref ? "Reference: " + ref : "";
    var retry = $("retry");
    if (onRetry) {
      retry.textContent = retryLabel;
      retry.className = "primary";
      retry.disabled = false;
      retry.onclick = function () { retry.disabled = true; onRetry(); };
    } else {
      retry.className = "hidden";
    }
  }

  // A fresh authorization for the same app, after a denial or a spent link.
  function restart() {
    getJson("authorize/retry?state=" + encodeURIComponent(state), function (status, body) {
      var url = body && body.details && body.details.fieldValue;
      if (status === 401 && typeof url === "string") {
        window.location.replace(url);
      } else {
        problem("Please start again", "This sign-in link can no longer be used. Go back to the app and sign in again.",
                null, null, body && body.id);
      }
    });
  }

  function exchange() {
    $("problem").className = "hidden";
    $("progress").className = "";
    $("progress-text").textContent = "Checking your WeChat authorization.";
    var url = "jwt?code=" + encodeURIComponent(code) + "&state=" + encodeURIComponent(state);
    getJson(url, function (status, body) {
      if (status === 200 && body && body.token && body.redirectUri) {
        $("progress-text").textContent = "Signed in. Taking you back…";
        // The token travels in the fragment: never sent to a server, never in Referer or logs.
        var target = body.redirectUri + "#token=" + encodeURIComponent(body.token) +
          "&tokenType=" + encodeURIComponent(body.tokenType) +
          "&expiresIn=" + encodeURIComponent(body.expiresIn);
        window.location.replace(target);
        return;
      }
      var name = body && body.name;
      var ref = body && body.id;
      if (name === "INVALID_STATE") {
        problem("This sign-in link has expired", "Each sign-in link works once and only for ten minutes.",
                "Sign in again", restart, ref);
      } else if (name === "STATE_NOT_BOUND") {
        // Started in another browser: maybe a link someone sent. Never signed in as them.
        problem("This sign-in was started elsewhere",
                "This link belongs to a sign-in started in another browser, so it cannot sign you in here. " +
                "Start again to sign in with your own WeChat account.",
                "Sign in again", restart, ref);
      } else if (name === "SNAPSHOT_USER") {
        // WeChat's snapshot page (快照页) gives a virtual account, never the person's own.
        problem("请点击屏幕下方的「使用完整服务」",
                "微信以快照页打开了此页面，无法确认你的身份。请点击屏幕下方的「使用完整服务」后重新登录。 " +
                "WeChat opened this page as a snapshot, which cannot tell who you are: tap " +
                "\u201c使用完整服务\u201d (Use full service) at the bottom of the screen, then sign in again.",
                "Sign in again", restart, ref);
      } else if (name === "INVALID_CODE") {
        problem("This sign-in was already used", "WeChat's authorization code was already used or has expired.",
                "Sign in again", restart, ref);
      } else if (status === 0 || status === 502 || status === 504 || status >= 500) {
        problem("WeChat is not answering", "We could not reach WeChat just now. Your sign-in is kept; try again.",
                "Try again", exchange, ref);
      } else {
        problem("Sign-in did not finish", (body && body.message) || "Something went wrong.",
                "Sign in again", restart, ref);
      }
    });
  }

  if (code === null || state === null) {
    problem("This link is damaged", "The address of this page was changed or cut short on the way, " +
            "so it cannot finish signing you in. Go back to the app and sign in again.", null, null, null);
  } else if (!state) {
    problem("Nothing to sign in", "This page is where WeChat returns you after you authorize an app; it needs WeChat's code and state.",
            null, null, null);
  } else if (!code) {
    // WeChat redirects with only `state` when the user declines.
    problem("You declined", "You chose not to authorize the app with WeChat, so you are not signed in.",
            "Try again", restart, null);
  } else {
    exchange();
  }
})();
