// Sign-in through `type = "oidc"` connectors whose upstreams are real, independent
// OpenID providers, not the broker's own fakes: node's oidc-provider (its own
// login and consent pages) and a second idbridge (its chooser and development
// login). This group starts its own peers, once per language (see `peers`):
//   - oidc-provider from connectors/oidc/tests/provider, issuer http://localhost:P1;
//   - a second `idbridge serve --dev`, issuer http://localhost:P2, which knows
//     the broker as the confidential client `downstream-broker`;
//   - the broker the scenarios use: `idbridge serve --dev --config` with both as
//     connectors, at http://127.0.0.1:P3.
// The upstreams are `localhost` so that they are other sites than the broker,
// as real upstreams are: cookies are per host, not per port, so two idbridges on
// 127.0.0.1 would share (and overwrite) each other's cookies.
import { see, shows, signedInAtDemo } from "../lib.mjs";
import { Peers, freePort, idbridgeDev, nodeProvider } from "../peers.mjs";
import { chooser, demoSignIn, devSignIn } from "../steps.mjs";

const NODE = "Node OpenID provider";
const CENTRAL = "Central idbridge";
const NODE_SECRET = "node-oidc-provider-secret-0123456789abcdef";
const CENTRAL_CLIENT = "downstream-broker";
const CENTRAL_SECRET = "downstream-broker-secret-0123456789abcdef";

/// Start the upstreams, then the broker that signs in through them.
export async function peers() {
  const group = new Peers("upstreams");
  try {
    const brokerPort = await freePort();
    const broker = `http://127.0.0.1:${brokerPort}`;
    const nodeIssuer = await nodeProvider(group, {
      redirectUris: [`${broker}/callback/node-op`],
      clientSecret: NODE_SECRET,
      host: "localhost",
    });
    const centralPort = await freePort();
    const central = `http://localhost:${centralPort}`;
    await idbridgeDev(group, "central", {
      port: centralPort,
      env: { IDBRIDGE__ISSUER: central },
      config: `[[clients]]
id = "${CENTRAL_CLIENT}"
name = "Regional broker (browser test)"
secret = "${CENTRAL_SECRET}"
redirect_uris = ["${broker}/callback/central"]
`,
    });
    await idbridgeDev(group, "broker", {
      port: brokerPort,
      config: `[[connectors]]
id = "node-op"
type = "oidc"
name = "${NODE}"
issuer = "${nodeIssuer}"
client_id = "idbridge"
client_secret = "${NODE_SECRET}"
scopes = ["openid", "profile", "email"]

[[connectors]]
id = "central"
type = "oidc"
name = "${CENTRAL}"
issuer = "${central}"
client_id = "${CENTRAL_CLIENT}"
client_secret = "${CENTRAL_SECRET}"
scopes = ["openid", "profile"]
`,
    });
    return { broker, upstreams: { node: nodeIssuer, central }, tails: () => group.tails(), close: () => group.close() };
  } catch (e) {
    const tails = group.tails();
    await group.close();
    throw new Error(`${e.message}\n${tails}`);
  }
}

/// The broker's chooser, then `method`; the browser ends up at `upstream`.
async function toUpstream(page, run, method, upstream) {
  await demoSignIn(page, run);
  await chooser(page, run);
  await page.getByRole("link", { name: method }).click();
  await page.waitForURL((u) => u.origin === upstream);
}

/// node oidc-provider's login page as `user`, then its consent page.
async function nodeLogin(page, user, password = "wonderland") {
  await see(page.getByRole("heading", { name: "Sign in to the test OpenID provider" }), "oidc-provider's login page");
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function nodeConsent(page) {
  await see(page.getByRole("heading", { name: "Allow idbridge?" }), "oidc-provider's consent page");
  await page.getByRole("button", { name: "Allow" }).click();
}

function linked(idToken, id) {
  if (!Array.isArray(idToken.linked_connectors) || !idToken.linked_connectors.includes(id)) {
    throw new Error(`expected linked_connectors to name ${id}, got ${JSON.stringify(idToken.linked_connectors)}`);
  }
}

export const scenarios = [
  {
    name: "node oidc-provider upstream: its login (a wrong password first) and consent pages → signed in as Alice; again in a new browser → the same sub",
    async run(run) {
      const subs = [];
      for (const round of [1, 2]) {
        const page = await run.newPage();
        await toUpstream(page, run, NODE, run.peers.upstreams.node);
        if (round === 1) {
          await nodeLogin(page, "alice", "not-the-password");
          await see(page.getByRole("alert").filter({ hasText: "Wrong username or password." }), "oidc-provider refusing the password");
        }
        await nodeLogin(page, "alice");
        await nodeConsent(page);
        const { idToken, userinfo, sub } = await signedInAtDemo(page, run);
        await shows(page, "Alice Liddell");
        if (idToken.name !== "Alice Liddell" || userinfo.name !== "Alice Liddell") {
          throw new Error(`round ${round}: expected Alice Liddell from oidc-provider, got ${idToken.name} / ${userinfo.name}`);
        }
        if (idToken.iss !== run.broker) throw new Error(`the app's ID token is from ${idToken.iss}, not the broker`);
        linked(idToken, "node-op");
        subs.push(sub);
      }
      if (subs[0] !== subs[1]) throw new Error(`a returning person got another sub: ${subs[0]} then ${subs[1]}`);
    },
  },
  {
    name: "node oidc-provider upstream: Deny on its consent page → the app is told access_denied",
    async run(run) {
      const page = await run.newPage();
      await toUpstream(page, run, NODE, run.peers.upstreams.node);
      await nodeLogin(page, "bob");
      await see(page.getByRole("heading", { name: "Allow idbridge?" }), "oidc-provider's consent page");
      await page.getByRole("link", { name: "Deny" }).click();
      await page.waitForURL(/\/demo\/callback/);
      await see(page.getByRole("alert").filter({ hasText: "access_denied" }), "the app's access_denied message");
    },
  },
  {
    name: "a second idbridge upstream: its chooser → its development login as zhangwei → its consent page → signed in as 张伟; again in a new browser (consent remembered) → the same sub",
    async run(run) {
      const subs = [];
      for (const round of [1, 2]) {
        const page = await run.newPage();
        await toUpstream(page, run, CENTRAL, run.peers.upstreams.central);
        // The upstream idbridge's own pages, in the browser's language.
        await chooser(page, run);
        await shows(page, "Regional broker (browser test)");
        // With the keyboard: on this chooser (another site than the WeChat QR
        // frame in it) Playwright's mouse clicks on the buttons below the frame
        // were sometimes lost.
        const dev = page.getByRole("link", { name: "Development login (test users)" });
        await dev.focus();
        await page.keyboard.press("Enter");
        await devSignIn(page, run, "zhangwei");
        // The upstream idbridge asks its person once whether the regional
        // broker (not first-party there) may have the account; remembered after.
        if (round === 1) {
          await see(page.getByRole("heading", { name: run.t("Allow access?", "允许访问？") }), "the upstream idbridge's consent page");
          await page.getByRole("button", { name: run.t("Allow", "允许"), exact: true }).click();
        }
        const { idToken, userinfo, sub } = await signedInAtDemo(page, run);
        if (idToken.name !== "张伟" || userinfo.name !== "张伟") {
          throw new Error(`round ${round}: expected 张伟 from the upstream idbridge, got ${idToken.name} / ${userinfo.name}`);
        }
        if (idToken.iss !== run.broker) throw new Error(`the app's ID token is from ${idToken.iss}, not the broker`);
        linked(idToken, "central");
        subs.push(sub);
      }
      if (subs[0] !== subs[1]) throw new Error(`a returning person got another sub: ${subs[0]} then ${subs[1]}`);
    },
  },
];
