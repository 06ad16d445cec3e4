// Steps the scenarios share: what a person does on the demo app, the chooser,
// the development sign-in, the simulator's QR page, the phone step and the
// consent page.
import { see, shows } from "./lib.mjs";

/// The demo app's home page, then its "Sign in" button.
export async function demoSignIn(page, run, button) {
  await page.goto(`${run.broker}/demo`);
  await see(page.getByRole("heading", { name: run.t("idbridge demo app", "idbridge 示例应用") }), "the demo app");
  await page.getByRole("link", { name: button ?? run.t("Sign in", "登录"), exact: true }).click();
}

/// On the chooser: the heading, the app's name; then pick `method`.
export async function chooser(page, run, { shot = false } = {}) {
  await page.waitForURL(/\/login\/[^/?]+$/);
  await see(page.getByRole("heading", { name: run.t("Choose how to sign in", "选择登录方式") }), "the chooser");
  if (shot) await run.page(page, "chooser");
}

/// The development sign-in page: type a test user name and sign in.
export async function devSignIn(page, run, user, { shot = false } = {}) {
  await see(page.getByRole("heading", { name: run.t("Development sign-in", "开发用登录") }), "the development sign-in page");
  if (shot) await run.page(page, "dev-login");
  await page.getByLabel(run.t("or type another test user name", "或输入其他测试用户名")).fill(user);
  await page.getByRole("button", { name: run.t("Sign in", "登录"), exact: true }).click();
}

/// The simulator's QR page (website login): confirm as a test user.
export async function scanAs(page, run, user, { shot = false } = {}) {
  await page.waitForURL(/\/connect\/qrconnect/);
  await see(page.getByRole("heading", { name: run.t("WeChat Login", "微信登录") }), "the simulator's WeChat login page");
  if (shot) await run.shot(page, "wechat-scan");
  await page.locator(`#confirm-${user}`).click();
}

/// The phone step: type a number, read the code from the dev outbox, type it.
export async function verifyPhone(page, run, ctx, number, e164) {
  await see(page.getByRole("heading", { name: run.t("Add your phone number", "验证手机号") }), "the phone page");
  await page.getByLabel(run.t("Phone number", "手机号")).fill(number);
  await page.getByRole("button", { name: run.t("Send code", "发送验证码") }).click();
  await see(page.getByRole("heading", { name: run.t("Enter the code", "输入验证码") }), "the code page");
  await shows(page, masked(e164));
  const code = await run.codeFromOutbox(ctx, e164);
  return code;
}

/// How the pages show a number: +86 138****8000.
export function masked(e164) {
  return `+86 ${e164.slice(3, 6)}****${e164.slice(-4)}`;
}

export async function typeCode(page, run, code) {
  await page.getByLabel(run.t("6-digit code", "6 位验证码")).fill(code);
  await page.getByRole("button", { name: run.t("Verify", "验证") }).click();
}

/// The consent page of an app that asks (not first-party): what it gets, then Allow.
export async function allowConsent(page, run, { shot = false } = {}) {
  await page.waitForURL(/\/login\/[^/?]+\/consent$/);
  await see(page.getByRole("heading", { name: run.t("Allow access?", "允许访问？") }), "the consent page");
  await shows(page, run.t("Your account ID at this sign-in service", "你在本登录服务的账号 ID"));
  if (shot) await run.page(page, "consent");
  await page.getByRole("button", { name: run.t("Allow", "允许"), exact: true }).click();
}
