// Consent: the single-page app (dev-spa) is not first-party, so its first
// sign-in shows the consent page; the account page lists it and revokes it.
import { see, shows } from "../lib.mjs";
import { allowConsent, chooser, devSignIn } from "../steps.mjs";

const DEV = "Development login (test users)";
const SPA_NAME = "Single-page app (--spa-origin)";

export const scenarios = [
  {
    name: "consent: the SPA's first sign-in shows what it gets → Allow → signed in; the account page revokes it → asked again",
    async run(run) {
      if (!run.spa) throw new Error("no SPA_ORIGIN given (scripts/browser-test passes one)");
      const page = await run.newPage();
      const signedIn = () => page.locator("#status", { hasText: "Signed in" }).waitFor({ timeout: 8_000 });
      await page.goto(`${run.spa}/`);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL((u) => u.origin === run.broker);
      await chooser(page, run);
      await page.getByRole("link", { name: DEV }).click();
      await devSignIn(page, run, "grace");
      // The consent page: the app's name and one line per scope it asked for.
      await page.waitForURL(/\/consent$/);
      await shows(page, SPA_NAME);
      await shows(page, run.t("Your name, picture and other profile details", "你的姓名、头像等个人资料"));
      await shows(page, run.t("Access while you are away", "在你离开时继续访问"));
      await allowConsent(page, run, { shot: true });
      await page.waitForURL((u) => u.origin === run.spa);
      await signedIn();

      // The account page: the app is listed; Revoke.
      await page.goto(`${run.broker}/account`);
      await see(page.getByRole("heading", { name: run.t("Apps you have allowed", "你已授权的应用") }), "the allowed apps");
      await shows(page, SPA_NAME);
      await run.page(page, "account-apps");
      await page.getByRole("button", { name: `${run.t("Revoke", "撤销授权")}: ${SPA_NAME}` }).click();
      await see(page.getByRole("status").filter({ hasText: run.t("Access revoked", "已撤销授权") }), "the revoked notice");
      await shows(page, run.t("You have not allowed any application yet.", "你尚未授权任何应用。"));

      // Signing in to the SPA again asks again (the SSO session answers, then the page).
      await page.goto(`${run.spa}/`);
      await page.getByRole("button", { name: "Sign in" }).click();
      await allowConsent(page, run);
      await page.waitForURL((u) => u.origin === run.spa);
      await signedIn();
    },
  },
];
