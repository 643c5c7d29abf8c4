// Measures navigation → hydrated (the app sets <body data-hydrated> once the WASM has taken
// over the page) in headless Chromium against a running server, and prints the bundle sizes.
// Not a test: figures for docs/PERFORMANCE.md. Run against a release build:
//
//   scripts/run.sh --release &          # serves http://127.0.0.1:3000
//   node end2end/measure-hydration.mjs [base URL] [runs]
import { chromium } from '@playwright/test';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const base = process.argv[2] ?? 'http://127.0.0.1:3000';
const runs = Number(process.argv[3] ?? 21);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

// Records when the hydration mark appears, relative to the start of the navigation.
const recordHydration = () => {
  new MutationObserver(() => {
    if (!window.__hydratedAt && document.body?.hasAttribute('data-hydrated')) {
      window.__hydratedAt = performance.now();
    }
  }).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-hydrated'] });
};

async function timeTo(context, url) {
  const page = await context.newPage();
  await page.addInitScript(recordHydration);
  await page.goto(base + url);
  await page.waitForFunction(() => window.__hydratedAt !== undefined, null, { timeout: 30_000 });
  const ms = await page.evaluate(() => window.__hydratedAt);
  await page.close();
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// A signed-in user with a channel of 60 messages.
const setup = await browser.newContext({ baseURL: base });
// A POST with the session cookie must name this site in Origin (browsers add it themselves); a
// 429 (the per-user send limit) is waited out and the same request sent again.
async function api(endpoint, data) {
  for (;;) {
    const response = await setup.request.post(`/api/${endpoint}`, { data, headers: { Origin: new URL(base).origin } });
    if (response.status() !== 429) return response;
    await new Promise((r) => setTimeout(r, 1000 * Number(response.headers()['retry-after'] ?? 1)));
  }
}
const username = `perf_${Date.now().toString(36)}`;
let response = await api('auth/signup', { username, display_name: 'Perf Reader', password: 'correct horse' });
if (!response.ok()) throw new Error(`sign-up failed: ${response.status()} ${await response.text()}`);
const channel = await (await api('channels/create', { name: 'Perf', member_ids: [] })).json();
for (let n = 1; n <= 60; n++) {
  await api('messages/send', { channel_id: channel.id, client_id: crypto.randomUUID(), body: `message ${n}` });
}
const cookies = await setup.cookies();

const rows = [];
for (const [name, url, signedIn] of [
  ['/login', '/login', false],
  ['chat home /', '/', true],
  ['chat channel /c/{id}', `/c/${channel.id}`, true],
]) {
  const cold = [];
  const warm = [];
  for (let i = 0; i < runs; i++) {
    const context = await browser.newContext();
    if (signedIn) await context.addCookies(cookies);
    cold.push(await timeTo(context, url)); // empty cache
    warm.push(await timeTo(context, url)); // bundles cached
    await context.close();
  }
  rows.push({ page: name, 'cold median ms': median(cold).toFixed(0), 'warm median ms': median(warm).toFixed(0), 'warm max ms': Math.max(...warm).toFixed(0) });
}
console.table(rows);

const pkg = path.join(root, 'target/site/pkg');
const sizes = readdirSync(pkg)
  .filter((f) => /\.(wasm|js|css)(\.br|\.gz)?$/.test(f))
  .map((f) => ({ file: f, KB: (statSync(path.join(pkg, f)).size / 1000).toFixed(1) }));
console.table(sizes);
await browser.close();
