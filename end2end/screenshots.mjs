// Regenerates the README's screenshots (docs/screenshot-{light,dark,phone}.png) from a running
// server: three people talking in a channel, with an edit, a deletion,
// "Seen by".
//
//   scripts/run.sh --release &    # or any server on http://127.0.0.1:3000
//   node end2end/screenshots.mjs [base URL]
import { chromium } from '@playwright/test';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const base = process.argv[2] ?? 'http://127.0.0.1:3000';
const docs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs');
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const suffix = Date.now().toString(36).slice(-4);

async function user(display) {
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 760 } });
  const username = `${display.split(' ')[0].toLowerCase()}_${suffix}`;
  const response = await context.request.post('/api/auth/signup', { data: { username, display_name: display, password: 'correct horse' } });
  if (!response.ok()) throw new Error(`sign-up failed: ${await response.text()}`);
  const me = await response.json();
  return { context, id: me.id ?? me.user?.id, username };
}
// A POST with the session cookie must name this site in Origin (browsers add it themselves).
const post = async (who, endpoint, data) =>
  (await who.context.request.post(`/api/${endpoint}`, { data, headers: { Origin: new URL(base).origin } })).json();
const say = (who, channel, body) => post(who, 'messages/send', { channel_id: channel, client_id: crypto.randomUUID(), body });

const ann = await user('Ann Carter');
const bob = await user('Bob Lee');
const cara = await user('Cara Diaz');
const bobId = (await post(ann, 'users/search', { query: bob.username })).find((u) => u.username === bob.username).id;
const caraId = (await post(ann, 'users/search', { query: cara.username })).find((u) => u.username === cara.username).id;
const room = await post(ann, 'channels/create', { name: 'Falcon acquisition', member_ids: [bobId, caraId] });
await post(ann, 'channels/create', { name: 'Due diligence', member_ids: [bobId] });
await post(ann, 'channels/direct', { user_id: caraId });
await say(ann, room.id, 'Morning all. The data room for Falcon is open: https://dealnest.example/rooms/falcon');
await say(ann, room.id, 'Financials for Q1–Q3 are in the first folder.');
await say(bob, room.id, 'Thanks Ann. I will go through the revenue breakdown today.');
const wrong = await say(bob, room.id, 'Can we move the call to 3pm?');
await post(bob, 'messages/delete', { message_id: wrong.id });
const edited = await say(cara, room.id, 'Legal review starts on Monday');
await post(cara, 'messages/edit', { message_id: edited.id, body: 'Legal review starts on Monday; draft term sheet by Wednesday.' });
await say(ann, room.id, 'Great, thanks both.');
await post(bob, 'read/mark', { channel_id: room.id, seq: 6 });

const page = await ann.context.newPage();
for (const [scheme, file, viewport] of [
  ['light', 'screenshot-light.png', { width: 1280, height: 760 }],
  ['dark', 'screenshot-dark.png', { width: 1280, height: 760 }],
  ['light', 'screenshot-phone.png', { width: 390, height: 844 }],
]) {
  await page.setViewportSize(viewport);
  await page.emulateMedia({ colorScheme: scheme });
  await page.goto(`/c/${room.id}`);
  await page.locator('body[data-hydrated]').waitFor({ state: 'attached' });
  await page.getByRole('log').getByText('Great, thanks both.').waitFor();
  await page.getByTestId('seen-by').waitFor();
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(docs, file) });
  console.log(`wrote docs/${file}`);
}
await browser.close();
