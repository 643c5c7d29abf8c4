import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from './fixtures';
import { apiPost, apiSend, channelLink, createChannel, messages, newUser, runId, send } from './helpers';

// This test owns its server so it can stop and restart it (same database file).
const port = 3150;
const baseURL = `http://127.0.0.1:${port}`;
const root = path.resolve(__dirname, '../..');
const dataDir = path.join(root, 'target/e2e-restart-data');

function startServer(): ChildProcess {
  // Appended to (both runs of the server share it) so the test fixture can scan it for panics.
  mkdirSync(dataDir, { recursive: true });
  const log = openSync(path.join(dataDir, 'server.log'), 'a');
  const server = spawn(path.join(root, 'target/debug/dealnest-chat'), [], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: path.join(dataDir, 'dealnest.db'),
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: 'target/site',
      LOG_LEVEL: 'warn',
      // A stop closes its sockets within a second instead of the default ten.
      DRAIN_SECS: '1',
    },
    stdio: ['ignore', log, log],
  });
  // The child has its own copy of the descriptor by now.
  closeSync(log);
  return server;
}

async function waitForHealth() {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${baseURL}/health`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not come up');
}

async function stop(server: ChildProcess) {
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  await exited;
}

test('a server restart mid-conversation: banner, reconnect, missed messages shown once', async ({ browser, allowConsoleErrors }) => {
  // While the server is down the tabs' reconnect attempts (and any fetch) are refused, and
  // Chromium logs each one.
  allowConsoleErrors(/ERR_CONNECTION_REFUSED/);
  allowConsoleErrors(/WebSocket connection to .* failed/);
  rmSync(dataDir, { recursive: true, force: true });
  let server = startServer();
  try {
    await waitForHealth();
    const ann = await newUser(browser, `Rita${runId}`, baseURL);
    const bob = await newUser(browser, `Sam${runId}`, baseURL);
    const channelId = await createChannel(ann.page, 'Restart', [bob.username]);
    await channelLink(bob.page, channelId).click();
    await send(ann.page, 'before the restart');
    await expect(messages(bob.page).getByText('before the restart')).toBeVisible();

    await stop(server);
    await expect(bob.page.getByTestId('connection-banner')).toBeVisible();

    server = startServer();
    await waitForHealth();
    // An edit of a message Bob already has, made while he is away, is not a missed message:
    // it must still show once he is back.
    const before = await apiPost(ann.page, 'messages/list', { channel_id: channelId });
    const firstId = (await before.json()).messages[0].id;
    const edited = await apiPost(ann.page, 'messages/edit', { message_id: firstId, body: 'before the restart (edited)' });
    expect(edited.status()).toBe(200);
    // Sent while Bob's tab is still reconnecting (its backoff has grown past a second).
    for (const text of ['missed one', 'missed two', 'missed three']) {
      await apiSend(ann.page, channelId, text);
    }
    await expect(bob.page.getByTestId('connection-banner')).toBeHidden({ timeout: 20_000 });
    for (const text of ['missed one', 'missed two', 'missed three']) {
      await expect(messages(bob.page).getByText(text, { exact: true })).toHaveCount(1);
    }
    await expect(messages(bob.page).getByText('before the restart (edited)')).toBeVisible();
    await send(ann.page, 'after the restart');
    await expect(messages(bob.page).getByText('after the restart')).toHaveCount(1);
    await expect(messages(bob.page).locator('article')).toHaveCount(5);
    await ann.context.close();
    await bob.context.close();
  } finally {
    await stop(server);
  }
});
