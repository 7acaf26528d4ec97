// Loads one page in headless chromium, waits until the elements named in
// the spec show what it expects, prints their text as JSON on stdout and
// saves a screenshot. The spec is one JSON argument:
//
//   {"url": "...", "shot": "out.png", "width": 1280, "height": 900,
//    "wait": {"#exit-id": "^[a-z2-7]", "#rate-down": "[1-9]"},
//    "read": ["#forwarded-port"], "timeout": 20000,
//    "user": "u", "pass": "p"}
//
// CHROMIUM names the browser (default /usr/bin/chromium). Exit code 0 with
// the texts, 1 with a message on stderr.
import { chromium } from "playwright-core";

const spec = JSON.parse(process.argv[2]);
const timeout = spec.timeout || 20000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage"],
});
let code = 0;
try {
  const ctx = await browser.newContext({
    viewport: { width: spec.width || 1280, height: spec.height || 900 },
    deviceScaleFactor: spec.scale || 1,
    httpCredentials: spec.user || spec.pass ? { username: spec.user || "", password: spec.pass || "" } : undefined,
  });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(spec.url, { timeout });
  const wait = spec.wait || {};
  try {
    await page.waitForFunction(w => Object.entries(w).every(([sel, re]) => {
      const el = document.querySelector(sel);
      return el && new RegExp(re).test(el.textContent.trim());
    }), wait, { timeout, polling: 100 });
  } catch (e) {
    const now = {};
    for (const sel of Object.keys(wait)) now[sel] = await page.locator(sel).first().textContent().catch(() => null);
    throw new Error("the page never showed " + JSON.stringify(wait) + "; it shows " + JSON.stringify(now));
  } finally {
    if (spec.shot) await page.screenshot({ path: spec.shot, fullPage: true });
  }
  const texts = {};
  for (const sel of [...Object.keys(wait), ...(spec.read || [])]) {
    texts[sel] = (await page.locator(sel).first().textContent()).trim();
  }
  if (errors.length) throw new Error("errors in the page: " + errors.join("; "));
  process.stdout.write(JSON.stringify({ texts }) + "\n");
} catch (e) {
  process.stderr.write(String(e && e.message || e) + "\n");
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
