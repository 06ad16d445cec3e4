// Processes a scenario group starts for itself (its "peers"): an upstream such
// as node's oidc-provider or a second `idbridge serve --dev`, and a broker
// configured to use them. Every one listens on 127.0.0.1 only, logs to a file in
// the group's own temporary folder, runs in a process group of its own, and is
// stopped (then the folder removed) by `close()`, or when the runner exits
// however it exits.
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const START_TIMEOUT_MS = 60_000;

// Every peer still running, stopped however the runner ends.
const running = new Set();
const stopAll = () => {
  for (const child of running) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
};
process.on("exit", stopAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    stopAll();
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
  });
}

/// A port of 127.0.0.1 nothing listens on now.
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/// The repository's root.
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export class Peers {
  constructor(name) {
    this.dir = mkdtempSync(join(tmpdir(), `idbridge-browser-${name}-`));
    this.children = new Map();
  }

  /// Start `command` as peer `name`, its output in `<dir>/<name>.log`.
  spawn(name, command, args, { env = {}, cwd = ROOT } = {}) {
    const log = join(this.dir, `${name}.log`);
    const fd = openSync(log, "a");
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", fd, fd], detached: true });
    closeSync(fd);
    child.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(signal ?? code)));
    child.once("error", () => {});
    running.add(child);
    child.exited.then(() => running.delete(child));
    this.children.set(name, { child, log });
    return child;
  }

  /// What peer `name` printed so far.
  output(name) {
    const peer = this.children.get(name);
    try {
      return peer ? readFileSync(peer.log, "utf8") : "";
    } catch {
      return "";
    }
  }

  /// Wait until `ready()` answers something truthy (returned), failing with the
  /// peer's output when it exits first or START_TIMEOUT_MS pass.
  async until(name, ready) {
    const { child } = this.children.get(name);
    let gone = null;
    child.exited.then((how) => (gone = how));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (gone !== null) throw new Error(`${name} exited (${gone}) before it was ready:\n${this.tail(name)}`);
      const value = await ready().catch(() => null);
      if (value) return value;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${name} was not ready after ${START_TIMEOUT_MS / 1000} s:\n${this.tail(name)}`);
  }

  /// The last lines of peer `name`'s output.
  tail(name, lines = 20) {
    return this.output(name).trimEnd().split("\n").slice(-lines).map((l) => `      ${l}`).join("\n");
  }

  /// Every peer's last lines, for a failure report.
  tails() {
    return [...this.children.keys()].map((name) => `    ${name}, last lines:\n${this.tail(name)}`).join("\n");
  }

  /// A file in the group's folder.
  write(file, text) {
    const path = join(this.dir, file);
    writeFileSync(path, text);
    return path;
  }

  /// Stop every peer (SIGTERM, then SIGKILL after 5 s) and remove the folder.
  async close() {
    await Promise.all(
      [...this.children.values()].map(async ({ child }) => {
        if (!running.has(child)) return;
        try {
          process.kill(-child.pid, "SIGTERM");
        } catch {
          return;
        }
        const timer = setTimeout(() => {
          try {
            process.kill(-child.pid, "SIGKILL");
          } catch {
            // gone meanwhile
          }
        }, 5_000);
        await child.exited;
        clearTimeout(timer);
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/// node's oidc-provider from connectors/oidc/tests/provider (installed by
/// scripts/browser-test with the same `npm ci` and lock as the Rust tests'),
/// with a person signing in and consenting on its pages. `host`: the name in
/// its issuer. Resolves to its issuer.
export async function nodeProvider(peers, { redirectUris, clientSecret, host }) {
  const config = { port: 0, redirect_uris: redirectUris, client_secret: clientSecret, alg: "RS256", host, interactive: true };
  peers.spawn("oidc-provider", process.execPath, ["server.mjs"], {
    cwd: join(ROOT, "connectors/oidc/tests/provider"),
    env: { OIDC_TEST_CONFIG: JSON.stringify(config) },
  });
  const line = await peers.until("oidc-provider", async () => peers.output("oidc-provider").split("\n").find((l) => l.startsWith("{")));
  return JSON.parse(line).issuer;
}

/// `idbridge serve --dev` as peer `name` on `port`, its state in the group's
/// folder; `config`: a TOML file's text added to dev mode (`--config`). Resolves
/// once /healthz answers.
export async function idbridgeDev(peers, name, { port, config, env = {} }) {
  const bin = process.env.IDBRIDGE_BIN;
  if (!bin) throw new Error("IDBRIDGE_BIN is not set (scripts/browser-test sets it to the idbridge it built)");
  const args = ["serve", "--dev", "--sim-port", "0", "--port", String(port), "--dir", join(peers.dir, name)];
  if (config) args.push("--config", peers.write(`${name}.toml`, config));
  peers.spawn(name, bin, args, { env });
  await peers.until(name, async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok);
}
