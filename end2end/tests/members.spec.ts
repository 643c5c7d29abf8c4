import { expect, test } from './fixtures';
import { channelLink, createChannel, messages, newUser, runId, send } from './helpers';

test('the owner adds and removes members live; hidden tabs show as away', async ({ browser }) => {
  const owner = await newUser(browser, `Olga${runId}`);
  const bob = await newUser(browser, `Pete${runId}`);
  const cid = await newUser(browser, `Quin${runId}`);
  const channelId = await createChannel(owner.page, 'Deal room', [bob.username]);
  await owner.page.getByRole('button', { name: 'Members' }).click();
  const panel = owner.page.getByRole('complementary', { name: 'Members' });

  // Add Cid: his sidebar gets the channel and he receives new messages.
  await panel.getByLabel('Add member').fill(cid.username);
  await panel.getByRole('option', { name: new RegExp(`@${cid.username}`) }).click();
  await expect(panel.locator('.member', { hasText: cid.name })).toBeVisible();
  await expect(channelLink(cid.page, channelId)).toBeVisible();
  await channelLink(cid.page, channelId).click();
  await send(owner.page, 'Welcome Quin');
  await expect(messages(cid.page).getByText('Welcome Quin')).toBeVisible();

  // Bob hides his tab: he shows as away.
  await channelLink(bob.page, channelId).click();
  await bob.page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { value: true, configurable: true });
    document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
  });
  await expect(panel.locator('.member', { hasText: bob.name }).locator('.member__status')).toHaveText('away');

  // Remove Bob: the channel leaves his sidebar.
  await panel.getByRole('button', { name: `Remove ${bob.name}` }).click();
  await expect(panel.locator('.member', { hasText: bob.name })).toHaveCount(0);
  await expect(channelLink(bob.page, channelId)).toHaveCount(0);

  // Cid leaves on his own.
  await cid.page.getByRole('button', { name: 'Members' }).click();
  await cid.page.getByRole('button', { name: 'Leave channel' }).click();
  await cid.page.getByRole('dialog', { name: 'Leave this channel?' }).getByRole('button', { name: 'Leave' }).click();
  await expect(cid.page).toHaveURL(/\/$/);
  await expect(channelLink(cid.page, channelId)).toHaveCount(0);
  await expect(panel.locator('.member', { hasText: cid.name })).toHaveCount(0);

  for (const user of [owner, bob, cid]) await user.context.close();
});
