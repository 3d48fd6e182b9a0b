// A relying party built with panva's openid-client, used unchanged: the test drives the
// person's part (WeChat), this script does everything a client library does.
//   node rp.mjs start  <issuer> <client_id> <redirect_uri> <scope>
//   node rp.mjs finish <issuer> <client_id> <callback_url> <verifier> <state> <nonce>
// Each prints one line of JSON. http:// issuers (the test's loopback) need allowInsecureRequests.
import * as client from 'openid-client';

const [command, issuer, clientId, ...rest] = process.argv.slice(2);

async function configuration() {
  return client.discovery(new URL(issuer), clientId, undefined, client.None(), {
    execute: [client.allowInsecureRequests],
  });
}

async function start(redirectUri, scope) {
  const config = await configuration();
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  return { url: url.href, verifier, state, nonce, metadata: config.serverMetadata() };
}

async function finish(callbackUrl, verifier, state, nonce) {
  const config = await configuration();
  const tokens = await client.authorizationCodeGrant(config, new URL(callbackUrl), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  return { claims, userinfo, scope: tokens.scope, token_type: tokens.token_type };
}

try {
  const result =
    command === 'start' ? await start(...rest) : await finish(...rest);
  process.stdout.write(JSON.stringify(result) + '\n');
} catch (error) {
  process.stdout.write(
    JSON.stringify({ error: error.name, code: error.code, message: error.message,
                     cause: error.cause && String(error.cause.error ?? error.cause) }) + '\n',
  );
  process.exitCode = 1;
}
