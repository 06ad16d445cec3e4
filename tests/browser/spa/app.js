// The SPA: oidc-client-ts against the broker named in <meta name="authority">.
// Every broker call (discovery, /token, /userinfo, /revoke) is a cross-origin
// fetch; the sign-in and sign-out are navigations.
const authority = document.querySelector('meta[name="authority"]').content;
const here = window.location.origin;
const manager = new oidc.UserManager({
  authority,
  client_id: "dev-spa",
  redirect_uri: `${here}/callback`,
  post_logout_redirect_uri: `${here}/`,
  response_type: "code",
  scope: "openid profile email offline_access",
  automaticSilentRenew: false,
  loadUserInfo: true,
  userStore: new oidc.WebStorageStateStore({ store: window.sessionStorage }),
});

const el = (id) => document.getElementById(id);
const status = (text) => (el("status").textContent = text);

function show(user) {
  el("name").textContent = user?.profile?.name ?? "";
  el("email").textContent = user?.profile?.email ?? "";
  el("sub").textContent = user?.profile?.sub ?? "";
}

async function act(what, f) {
  el("error").textContent = "";
  try {
    await f();
  } catch (e) {
    el("error").textContent = `${what}: ${e?.message ?? e}`;
    status(`${what} failed`);
  }
}

/// GET /userinfo with the current access token, by hand: its status and body.
async function callUserinfo() {
  const user = await manager.getUser();
  const endpoint = await manager.metadataService.getUserInfoEndpoint();
  const r = await fetch(endpoint, { headers: { Authorization: `Bearer ${user?.access_token ?? ""}` } });
  const body = await r.text();
  el("userinfo").textContent = r.ok ? `${r.status} ${JSON.parse(body).name}` : `${r.status}`;
}

el("signin").addEventListener("click", () => act("sign-in", () => manager.signinRedirect()));
el("refresh").addEventListener("click", () =>
  act("refresh", async () => {
    const before = (await manager.getUser())?.refresh_token;
    const user = await manager.signinSilent();
    if (!user?.refresh_token || user.refresh_token === before) throw new Error("no new refresh token");
    show(user);
    el("refreshed").textContent = "yes";
    status("Refreshed");
  }),
);
el("call-userinfo").addEventListener("click", () => act("userinfo", callUserinfo));
el("revoke").addEventListener("click", () =>
  act("revocation", async () => {
    await manager.revokeTokens(["access_token", "refresh_token"]);
    status("Tokens revoked");
  }),
);
// A state, so the broker's redirect back carries one and the page knows it
// returns from signing out.
el("signout").addEventListener("click", () => act("sign-out", () => manager.signoutRedirect({ state: "signed-out" })));

act("start", async () => {
  const params = new URLSearchParams(window.location.search);
  if (window.location.pathname === "/callback") {
    const user = await manager.signinRedirectCallback();
    window.history.replaceState(null, "", "/");
    show(user);
    status("Signed in");
  } else if (params.has("state")) {
    await manager.signoutRedirectCallback();
    window.history.replaceState(null, "", "/");
    status("Signed out");
  } else {
    const user = await manager.getUser();
    show(user);
    status(user ? "Signed in" : "Not signed in");
  }
});
