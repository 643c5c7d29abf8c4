import { expect, test } from './fixtures';
import { channelLink, messages, newUser, runId, send } from './helpers';

test('direct messages show the other person’s presence; a send made offline is delivered once', async ({ browser, allowConsoleErrors }) => {
  // Requests made while Ann's context is offline fail, and Chromium logs each one.
  allowConsoleErrors(/ERR_INTERNET_DISCONNECTED/);
  const ann = await newUser(browser, `Dana${runId}`);
  const bob = await newUser(browser, `Eli${runId}`);

  await ann.page.getByRole('button', { name: 'New message' }).click();
  const dialog = ann.page.getByRole('dialog', { name: 'New message' });
  await dialog.getByLabel('To').fill(bob.username);
  await dialog.getByRole('option', { name: new RegExp(`@${bob.username}`) }).click();
  await expect(ann.page).toHaveURL(/\/c\/\d+$/);
  const channelId = Number(ann.page.url().split('/').pop());
  await expect(ann.page.getByRole('heading', { level: 1 })).toHaveText(bob.name);
  // The DM row carries Bob's presence dot: he is online in his own tab.
  await expect(channelLink(ann.page, channelId).locator('[data-presence]')).toHaveAttribute('data-presence', 'online');

  // Offline, a send waits for the connection and goes out by itself, once, when it is back.
  await ann.context.setOffline(true);
  await expect(ann.page.getByTestId('connection-banner')).toBeVisible();
  await send(ann.page, 'Sent on a bad connection');
  const pending = messages(ann.page).locator('[data-pending]');
  await expect(pending.getByTestId('waiting')).toBeVisible();
  await ann.context.setOffline(false);
  await expect(ann.page.getByTestId('connection-banner')).toBeHidden();
  await expect(messages(ann.page).locator('[data-pending]')).toHaveCount(0);
  await expect(messages(ann.page).getByText('Sent on a bad connection')).toHaveCount(1);

  await channelLink(bob.page, channelId).click();
  await expect(messages(bob.page).getByText('Sent on a bad connection')).toHaveCount(1);

  // Too long: the composer says why and keeps the text.
  await bob.page.getByLabel('Message', { exact: true }).fill('x'.repeat(4001));
  await bob.page.getByLabel('Message', { exact: true }).press('Enter');
  await expect(bob.page.locator('#composer-error')).toContainText('the limit is 4000');

  await bob.context.close();
  await expect(channelLink(ann.page, channelId).locator('[data-presence]')).toHaveAttribute('data-presence', 'offline', { timeout: 15_000 });
  await ann.context.close();
});
