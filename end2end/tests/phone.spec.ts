import { expect, test } from './fixtures';
import { channelLink, createChannel, hydrated, messages, newUser, runId, send } from './helpers';

test('phone width: one pane at a time, composer always visible, members as an overlay, 44 px targets', async ({ browser }) => {
  const ann = await newUser(browser, `Pocket${runId}`);
  const bob = await newUser(browser, `Thumb${runId}`);
  const channelId = await createChannel(ann.page, 'On the go', [bob.username]);
  for (let n = 1; n <= 30; n++) await send(ann.page, `line ${n}`);
  await expect(messages(ann.page).getByText('line 30', { exact: true })).toBeVisible();

  const page = bob.page;
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto('/');
  await hydrated(page);
  // Home: the list fills the screen; no conversation pane beside it.
  await expect(channelLink(page, channelId)).toBeInViewport();
  await expect(page.locator('main')).toBeHidden();

  await channelLink(page, channelId).click();
  await expect(page.getByRole('navigation', { name: 'Channels' })).toBeHidden();
  const composer = page.getByLabel('Message', { exact: true });
  await expect(composer).toBeInViewport();
  // All 30 are unread: the conversation opens at the first of them.
  await expect(messages(page).getByText('line 1', { exact: true })).toBeInViewport();
  await page.getByTestId('jump-latest').click();
  await expect(messages(page).getByText('line 30', { exact: true })).toBeInViewport();
  await send(page, 'typed with thumbs');
  await expect(messages(page).getByText('typed with thumbs')).toBeInViewport();
  await expect(composer).toBeInViewport();

  // Tap targets.
  const row = messages(page).locator('article', { hasText: 'typed with thumbs' });
  for (const name of ['Edit', 'Delete']) {
    const box = await row.getByRole('button', { name }).boundingBox();
    expect(box?.height, name).toBeGreaterThanOrEqual(44);
  }

  // Members cover the conversation and close again.
  await page.getByRole('button', { name: 'Members' }).click();
  const panel = page.getByRole('complementary', { name: 'Members' });
  await expect(panel).toBeInViewport({ ratio: 0.9 });
  await expect(panel.locator('.member', { hasText: ann.name })).toBeVisible();
  await panel.getByRole('button', { name: 'Close members' }).click();
  await expect(panel).toHaveCount(0);

  // Back to the list; nothing overflows sideways anywhere.
  await page.getByRole('link', { name: 'Back to conversations' }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(channelLink(page, channelId)).toBeInViewport();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await page.reload();
  await hydrated(page);
  await expect(channelLink(page, channelId)).toBeInViewport();
  await page.goto(`/c/${channelId}`);
  await hydrated(page);
  await expect(composer).toBeInViewport();
  await ann.context.close();
  await bob.context.close();
});
