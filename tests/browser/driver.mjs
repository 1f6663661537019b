// A headless Chromium for the pytest browser tests, driven over stdin/stdout:
// one JSON command per line in ({id, cmd, ...args}), one JSON answer per line out
// ({id, ok, result} or {id, ok: false, error}). The tests (tests/browser/browser.py) stay in
// Python next to the stack they start; this file only knows the browser.
//
//   node tests/browser/driver.mjs CHROMIUM_PATH USER_DATA_DIR
//
// Chromium is the Debian package's (or one on PATH), launched with the flags that keep it
// from stalling on a closed network: no background networking, updates, sync or first run.
import { createInterface } from "node:readline";

import { chromium } from "playwright-core";

const [executablePath, userDataDir] = process.argv.slice(2);
if (!executablePath || !userDataDir) {
  process.stderr.write("usage: driver.mjs CHROMIUM_PATH USER_DATA_DIR\n");
  process.exit(2);
}

const WAIT_MS = 30_000;
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
  viewport: { width: 900, height: 800 },
});
context.setDefaultTimeout(WAIT_MS);

let page = null;
let log = [];
let responses = [];

async function newPage() {
  if (page) await page.close();
  log = [];
  responses = [];
  page = await context.newPage();
  page.on("console", (msg) => log.push(`console.${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => log.push(`pageerror: ${err.message}`));
  page.on("requestfailed", (req) => log.push(`requestfailed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`));
  // "Delete my account" asks for confirmation.
  page.on("dialog", (dialog) => void dialog.accept());
  // Every answer the page's scripts got (fetch), with its JSON body: what the service sent.
  page.on("response", (resp) => {
    const req = resp.request();
    if (req.resourceType() !== "fetch") return;
    const entry = { method: req.method(), url: resp.url(), status: resp.status(), body: null };
    const json = (resp.headers()["content-type"] ?? "").includes("json");
    responses.push(
      json ? resp.json().then((body) => ({ ...entry, body }), () => entry) : Promise.resolve(entry),
    );
  });
  return true;
}

/** The page's status region: {seq, code, kind, text}. */
async function status() {
  return page.evaluate(() => {
    const el = document.getElementById("status");
    return { seq: Number(el.dataset.seq ?? 0), code: el.dataset.code ?? "", kind: el.dataset.kind ?? "", text: el.textContent };
  });
}

const commands = {
  newPage,
  async goto({ url }) {
    await page.goto(url);
    return page.url();
  },
  async url() {
    return page.url();
  },
  async waitFor({ selector, state }) {
    await page.locator(selector).first().waitFor({ state: state ?? "visible" });
    return true;
  },
  async click({ selector }) {
    await page.locator(selector).click();
    return true;
  },
  async fill({ selector, value }) {
    await page.locator(selector).fill(value);
    return true;
  },
  async check({ selector }) {
    await page.locator(selector).check();
    return true;
  },
  async text({ selector }) {
    return (await page.locator(selector).textContent()) ?? "";
  },
  status,
  /** Click a button of the sample and wait for the outcome it announces in #status. */
  async act({ selector }) {
    const before = (await status()).seq;
    await page.locator(selector).click();
    await page.waitForFunction(
      (seq) => {
        const el = document.getElementById("status");
        const busy = document.querySelector("[aria-busy='true']");
        return Number(el.dataset.seq ?? 0) > seq && !busy;
      },
      before,
      { timeout: WAIT_MS },
    );
    return status();
  },
  async evaluate({ expression }) {
    return page.evaluate(expression);
  },
  async responses() {
    const done = await Promise.all(responses);
    return done;
  },
  async log() {
    return log;
  },
  async screenshot({ path }) {
    await page.screenshot({ path, fullPage: true });
    return path;
  },
};

function answer(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    answer({ id: null, ok: false, error: "not JSON" });
    continue;
  }
  if (msg.cmd === "close") break;
  const run = commands[msg.cmd];
  if (!run) {
    answer({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` });
    continue;
  }
  try {
    answer({ id: msg.id, ok: true, result: await run(msg) });
  } catch (err) {
    answer({ id: msg.id, ok: false, error: String(err?.stack ?? err) });
  }
}
await context.close();
process.exit(0);
