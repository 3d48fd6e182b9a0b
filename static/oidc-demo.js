/* The sandbox's OpenID Connect demo, as a browser app (the public client demo-spa) does it:
   PKCE, state and nonce kept in sessionStorage, the code redeemed with fetch, userinfo asked
   with the access token. The backend client (demo-backend) is the server's part. */
(function () {
  "use strict";
  var strings = JSON.parse(document.getElementById("page-strings").textContent);
  var CLIENT = "demo-spa";
  var redirectUri = window.location.origin + window.location.pathname;

  function text(key, values) {
    var value = strings[key] || key;
    Object.keys(values || {}).forEach(function (name) {
      value = value.split("{" + name + "}").join(values[name]);
    });
    return value;
  }

  function b64url(bytes) {
    var binary = "";
    new Uint8Array(bytes).forEach(function (b) { binary += String.fromCharCode(b); });
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function random() {
    var bytes = new Uint8Array(32);
    crypto.getRandomValues(bytes);
    return b64url(bytes);
  }

  function payload(jwt) {
    var b64 = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var bytes = atob(b64);
    var escaped = "";
    for (var i = 0; i < bytes.length; i++) {
      escaped += "%" + ("0" + bytes.charCodeAt(i).toString(16)).slice(-2);
    }
    return JSON.parse(decodeURIComponent(escaped));
  }

  function show(id, object) {
    var table = document.getElementById(id);
    table.classList.remove("hidden");
    Object.keys(object).forEach(function (key) {
      var row = table.insertRow();
      row.insertCell().textContent = key;
      row.insertCell().textContent = String(object[key]);
    });
  }

  function fail(message) {
    var node = document.getElementById("oidc-failure");
    node.textContent = text("demo.failed", { error: message });
    node.classList.remove("hidden");
  }

  async function start() {
    var verifier = random();
    var digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    var state = random();
    var nonce = random();
    sessionStorage.setItem("oidc-demo", JSON.stringify({ verifier: verifier, state: state, nonce: nonce }));
    var scope = document.getElementById("profile").checked ? "openid profile" : "openid";
    var query = new URLSearchParams({
      response_type: "code", client_id: CLIENT, redirect_uri: redirectUri, scope: scope,
      state: state, nonce: nonce, code_challenge: b64url(digest), code_challenge_method: "S256"
    });
    window.location.assign("/oidc/authorize?" + query.toString());
  }

  async function finish(params) {
    var saved = JSON.parse(sessionStorage.getItem("oidc-demo") || "{}");
    sessionStorage.removeItem("oidc-demo");
    history.replaceState(null, "", window.location.pathname);  // the code leaves the address bar
    if (params.get("error")) { fail(params.get("error") + ": " + (params.get("error_description") || "")); return; }
    if (!saved.state || params.get("state") !== saved.state) { fail(text("demo.state_mismatch")); return; }
    document.getElementById("oidc-title").textContent = text("demo.working");
    var answer = await fetch("/oidc/token", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: params.get("code"), redirect_uri: redirectUri,
        client_id: CLIENT, code_verifier: saved.verifier
      })
    });
    var tokens = await answer.json();
    if (!answer.ok) { fail(tokens.error + ": " + tokens.error_description); return; }
    var claims = payload(tokens.id_token);
    if (claims.nonce !== saved.nonce) { fail("nonce"); return; }
    show("claims", claims);
    var info = await fetch("/oidc/userinfo", { headers: { Authorization: "Bearer " + tokens.access_token } });
    show("userinfo", await info.json());
    document.getElementById("oidc-title").textContent = text("demo.signed_in");
  }

  document.getElementById("public-client").addEventListener("click", function () { start(); });
  document.getElementById("profile").addEventListener("change", function (event) {
    var link = document.getElementById("backend-client");
    link.href = "/demo/oidc/backend/start?scope=" + (event.target.checked ? "openid+profile" : "openid");
  });
  var params = new URLSearchParams(window.location.search);
  if (params.get("code") || params.get("error")) {
    finish(params).catch(function (e) { fail(String(e)); });
  } else if (params.get("start") === "public") {
    // A link that signs in at once: /demo/oidc?start=public&scope=openid
    document.getElementById("profile").checked = params.get("scope") !== "openid";
    start().catch(function (e) { fail(String(e)); });
  }
}());
