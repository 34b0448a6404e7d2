// The OpenID provider that the tests and `btogether demo --serve --sso` run on loopback.
//
// oidc-provider (a certified OpenID Connect implementation) with a few lines of
// configuration: dynamic client registration (each test relay registers its own client), a
// login page checking the accounts below, PKCE required, refresh tokens for clients that ask
// for the refresh_token grant, and claims (email, name, groups) in the ID token.
//
// A second port on 127.0.0.1 (the "control" port, guarded by a random token) lets the tests
// act on the provider the way its administrator would: add or disable accounts, rotate the
// signing key, take the provider down and up again. For the relay's token checks only, it can
// also be told to spoil the next token response for one client (wrong audience, expired, the
// previous ID token replayed, signed with an unpublished key, or unsigned) — what a broken or
// hostile provider would send. Nothing here is reachable from anywhere but this machine.
//
// Usage: node provider.js [--port N]   (prints one JSON line: {"issuer", "control", "token"})
import crypto from 'node:crypto';
import http from 'node:http';

import * as jose from 'jose';
import Provider from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const argPort = process.argv.indexOf('--port');
const wantedPort = argPort > 0 ? Number(process.argv[argPort + 1]) : 0;
const controlToken = crypto.randomBytes(24).toString('hex');
const cookieKeys = [crypto.randomBytes(32).toString('hex')];

const accounts = new Map(); // sub -> { sub, login, password, email, email_verified, name, groups, disabled }
let keys = []; // private JWKs; the first one signs
let issuer = '';
let provider = null;
let handler = null;
const spoil = new Map(); // client_id -> mode, for its next token response only
const lastIdToken = new Map(); // client_id -> the last ID token issued to it
// One store for every Provider instance (a key rotation builds a new one): registered
// clients, sessions and grants outlive the rotation, as they would at a real provider.
const adapter = createMemoryAdapter(15);

async function newKey() {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}

function claimsOf(account) {
  return {
    sub: account.sub,
    email: account.email,
    email_verified: Boolean(account.email_verified),
    name: account.name,
    preferred_username: account.login,
    groups: account.groups || [],
  };
}

function build() {
  const built = new Provider(issuer, {
    adapter,
    jwks: { keys },
    cookies: { keys: cookieKeys },
    async findAccount(ctx, sub) {
      const account = accounts.get(sub);
      if (!account || account.disabled) return undefined; // refresh tokens stop working too
      return { accountId: sub, claims: async () => claimsOf(account) };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'groups'],
    },
    conformIdTokenClaims: false, // the claims go in the ID token, as Entra ID and Keycloak do
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.body = html('Sign out', `<p>Sign out of the test identity provider?</p>${form}
            <button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
            <button type="submit" form="op.logoutForm">No, stay signed in</button>`);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.body = html('Signed out', '<p>You are signed out of the test identity provider.</p>');
        },
      },
      revocation: { enabled: true },
    },
    // The library's own pages load a web font from the internet; these fetch nothing.
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = html('Something went wrong', Object.entries(out)
        .map(([key, value]) => `<p role="alert"><strong>${escape(key)}</strong>: ${escape(value)}</p>`).join(''));
    },
    pkce: { required: () => true },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // First-party clients: no consent screen (the documented "skip consent" recipe).
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const grant = await ctx.oidc.provider.Grant.find(grantId);
        if (grant) return grant;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
      await grant.save();
      return grant;
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 600,
      Session: 8 * 3600,
      Grant: 14 * 24 * 3600,
    },
  });
  return built;
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function html(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>`
    + '<style>body{font-family:sans-serif;max-width:26rem;margin:3rem auto}label{display:block;margin:.6rem 0}'
    + 'input{width:100%;padding:.4rem}.error{color:#a00}</style></head>'
    + `<body><h1>${escape(title)}</h1>${body}</body></html>`;
}

function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.end(html(title, body));
}

function loginPage(res, uid, error) {
  page(res, 200, 'Test identity provider', `
    <p>Sign in with an account of this test provider.</p>
    ${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
    <form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
      <label>Login <input name="login" required autofocus></label>
      <label>Password <input name="password" type="password" required></label>
      <button type="submit">Sign in</button>
    </form>`);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function interaction(req, res, path) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') {
    loginPage(res, details.uid, '');
    return;
  }
  if (req.method !== 'POST' || !path.endsWith('/login')) {
    page(res, 405, 'Not allowed', '');
    return;
  }
  const form = new URLSearchParams(await readBody(req));
  const account = [...accounts.values()].find((a) => a.login === form.get('login'));
  if (!account || account.password !== form.get('password')) {
    loginPage(res, details.uid, 'wrong login or password');
    return;
  }
  if (account.disabled) {
    loginPage(res, details.uid, 'this account is disabled');
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: account.sub } },
    { mergeWithLastSubmission: false });
}

// The token endpoint's answer, seen (the last ID token per client) and, when told, spoiled.
function watchTokenResponse(res) {
  const end = res.end.bind(res);
  res.end = (chunk, ...rest) => {
    (async () => {
      let body = chunk;
      try {
        const answer = JSON.parse(Buffer.from(chunk || '').toString('utf8'));
        if (answer.id_token) {
          const claims = jose.decodeJwt(answer.id_token);
          const client = Array.isArray(claims.aud) ? claims.aud[0] : claims.aud;
          const mode = spoil.get(client);
          const previous = lastIdToken.get(client);
          lastIdToken.set(client, answer.id_token);
          if (mode) {
            spoil.delete(client);
            answer.id_token = await spoiled(mode, answer.id_token, claims, previous);
            body = JSON.stringify(answer);
            res.setHeader('Content-Length', Buffer.byteLength(body));
          }
        }
      } catch (error) {
        // not a JSON token answer: pass it on as it is
      }
      end(body, ...rest);
    })();
    return res;
  };
}

async function sign(claims, jwk) {
  const key = await jose.importJWK(jwk, 'RS256');
  return new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'JWT' }).sign(key);
}

async function spoiled(mode, token, claims, previous) {
  const now = Math.floor(Date.now() / 1000);
  switch (mode) {
    case 'wrong_audience':
      return sign({ ...claims, aud: 'another-client' }, keys[0]);
    case 'expired':
      return sign({ ...claims, iat: now - 7200, exp: now - 3600 }, keys[0]);
    case 'replay':
      return previous || token;
    case 'unknown_key':
      return sign(claims, await newKey());
    case 'alg_none':
      return `${jose.base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${jose.base64url.encode(JSON.stringify(claims))}.`;
    default:
      return token;
  }
}

const server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (path.startsWith('/interaction/')) {
    interaction(req, res, path).catch((error) => page(res, 400, 'Sign-in failed', escape(error.message)));
    return;
  }
  if (req.method === 'POST' && path === '/token') watchTokenResponse(res);
  handler(req, res);
});

async function control(req, res) {
  const reply = (status, body) => {
    res.statusCode = status;
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(body));
  };
  if (req.headers.authorization !== `Bearer ${controlToken}`) return reply(401, { error: 'token' });
  const path = new URL(req.url, 'http://x').pathname;
  const data = req.method === 'POST' ? JSON.parse((await readBody(req)) || '{}') : {};
  switch (path) {
    case '/accounts':
      accounts.set(data.sub, { ...(accounts.get(data.sub) || {}), ...data });
      return reply(200, { sub: data.sub });
    case '/rotate': {
      const old = keys[0];
      keys = data.keep_old ? [await newKey(), old] : [await newKey()];
      provider = build();
      handler = provider.callback();
      return reply(200, { kids: keys.map((k) => k.kid) });
    }
    case '/spoil':
      spoil.set(data.client_id, data.mode);
      return reply(200, {});
    case '/down':
      if (server.listening) {
        await new Promise((resolve) => { server.close(resolve); server.closeAllConnections(); });
      }
      return reply(200, {});
    case '/up':
      if (!server.listening) {
        await new Promise((resolve) => server.listen(Number(new URL(issuer).port), '127.0.0.1', resolve));
      }
      return reply(200, {});
    default:
      return reply(404, { error: 'unknown' });
  }
}

const controlServer = http.createServer((req, res) => {
  control(req, res).catch((error) => {
    res.statusCode = 500;
    res.end(JSON.stringify({ error: error.message }));
  });
});

keys = [await newKey()];
await new Promise((resolve) => server.listen(wantedPort, '127.0.0.1', resolve));
issuer = `http://127.0.0.1:${server.address().port}`;
provider = build();
handler = provider.callback();
await new Promise((resolve) => controlServer.listen(0, '127.0.0.1', resolve));
process.stdout.write(`${JSON.stringify({
  issuer,
  control: `http://127.0.0.1:${controlServer.address().port}`,
  token: controlToken,
})}\n`);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
