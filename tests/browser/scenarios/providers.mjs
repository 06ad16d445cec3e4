// Sign-in through the dev-mode fakes of OpenID and OAuth 2.0 providers
// (provider-sim): the generic OpenID provider, GitHub, and the Google and
// Entra ID shapes behind the google and microsoft presets.
import { see, shows, signedInAtDemo } from "../lib.mjs";
import { chooser, demoSignIn } from "../steps.mjs";

export const scenarios = [
  {
    name: "an OpenID upstream: demo → chooser → Dev OpenID provider → the fake's page as Ada → signed in",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      // A real type = "oidc" connector: discovery, PKCE, nonce and the ID token
      // checked by the broker against the fake provider's keys.
      await page.getByRole("link", { name: "Dev OpenID provider (simulator)" }).click();
      await see(page.getByRole("link", { name: "Ada Lovelace" }), "the fake OpenID provider's page");
      await page.locator("#as-ada").click();
      const { idToken, userinfo } = await signedInAtDemo(page, run);
      await shows(page, "Ada Lovelace");
      if (idToken.name !== "Ada Lovelace" || userinfo.name !== "Ada Lovelace") {
        throw new Error(`expected Ada Lovelace from the upstream, got ${idToken.name} / ${userinfo.name}`);
      }
      if (!Array.isArray(idToken.linked_connectors) || !idToken.linked_connectors.includes("dev-oidc")) {
        throw new Error(`expected linked_connectors to name dev-oidc, got ${JSON.stringify(idToken.linked_connectors)}`);
      }
    },
  },
  {
    name: "GitHub: demo → chooser → GitHub (simulator) → authorize as octocat → signed in with the numeric id",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.getByRole("link", { name: "GitHub (simulator)" }).click();
      await see(page.getByRole("heading", { name: "GitHub simulator" }), "the GitHub simulator's authorize page");
      await page.getByRole("link", { name: /Authorize as octocat/ }).click();
      const { idToken } = await signedInAtDemo(page, run);
      await shows(page, "The Octocat");
      if (idToken.name !== "The Octocat") {
        throw new Error(`expected The Octocat from GitHub, got ${idToken.name}`);
      }
      if (!Array.isArray(idToken.linked_connectors) || !idToken.linked_connectors.includes("github")) {
        throw new Error(`expected linked_connectors to name github, got ${JSON.stringify(idToken.linked_connectors)}`);
      }
    },
  },
  {
    name: "Google: demo → chooser → Google (simulator) → Grace of the hosted domain → signed in; Omar of no domain refused",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.getByRole("link", { name: "Google (simulator)" }).click();
      await see(page.getByRole("link", { name: "Grace Chen" }), "the Google fake's page");
      await page.locator("#as-grace").click();
      const { idToken } = await signedInAtDemo(page, run);
      if (idToken.name !== "Grace Chen" || !idToken.linked_connectors?.includes("google")) {
        throw new Error(`expected Grace Chen through google, got ${JSON.stringify(idToken)}`);
      }
      // Another browser: a Google account outside the hosted domain.
      const other = await run.newPage();
      await demoSignIn(other, run);
      await chooser(other, run);
      await other.getByRole("link", { name: "Google (simulator)" }).click();
      await other.locator("#as-omar").click();
      await other.waitForURL(/\/callback\/google/);
      await shows(other, run.t("This account cannot be used to sign in here.", "此账号不能用于登录。"));
    },
  },
  {
    name: "Microsoft: demo → chooser → Microsoft (simulator) → Mei of the allowed tenant → signed in; Olaf of another tenant refused",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.getByRole("link", { name: "Microsoft (simulator)" }).click();
      await see(page.getByRole("link", { name: "Mei Wong" }), "the Entra ID fake's page");
      await page.locator("#as-mei").click();
      const { idToken } = await signedInAtDemo(page, run);
      if (idToken.name !== "Mei Wong" || !idToken.linked_connectors?.includes("microsoft")) {
        throw new Error(`expected Mei Wong through microsoft, got ${JSON.stringify(idToken)}`);
      }
      const other = await run.newPage();
      await demoSignIn(other, run);
      await chooser(other, run);
      await other.getByRole("link", { name: "Microsoft (simulator)" }).click();
      await other.locator("#as-olaf").click();
      await other.waitForURL(/\/callback\/microsoft/);
      await shows(other, run.t("This account cannot be used to sign in here.", "此账号不能用于登录。"));
    },
  },
];
