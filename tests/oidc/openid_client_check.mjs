// Checks that a Hephaestus hub's built-in issuer is a real OpenID provider,
// using only independent client code: panva's `openid-client` (discovery,
// device flow, ID token validation, refresh, revocation) and `jose` (access
// token signature and RFC 9068 header/claims). The user code is approved by
// driving the hub's HTML verification page over HTTP as a browser would
// (cookie, CSRF field, sign-in form, approve form).
//
// Usage:
//   HEPH_CHECK_PASSWORD=… node openid_client_check.mjs --issuer URL --username NAME
//
// Prints one JSON line summarizing the checks and exits 0; or prints
// `openid_client_check failed at <step>: <reason>` on stderr and exits 1.
// Never prints the password or any token; when HEPH_CHECK_SECRETS_FILE is
// set, writes every secret it saw (one a line) to that file so a test can
// check that none leaked into a log. Bounded: 60 s overall.

import { writeFileSync } from 'node:fs';
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const OVERALL_LIMIT_MS = 60_000;
const CLIENT_ID = 'heph';
const SCOPE = 'openid offline_access';
const CSRF_COOKIE = '__Host-heph_csrf';

/** Everything secret seen so far: scrubbed from any failure message. */
const secrets = new Set();
let step = 'start';

/** For a test's leak check: the secrets, one a line, to a file it names. */
function recordSecrets() {
  const file = process.env.HEPH_CHECK_SECRETS_FILE;
  if (file) writeFileSync(file, [...secrets].filter(Boolean).join('\n') + '\n', { mode: 0o600 });
}

function fail(reason) {
  recordSecrets();
  let text = String(reason);
  for (const s of secrets) {
    if (s) text = text.split(s).join('[redacted]');
  }
  process.stderr.write(`openid_client_check failed at ${step}: ${text}\n`);
  process.exit(1);
}

function check(condition, what) {
  if (!condition) throw new Error(what);
}

function describe(err) {
  if (err instanceof client.ResponseBodyError) {
    return `${err.name}: HTTP ${err.status} ${err.error}: ${err.error_description ?? ''}`;
  }
  const cause = err?.cause ? ` (cause: ${err.cause?.message ?? err.cause})` : '';
  const code = err?.code ? ` [${err.code}]` : '';
  return `${err?.name ?? 'Error'}${code}: ${err?.message ?? err}${cause}`;
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    const value = argv[i + 1];
    if (!key?.startsWith('--') || value === undefined) {
      throw new Error(`usage: --issuer URL --username NAME (password in HEPH_CHECK_PASSWORD); got ${key}`);
    }
    out[key.slice(2)] = value;
  }
  return out;
}

// --- A person's browser, reduced to what the verification page needs -------

/** Every `<input>` and `<button>` with a name in the first `<form action=…>`. */
function formFields(html, action) {
  const start = html.indexOf(`action="${action}"`);
  if (start < 0) return null;
  const end = html.indexOf('</form>', start);
  const form = html.slice(start, end < 0 ? undefined : end);
  const fields = [];
  for (const tag of form.matchAll(/<(input|button)\b([^>]*)>/g)) {
    const attrs = {};
    for (const a of tag[2].matchAll(/([a-zA-Z_-]+)="([^"]*)"/g)) {
      attrs[a[1]] = unescapeHtml(a[2]);
    }
    if (attrs.name) fields.push({ kind: tag[1], ...attrs });
  }
  return fields;
}

function unescapeHtml(s) {
  return s
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&#x27;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
}

function fieldValue(fields, name) {
  return fields.find((f) => f.name === name)?.value;
}

/** The `name=value` of the CSRF cookie in a response's Set-Cookie headers. */
function csrfCookie(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    if (pair.slice(0, eq) !== CSRF_COOKIE) continue;
    const lower = attrs.map((a) => a.toLowerCase());
    check(lower.includes('secure') && lower.includes('httponly') && lower.includes('path=/'),
      `the ${CSRF_COOKIE} cookie lacks Secure, HttpOnly or Path=/: ${attrs.join('; ')}`);
    return pair.slice(eq + 1);
  }
  return null;
}

async function postForm(url, cookie, fields, signal) {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: `${CSRF_COOKIE}=${cookie}`,
      accept: 'text/html',
    },
    body: new URLSearchParams(fields).toString(),
    redirect: 'manual',
    signal,
  });
}

/** Approves the device code on the verification page as `username`. */
async function approveInBrowser(device, issuer, username, password, signal) {
  step = 'verification page';
  const complete = device.verification_uri_complete;
  check(typeof complete === 'string', 'no verification_uri_complete in the device authorization response');
  check(new URL(complete).origin === new URL(issuer).origin, `verification_uri_complete ${complete} is not on the issuer`);
  let r = await fetch(complete, { headers: { accept: 'text/html' }, redirect: 'manual', signal });
  let html = await r.text();
  check(r.status === 200, `GET verification_uri_complete answered ${r.status}`);
  const cookie = csrfCookie(r);
  check(cookie, `GET verification_uri_complete set no ${CSRF_COOKIE} cookie`);
  secrets.add(cookie);
  const signIn = formFields(html, '/device');
  check(signIn, 'no <form action="/device"> on the verification page');
  const csrf = fieldValue(signIn, 'csrf');
  check(csrf === cookie, 'the sign-in form\'s csrf field does not match the cookie');
  const prefilled = fieldValue(signIn, 'user_code');
  check(prefilled === device.user_code, `the user code is not prefilled (found ${prefilled})`);
  for (const name of ['username', 'password']) {
    check(signIn.some((f) => f.name === name), `the sign-in form has no ${name} field`);
  }

  step = 'sign in on the verification page';
  const origin = new URL(issuer).origin;
  r = await postForm(`${origin}/device`, cookie, { csrf, user_code: prefilled, username, password }, signal);
  html = await r.text();
  check(r.status === 200, `POST /device answered ${r.status}`);
  check(html.includes(device.user_code), 'the approve page does not show the user code');
  check(html.includes(CLIENT_ID), 'the approve page does not show the client id');
  const decision = formFields(html, '/device/decision');
  check(decision, 'no <form action="/device/decision"> after signing in');
  const ticket = fieldValue(decision, 'ticket');
  check(ticket, 'the approve form has no ticket');
  secrets.add(ticket);
  const buttons = decision.filter((f) => f.name === 'decision').map((f) => f.value);
  check(buttons.includes('approve') && buttons.includes('deny'), `the decision buttons are ${buttons}`);

  step = 'approve on the verification page';
  r = await postForm(`${origin}/device/decision`, cookie,
    { csrf: fieldValue(decision, 'csrf'), ticket, decision: 'approve' }, signal);
  html = await r.text();
  check(r.status === 200, `POST /device/decision answered ${r.status}`);
  check(/approved/i.test(html), 'the decision page does not say the device was approved');
}

// --- The checks -------------------------------------------------------------

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const issuer = args.issuer ?? process.env.HEPH_CHECK_ISSUER;
  const username = args.username ?? process.env.HEPH_CHECK_USERNAME;
  const password = process.env.HEPH_CHECK_PASSWORD;
  check(issuer && username && password,
    'need --issuer URL, --username NAME and the password in HEPH_CHECK_PASSWORD');
  secrets.add(password);
  const signal = AbortSignal.timeout(OVERALL_LIMIT_MS - 5_000);
  const insecure = new URL(issuer).protocol === 'http:';
  if (insecure) {
    const host = new URL(issuer).hostname;
    check(['127.0.0.1', 'localhost', '[::1]'].includes(host), `plain http is allowed only on loopback, not ${host}`);
  }
  const summary = { issuer };

  // Every token endpoint answer openid-client receives, by error code.
  const tokenAnswers = {};
  let tokenEndpoint;
  const countingFetch = async (url, options) => {
    const response = await fetch(url, options);
    if (url === tokenEndpoint) {
      let key = String(response.status);
      if (response.status !== 200) {
        const body = await response.clone().json().catch(() => ({}));
        key = body.error ?? key;
      }
      tokenAnswers[key] = (tokenAnswers[key] ?? 0) + 1;
    }
    return response;
  };

  step = 'discovery';
  const config = await client.discovery(new URL(issuer), CLIENT_ID, undefined, client.None(), {
    execute: insecure ? [client.allowInsecureRequests] : [],
    timeout: 10,
  });
  config[client.customFetch] = countingFetch;
  const meta = config.serverMetadata();
  check(meta.issuer === issuer, `discovery names the issuer ${meta.issuer}, not ${issuer}`);
  check(meta.device_authorization_endpoint, 'discovery has no device_authorization_endpoint');
  check(meta.jwks_uri, 'discovery has no jwks_uri');
  check(meta.revocation_endpoint, 'discovery has no revocation_endpoint');
  check(meta.token_endpoint_auth_methods_supported?.includes('none'),
    'discovery does not offer token_endpoint_auth_method none (a public client)');
  tokenEndpoint = meta.token_endpoint;
  // The RFC 8414 document, as a plain OAuth 2.0 client reads it.
  const oauth = await client.discovery(new URL(issuer), CLIENT_ID, undefined, client.None(), {
    execute: insecure ? [client.allowInsecureRequests] : [],
    algorithm: 'oauth2',
    timeout: 10,
  });
  check(oauth.serverMetadata().token_endpoint === meta.token_endpoint,
    'the OAuth and OpenID discovery documents name different token endpoints');
  summary.discovery = true;
  summary.id_token_algs = meta.id_token_signing_alg_values_supported;

  step = 'device authorization';
  const device = await client.initiateDeviceAuthorization(config, { scope: SCOPE });
  secrets.add(device.device_code);
  check(/^[A-Z0-9]{4}-[A-Z0-9]{4}$/.test(device.user_code), `user_code ${device.user_code} is not XXXX-XXXX`);
  check(typeof device.interval === 'number' && device.interval >= 1, `interval ${device.interval}`);
  summary.device_authorization = true;

  // Poll as a device would while the person approves on the page.
  const polling = client.pollDeviceAuthorizationGrant(config, device, undefined, { signal });
  polling.catch(() => {}); // awaited below; keep an early rejection from being unhandled
  await approveInBrowser(device, issuer, username, password, signal);
  summary.approved_in_browser = true;

  step = 'device token poll';
  const tokens = await polling;
  for (const t of [tokens.access_token, tokens.refresh_token, tokens.id_token]) secrets.add(t);
  check(tokens.token_type?.toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
  check(tokens.refresh_token, 'no refresh_token though offline_access was granted');
  check(tokens.id_token, 'no id_token though openid was granted');
  summary.device_grant = true;

  step = 'ID token (validated by openid-client)';
  const idClaims = tokens.claims();
  check(idClaims, 'openid-client returned no ID token claims');
  check(typeof idClaims.sub === 'string' && idClaims.sub.length > 0, 'the ID token has no sub');
  check(idClaims.iss === issuer, `the ID token's iss is ${idClaims.iss}`);
  const idAud = [].concat(idClaims.aud);
  check(idAud.includes(CLIENT_ID), `the ID token's aud is ${idAud}`);
  check(idClaims.preferred_username === username,
    `the ID token's preferred_username is ${idClaims.preferred_username}`);
  check(Number.isInteger(idClaims.auth_time), 'the ID token has no auth_time');
  summary.id_token_sub = idClaims.sub;

  // openid-client trusts the token endpoint's TLS for the ID token and does
  // not check its signature (OIDC Core 3.1.3.7 allows that); check it here.
  step = 'ID token signature (verified with jose against the JWKS)';
  const jwks = createRemoteJWKSet(new URL(meta.jwks_uri), { timeoutDuration: 10_000 });
  const verifyId = async (token) => {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer,
      audience: CLIENT_ID,
      algorithms: meta.id_token_signing_alg_values_supported ?? ['RS256'],
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
    });
    check(payload.sub === idClaims.sub, 'the ID token signed by the JWKS names another sub');
    return { payload, protectedHeader };
  };
  summary.id_token_alg = (await verifyId(tokens.id_token)).protectedHeader.alg;

  step = 'access token (verified with jose against the JWKS)';
  const verifyAccess = async (token) => {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer,
      audience: issuer,
      algorithms: ['ES256'],
      typ: 'at+jwt',
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id'],
    });
    check(protectedHeader.typ === 'at+jwt', `the access token's typ is ${protectedHeader.typ}`);
    check(protectedHeader.alg === 'ES256', `the access token's alg is ${protectedHeader.alg}`);
    check(protectedHeader.kid, 'the access token has no kid');
    check(payload.sub === idClaims.sub, 'the access token\'s sub differs from the ID token\'s');
    check(payload.client_id === CLIENT_ID, `the access token's client_id is ${payload.client_id}`);
    return { payload, protectedHeader };
  };
  const access = await verifyAccess(tokens.access_token);
  summary.access_token = {
    alg: access.protectedHeader.alg,
    typ: access.protectedHeader.typ,
    scope: access.payload.scope,
  };

  step = 'refresh';
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  for (const t of [refreshed.access_token, refreshed.refresh_token, refreshed.id_token]) secrets.add(t);
  check(refreshed.refresh_token, 'the refresh answer has no refresh_token');
  check(refreshed.refresh_token !== tokens.refresh_token, 'the refresh token did not rotate');
  await verifyAccess(refreshed.access_token);
  if (refreshed.id_token) {
    // OIDC Core 12.2: same iss, sub, aud and auth_time as the first one.
    const again = refreshed.claims();
    check(again?.sub === idClaims.sub, 'the refreshed ID token names another sub');
    check(again.iss === idClaims.iss, 'the refreshed ID token names another issuer');
    check(again.auth_time === idClaims.auth_time, 'the refreshed ID token changed auth_time');
    await verifyId(refreshed.id_token);
  }
  summary.refresh_rotated = true;

  step = 'revocation';
  await client.tokenRevocation(config, refreshed.refresh_token);
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token);
    throw new Error('a revoked refresh token was accepted');
  } catch (err) {
    if (!(err instanceof client.ResponseBodyError)) throw err;
    check(err.error === 'invalid_grant', `a revoked refresh token answered ${err.error}, not invalid_grant`);
  }
  summary.revoked = true;

  step = 'hub /rpc with the access token';
  const r = await fetch(new URL('rpc', `${issuer}/`), {
    method: 'POST',
    headers: { authorization: `Bearer ${refreshed.access_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'daemon.info' }),
    signal,
  });
  const body = await r.text();
  check(r.status === 200, `POST /rpc answered ${r.status}: ${body.slice(0, 300)}`);
  const rpc = JSON.parse(body);
  check(rpc.result !== undefined, `POST /rpc gave no result: ${body.slice(0, 300)}`);
  summary.rpc_status = r.status;

  summary.token_endpoint_answers = tokenAnswers;
  summary.ok = true;
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

const timer = setTimeout(() => fail(`did not finish within ${OVERALL_LIMIT_MS / 1000} s`), OVERALL_LIMIT_MS);
main().then(
  () => {
    clearTimeout(timer);
    recordSecrets();
    process.exit(0);
  },
  (err) => fail(describe(err)),
);
