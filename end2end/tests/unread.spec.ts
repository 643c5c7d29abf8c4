import { expect, test } from './fixtures';
import { apiSendMany, channelLink, createChannel, hydrated, messages, myPointer, newUser, runId } from './helpers';

test('80 unread open at the first unread; only what was on screen is marked read', async ({ browser }) => {
  const ann = await newUser(browser, `Writer${runId}`);
  const bob = await newUser(browser, `Catchup${runId}`);
  const channelId = await createChannel(ann.page, 'Busy room', [bob.username]);
  await apiSendMany(ann.page, channelId, 'read before', 5);
  // Bob reads those five, then goes home.
  await channelLink(bob.page, channelId).click();
  await expect(messages(bob.page).getByText('read before 5', { exact: true })).toBeVisible();
  await expect.poll(() => myPointer(bob.page, channelId)).toBe(5);
  await bob.page.goto('/');
  await hydrated(bob.page);

  await apiSendMany(ann.page, channelId, 'unread', 80);
  await bob.page.reload();
  await hydrated(bob.page);
  await expect(channelLink(bob.page, channelId).getByTestId('unread')).toHaveText('80');
  await channelLink(bob.page, channelId).click();

  // Opened at the divider: the first unread message is on screen, the newest is not even loaded.
  const log = messages(bob.page);
  await expect(bob.page.getByTestId('new-divider')).toBeInViewport();
  await expect(log.getByText('unread 1', { exact: true })).toBeInViewport();
  await expect(log.getByText('read before 5', { exact: true })).toBeVisible();
  await expect(log.getByText('unread 80', { exact: true })).toHaveCount(0);
  await expect(bob.page.getByTestId('jump-latest')).toContainText(/Jump to latest \(\d+ new\)/);

  // The pointer moved past the first unread, but only as far as the screen showed.
  await expect.poll(() => myPointer(bob.page, channelId)).toBeGreaterThan(5);
  await bob.page.waitForTimeout(500);
  const afterOpening = await myPointer(bob.page, channelId);
  const lastOnScreen = await log.locator('article[data-seq]').evaluateAll((rows, ) => {
    const view = rows[0].parentElement!.getBoundingClientRect();
    return Math.max(...rows.filter((r) => r.getBoundingClientRect().bottom <= view.bottom + 1).map((r) => Number(r.getAttribute('data-seq'))));
  });
  expect(afterOpening).toBeLessThanOrEqual(lastOnScreen);
  expect(afterOpening).toBeLessThan(40);
  await expect(channelLink(bob.page, channelId).getByTestId('unread')).toHaveText(String(85 - afterOpening));

  // Scrolling down pages the rest in and reads it; older history pages in above.
  for (let i = 0; i < 20 && (await log.getByText('unread 80', { exact: true }).count()) === 0; i++) {
    await log.evaluate((el) => (el.scrollTop = el.scrollHeight));
    await bob.page.waitForTimeout(200);
  }
  await log.evaluate((el) => (el.scrollTop = el.scrollHeight));
  await expect(log.getByText('unread 80', { exact: true })).toBeInViewport();
  await expect.poll(() => myPointer(bob.page, channelId)).toBe(85);
  await expect(channelLink(bob.page, channelId).getByTestId('unread')).toHaveCount(0);
  await expect(log.locator('article[data-seq]')).toHaveCount(85);
  await expect(bob.page.getByTestId('jump-first-unread')).toBeVisible();
  await bob.page.getByTestId('jump-first-unread').click();
  await expect(bob.page.getByTestId('new-divider')).toBeInViewport();

  // Jump to latest brings the newest back; live messages keep arriving at the bottom.
  await bob.page.getByTestId('jump-latest').click();
  await expect(log.getByText('unread 80', { exact: true })).toBeInViewport();
  await apiSendMany(ann.page, channelId, 'live', 1);
  await expect(log.getByText('live 1', { exact: true })).toBeInViewport();
  await ann.context.close();
  await bob.context.close();
});

test('jump to latest from far back, then a send lands at the bottom', async ({ browser }) => {
  const ann = await newUser(browser, `Jumper${runId}`);
  const bob = await newUser(browser, `Faraway${runId}`);
  const channelId = await createChannel(ann.page, 'Long thread', [bob.username]);
  await apiSendMany(ann.page, channelId, 'backlog', 130);
  await bob.page.reload();
  await hydrated(bob.page);
  await channelLink(bob.page, channelId).click();
  const log = messages(bob.page);
  await expect(log.getByText('backlog 1', { exact: true })).toBeInViewport();
  await expect(log.getByText('backlog 130', { exact: true })).toHaveCount(0);
  await bob.page.getByTestId('jump-latest').click();
  await expect(log.getByText('backlog 130', { exact: true })).toBeInViewport();
  await expect(log.getByText('backlog 1', { exact: true })).toHaveCount(0);
  await expect.poll(() => myPointer(bob.page, channelId)).toBe(130);
  await ann.context.close();
  await bob.context.close();
});
