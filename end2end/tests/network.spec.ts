import { expect, test } from './fixtures';
import { channelLink, createChannel, hydrated, messages, newUser, runId, send } from './helpers';

// The client pings every 10 s and gives a connection up 5 s after an unanswered ping, checked
// every second (docs/PROTOCOL.md): a silently dead socket shows the banner within 16 s of
// dying. The test allows 4 s more for timers running late on a busy machine.
const DEAD_SOCKET_NOTICED_MS = 20_000;

test('a socket that goes silent is noticed, and the page reconnects and catches up', async ({ browser }) => {
  test.setTimeout(90_000);
  const ann = await newUser(browser, `Pinger${runId}`);
  const bob = await newUser(browser, `Silent${runId}`);
  const channelId = await createChannel(ann.page, 'Heartbeat', [bob.username]);

  // Bob's socket goes through a relay that can stop passing frames either way, as a dead
  // Wi-Fi link would: the browser's socket stays "open".
  let cut = false;
  await bob.page.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((frame) => {
      if (!cut) server.send(frame);
    });
    server.onMessage((frame) => {
      if (!cut) ws.send(frame);
    });
  });
  await bob.page.reload();
  await hydrated(bob.page);
  await channelLink(bob.page, channelId).click();
  await expect(bob.page.getByTestId('connection-banner')).toHaveAttribute('data-status', 'connected');

  cut = true;
  await send(ann.page, 'sent while the link was dead');
  await expect(bob.page.getByTestId('connection-banner')).toBeVisible({ timeout: DEAD_SOCKET_NOTICED_MS });
  cut = false;
  // A reconnect made while the relay still dropped frames waits out its 10 s hello deadline.
  await expect(bob.page.getByTestId('connection-banner')).toBeHidden({ timeout: 30_000 });
  await expect(messages(bob.page).getByText('sent while the link was dead')).toHaveCount(1);
  await ann.context.close();
  await bob.context.close();
});

test('offline: banner at once, sends wait and go out once, in order, when back online', async ({ browser, allowConsoleErrors }) => {
  allowConsoleErrors(/ERR_INTERNET_DISCONNECTED/);
  const ann = await newUser(browser, `Roamer${runId}`);
  const bob = await newUser(browser, `Watcher${runId}`);
  const channelId = await createChannel(ann.page, 'Train tunnel', [bob.username]);
  await channelLink(bob.page, channelId).click();

  await ann.context.setOffline(true);
  await expect(ann.page.getByTestId('connection-banner')).toBeVisible({ timeout: 3_000 });
  await send(ann.page, 'first from the tunnel');
  await send(ann.page, 'second from the tunnel');
  await expect(messages(ann.page).getByTestId('waiting')).toHaveCount(2);

  await ann.context.setOffline(false);
  await expect(ann.page.getByTestId('connection-banner')).toBeHidden({ timeout: 10_000 });
  const bobLog = messages(bob.page);
  await expect(bobLog.getByText('second from the tunnel')).toHaveCount(1);
  await expect(bobLog.getByText('first from the tunnel')).toHaveCount(1);
  const order = await bobLog.locator('article[data-seq] .message__body').allTextContents();
  expect(order.slice(-2)).toEqual(['first from the tunnel', 'second from the tunnel']);
  await expect(messages(ann.page).locator('[data-pending]')).toHaveCount(0);
  await ann.context.close();
  await bob.context.close();
});

test('a message that could not be sent survives a reload and goes out once afterwards', async ({ browser, allowConsoleErrors }) => {
  allowConsoleErrors(/Failed to load resource|ERR_FAILED/);
  const ann = await newUser(browser, `Stasher${runId}`);
  const bob = await newUser(browser, `Receiver${runId}`);
  const channelId = await createChannel(ann.page, 'Unsent', [bob.username]);
  await channelLink(bob.page, channelId).click();

  // The send request cannot reach the server (the socket stays up).
  await ann.page.route('**/api/messages/send', (route) => route.abort('internetdisconnected'));
  await send(ann.page, 'typed before the reload');
  await expect(messages(ann.page).getByTestId('waiting')).toHaveCount(1);
  await ann.page.reload();
  await hydrated(ann.page);
  await expect(messages(ann.page).getByText('typed before the reload')).toBeVisible();
  await expect(messages(ann.page).getByTestId('waiting')).toHaveCount(1);

  await ann.page.unroute('**/api/messages/send');
  await expect(messages(bob.page).getByText('typed before the reload')).toHaveCount(1, { timeout: 15_000 });
  await expect(messages(ann.page).locator('[data-pending]')).toHaveCount(0);
  await expect(messages(ann.page).getByText('typed before the reload')).toHaveCount(1);
  await ann.page.reload();
  await hydrated(ann.page);
  await expect(messages(ann.page).getByText('typed before the reload')).toHaveCount(1);
  await ann.context.close();
  await bob.context.close();
});
