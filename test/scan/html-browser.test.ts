import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { renderHtml } from "../../src/scan/report/html.js";
import { scan } from "../../src/scan/scan.js";
import { sharedDataDir } from "../support/shared-data.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "scan");
const invictus = join(sharedDataDir(), "invictus-aws-dataset", "CloudTrail");

test("html report in chromium", async () => {
  const directory = await mkdtemp(join(tmpdir(), "writ-scan-html-"));
  const report = join(directory, "report.html");
  const result = await scan({
    inputs: [invictus, join(fixtures, "hostile-user-agent.jsonl")],
    keyFile: "/nonexistent/scan-key",
  });
  await writeFile(report, renderHtml(result));

  // A fresh profile folder per run; playwright passes it to Chromium as --user-data-dir.
  const context = await chromium.launchPersistentContext(join(directory, "profile"), {
    executablePath: "/usr/bin/chromium",
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
  });
  try {
    const page = await context.newPage();
    const requests: string[] = [];
    page.on("request", (request) => requests.push(request.url()));
    await page.goto(pathToFileURL(report).href);

    assert.equal(await page.title(), "writ scan report");
    // The page functions run in the browser, so they are passed as text: this project compiles
    // without the DOM types.
    assert.equal(await page.evaluate("document.body.dataset.ready"), "1");
    assert.equal(await page.evaluate("typeof window.__injected"), "undefined");
    assert.match((await page.textContent("body")) ?? "", /<script>window.__injected=1<\/script>/);
    assert.deepEqual(requests, [pathToFileURL(report).href]);

    const chart = page.locator('section[data-kind="shared-credential"]', { hasText: "AKIATFQR7NSC8Q4X20BJ" });
    assert.equal(await chart.locator("polyline.series").count(), 2);
    assert.equal(await chart.locator("[data-legend]").count(), 2);
  } finally {
    await context.close();
    await rm(directory, { recursive: true, force: true });
  }
});
