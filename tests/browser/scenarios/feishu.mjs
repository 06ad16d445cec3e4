// Sign-in through the dev-mode Feishu fake (provider-sim's `feishu`): the demo
// app → the chooser → "飞书 Feishu (simulator)" → the fake's authorization page
// → a person picked → signed in at the demo; and a person outside the app's
// availability range (Feishu's error 20010) gets the broker's 403 page with
// what to ask for, in the run's language.
import { see, shows, signedInAtDemo } from "../lib.mjs";
import { chooser, demoSignIn } from "../steps.mjs";

export const scenarios = [
  {
    name: "Feishu: demo → chooser → 飞书 Feishu (simulator) → sign in as 张三 → signed in with the union_id subject",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.getByRole("link", { name: "飞书 Feishu (simulator)" }).click();
      await see(page.getByRole("heading", { name: "飞书 Feishu simulator" }), "the Feishu simulator's authorization page");
      await page.getByRole("link", { name: /Sign in as 张三/ }).click();
      const { idToken } = await signedInAtDemo(page, run);
      await shows(page, "张三 Zhang San");
      if (idToken.name !== "张三 Zhang San") {
        throw new Error(`expected 张三 Zhang San from Feishu, got ${idToken.name}`);
      }
      if (!Array.isArray(idToken.linked_connectors) || !idToken.linked_connectors.includes("feishu")) {
        throw new Error(`expected linked_connectors to name feishu, got ${JSON.stringify(idToken.linked_connectors)}`);
      }
    },
  },
  {
    name: "Feishu: a person outside the app's availability range (20010) gets the 403 page saying whom to ask",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.getByRole("link", { name: "飞书 Feishu (simulator)" }).click();
      const answer = page.waitForResponse((r) => r.url().includes("/callback/feishu"));
      await page.getByRole("link", { name: /Sign in as 李四/ }).click();
      const status = (await answer).status();
      if (status !== 403) throw new Error(`expected a 403 page, got HTTP ${status}`);
      await shows(page, run.t("availability range", "可用范围"));
    },
  },
];
