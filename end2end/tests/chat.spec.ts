import { expect, test } from './fixtures';
import { channelLink, createChannel, messages, newUser, runId, send } from './helpers';

test('two people chat live: unread, seen-by, typing, edit, delete, safe text, presence', async ({ browser }) => {
  const ann = await newUser(browser, `Ann${runId}`);
  const bob = await newUser(browser, `Bob${runId}`);

  const channelId = await createChannel(ann.page, 'Falcon', [bob.username]);
  // Bob's sidebar learns about the channel without a reload.
  await expect(channelLink(bob.page, channelId)).toContainText('Falcon');

  await send(ann.page, 'Hello Bob');
  await expect(messages(ann.page).getByText('Hello Bob')).toBeVisible();
  // Not open on Bob's side: the badge counts it, the preview shows it.
  await expect(channelLink(bob.page, channelId).getByTestId('unread')).toHaveText('1');
  await send(ann.page, 'Second one');
  await expect(channelLink(bob.page, channelId).getByTestId('unread')).toHaveText('2');
  await expect(channelLink(bob.page, channelId)).toContainText('Second one');

  // Bob opens it: he reads both, the badge goes, Ann sees "Seen by".
  await channelLink(bob.page, channelId).click();
  await expect(messages(bob.page).getByText('Hello Bob')).toBeVisible();
  await expect(bob.page.getByTestId('new-divider')).toBeVisible();
  await expect(channelLink(bob.page, channelId).getByTestId('unread')).toHaveCount(0);
  await expect(ann.page.getByTestId('seen-by')).toHaveText(`Seen by ${bob.name}`);

  // Typing shows on the other side and clears when the message arrives.
  await bob.page.getByLabel('Message', { exact: true }).pressSequentially('Hi Ann', { delay: 20 });
  await expect(ann.page.getByTestId('typing')).toHaveText(`${bob.name} is typing…`);
  await bob.page.getByLabel('Message', { exact: true }).press('Enter');
  await expect(messages(ann.page).getByText('Hi Ann')).toBeVisible();
  await expect(ann.page.getByTestId('typing')).toHaveText('');

  // Edits and deletes reach the other side.
  const annMessage = messages(ann.page).locator('article', { hasText: 'Second one' });
  await annMessage.getByRole('button', { name: 'Edit' }).click();
  await ann.page.getByLabel('Edit message').fill('Second one, revised');
  await ann.page.getByLabel('Edit message').press('Enter');
  await expect(messages(bob.page).getByText('Second one, revised')).toBeVisible();
  await expect(messages(bob.page).locator('article', { hasText: 'Second one, revised' })).toContainText('(edited)');
  await messages(ann.page).locator('article', { hasText: 'Hello Bob' }).getByRole('button', { name: 'Delete' }).click();
  await ann.page.getByRole('dialog', { name: 'Delete message?' }).getByRole('button', { name: 'Delete' }).click();
  await expect(messages(bob.page).getByText('Hello Bob')).toHaveCount(0);
  await expect(messages(bob.page).getByText('This message was deleted.')).toBeVisible();

  // A body that looks like HTML is shown as text and never runs.
  const attack = '<img src=x onerror=alert(1)>';
  await send(ann.page, attack);
  await expect(messages(bob.page).getByText(attack)).toBeVisible();
  await expect(messages(bob.page).locator('img')).toHaveCount(0);

  // Links become safe anchors.
  await send(ann.page, 'Terms at https://dealnest.example/terms.');
  const link = messages(bob.page).getByRole('link', { name: 'https://dealnest.example/terms' });
  await expect(link).toHaveAttribute('rel', /noopener/);

  // Screenshots of the main view, light and dark (kept in the test output).
  await ann.page.emulateMedia({ colorScheme: 'light' });
  await ann.page.screenshot({ path: test.info().outputPath('main-view-light.png') });
  await ann.page.emulateMedia({ colorScheme: 'dark' });
  await ann.page.screenshot({ path: test.info().outputPath('main-view-dark.png') });
  await ann.page.emulateMedia({ colorScheme: 'light' });

  // Presence: Ann sees Bob online in the members panel, then offline after he leaves.
  await ann.page.getByRole('button', { name: 'Members' }).click();
  const bobRow = ann.page.locator('.member', { hasText: bob.name });
  await expect(bobRow.locator('.member__status')).toHaveText('online');
  await bob.context.close();
  await expect(bobRow.locator('.member__status')).toHaveText(/last seen/, { timeout: 15_000 });

  await ann.context.close();
});
