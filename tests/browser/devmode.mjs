// Click through `idbridge serve --dev` in a real browser: demo app → chooser →
// WeChat simulator → scan as a test user → the demo app shows the tokens.
// Usage: node tests/browser/devmode.mjs http://127.0.0.1:8080 [screenshot-dir]
import { chromium } from "playwright-core";

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const shots = process.argv[3];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const fail = async (msg) => { console.error(msg); await browser.close(); process.exit(1); };
try {
  const page = await browser.newPage({ locale: "zh-CN" });
  await page.goto(`${base}/demo`);
  if (shots) await page.screenshot({ path: `${shots}/demo-home.png`, fullPage: true });
  await page.getByRole("link", { name: "Sign in", exact: true }).click();
  await page.waitForURL(/\/login\//);
  if (shots) await page.screenshot({ path: `${shots}/chooser.png`, fullPage: true });
  await page.getByRole("link", { name: "微信登录 WeChat (simulator)" }).click();
  await page.waitForURL(/\/connect\/qrconnect/);
  if (shots) await page.screenshot({ path: `${shots}/wechat-simulator.png`, fullPage: true });
  await page.locator("#confirm-xiaoming").click();
  await page.waitForURL(/\/demo\/callback/);
  const text = await page.textContent("main");
  if (shots) await page.screenshot({ path: `${shots}/demo-signed-in.png`, fullPage: true });
  if (!text.includes("The nonce matches")) await fail(`demo app did not sign in:\n${text}`);
  if (!text.includes("王小明")) await fail(`profile missing:\n${text}`);
  console.log("ok: signed in through the WeChat simulator as 王小明");

  // The embedded QR: WeChat's frame on the broker's own page; confirming in the
  // frame navigates the whole window back through the broker to the app.
  const page2 = await browser.newPage({ locale: "en-US" });
  await page2.goto(`${base}/demo/login?connector=wechat-qr&prompt=login`);
  const frame = page2.frameLocator("iframe");
  if (shots) await page2.screenshot({ path: `${shots}/wechat-embedded-qr.png`, fullPage: true });
  await frame.locator("#confirm-alice").click();
  await page2.waitForURL(/\/demo\/callback/);
  const text2 = await page2.textContent("main");
  if (!text2.includes("The nonce matches") || !text2.includes("Alice")) await fail(`embedded QR did not sign in:\n${text2}`);
  console.log("ok: signed in through the embedded QR as Alice");
} catch (e) {
  await fail(String(e));
}
await browser.close();
