// What the browser tests share: a partner webhook listener, the real
// `bakery` binary on a free port, Debian's Chromium, axe-core and
// screenshots. Each test file starts its own bakery in its own directory.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, mkdirSync, createWriteStream, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "..", "..");
export const media = join(root, "media");
const bakeryBin = process.env.BAKERY_BIN || join(root, "target", "debug", "bakery");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
export const BAKER_TOKEN = "browser-test-baker-token-0123456789";
export const WAIT = { timeout: 20_000 };
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 900 };

/** A fresh directory for one test file's bakery and browser profiles. */
export function workDir() {
  mkdirSync(media, { recursive: true });
  return mkdtempSync(join(tmpdir(), "bakery-browser-"));
}

/** A partner (the delivery company): answers 500 until `failing` is false. */
export async function startWebhook() {
  const state = { failing: true, received: [] };
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      state.received.push({ headers: request.headers, body, failing: state.failing });
      response.writeHead(state.failing ? 500 : 200, { "content-type": "text/plain" });
      response.end(state.failing ? "down for maintenance" : "ok");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  state.url = `http://127.0.0.1:${server.address().port}/deliveries`;
  state.close = () => new Promise((done) => server.close(done));
  return state;
}

/**
 * Starts the bakery in `work` on a free port and reads its address from
 * stdout: `{ child, address, log }`. `args` add to the defaults.
 */
export async function startBakery(work, webhookUrl, args = []) {
  const dataDir = join(work, "data");
  const log = join(work, "bakery.log");
  const child = spawn(
    bakeryBin,
    [
      "--listen", "127.0.0.1:0",
      "--data-dir", dataDir,
      "--baker-token", BAKER_TOKEN,
      "--delivery-webhook-url", webhookUrl,
      "--max-tries", "2",
      "--retry-delay-ms", "50",
      "--partner-attempts", "1",
      ...args,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, BAKERY_LOG: process.env.BAKERY_LOG || "info" } },
  );
  child.stderr.pipe(createWriteStream(log));
  const lines = createInterface({ input: child.stdout });
  const address = await new Promise((resolveAddress, reject) => {
    const timer = setTimeout(() => reject(new Error("the bakery did not say where it listens within 60 s")), 60_000);
    child.once("exit", (code) => reject(new Error(`the bakery exited (${code}) before listening; see ${log}`)));
    lines.on("line", (line) => {
      const match = line.match(/^listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolveAddress(match[1]);
      }
    });
  });
  return { child, address, log };
}

/**
 * The emails in the outbox of the bakery in `work`, read the way a
 * developer reads them: `bakery outbox list`, then `bakery outbox show`
 * for each whose key ends with `suffix`. `[{ key, raw }]`.
 */
export function outboxMails(work, suffix = "") {
  const dataDir = join(work, "data");
  let listed;
  try {
    listed = execFileSync(bakeryBin, ["outbox", "list", "--data-dir", dataDir], { encoding: "utf8" });
  } catch {
    return []; // no outbox yet: nothing sent
  }
  return listed
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line).key)
    .filter((key) => key.endsWith(suffix))
    .map((key) => ({
      key,
      raw: execFileSync(bakeryBin, ["outbox", "show", key, "--data-dir", dataDir], { encoding: "utf8" }),
    }));
}

/** Stops a bakery from `startBakery` (SIGTERM) and waits for it to exit. */
export async function stopBakery(bakery) {
  if (bakery?.child && bakery.child.exitCode === null) {
    bakery.child.kill("SIGTERM");
    await once(bakery.child, "exit");
  }
}

/** Debian's Chromium with its own fresh profile in `work`; `options` add to the defaults. */
export function launch(work, profile, options) {
  return chromium.launchPersistentContext(join(work, profile), {
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    locale: "en-GB",
    timezoneId: "Europe/Amsterdam",
    ...options,
  });
}

/** Places an order straight through the API (other customers). */
export async function apiOrder(base, name, productId, quantity) {
  const response = await fetch(`${base}/order`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, address: "1 Side Street", productId, quantity }),
  });
  assert.equal(response.status, 201);
  return response.json();
}

/**
 * Steps of one story: once one fails, the rest are skipped, not timed
 * out. `steps.failed` says whether one did (to print the bakery's log).
 */
export function stepper() {
  const steps = {
    failed: false,
    step(t, name, body) {
      return t.test(name, async (s) => {
        if (steps.failed) return s.skip("an earlier step failed");
        try {
          await body();
        } catch (error) {
          steps.failed = true;
          throw error;
        }
      });
    },
  };
  return steps;
}

const AXE = readFileSync(join(here, "node_modules/axe-core/axe.min.js"), "utf8");

/** axe-core on the page as it is now: no violations at all, named if any. */
export async function accessible(page, state) {
  // Evaluated through the browser's debugging protocol, which the page's
  // Content-Security-Policy (scripts from the bakery only) does not cover.
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => (await window.axe.run()).violations);
  const said = violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
  assert.deepEqual(said, [], `axe-core on ${state}`);
}

/** A screenshot into media/: the full page unless `fullPage` is false. */
export async function shot(page, name, { fullPage = true } = {}) {
  await page.screenshot({ path: join(media, name), fullPage });
}
