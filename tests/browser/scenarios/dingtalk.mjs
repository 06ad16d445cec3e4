// Sign-in through the dev-mode DingTalk fake (provider-sim): the demo app,
// the chooser, "钉钉 DingTalk (simulator)", the fake's sign-in page (a person
// picked, back with authCode), signed in at the demo.
import { see, shows, signedInAtDemo } from "../lib.mjs";
import { chooser, demoSignIn } from "../steps.mjs";

export const scenarios = [
  {
    name: "DingTalk: demo → chooser → 钉钉 DingTalk (simulator) → sign in as 张三 → signed in",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.getByRole("link", { name: "钉钉 DingTalk (simulator)" }).click();
      await see(page.getByRole("heading", { name: "钉钉 DingTalk simulator" }), "the DingTalk simulator's sign-in page");
      await page.getByRole("link", { name: /Sign in as 张三/ }).click();
      const { idToken } = await signedInAtDemo(page, run);
      await shows(page, "张三 Zhang San");
      if (idToken.name !== "张三 Zhang San") {
        throw new Error(`expected 张三 Zhang San from DingTalk, got ${idToken.name}`);
      }
      if (!Array.isArray(idToken.linked_connectors) || !idToken.linked_connectors.includes("dingtalk")) {
        throw new Error(`expected linked_connectors to name dingtalk, got ${JSON.stringify(idToken.linked_connectors)}`);
      }
    },
  },
  {
    name: "DingTalk: Cancel on the fake's page → the demo app hears access_denied",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.getByRole("link", { name: "钉钉 DingTalk (simulator)" }).click();
      await see(page.getByRole("heading", { name: "钉钉 DingTalk simulator" }), "the DingTalk simulator's sign-in page");
      await page.getByRole("link", { name: "Cancel 取消" }).click();
      await page.waitForURL(/\/demo\/callback\?/);
      await shows(page, "access_denied");
    },
  },
];
