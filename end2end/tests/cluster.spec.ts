import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from './fixtures';
import { channelLink, createChannel, messages, newUser, runId, send } from './helpers';

// Two nodes of a cluster, owned by this test: one PostgreSQL database of their own (created on
// the machine's server and dropped at the end) and the machine's Redis, with a key prefix of
// their own. Ann's browser talks to one node, Bob's to the other.
const ports = [3160, 3161];
const root = path.resolve(__dirname, '../..');
const dataDir = path.join(root, 'target/e2e-cluster-data');
const postgresServer = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const database = `dealnest_e2e_cluster_${runId}`;
const databaseUrl = postgresServer.replace(/\/[^/?]*(\?.*)?$/, `/${database}$1`);

function psql(sql: string) {
  execFileSync('psql', [postgresServer, '-qc', sql], { stdio: 'pipe' });
}

function startNode(port: number): ChildProcess {
  const log = openSync(path.join(dataDir, `node-${port}.log`), 'a');
  const node = spawn(path.join(root, 'target/debug/dealnest-chat'), [], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      REDIS_PREFIX: `dealnest-e2e-${runId}`,
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: 'target/site',
      LOG_LEVEL: 'warn',
      PRESENCE_GRACE_SECS: '1',
      HEAD_CHECK_MS: '500',
      DRAIN_SECS: '1',
    },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  return node;
}

async function waitForReady(port: number) {
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/ready`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`node on ${port} did not become ready`);
}

async function stop(node: ChildProcess) {
  if (node.exitCode !== null) return;
  const exited = new Promise((resolve) => node.once('exit', resolve));
  node.kill('SIGTERM');
  await exited;
}

test('two people on two nodes of a cluster chat live: message, typing, seen-by, presence', async ({ browser }) => {
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  psql(`CREATE DATABASE ${database}`);
  // The first node applies the migrations; the second starts once they are in.
  const nodes = [startNode(ports[0])];
  try {
    await waitForReady(ports[0]);
    nodes.push(startNode(ports[1]));
    await waitForReady(ports[1]);
    for (const port of ports) {
      const health = await (await fetch(`http://127.0.0.1:${port}/health`)).json();
      expect(health.broker).toBe('redis');
    }

    const ann = await newUser(browser, `Nia${runId}`, `http://127.0.0.1:${ports[0]}`);
    const bob = await newUser(browser, `Ole${runId}`, `http://127.0.0.1:${ports[1]}`);

    const channelId = await createChannel(ann.page, 'Two nodes', [bob.username]);
    // Bob's sidebar, served by the other node, learns about the channel without a reload.
    await expect(channelLink(bob.page, channelId)).toContainText('Two nodes');

    await send(ann.page, 'Hello from node one');
    await expect(channelLink(bob.page, channelId).getByTestId('unread')).toHaveText('1');
    await channelLink(bob.page, channelId).click();
    await expect(messages(bob.page).getByText('Hello from node one')).toBeVisible();
    await expect(ann.page.getByTestId('seen-by')).toHaveText(`Seen by ${bob.name}`);

    await bob.page.getByLabel('Message', { exact: true }).pressSequentially('Hi from node two', { delay: 20 });
    await expect(ann.page.getByTestId('typing')).toHaveText(`${bob.name} is typing…`);
    await bob.page.getByLabel('Message', { exact: true }).press('Enter');
    await expect(messages(ann.page).getByText('Hi from node two')).toBeVisible();
    await expect(ann.page.getByTestId('typing')).toHaveText('');

    // Presence across nodes: Ann sees Bob online, then offline once his tab is gone.
    await ann.page.getByRole('button', { name: 'Members' }).click();
    const bobRow = ann.page.locator('.member', { hasText: bob.name });
    await expect(bobRow.locator('.member__status')).toHaveText('online');
    await bob.context.close();
    await expect(bobRow.locator('.member__status')).toHaveText(/last seen/, { timeout: 15_000 });
    await ann.context.close();
  } finally {
    for (const node of nodes) await stop(node);
    psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  }
});
