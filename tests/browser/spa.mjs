// The single-page app of the SPA scenario, served by the test runner itself on
// its own 127.0.0.1 port: another origin than the broker's, so every call it
// makes to the broker is a cross-origin fetch. `serve --dev --spa-origin` (see
// scripts/browser-test) registers it as the public client `dev-spa`.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const here = new URL(".", import.meta.url);
const file = (path) => readFileSync(new URL(path, here));

/// Serve the SPA at `origin` (http://127.0.0.1:PORT) for the broker at
/// `authority`: index.html at / and /callback, its script, and oidc-client-ts's
/// browser bundle from node_modules. Resolves to the listening server.
export function startSpa(origin, authority) {
  const page = file("spa/index.html").toString().replace("{{AUTHORITY}}", authority);
  const files = {
    "/": ["text/html; charset=utf-8", page],
    "/callback": ["text/html; charset=utf-8", page],
    "/app.js": ["text/javascript", file("spa/app.js")],
    "/oidc-client-ts.js": ["text/javascript", file("node_modules/oidc-client-ts/dist/browser/oidc-client-ts.min.js")],
  };
  const server = createServer((req, res) => {
    const found = files[new URL(req.url, origin).pathname];
    if (!found) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": found[0], "cache-control": "no-store" }).end(found[1]);
  });
  const { port } = new URL(origin);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(port), "127.0.0.1", () => resolve(server));
  });
}
