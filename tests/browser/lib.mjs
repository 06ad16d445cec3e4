// The harness for the real-browser scenarios: Debian's Chromium through
// playwright-core (no browser download), one fresh browser context per scenario,
// every request off the loopback host (127.0.0.1, and `localhost`: the
// upstreams that must be another site than the broker) refused and reported, bounded waits, checks on
// what a person sees, and screenshots when $SHOTS names a folder.
import { chromium } from "playwright-core";

/// Launch flags that keep Chromium off the network: no background services, no
/// QUIC, no component updates, and no host name resolves but `localhost`, to
/// 127.0.0.1 (the broker is 127.0.0.1; an upstream that must be another site,
/// such as the Apple simulator, is `localhost`).
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--host-resolver-rules=MAP localhost 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ],
  });
}

/// The hosts a scenario may reach: the broker's, and `localhost` (the same
/// machine under another name, so another site for cookies).
export const LOOPBACK = new Set(["127.0.0.1", "localhost"]);

/// WeChat's in-app browser on an iPhone.
export const WECHAT_UA =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) " +
  "Mobile/15E148 MicroMessenger/8.0.40(0x18002831) NetType/WIFI Language/zh_CN";

/// What a scenario works with: the broker and simulator it talks to, the
/// language the person's browser asks for, its group's peers (if it has any:
/// run.mjs), and helpers bound to them.
export class Run {
  constructor({ browser, broker, sim, spa, lang, shots, log, peers }) {
    Object.assign(this, { browser, broker, sim, spa, lang, shots, log, peers });
    this.zh = lang.startsWith("zh");
    this.contexts = [];
    this.offsite = [];
    this.problems = [];
  }

  /// The same words in the person's language: `t("Sign in", "登录")`.
  t(en, zh) {
    return this.zh ? zh : en;
  }

  /// A fresh browser (its own cookies) asking for this run's language. `wechat`:
  /// WeChat's in-app browser on a phone instead of a desktop browser;
  /// `userAgent`: another in-app browser on a phone (WeCom's, DingTalk's…).
  async browserContext({ wechat = false, userAgent } = {}) {
    const phoneUa = wechat ? WECHAT_UA : userAgent;
    const opts = phoneUa
      ? { userAgent: phoneUa, viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true }
      : { viewport: { width: 1000, height: 760 } };
    const ctx = await this.browser.newContext({ ...opts, locale: this.lang, deviceScaleFactor: 1 });
    ctx.setDefaultTimeout(8_000);
    ctx.setDefaultNavigationTimeout(10_000);
    // Only loopback: anything else is refused and makes the scenario fail.
    await ctx.route("**/*", (route) => {
      const url = route.request().url();
      if (LOOPBACK.has(new URL(url).hostname)) return route.continue();
      this.offsite.push(url);
      return route.abort("blockedbyclient");
    });
    ctx.on("page", (page) => this.watch(page));
    this.contexts.push(ctx);
    return ctx;
  }

  /// A new page (tab) in a fresh context.
  async newPage(opts) {
    const ctx = await this.browserContext(opts);
    return ctx.newPage();
  }

  watch(page) {
    page.on("pageerror", (e) => this.problems.push(`script error on ${page.url()}: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) {
        this.problems.push(`blocked by the page's policy on ${page.url()}: ${m.text()}`);
      }
    });
  }

  /// Save a full-page screenshot as `$SHOTS/<name>.<lang>.png`.
  async shot(page, name) {
    if (!this.shots) return;
    await page.waitForLoadState("load");
    for (const frame of page.frames()) await frame.waitForLoadState("load").catch(() => {});
    await page.screenshot({ path: `${this.shots}/${name}.${this.lang}.png`, fullPage: true });
  }

  /// A broker page as a person sees it: screenshot, then the accessibility checks.
  async page(page, name, { shot = true } = {}) {
    if (shot) await this.shot(page, name);
    const found = await accessibility(page, this.lang);
    if (found.length) throw new Error(`accessibility problems on the ${name} page (${page.url()}):\n  - ${found.join("\n  - ")}`);
  }

  /// The newest code the development sender "sent" to `to` (e.g. +8613800138000),
  /// read from /dev/outbox in another tab, as a person reads their phone.
  async codeFromOutbox(ctx, to) {
    const tab = await ctx.newPage();
    try {
      await tab.goto(`${this.broker}/dev/outbox`);
      const row = tab.locator("tbody tr").filter({ has: tab.locator("td", { hasText: new RegExp(`^\\${to}$`) }) }).first();
      const code = (await row.locator("td.code").textContent({ timeout: 3_000 })).trim();
      if (!/^\d{6}$/.test(code)) throw new Error(`no 6-digit code for ${to} in /dev/outbox (found ${JSON.stringify(code)})`);
      return code;
    } finally {
      await tab.close();
    }
  }

  /// The simulator's admin API (/__sim/ on its own port), from the test itself.
  async simApi(method, path) {
    const r = await fetch(`${this.sim}/__sim/${path}`, { method });
    const body = await r.text();
    if (!r.ok) throw new Error(`simulator ${method} /__sim/${path}: ${r.status} ${body}`);
    return JSON.parse(body);
  }

  /// Everything open in this scenario's browsers: where each page is and what it
  /// shows, for a failure report.
  async describe() {
    const out = [];
    for (const ctx of this.contexts) {
      for (const p of ctx.pages()) {
        let text = "";
        try {
          text = (await p.locator("body").innerText({ timeout: 1_000 })).trim();
        } catch (e) {
          text = `(cannot read the page: ${e.message.split("\n")[0]})`;
        }
        if (text.length > 1500) text = `${text.slice(0, 1500)}…`;
        out.push(`    page ${p.url()}\n      ${text.replaceAll("\n", "\n      ")}`);
      }
    }
    return out.join("\n");
  }

  async close() {
    for (const ctx of this.contexts) await ctx.close().catch(() => {});
  }
}

/// Wait until `locator` is visible; fail with `what` a person would have looked for.
export async function see(locator, what, timeout = 8_000) {
  try {
    await locator.first().waitFor({ state: "visible", timeout });
  } catch {
    throw new Error(`expected to see ${what}`);
  }
  return locator.first();
}

/// Fail unless `text` (string or RegExp) is in what the page shows in `scope`.
export async function shows(page, text, scope = "body") {
  const shown = await page.locator(scope).first().innerText();
  const found = typeof text === "string" ? shown.includes(text) : text.test(shown);
  if (!found) throw new Error(`expected the page to show ${text}`);
  return shown;
}

/// The demo app's signed-in page: the decoded ID token and the userinfo answer.
export async function signedInAtDemo(page, run) {
  await page.waitForURL(/\/demo\/callback/);
  await see(page.getByRole("heading", { name: run.t("idbridge demo app: signed in", "idbridge 示例应用：已登录") }), "the demo app's signed-in page");
  await shows(page, run.t("The nonce matches", "nonce 一致"));
  const idToken = await page.locator("pre").first().innerText();
  const payload = JSON.parse(idToken.slice(idToken.indexOf("payload:") + "payload:".length));
  const userinfo = JSON.parse(await page.locator("pre").nth(2).innerText());
  return { idToken: payload, userinfo, sub: payload.sub };
}

/// Accessibility checks on a broker page: the page says its language; every
/// control and frame has a name; no positive tabindex; text contrast meets WCAG AA;
/// Tab visits the controls in reading order, each with a visible focus indicator.
export async function accessibility(page, lang) {
  const problems = await page.evaluate((lang) => {
    const out = [];
    const visible = (el) => {
      const r = el.getBoundingClientRect();
      const s = getComputedStyle(el);
      return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
    };
    const name = (el) =>
      (el.getAttribute("aria-label") ?? "").trim() ||
      (el.getAttribute("aria-labelledby") ?? "").split(/\s+/).map((id) => document.getElementById(id)?.textContent ?? "").join(" ").trim() ||
      [...(el.labels ?? [])].map((l) => l.textContent).join(" ").trim() ||
      (["BUTTON", "A"].includes(el.tagName) ? el.textContent.trim() : "") ||
      (el.getAttribute("title") ?? "").trim();
    if (document.documentElement.lang !== lang) out.push(`<html lang="${document.documentElement.lang}">, expected "${lang}"`);
    if (!document.title.trim()) out.push("the page has no title");
    for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea, button, a[href], iframe")) {
      if (!visible(el)) continue;
      if (!name(el)) out.push(`${el.outerHTML.slice(0, 120)} has no accessible name (label, text, aria-label or title)`);
    }
    for (const el of document.querySelectorAll("[tabindex]")) {
      if (Number(el.getAttribute("tabindex")) > 0) out.push(`${el.outerHTML.slice(0, 80)} has a positive tabindex`);
    }
    // Contrast of every text run against what is painted behind it.
    const rgba = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return null;
      const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
      return { r, g, b, a };
    };
    const lum = ({ r, g, b }) => {
      const f = (v) => ((v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgba(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0) return c;
      }
      return { r: 255, g: 255, b: 255, a: 1 };
    };
    const seen = new Set();
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || !el || seen.has(el) || !visible(el)) continue;
      seen.add(el);
      const s = getComputedStyle(el);
      const fg = rgba(s.color);
      if (!fg) continue;
      const bg = background(el);
      const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      const px = parseFloat(s.fontSize);
      const large = px >= 24 || (px >= 18.66 && Number(s.fontWeight) >= 700);
      const need = large ? 3 : 4.5;
      if (ratio < need) {
        out.push(`text "${n.textContent.trim().slice(0, 40)}" has contrast ${ratio.toFixed(2)}:1 (${s.color} on rgb(${bg.r}, ${bg.g}, ${bg.b})), needs ${need}:1`);
      }
    }
    return out;
  }, lang);

  // Keyboard: Tab from the top of the page through every stop.
  await page.evaluate(() => document.activeElement?.blur());
  const stops = [];
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press("Tab");
    const stop = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const all = [...document.querySelectorAll("*")];
      const s = getComputedStyle(el);
      const ring = (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== "none";
      return { index: all.indexOf(el), tag: el.tagName, text: (el.getAttribute("aria-label") || el.textContent || el.id || "").trim().slice(0, 40), ring, frame: el.tagName === "IFRAME" };
    });
    if (!stop) break;
    if (stops.length && stops[stops.length - 1].index === stop.index) {
      if (stop.frame) continue; // moving through the controls inside a frame
      break;
    }
    if (stops.some((s) => s.index === stop.index)) break; // wrapped around
    stops.push(stop);
  }
  for (let i = 1; i < stops.length; i++) {
    if (stops[i].index < stops[i - 1].index) {
      problems.push(`focus goes from ${stops[i - 1].tag} "${stops[i - 1].text}" back to ${stops[i].tag} "${stops[i].text}" (not reading order)`);
    }
  }
  for (const s of stops) {
    if (!s.ring && !s.frame) problems.push(`${s.tag} "${s.text}" shows no focus indicator`);
  }
  return problems;
}
