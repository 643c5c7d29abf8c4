import { expect, test } from '@playwright/test';
import { channelLink, messages, newUser, runId, send } from './helpers';

test('direct messages show the other person’s presence; a failed send can be retried once', async ({ browser }) => {
  const ann = await newUser(browser, `Dana${runId}`);
  const bob = await newUser(browser, `Eli${runId}`);

  await ann.page.getByRole('button', { name: 'New message' }).click();
  const dialog = ann.page.getByRole('dialog', { name: 'New message' });
  await dialog.getByLabel('To').fill(bob.username);
  await dialog.getByRole('button', { name: new RegExp(`@${bob.username}`) }).click();
  await expect(ann.page).toHaveURL(/\/c\/\d+$/);
  const channelId = Number(ann.page.url().split('/').pop());
  await expect(ann.page.getByRole('heading', { level: 1 })).toHaveText(bob.name);
  // The DM row carries Bob's presence dot: he is online in his own tab.
  await expect(channelLink(ann.page, channelId).locator('[data-presence]')).toHaveAttribute('data-presence', 'online');

  // Going offline makes the send fail visibly; Retry sends it exactly once.
  await ann.context.setOffline(true);
  await send(ann.page, 'Sent on a bad connection');
  const pending = messages(ann.page).locator('[data-pending]');
  await expect(pending.getByRole('alert')).toContainText('Not sent');
  await ann.context.setOffline(false);
  await pending.getByRole('button', { name: 'Retry' }).click();
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
