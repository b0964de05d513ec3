// For each node type given, create it in the real frontend and list its widgets in order (name, type, value).
import { chromium } from "playwright-core";
import fs from "node:fs";
const [url, outPath, ...types] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
try {
  const page = await browser.newPage();
  await page.goto(url, { waitUntil: "load", timeout: 60000 });
  await page.waitForFunction(() => window.LiteGraph?.registered_node_types?.["LoadImage"], null, { timeout: 90000 });
  await page.waitForTimeout(1500);
  const result = await page.evaluate((types) => {
    const out = { frontend: window.__COMFYUI_FRONTEND_VERSION__ || null, nodes: {} };
    for (const t of types) {
      const node = window.LiteGraph.createNode(t);
      out.nodes[t] = (node.widgets || []).map((w) => [w.name, w.type, w.serialize === false ? "no-serialize" : "serialize"]);
    }
    return out;
  }, types);
  fs.writeFileSync(outPath, JSON.stringify(result, null, 1));
  console.log("wrote", outPath);
} finally { await browser.close(); }
