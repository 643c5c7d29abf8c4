import { type Page } from '@playwright/test';
import { expect, test } from './fixtures';
import { channelLink, createChannel, messages, newUser, runId, send } from './helpers';

/** Fails the test on any refused API call (e.g. a 403 for a channel just left). */
function noRefusedCalls(page: Page) {
  const refused: string[] = [];
  page.on('response', (response) => {
    if (response.url().includes('/api/') && response.status() >= 400) refused.push(`${response.status()} ${response.url()}`);
  });
  return refused;
}

test('leaving the open channel (after confirming) goes home with a notice', async ({ browser }) => {
  const owner = await newUser(browser, `Keeper${runId}`);
  const bob = await newUser(browser, `Leaver${runId}`);
  const channelId = await createChannel(owner.page, 'Exit stage', [bob.username]);
  await send(owner.page, 'before you go');
  const refused = noRefusedCalls(bob.page);
  await channelLink(bob.page, channelId).click();
  await expect(messages(bob.page).getByText('before you go')).toBeVisible();

  await bob.page.getByRole('button', { name: 'Members' }).click();
  await bob.page.getByRole('button', { name: 'Leave channel' }).click();
  const confirm = bob.page.getByRole('dialog', { name: 'Leave this channel?' });
  await expect(confirm).toBeVisible();
  // Cancel (Esc) keeps everything as it was.
  await bob.page.keyboard.press('Escape');
  await expect(confirm).toBeHidden();
  await expect(bob.page).toHaveURL(new RegExp(`/c/${channelId}$`));

  await bob.page.getByRole('button', { name: 'Leave channel' }).click();
  await confirm.getByRole('button', { name: 'Leave' }).click();
  await expect(bob.page).toHaveURL(/\/$/);
  await expect(bob.page.getByTestId('notice')).toHaveText(/You left Exit stage\./);
  await expect(channelLink(bob.page, channelId)).toHaveCount(0);
  await expect(messages(owner.page).getByText('before you go')).toBeVisible();
  await bob.page.waitForTimeout(1000);
  expect(refused).toEqual([]);
  await owner.context.close();
  await bob.context.close();
});

test('being removed from the open channel goes home with a notice', async ({ browser }) => {
  const owner = await newUser(browser, `Boss${runId}`);
  const bob = await newUser(browser, `Removed${runId}`);
  const channelId = await createChannel(owner.page, 'Inner circle', [bob.username]);
  await send(owner.page, 'you are in');
  const refused = noRefusedCalls(bob.page);
  await channelLink(bob.page, channelId).click();
  await expect(messages(bob.page).getByText('you are in')).toBeVisible();
  // Bob has the members panel open and is typing when it happens.
  await bob.page.getByRole('button', { name: 'Members' }).click();
  await bob.page.getByLabel('Message', { exact: true }).fill('half a thought');

  await owner.page.getByRole('button', { name: 'Members' }).click();
  await owner.page.getByRole('button', { name: `Remove ${bob.name}` }).click();
  await expect(bob.page).toHaveURL(/\/$/);
  await expect(bob.page.getByTestId('notice')).toHaveText(/You were removed from Inner circle\./);
  await expect(channelLink(bob.page, channelId)).toHaveCount(0);
  // Opening it again by URL says it cannot be shown.
  await bob.page.goto(`/c/${channelId}`);
  await expect(bob.page.getByTestId('channel-missing')).toBeVisible();
  await bob.page.waitForTimeout(1000);
  expect(refused).toEqual([]);
  await owner.context.close();
  await bob.context.close();
});
