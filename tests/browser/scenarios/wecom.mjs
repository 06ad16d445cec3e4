// Sign-in through the dev-mode WeCom (企业微信) fake (provider-sim): the web QR
// login from a desktop browser, a non-member refused, and the in-WeCom page
// picked by the broker itself inside the WeCom client.
import { see, shows, signedInAtDemo } from "../lib.mjs";
import { chooser, demoSignIn } from "../steps.mjs";

const WECOM_UA =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 wxwork/4.1.22 MicroMessenger/7.0.1 Language/zh";

function linked(idToken) {
  if (!Array.isArray(idToken.linked_connectors) || !idToken.linked_connectors.includes("wecom")) {
    throw new Error(`expected linked_connectors to name wecom, got ${JSON.stringify(idToken.linked_connectors)}`);
  }
}

export const scenarios = [
  {
    name: "WeCom: demo → chooser → 企业微信 WeCom (simulator) → the QR page as 张三 → signed in",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.getByRole("link", { name: "企业微信 WeCom (simulator)" }).click();
      await page.waitForURL(/\/wwlogin\/sso\/login\?login_type=CorpApp/);
      await see(page.getByRole("heading", { name: /WeCom QR login/ }), "the WeCom simulator's QR page");
      await run.shot(page, "wecom-qr");
      await page.getByRole("link", { name: /Sign in as member 张三/ }).click();
      const { idToken } = await signedInAtDemo(page, run);
      await shows(page, "张三");
      if (idToken.name !== "张三") throw new Error(`expected 张三 from WeCom, got ${idToken.name}`);
      linked(idToken);
    },
  },
  {
    name: "WeCom: a non-member picked on the QR page gets a page saying only members may sign in",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.getByRole("link", { name: "企业微信 WeCom (simulator)" }).click();
      await page.getByRole("link", { name: /Sign in as a non-member/ }).click();
      await see(
        page.getByText(run.t("Only members of this organisation's WeCom may sign in here", "此处仅允许本企业的企业微信成员登录")),
        "the refusal's advice in the person's language",
      );
      await run.page(page, "wecom-non-member");
    },
  },
  {
    name: "WeCom: inside the WeCom client the broker goes to WeCom's in-app page by itself → 李四 → signed in",
    async run(run) {
      const page = await run.newPage({ userAgent: WECOM_UA });
      await demoSignIn(page, run);
      // No chooser: the only connector preferred in WeCom's browser is picked.
      await page.waitForURL(/\/connect\/oauth2\/authorize\?appid=/);
      await see(page.getByRole("heading", { name: /WeCom in-app authorization/ }), "the WeCom simulator's in-app page");
      await page.getByRole("link", { name: /Sign in as member 李四/ }).click();
      const { idToken } = await signedInAtDemo(page, run);
      if (idToken.name !== "李四") throw new Error(`expected 李四 from WeCom, got ${idToken.name}`);
      linked(idToken);
    },
  },
];
