import { expect, test } from './fixtures';
import { apiSend, channelLink, createChannel, hydrated, messages, newUser, runId } from './helpers';

test('scrolling up loads older messages and keeps the reader in place', async ({ browser }) => {
  const ann = await newUser(browser, `Hist${runId}`);
  const bob = await newUser(browser, `Reader${runId}`);
  const channelId = await createChannel(ann.page, 'Archive', [bob.username]);
  for (let n = 1; n <= 130; n++) {
    await apiSend(ann.page, channelId, `history message ${n}`);
  }
  // A fresh page, so only what the server pages in is shown (not what arrived live). Ann wrote
  // them all, so nothing is unread for her: the channel opens at the newest page.
  await ann.page.goto('/');
  await hydrated(ann.page);
  await channelLink(ann.page, channelId).click();
  const log = messages(ann.page);
  await expect(log.getByText('history message 130', { exact: true })).toBeVisible();
  // The newest page (50) is shown; the first message is not loaded yet.
  await expect(log.locator('article')).toHaveCount(50);
  await expect(log.getByText('history message 1', { exact: true })).toHaveCount(0);

  // Scroll to the top: the next page loads above, and the message that was at the top stays put.
  const anchor = log.getByText('history message 81', { exact: true });
  await log.evaluate((el) => (el.scrollTop = 0));
  await expect(log.locator('article')).toHaveCount(100);
  await expect(anchor).toBeInViewport();
  await log.evaluate((el) => (el.scrollTop = 0));
  await expect(log.locator('article')).toHaveCount(130);
  await expect(log.getByText('history message 1', { exact: true })).toHaveCount(1);
  await ann.context.close();
  await bob.context.close();
});
