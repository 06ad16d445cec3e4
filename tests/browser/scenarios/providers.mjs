// Sign-in through the dev-mode fakes of OpenID and OAuth 2.0 providers
// (provider-sim): the generic OpenID provider and GitHub.
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
];
