import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { expect, test } from './fixtures';
import { apiSend, channelLink, createChannel, hydrated, messages, newUser, runId, send } from './helpers';

test('drafts stay with their channel across switches and reloads', async ({ browser }) => {
  const ann = await newUser(browser, `Drafty${runId}`);
  const first = await createChannel(ann.page, 'Draft one', []);
  const second = await createChannel(ann.page, 'Draft two', []);
  const composer = ann.page.getByLabel('Message', { exact: true });
  await composer.fill('unfinished in two');
  await channelLink(ann.page, first).click();
  await expect(composer).toHaveValue('');
  await composer.fill('unfinished in one');
  await channelLink(ann.page, second).click();
  await expect(composer).toHaveValue('unfinished in two');
  await ann.page.reload();
  await hydrated(ann.page);
  await expect(composer).toHaveValue('unfinished in two');
  await channelLink(ann.page, first).click();
  await expect(composer).toHaveValue('unfinished in one');
  // Sending clears the draft for good.
  await composer.press('Enter');
  await expect(messages(ann.page).getByText('unfinished in one')).toBeVisible();
  await ann.page.reload();
  await hydrated(ann.page);
  await expect(composer).toHaveValue('');
  await ann.context.close();
});

test('composer: counter near the limit, ↑ edits my last message, Esc cancels, delete asks first', async ({ browser }) => {
  const ann = await newUser(browser, `Editor${runId}`);
  await createChannel(ann.page, 'Edits', []);
  const composer = ann.page.getByLabel('Message', { exact: true });
  await send(ann.page, 'first version');
  await expect(messages(ann.page).getByText('first version')).toBeVisible();

  await composer.fill('x'.repeat(3990));
  await expect(ann.page.getByTestId('composer-count')).toHaveText('10 characters left');
  await composer.fill('x'.repeat(4010));
  await expect(ann.page.getByTestId('composer-count')).toHaveText('10 characters over the limit of 4000');
  // The box grew with the text, up to its cap.
  const height = await composer.evaluate((el) => el.getBoundingClientRect().height);
  expect(height).toBeGreaterThan(100);
  await composer.fill('');

  await composer.press('ArrowUp');
  const edit = ann.page.getByLabel('Edit message');
  await expect(edit).toBeFocused();
  await edit.press('Escape');
  await expect(edit).toHaveCount(0);
  await expect(composer).toBeFocused();
  await composer.press('ArrowUp');
  await edit.fill('second version');
  await edit.press('Enter');
  await expect(messages(ann.page).getByText('second version')).toBeVisible();
  await expect(composer).toBeFocused();

  const row = messages(ann.page).locator('article', { hasText: 'second version' });
  await row.getByRole('button', { name: 'Delete' }).click();
  const confirm = ann.page.getByRole('dialog', { name: 'Delete message?' });
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  await expect(messages(ann.page).getByText('second version')).toBeVisible();
  await row.getByRole('button', { name: 'Delete' }).click();
  await confirm.getByRole('button', { name: 'Delete' }).click();
  await expect(messages(ann.page).getByText('This message was deleted.')).toBeVisible();
  await ann.context.close();
});

test('the owner renames a channel; others see it live; previews say "You:"; the tab counts unread', async ({ browser }) => {
  const ann = await newUser(browser, `Namer${runId}`);
  const bob = await newUser(browser, `Viewer${runId}`);
  const channelId = await createChannel(ann.page, 'Old name', [bob.username]);
  await send(ann.page, 'my own words');
  await expect(channelLink(ann.page, channelId)).toContainText('You: my own words');
  await expect(channelLink(bob.page, channelId)).toContainText(`${ann.name}: my own words`);
  await expect(bob.page).toHaveTitle('(1) DealNest Chat');

  await ann.page.getByRole('button', { name: 'Rename' }).click();
  await ann.page.getByLabel('Channel name').fill('New name');
  await ann.page.getByLabel('Channel name').press('Enter');
  await expect(ann.page.getByRole('heading', { level: 1 })).toHaveText('New name');
  await expect(channelLink(ann.page, channelId)).toContainText('New name');
  await expect(channelLink(bob.page, channelId)).toContainText('New name');

  await channelLink(bob.page, channelId).click();
  await expect(bob.page).toHaveTitle('DealNest Chat');
  // Only the owner may rename.
  await expect(bob.page.getByRole('button', { name: 'Rename' })).toHaveCount(0);
  await ann.context.close();
  await bob.context.close();
});

test('day separators, grouped runs from one sender, avatars and full times', async ({ browser }) => {
  const ann = await newUser(browser, `Grouper${runId}`);
  const bob = await newUser(browser, `Replier${runId}`);
  const channelId = await createChannel(ann.page, 'Days', [bob.username]);
  for (const body of ['old one', 'old two', 'yesterday one', 'today one', 'today two']) {
    await apiSend(ann.page, channelId, body);
  }
  await apiSend(bob.page, channelId, 'bob today');
  // Move the first messages into the past, as if sent days ago and yesterday.
  const db = path.resolve(__dirname, '../../target/e2e-data/dealnest.db');
  const day = 86_400_000;
  execFileSync('sqlite3', [
    db,
    `PRAGMA busy_timeout = 5000;
     UPDATE messages SET created_at = created_at - ${10 * day} WHERE channel_id = ${channelId} AND seq <= 2;
     UPDATE messages SET created_at = created_at - ${day} WHERE channel_id = ${channelId} AND seq = 3;`,
  ]);
  await ann.page.reload();
  await hydrated(ann.page);
  const log = messages(ann.page);
  await expect(log.getByText('today two')).toBeVisible();
  const separators = ann.page.getByTestId('day-separator');
  await expect(separators).toHaveCount(3);
  await expect(separators.nth(1)).toHaveText('Yesterday');
  await expect(separators.nth(2)).toHaveText('Today');
  await expect(log.getByText('This is the start of the conversation in Days.')).toBeVisible();
  // "old two" follows "old one" from the same sender: grouped. "bob today" starts a new group.
  await expect(log.locator('article', { hasText: 'old two' })).toHaveClass(/message--continued/);
  await expect(log.locator('article', { hasText: 'today one' })).not.toHaveClass(/message--continued/);
  await expect(log.locator('article', { hasText: 'today two' })).toHaveClass(/message--continued/);
  const bobRow = log.locator('article', { hasText: 'bob today' });
  await expect(bobRow).not.toHaveClass(/message--continued/);
  await expect(bobRow.locator('.avatar')).toHaveText(bob.name.slice(0, 1).toUpperCase());
  const time = bobRow.locator('time');
  await expect(time).toHaveAttribute('datetime', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  await expect(time).toHaveAttribute('title', /\d/);
  await ann.context.close();
  await bob.context.close();
});
