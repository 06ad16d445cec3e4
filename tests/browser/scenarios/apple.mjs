// Sign in with Apple through its dev-mode fake (provider-sim), which the browser
// reaches as http://localhost:PORT while the broker is http://127.0.0.1:PORT:
// another site, so Apple's response_mode=form_post callback is a cross-site POST
// and Chromium leaves the broker's SameSite=Lax cookie out of it, as with the
// real Apple. The broker must post the fields again from its own origin (with
// the cookie) for the sign-in to finish.
import { see, shows, signedInAtDemo } from "../lib.mjs";
import { chooser, demoSignIn } from "../steps.mjs";

const APPLE = "Sign in with Apple (simulator)";

/// Record the POSTs to the broker's Apple callback in `page`: their form
/// fields and whether the broker's browser cookie came with them.
function watchCallbacks(page, run) {
  const posts = [];
  page.on("request", (req) => {
    const url = new URL(req.url());
    if (req.method() !== "POST" || url.origin !== run.broker || url.pathname !== "/callback/apple") return;
    posts.push(
      req.allHeaders().then((headers) => ({
        fields: new URLSearchParams(req.postData() ?? ""),
        cookie: /(^|;\s*)idb_browser=/.test(headers.cookie ?? ""),
        origin: headers.origin,
      })),
    );
  });
  return async () => Promise.all(posts);
}

/// Both callback POSTs of one sign-in: Apple's cross-site one without the
/// cookie, then the broker's own one with it (marked idb_resubmitted).
async function crossSiteThenSameSite(seen) {
  const posts = await seen();
  if (posts.length !== 2) throw new Error(`expected two POSTs to /callback/apple (Apple's, then the broker's own), saw ${posts.length}`);
  const [apple, again] = posts;
  if (apple.cookie) throw new Error("Apple's cross-site form_post carried the broker's SameSite=Lax cookie: the fake is not on another site");
  if (!apple.origin?.startsWith("http://localhost:")) throw new Error(`Apple's POST came from ${apple.origin}, not the fake's site`);
  if (apple.fields.has("idb_resubmitted")) throw new Error("Apple's POST already had the broker's marker");
  if (!again.cookie) throw new Error("the broker's own re-post did not carry its cookie");
  if (again.fields.get("idb_resubmitted") !== "1") throw new Error("the second POST is not the broker's re-post");
  return apple.fields;
}

/// From the demo app to the Apple fake's page (on localhost).
async function toApple(page, run) {
  await demoSignIn(page, run);
  await chooser(page, run);
  await page.getByRole("link", { name: APPLE }).click();
  await page.waitForURL((u) => u.hostname === "localhost" && u.pathname === "/auth/authorize");
  await see(page.getByRole("heading", { name: "Sign in (provider simulator)" }), "the Apple simulator's page");
}

export const scenarios = [
  {
    name: "Apple (cross-site form_post): first sign-in (broker clock moved) takes the name from the user field; a second one (no user field) keeps name and sub",
    async run(run) {
      const subs = [];
      for (const round of [1, 2]) {
        // A fresh browser each time: no broker session, so Apple is asked again.
        const page = await run.newPage();
        if (round === 1) {
          // The broker's clock eleven minutes ahead of the wall clock (as dev
          // mode's /dev/clock leaves it) before its first client secret is
          // made: the secret carries the broker's time, which the fake, like
          // Apple, checks (an iat in its future is invalid_client).
          const moved = await page.request.post(`${run.broker}/dev/clock?secs=660`);
          if (!moved.ok()) throw new Error(`/dev/clock: ${moved.status()}`);
        }
        const seen = watchCallbacks(page, run);
        await toApple(page, run);
        await page.getByRole("link", { name: "Grace Hopper" }).click();
        const { idToken, userinfo, sub } = await signedInAtDemo(page, run);
        const fields = await crossSiteThenSameSite(seen);
        // Apple sends the name once, in the first authorization's user field.
        if (round === 1 && !fields.has("user")) throw new Error("Apple's first callback has no user field");
        if (round === 2 && fields.has("user")) throw new Error("Apple's second callback has a user field again");
        await shows(page, "Grace Hopper");
        if (idToken.name !== "Grace Hopper" || userinfo.name !== "Grace Hopper") {
          throw new Error(`round ${round}: expected the name Grace Hopper, got ${idToken.name} / ${userinfo.name}`);
        }
        if (!Array.isArray(idToken.linked_connectors) || !idToken.linked_connectors.includes("apple")) {
          throw new Error(`expected linked_connectors to name apple, got ${JSON.stringify(idToken.linked_connectors)}`);
        }
        subs.push(sub);
      }
      if (subs[0] !== subs[1]) throw new Error(`a returning person got another sub: ${subs[0]} then ${subs[1]}`);
    },
  },
  {
    name: "Apple (cross-site form_post): Cancel at Apple → the app is told access_denied",
    async run(run) {
      const page = await run.newPage();
      const seen = watchCallbacks(page, run);
      await toApple(page, run);
      await page.getByRole("link", { name: "Deny" }).click();
      await page.waitForURL(/\/demo\/callback/);
      await see(page.getByRole("alert").filter({ hasText: "access_denied" }), "the app's access_denied message");
      const fields = await crossSiteThenSameSite(seen);
      if (fields.get("error") !== "user_cancelled_authorize") throw new Error(`Apple's callback said ${fields.get("error")}`);
    },
  },
];
