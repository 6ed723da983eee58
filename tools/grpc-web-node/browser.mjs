// Drives Debian's chromium (headless, through playwright-core) to the page of proxy/tests/grpc_web.rs
// and prints one JSON line: the page's window.result and every console message (CORS errors show there).
// Usage: node browser.mjs http://127.0.0.1:PAGE_PORT/?proxy=http://127.0.0.1:PROXY_PORT
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  const console_ = [];
  page.on("console", (m) => console_.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console_.push(`pageerror: ${e}`));
  await page.goto(process.argv[2]);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 30000 });
  const result = await page.evaluate(() => window.result);
  console.log(JSON.stringify({ result, console: console_ }));
} finally {
  await browser.close();
}
