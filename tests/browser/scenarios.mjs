// What a person does with `idbridge serve --dev` in a real browser, step by step,
// and what they see. Each scenario gets a fresh browser (its own cookies); the
// broker and the WeChat simulator are shared within one language's run, so each
// scenario uses its own test users and phone numbers.
import { see, shows, signedInAtDemo } from "./lib.mjs";
import { allowConsent, chooser, demoSignIn, devSignIn, masked, scanAs, typeCode, verifyPhone } from "./steps.mjs";

const WECHAT = "微信登录 WeChat (simulator)";
const WECHAT_QR = "微信扫码 WeChat QR on this page (simulator)";
const WECHAT_UNBOUND = "微信登录（需关联账号）WeChat, link to your account first (simulator)";
const DEV = "Development login (test users)";
const MP_APPID = "wx5d1e7c0a9b3f2402";

export const scenarios = [
  {
    name: "create: demo → chooser (inline QR and buttons) → simulator scan as 王小明 → signed in",
    async run(run) {
      const page = await run.newPage();
      await page.goto(`${run.broker}/demo`);
      await see(page.getByRole("heading", { name: run.t("idbridge demo app", "idbridge 示例应用") }), "the demo app");
      await run.page(page, "demo-home");
      await page.getByRole("link", { name: run.t("Sign in", "登录"), exact: true }).click();
      await chooser(page, run);
      // The embedded QR is on the chooser itself, in WeChat's frame…
      const inline = await see(page.getByRole("region", { name: WECHAT_QR }), "the inline WeChat QR section");
      await see(inline.locator("iframe"), "WeChat's QR frame");
      await see(page.frameLocator("iframe").getByRole("heading", { name: run.t("WeChat Login", "微信登录") }), "the QR page inside the frame");
      // …and the other methods are buttons below "Or sign in another way".
      await see(page.getByRole("heading", { name: run.t("Or sign in another way", "或选择其他方式") }), "the other methods' heading");
      await see(page.getByRole("link", { name: WECHAT }), "the WeChat (redirect) button");
      await see(page.getByRole("link", { name: DEV }), "the development login button");
      await see(page.getByText(run.t("Return to the application", "返回应用")), "the way back to the app");
      await run.page(page, "chooser");
      await page.getByRole("link", { name: WECHAT }).click();
      await scanAs(page, run, "xiaoming", { shot: true });
      const { idToken, userinfo } = await signedInAtDemo(page, run);
      await shows(page, "王小明🐼✨");
      if (idToken.name !== "王小明🐼✨" || userinfo.name !== "王小明🐼✨") {
        throw new Error(`expected the name 王小明🐼✨ in the ID token and userinfo, got ${idToken.name} / ${userinfo.name}`);
      }
      await run.page(page, "demo-signed-in");
    },
  },
  {
    name: "embedded QR: confirm inside the chooser's frame → the whole window returns to the app",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run);
      await chooser(page, run);
      await page.frameLocator("iframe").locator("#confirm-alice").click();
      const { idToken } = await signedInAtDemo(page, run);
      if (idToken.name !== "Alice") throw new Error(`expected Alice in the ID token, got ${idToken.name}`);
    },
  },
  {
    name: "bind: a new WeChat sign-in proves an existing account by another method → same sub",
    async run(run) {
      // An existing account, through the development login.
      const first = await run.newPage();
      await demoSignIn(first, run);
      await chooser(first, run);
      await first.getByRole("link", { name: DEV }).click();
      await devSignIn(first, run, "bind-other", { shot: true });
      const existing = await signedInAtDemo(first, run);

      // Another browser: WeChat with first_login = bind.
      const page = await run.newPage();
      await demoSignIn(page, run, WECHAT_UNBOUND);
      await scanAs(page, run, "alice2");
      await page.waitForURL(/\/bind$/);
      await see(page.getByRole("heading", { name: run.t("Link to your account", "关联已有账号") }), "the bind page");
      await shows(page, run.t("This sign-in is not linked to an account yet:", "此登录方式尚未关联账号："));
      await shows(page, WECHAT_UNBOUND);
      await see(page.getByRole("heading", { name: run.t("Sign in another way you have used before", "用你以前用过的其他方式登录") }), "the other-methods heading");
      await see(page.getByRole("heading", { name: run.t("Or get a one-time code", "或获取一次性验证码") }), "the one-time-code heading");
      await run.page(page, "bind");
      await page.getByRole("link", { name: DEV }).click();
      await devSignIn(page, run, "bind-other");
      const bound = await signedInAtDemo(page, run);
      if (bound.sub !== existing.sub) throw new Error(`bound to another account: sub ${bound.sub}, expected ${existing.sub}`);

      // From now on that WeChat sign-in goes straight in, to the same account.
      const again = await run.newPage();
      await demoSignIn(again, run, WECHAT_UNBOUND);
      await scanAs(again, run, "alice2");
      const direct = await signedInAtDemo(again, run);
      if (direct.sub !== existing.sub) throw new Error(`second WeChat sign-in: sub ${direct.sub}, expected ${existing.sub}`);
    },
  },
  {
    name: "bind by one-time code: the account's verified phone gets a code (dev outbox) → same sub",
    async run(run) {
      // An account with a verified phone number, through the phone step.
      const ctx = await run.browserContext();
      const first = await ctx.newPage();
      await demoSignIn(first, run, run.t("Sign in to an app that needs a verified phone number", "登录到需要验证手机号的应用"));
      await chooser(first, run);
      await first.getByRole("link", { name: DEV }).click();
      await devSignIn(first, run, "bind-code");
      const code = await verifyPhone(first, run, ctx, "13900139000", "+8613900139000");
      await typeCode(first, run, code);
      const existing = await signedInAtDemo(first, run);
      // The test broker allows a new code to the same number after one second.
      await first.waitForTimeout(1_100);

      const ctx2 = await run.browserContext();
      const page = await ctx2.newPage();
      await demoSignIn(page, run, WECHAT_UNBOUND);
      await scanAs(page, run, "xiaoming");
      await see(page.getByRole("heading", { name: run.t("Link to your account", "关联已有账号") }), "the bind page");
      await page.getByLabel(run.t("Phone number", "手机号")).fill("139 0013 9000");
      await page.getByRole("button", { name: run.t("Send code", "发送验证码") }).click();
      await see(page.getByRole("heading", { name: run.t("Enter the code", "输入验证码") }), "the code page");
      // The same words whether or not the number belongs to an account.
      await shows(page, run.t("If this number belongs to an account, we sent its owner a 6-digit code", "如果此手机号属于某个账号，我们已向其发送 6 位验证码"));
      await run.page(page, "bind-code");
      await typeCode(page, run, await run.codeFromOutbox(ctx2, "+8613900139000"));
      const bound = await signedInAtDemo(page, run);
      if (bound.sub !== existing.sub) throw new Error(`bound to another account: sub ${bound.sub}, expected ${existing.sub}`);
    },
  },
  {
    name: "bind by one-time code sent into WeChat: an in-WeChat account with a phone gets the code in its chat → same sub",
    async run(run) {
      // In WeChat: the Official Account sign-in, then the phone step.
      const ctx = await run.browserContext({ wechat: true });
      const first = await ctx.newPage();
      await demoSignIn(first, run, run.t("Sign in to an app that needs a verified phone number", "登录到需要验证手机号的应用"));
      await first.waitForURL(/\/connect\/oauth2\/authorize/);
      await first.locator("#confirm-alice").click();
      await typeCode(first, run, await verifyPhone(first, run, ctx, "13700137000", "+8613700137000"));
      const existing = await signedInAtDemo(first, run);
      // Alice writes to the Official Account, so it may message her for 48 hours.
      await run.simApi("POST", `interaction?appid=${MP_APPID}&user=alice`);
      await first.waitForTimeout(1_100);

      // On a desktop: a WeChat website sign-in that must be linked first.
      const page = await run.newPage();
      await demoSignIn(page, run, WECHAT_UNBOUND);
      await scanAs(page, run, "alice");
      await see(page.getByRole("heading", { name: run.t("Link to your account", "关联已有账号") }), "the bind page");
      const before = (await run.simApi("GET", "messages")).length;
      await page.getByLabel(run.t("Phone number", "手机号")).fill("+86 137 0013 7000");
      await page.getByRole("button", { name: run.t("Send code", "发送验证码") }).click();
      await see(page.getByRole("heading", { name: run.t("Enter the code", "输入验证码") }), "the code page");
      const messages = (await run.simApi("GET", "messages")).slice(before).filter((m) => m.appid === MP_APPID);
      const code = messages.map((m) => m.content.match(/\b(\d{6})\b/)?.[1]).find(Boolean);
      if (!code) throw new Error(`no code arrived in Alice's WeChat chat: ${JSON.stringify(messages)}`);
      await typeCode(page, run, code);
      const bound = await signedInAtDemo(page, run);
      if (bound.sub !== existing.sub) throw new Error(`bound to another account: sub ${bound.sub}, expected ${existing.sub}`);
    },
  },
  {
    name: "phone step: an app that needs a verified number → phone page → wrong code → right code → phone_number",
    async run(run) {
      const ctx = await run.browserContext();
      const page = await ctx.newPage();
      await demoSignIn(page, run, run.t("Sign in to an app that needs a verified phone number", "登录到需要验证手机号的应用"));
      await chooser(page, run);
      await page.getByRole("link", { name: DEV }).click();
      await devSignIn(page, run, "phone-step");
      await page.waitForURL(/\/phone$/);
      await see(page.getByRole("heading", { name: run.t("Add your phone number", "验证手机号") }), "the phone page");
      await shows(page, run.t("Verify a phone number to continue to", "请验证手机号，以继续登录"));
      await run.page(page, "phone");
      // Not a number first: the page says what is wrong and keeps what was typed.
      await page.getByLabel(run.t("Phone number", "手机号")).fill("12345");
      await page.getByRole("button", { name: run.t("Send code", "发送验证码") }).click();
      await see(page.getByRole("alert").filter({ hasText: run.t("does not look like a phone number", "手机号格式不正确") }), "the invalid-number message");
      await run.page(page, "phone-invalid");
      const code = await verifyPhone(page, run, ctx, "13800138000", "+8613800138000");
      await run.page(page, "code");
      // A wrong code: the page says so, with the attempts left.
      const wrong = code.replace(/^./, (d) => String((Number(d) + 1) % 10));
      await typeCode(page, run, wrong);
      await see(page.getByRole("alert").filter({ hasText: run.t("Attempts left", "剩余次数") }), "the wrong-code message with attempts left");
      await shows(page, masked("+8613800138000"));
      await run.page(page, "code-wrong");
      await typeCode(page, run, code);
      const { idToken, userinfo } = await signedInAtDemo(page, run);
      if (idToken.phone_number !== "+8613800138000" || idToken.phone_number_verified !== true) {
        throw new Error(`the ID token lacks the verified phone number: ${JSON.stringify(idToken)}`);
      }
      if (userinfo.phone_number !== "+8613800138000") throw new Error(`userinfo lacks phone_number: ${JSON.stringify(userinfo)}`);
    },
  },
  {
    name: "in WeChat: a WeChat User-Agent goes straight to the Official Account page (no chooser) → allow → signed in",
    async run(run) {
      const page = await run.newPage({ wechat: true });
      const documents = [];
      page.on("response", (r) => {
        if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) documents.push(`${r.status()} ${r.url()}`);
      });
      await page.goto(`${run.broker}/demo`);
      await run.page(page, "demo-home-wechat", { shot: false });
      await page.getByRole("link", { name: run.t("Sign in", "登录"), exact: true }).click();
      await page.waitForURL(/\/connect\/oauth2\/authorize/);
      const chooserShown = documents.filter((d) => d.startsWith("200 ") && /\/login\//.test(d));
      if (chooserShown.length) throw new Error(`a chooser was shown inside WeChat: ${chooserShown.join(", ")}`);
      // The simulator's consent page, as WeChat shows it (in Chinese, like the app).
      await see(page.getByRole("heading", { name: "授权" }), "the Official Account's consent page");
      await see(page.locator("#current-user"), "the current WeChat user");
      await run.shot(page, "wechat-official-account");
      await page.locator("#allow").click();
      const { idToken } = await signedInAtDemo(page, run);
      if (idToken.name !== "Alice") throw new Error(`expected Alice, got ${idToken.name}`);
    },
  },
  {
    name: "account page: sign in → one method (cannot be removed) → link another → unlink one",
    async run(run) {
      const page = await run.newPage();
      await page.goto(`${run.broker}/account`);
      await chooser(page, run);
      await page.getByRole("link", { name: DEV }).click();
      await devSignIn(page, run, "account-owner");
      await page.waitForURL(/\/account$/);
      await see(page.getByRole("heading", { name: run.t("Your account", "我的账号") }), "the account page");
      const methods = page.getByRole("list", { name: run.t("Sign-in methods", "登录方式"), exact: true }).getByRole("listitem");
      if ((await methods.count()) !== 1) throw new Error(`expected one sign-in method, found ${await methods.count()}`);
      await see(methods.getByText("account-owner"), "the linked development login");
      await shows(page, run.t("Your only sign-in method cannot be removed.", "唯一的登录方式不能移除。"));
      await run.page(page, "account");

      // Link another: the development login as a second test user.
      const link = page.getByRole("list", { name: run.t("Link another sign-in method", "关联其他登录方式") });
      await link.getByRole("button", { name: DEV }).click();
      await devSignIn(page, run, "account-second");
      await page.waitForURL(/\/account\?done=linked/);
      await see(page.getByRole("status").filter({ hasText: run.t("Linked. You can now sign in this way too.", "已关联。以后也可以用这种方式登录。") }), "the linked notice");
      if ((await methods.count()) !== 2) throw new Error(`expected two sign-in methods, found ${await methods.count()}`);
      await run.page(page, "account-linked");

      // Unlink the first one.
      await methods.filter({ hasText: "account-owner" }).getByRole("button", { name: run.t("Unlink", "解除关联") }).click();
      await page.waitForURL(/\/account\?done=unlinked/);
      await see(page.getByRole("status").filter({ hasText: run.t("Unlinked.", "已解除关联。") }), "the unlinked notice");
      if ((await methods.count()) !== 1) throw new Error(`expected one sign-in method left, found ${await methods.count()}`);
      await see(methods.getByText("account-second"), "the remaining method");
    },
  },
  {
    name: "account page: an old sign-in must confirm it's you (sign in again) before linking",
    async run(run) {
      const page = await run.newPage();
      await page.goto(`${run.broker}/account`);
      await chooser(page, run);
      await page.getByRole("link", { name: DEV }).click();
      await devSignIn(page, run, "step-up-owner");
      await page.waitForURL(/\/account$/);
      // Eleven minutes later (the dev clock moves; nothing waits).
      const moved = await page.request.post(`${run.broker}/dev/clock?secs=660`);
      if (!moved.ok()) throw new Error(`/dev/clock: ${moved.status()}`);
      const link = page.getByRole("list", { name: run.t("Link another sign-in method", "关联其他登录方式") });
      await link.getByRole("button", { name: DEV }).click();
      await see(page.getByRole("heading", { name: run.t("Confirm it's you", "确认是你本人") }), "the confirm page");
      await shows(page, run.t("Changing your sign-in methods needs a recent sign-in.", "修改登录方式需要最近登录过。"));
      await run.page(page, "confirm");
      await page.getByRole("button", { name: run.t("Sign in again", "重新登录") }).click();
      await chooser(page, run);
      await page.getByRole("link", { name: DEV }).click();
      await devSignIn(page, run, "step-up-owner");
      await page.waitForURL(/\/account$/);
      await link.getByRole("button", { name: DEV }).click();
      await devSignIn(page, run, "step-up-second");
      await page.waitForURL(/\/account\?done=linked/);
      const methods = page.getByRole("list", { name: run.t("Sign-in methods", "登录方式"), exact: true }).getByRole("listitem");
      if ((await methods.count()) !== 2) throw new Error(`expected two sign-in methods, found ${await methods.count()}`);
    },
  },
  {
    name: "error pages: unknown app, unregistered redirect_uri (no redirect), a used sign-in request",
    async run(run) {
      const page = await run.newPage();
      const redirect = encodeURIComponent(`${run.broker}/demo/callback`);
      await page.goto(`${run.broker}/authorize?client_id=nope&response_type=code&scope=openid&redirect_uri=${redirect}`);
      await see(page.getByRole("heading", { name: run.t("Sign-in failed", "无法登录") }), "the error page");
      await see(page.getByRole("alert").filter({ hasText: run.t("an application this broker does not know", "未注册的应用") }), "what happened");
      await shows(page, run.t("Contact the application's developer", "请联系该应用的开发者"));
      await run.page(page, "error");

      const evil = encodeURIComponent("http://127.0.0.1:9/steal");
      const url = `${run.broker}/authorize?client_id=demo&response_type=code&scope=openid&redirect_uri=${evil}`;
      await page.goto(url);
      await see(page.getByRole("alert").filter({ hasText: run.t("does not exactly match", "不一致") }), "the redirect_uri error");
      await shows(page, run.t("For your safety you were not sent back.", "为安全起见不会跳转。"));
      if (page.url() !== url) throw new Error(`the browser was sent on to ${page.url()}`);
      await run.page(page, "error-redirect-uri");

      // A sign-in method the app does not have.
      await demoSignIn(page, run);
      await chooser(page, run);
      const chooserUrl = page.url();
      await page.goto(`${chooserUrl}?connector=nope`);
      await see(page.getByRole("alert").filter({ hasText: run.t("This sign-in method is not available for this application: nope", "此应用不能使用这种登录方式： nope") }), "the unknown-method error");

      // A finished sign-in's chooser cannot be used again.
      await page.goto(chooserUrl);
      await page.getByRole("link", { name: DEV }).click();
      await devSignIn(page, run, "error-pages");
      await signedInAtDemo(page, run);
      await page.goto(chooserUrl);
      await see(page.getByRole("alert").filter({ hasText: run.t("has expired or was already used", "已过期或已被使用") }), "the used-request error");
      await shows(page, run.t("Go back to the application and start signing in again.", "请回到应用重新开始登录。"));
      await run.page(page, "error-expired");
    },
  },
  {
    name: "refuse at WeChat: the app is told access_denied and says so",
    async run(run) {
      const page = await run.newPage();
      await demoSignIn(page, run, WECHAT);
      await page.waitForURL(/\/connect\/qrconnect/);
      await page.locator("#refuse").click();
      await page.waitForURL(/\/demo\/callback/);
      await see(page.getByRole("alert").filter({ hasText: "access_denied" }), "the app's access_denied message");
    },
  },
  {
    name: "SPA on another origin (oidc-client-ts): sign in (code + PKCE) → userinfo → refresh → revoke → sign out, no CORS errors",
    async run(run) {
      if (!run.spa) throw new Error("no SPA_ORIGIN given (scripts/browser-test passes one)");
      const page = await run.newPage();
      // Every console error a cross-origin fetch could cause (a 401 from userinfo
      // after revocation is expected; CORS refusals are not).
      const corsErrors = [];
      page.on("console", (m) => {
        if (m.type() === "error" && /CORS|Access-Control|ERR_FAILED/i.test(m.text())) corsErrors.push(m.text());
      });
      const field = (id) => page.locator(`#${id}`);
      const expectText = async (id, text, what) => {
        try {
          await page.locator(`#${id}`, { hasText: text }).waitFor({ timeout: 8_000 });
        } catch {
          const error = (await field("error").innerText()).trim();
          throw new Error(`expected ${what} (#${id} = ${JSON.stringify(text)}), found ${JSON.stringify(await field(id).innerText())}${error ? `; the SPA says: ${error}` : ""}`);
        }
      };
      await page.goto(`${run.spa}/`);
      await expectText("status", "Not signed in", "the SPA before sign-in");
      await page.getByRole("button", { name: "Sign in" }).click();
      // The broker's chooser, then the development login's form as Alice: its
      // submission ends, through the callback, at the SPA's origin, which the
      // page's CSP form-action must allow (Chromium checks every redirect of a
      // form submission against it).
      await page.waitForURL((u) => u.origin === run.broker);
      await chooser(page, run);
      await page.getByRole("link", { name: DEV }).click();
      await devSignIn(page, run, "alice");
      // The SPA is not first-party: its first sign-in asks Alice's consent.
      await allowConsent(page, run);
      // Back at the SPA: signinRedirectCallback redeemed the code at /token and
      // loaded /userinfo, both cross-origin.
      await page.waitForURL((u) => u.origin === run.spa);
      await expectText("status", "Signed in", "the SPA signed in");
      await expectText("name", "Alice", "Alice's name (from userinfo)");
      const sub = (await field("sub").innerText()).trim();
      await page.getByRole("button", { name: "Call userinfo" }).click();
      await expectText("userinfo", "200 Alice", "userinfo answering the SPA");
      // A refresh (the refresh token, offline_access) and userinfo with the new token.
      await page.getByRole("button", { name: "Refresh tokens" }).click();
      await expectText("status", "Refreshed", "the refresh");
      await expectText("refreshed", "yes", "a new refresh token");
      if ((await field("sub").innerText()).trim() !== sub) throw new Error("the refresh changed the subject");
      await field("userinfo").evaluate((e) => (e.textContent = ""));
      await page.getByRole("button", { name: "Call userinfo" }).click();
      await expectText("userinfo", "200 Alice", "userinfo with the refreshed access token");
      // Revocation ends the grant: the access token no longer works either.
      await page.getByRole("button", { name: "Revoke tokens" }).click();
      await expectText("status", "Tokens revoked", "the revocation");
      await page.getByRole("button", { name: "Call userinfo" }).click();
      await expectText("userinfo", "401", "userinfo refusing the revoked grant's access token");
      // Sign out at the broker (the ID token names the session: no question asked).
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL((u) => u.origin === run.spa && u.searchParams.has("state"));
      await expectText("status", "Signed out", "the SPA signed out");
      const left = await page.evaluate(() => Object.keys(sessionStorage).filter((k) => k.startsWith("oidc.user:")));
      if (left.length) throw new Error(`the SPA still holds a user after signing out: ${left.join(", ")}`);
      if (corsErrors.length) throw new Error(`CORS errors in the console:\n  ${corsErrors.join("\n  ")}`);
    },
  },
  {
    name: "language: the app's ui_locales wins over the browser's language",
    async run(run) {
      const page = await run.newPage();
      await page.goto(`${run.broker}/demo/login?ui_locales=${run.zh ? "en" : "zh-CN"}`);
      await page.waitForURL(/\/login\//);
      await see(page.getByRole("heading", { name: run.zh ? "Choose how to sign in" : "选择登录方式" }), "the chooser in the app's language");
      const lang = await page.locator("html").getAttribute("lang");
      if (lang !== (run.zh ? "en" : "zh-CN")) throw new Error(`<html lang="${lang}">`);
    },
  },
];
