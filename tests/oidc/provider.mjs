// A real OpenID provider for Hephaestus's end-to-end tests: panva's
// `oidc-provider` (v9) with the device flow, refresh-token rotation, RFC 7009
// revocation and JWT access tokens whose `aud` is the hub's audience.
//
//   node tests/oidc/provider.mjs --port 0 --audience AUD
//        [--access-ttl SECS (default 300)] [--rotate-refresh true|false (default true)]
//        [--keys FILE] [--state FILE] [--no-device-flow]
//   node tests/oidc/provider.mjs --new-key     (prints one private RS256 JWK and exits)
//
// When ready it prints exactly one JSON line on stdout,
//   {"issuer":"http://127.0.0.1:PORT","client_id":"heph","port":PORT}
// and serves until killed. Everything else goes to stderr.
//
// --keys FILE is a JWKS with private keys; the first key signs, the others are
// still published (so a test can rotate keys without invalidating old tokens).
// When FILE does not exist a fresh RS256 key is generated and written to it
// (mode 0600), so a restart with the same FILE keeps the same keys. Without
// --keys a fresh key lives in memory only.
//
// --state FILE keeps grants, refresh tokens and sessions in a JSON file, so a
// provider stopped and started again with the same FILE still honours the
// refresh tokens it issued (a provider outage, not a provider reset).
//
// devInteractions are on: any username signs in (sub = the username) and
// consent is one form post. Listens on 127.0.0.1 only. Test use only.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { format, parseArgs } from 'node:util';

// stdout carries exactly one line (the ready line); oidc-provider's notices
// (console.info) and Node's warnings go to stderr.
for (const level of ['log', 'info', 'warn', 'debug']) {
  console[level] = (...a) => process.stderr.write(`${format(...a)}\n`);
}
process.removeAllListeners('warning');
process.on('warning', (w) => process.stderr.write(`${w.name}: ${w.message}\n`));

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    audience: { type: 'string' },
    'access-ttl': { type: 'string', default: '300' },
    'rotate-refresh': { type: 'string', default: 'true' },
    keys: { type: 'string' },
    state: { type: 'string' },
    'no-device-flow': { type: 'boolean', default: false },
    'new-key': { type: 'boolean', default: false },
  },
  strict: true,
});

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

if (args['new-key']) {
  process.stdout.write(`${JSON.stringify(newKey())}\n`);
  process.exit(0);
}

function die(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

if (!args.audience) die('--audience AUD is required');
const audience = args.audience;
const accessTtl = Number.parseInt(args['access-ttl'], 10);
if (!Number.isInteger(accessTtl) || accessTtl <= 0) die('--access-ttl must be a positive number of seconds');
if (!['true', 'false'].includes(args['rotate-refresh'])) die('--rotate-refresh must be true or false');
const rotateRefresh = args['rotate-refresh'] === 'true';
const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) die('--port must be 0..65535');

let jwks;
if (args.keys && existsSync(args.keys)) {
  jwks = JSON.parse(readFileSync(args.keys, 'utf8'));
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) die(`${args.keys} holds no keys`);
} else {
  jwks = { keys: [newKey()] };
  if (args.keys) writeFileSync(args.keys, `${JSON.stringify(jwks)}\n`, { mode: 0o600 });
}
const signingKey = jwks.keys[0];

// A resource indicator must be an absolute URI; the audience need not be one.
const resource = URL.canParse(audience) ? audience : `urn:heph:audience:${encodeURIComponent(audience)}`;

const { default: Provider } = await import('oidc-provider');

// The storage adapter: oidc-provider's model interface over one Map per model
// name, written through to --state FILE when given.
const stateFile = args.state;
const store = new Map(
  stateFile && existsSync(stateFile) ? Object.entries(JSON.parse(readFileSync(stateFile, 'utf8'))) : [],
);
const nowSecs = () => Math.floor(Date.now() / 1000);
function persist() {
  if (!stateFile) return;
  writeFileSync(`${stateFile}.tmp`, JSON.stringify(Object.fromEntries(store)), { mode: 0o600 });
  renameSync(`${stateFile}.tmp`, stateFile);
}
class Adapter {
  constructor(name) { this.name = name; }
  key(id) { return `${this.name}:${id}`; }
  get(key) {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.exp && entry.exp < nowSecs()) return undefined;
    return entry.payload;
  }
  async upsert(id, payload, expiresIn) {
    store.set(this.key(id), { payload, exp: expiresIn ? nowSecs() + expiresIn : undefined });
    if (payload.grantId) store.set(`grant:${payload.grantId}:${this.key(id)}`, { payload: this.key(id) });
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: id });
    if (payload.uid) store.set(`uid:${this.name}:${payload.uid}`, { payload: id });
    persist();
  }
  async find(id) { return this.get(this.key(id)); }
  async findByUserCode(userCode) {
    const id = this.get(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }
  async findByUid(uid) {
    const id = this.get(`uid:${this.name}:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }
  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = nowSecs();
    persist();
  }
  async destroy(id) { store.delete(this.key(id)); persist(); }
  async revokeByGrantId(grantId) {
    const prefix = `grant:${grantId}:`;
    for (const [k, v] of [...store]) {
      if (k.startsWith(prefix)) { store.delete(v.payload); store.delete(k); }
    }
    persist();
  }
}

// Bind first so the issuer can carry the real port.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const actualPort = server.address().port;
const issuer = `http://127.0.0.1:${actualPort}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'heph',
      token_endpoint_auth_method: 'none',
      grant_types: [
        'urn:ietf:params:oauth:grant-type:device_code',
        'refresh_token',
        'authorization_code',
      ],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/cb'],
    },
  ],
  adapter: Adapter,
  jwks,
  scopes: ['openid', 'offline_access'],
  claims: { openid: ['sub'] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub }),
  }),
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: !args['no-device-flow'] },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== resource) throw new Provider.errors.InvalidTarget();
        return {
          scope: '',
          audience,
          accessTokenTTL: accessTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: signingKey.alg || 'RS256', kid: signingKey.kid } },
        };
      },
    },
  },
  rotateRefreshToken: () => rotateRefresh,
  ttl: {
    AccessToken: accessTtl,
    DeviceCode: 600,
    RefreshToken: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
    Interaction: 600,
    Session: 24 * 60 * 60,
  },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => false },
});

provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));

server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({ issuer, client_id: 'heph', port: actualPort })}\n`);

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
