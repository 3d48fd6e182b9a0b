/* The built-in callback page: WeChat sends the user here with ?code=&state=.
 * Plain ES5 and XMLHttpRequest so it runs in WeChat's in-app browser on old phones too.
 * Its texts come with the page (<script type="application/json" id="page-strings">), in the
 * language the service chose for the reader (service/pipeline/i18n.py). */
(function () {
  "use strict";

  // What WeChat sends (service/signin/flow.py STATE_PATTERN and CODE_PATTERN): anything else
  // was changed on the way.
  var STATE_PATTERN = /^[A-Za-z0-9]{1,128}$/;
  var CODE_PATTERN = /^[A-Za-z0-9_-]{1,512}$/;
  // INVALID_STATE's details.field for a used and for an expired state (unknown: "state").
  var USED_FIELD = "state.usedAt";
  var EXPIRED_FIELD = "state.expiresAt";

  function $(id) { return document.getElementById(id); }

  var strings = {};
  try {
    strings = JSON.parse($("page-strings").textContent) || {};
  } catch (e) {
    strings = {};
  }

  // The text of `key` (callback.json) with its {names} filled in from `values`.
  function t(key, values) {
    var text = Object.prototype.hasOwnProperty.call(strings, "callback." + key) ?
      strings["callback." + key] : key;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && Object.prototype.hasOwnProperty.call(values, name) ?
        String(values[name]) : whole;
    });
  }

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
      done(xhr.status, body, xhr);
    };
    xhr.onerror = function () { done(0, null, xhr); };
    xhr.ontimeout = function () { done(0, null, xhr); };
    xhr.send();
  }

  var code = param("code");
  var state = param("state");
  var countdown = null;

  function progress(text) {
    $("problem").className = "hidden";
    $("progress").className = "";
    $("progress-text").textContent = t(text);
  }

  // Say what happened (callback.<what>.title and .text) and offer the one action that helps:
  // `label` names the button (callback.action.<label>), `onAction` is what it does; no button
  // when nothing on this page can help. `ref` is the answer's id, which the service logs.
  function problem(what, label, onAction, ref, values) {
    if (countdown !== null) { window.clearTimeout(countdown); countdown = null; }
    $("progress").className = "hidden";
    $("problem").className = "";
    $("problem").setAttribute("data-problem", what);
    $("problem-title").textContent = t(what + ".title", values);
    $("problem-text").textContent = t(what + ".text", values);
    $("problem-ref-id").textContent = ref || "";
    $("problem-ref").className = ref ? "muted small" : "muted small hidden";
    var button = $("action");
    if (!label) {
      button.className = "hidden";
      button.removeAttribute("data-action");
      button.onclick = null;
      return;
    }
    button.className = "primary";
    button.setAttribute("data-action", label);
    button.textContent = t("action." + label, values);
    button.disabled = false;
    button.onclick = function () { button.disabled = true; onAction(); };
  }

  // 429: count Retry-After down, then let the person send the same request again.
  function waitThenRetry(seconds, again, ref) {
    problem("rate", "wait", again, ref, { seconds: seconds });
    var button = $("action");
    var left = seconds;
    function tick() {
      if (left <= 0) {
        countdown = null;
        $("problem-text").textContent = t("rate.ready");
        button.setAttribute("data-action", "retry");
        button.textContent = t("action.retry");
        button.disabled = false;
        return;
      }
      $("problem-text").textContent = t("rate.text", { seconds: left });
      button.textContent = t("action.wait", { seconds: left });
      button.disabled = true;
      left -= 1;
      countdown = window.setTimeout(tick, 1000);
    }
    tick();
  }

  function retryAfter(xhr) {
    var seconds = parseInt(xhr.getResponseHeader("Retry-After"), 10);
    return isNaN(seconds) || seconds < 1 ? 5 : Math.min(seconds, 3600);
  }

  // A failed answer of /wechat/jwt or /wechat/authorize/retry: what it means for the person,
  // and what helps. `again` sends the request that failed once more.
  function failed(status, body, xhr, again) {
    var name = body && body.name;
    var field = body && body.details && body.details.field;
    var ref = body && body.id;
    if (status === 429) {
      waitThenRetry(retryAfter(xhr), again, ref);
    } else if (name === "INVALID_STATE" && field === USED_FIELD) {
      problem("used", "restart", restart, ref);
    } else if (name === "INVALID_STATE" && field === EXPIRED_FIELD) {
      problem("expired", "restart", restart, ref);
    } else if (name === "INVALID_STATE") {
      // Unknown here: starting again needs a state the service still remembers.
      problem("unknown", null, null, ref);
    } else if (name === "STATE_NOT_BOUND") {
      // Started in another browser: maybe a link someone sent. Never signed in as them.
      problem("elsewhere", "restart", restart, ref);
    } else if (name === "SNAPSHOT_USER") {
      // WeChat's snapshot page (快照页) gives a virtual account, never the person's own; its
      // 「使用完整服务」 bar reopens the authorization, and the state is kept for it.
      problem("snapshot", null, null, ref);
    } else if (name === "INVALID_CODE") {
      problem("code", "restart", restart, ref);
    } else if (name === "MISSING_PARAMETER" || name === "INVALID_PARAMETER") {
      problem("damaged", null, null, ref);
    } else if (name === "WECHAT_UNAVAILABLE") {
      // The state is kept when WeChat fails: the same request can still finish.
      problem("busy", "retry", again, ref);
    } else if (name === "WECHAT_TIMEOUT") {
      problem("timeout", "retry", again, ref);
    } else if (name === "WECHAT_ERROR") {
      problem("refused", "retry", again, ref);
    } else if (status === 0) {
      problem("offline", "retry", again, null);
    } else if (status >= 500 || !body) {
      problem("failed", "retry", again, ref);
    } else {
      problem("failed", "restart", restart, ref);
    }
  }

  // A fresh authorization for the same app, after a denial or a spent link.
  function restart() {
    progress("progress.restarting");
    getJson("authorize/retry?state=" + encodeURIComponent(state), function (status, body, xhr) {
      var url = body && body.details && body.details.fieldValue;
      if (status === 401 && typeof url === "string") {
        window.location.replace(url);
        return;
      }
      failed(status, body, xhr, restart);
    });
  }

  function exchange() {
    progress("progress.checking");
    var url = "jwt?code=" + encodeURIComponent(code) + "&state=" + encodeURIComponent(state);
    getJson(url, function (status, body, xhr) {
      if (status === 200 && body && body.token && body.redirectUri) {
        $("progress-text").textContent = t("progress.done");
        // The token travels in the fragment: never sent to a server, never in Referer or logs.
        var target = body.redirectUri + "#token=" + encodeURIComponent(body.token) +
          "&tokenType=" + encodeURIComponent(body.tokenType) +
          "&expiresIn=" + encodeURIComponent(body.expiresIn);
        window.location.replace(target);
        return;
      }
      failed(status, body, xhr, exchange);
    });
  }

  var stateOk = typeof state === "string" && STATE_PATTERN.test(state);
  if (code === null || state === null || (state && !stateOk) || (code && !CODE_PATTERN.test(code))) {
    // Changed on the way; with its state intact the same app can still be asked again.
    problem("damaged", stateOk ? "restart" : null, restart, null);
  } else if (!state) {
    problem("nothing", null, null, null);
  } else if (!code) {
    // WeChat redirects with only `state` when the user declines.
    problem("declined", "reauthorize", restart, null);
  } else {
    exchange();
  }
})();
