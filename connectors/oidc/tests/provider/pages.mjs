// The interaction pages a person clicks through when the provider runs with
// "interactive": true (the browser tests): a login form (username and password)
// and a consent form (Allow / Deny), on oidc-provider's interaction API. Plain
// HTML on the provider's own origin; nothing loaded from elsewhere.

export const PASSWORD = 'wonderland';

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head><body><main><h1>${escape(title)}</h1>${body}</main></body></html>`);
}

async function form(req) {
  let raw = '';
  for await (const chunk of req) {
    raw += chunk;
    if (raw.length > 8192) break;
  }
  return new URLSearchParams(raw);
}

function loginPage(res, uid, hint, error) {
  const alert = error ? `<p role="alert">${escape(error)}</p>` : '';
  page(res, error ? 401 : 200, 'Sign in to the test OpenID provider', `${alert}
<p>node oidc-provider, run by idbridge's tests. Test accounts: alice, bob; password: ${PASSWORD}.</p>
<form method="post" action="/interaction/${escape(uid)}/login">
<p><label for="login">Username</label> <input id="login" name="login" autocomplete="username" value="${escape(hint || '')}" required></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
<p><a href="/interaction/${escape(uid)}/abort">Cancel</a></p>`);
}

function consentPage(res, uid, clientId, scopes) {
  const items = scopes.map((s) => `<li>${escape(s)}</li>`).join('');
  page(res, 200, `Allow ${clientId}?`, `<p>The application <strong>${escape(clientId)}</strong> asks for:</p><ul>${items}</ul>
<form method="post" action="/interaction/${escape(uid)}/confirm"><button type="submit">Allow</button></form>
<p><a href="/interaction/${escape(uid)}/abort">Deny</a></p>`);
}

/// Answer a request under /interaction/ (true when it was one).
export async function interaction(provider, accounts, req, res) {
  const m = req.url.match(/^\/interaction\/([^/?]+)(?:\/(login|confirm|abort))?(?:\?.*)?$/);
  if (!m) return false;
  const [, uid, action] = m;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    page(res, 400, 'Sign-in expired', '<p role="alert">This sign-in is no longer going on; go back to the application and start again.</p>');
    return true;
  }
  const { prompt, params, session } = details;
  if (action === 'abort') {
    await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'The person cancelled at the provider.' }, { mergeWithLastSubmission: false });
    return true;
  }
  if (action === 'login' && req.method === 'POST') {
    const f = await form(req);
    const login = f.get('login') || '';
    if (!accounts[login] || f.get('password') !== PASSWORD) {
      loginPage(res, uid, login, 'Wrong username or password.');
      return true;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return true;
  }
  if (action === 'confirm' && req.method === 'POST') {
    await form(req);
    const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return true;
  }
  if (prompt.name === 'login') loginPage(res, uid, params.login_hint);
  else consentPage(res, uid, params.client_id, prompt.details.missingOIDCScope || String(params.scope).split(' '));
  return true;
}
