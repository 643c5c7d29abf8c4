import { expect, test } from './fixtures';
import { apiSend, createChannel, hydrated, messages, newUser, runId } from './helpers';

// Every route, opened by URL and by reload, signed out and signed in: nothing crashes the
// request (the fixture fails the test on any server panic or browser error), and each answers
// with what a person expects.

test('signed out: every route answers, private ones send you to log in', async ({ page, allowConsoleErrors }) => {
  // The unknown page is a 404 on purpose, and Chromium logs every 404 document.
  allowConsoleErrors(/status of 404/);
  for (const route of ['/', '/c/1', '/c/999999', '/c/not-a-number']) {
    const response = await page.goto(route);
    expect(response?.status(), route).toBeLessThan(500);
    await expect(page, route).toHaveURL(/\/login$/);
    await hydrated(page);
  }
  for (const [route, heading] of [
    ['/login', 'Log in to DealNest Chat'],
    ['/signup', 'Create your DealNest Chat account'],
  ]) {
    const response = await page.goto(route);
    expect(response?.status(), route).toBe(200);
    await hydrated(page);
    await page.reload();
    await hydrated(page);
    await expect(page.getByRole('heading', { level: 1 }), route).toHaveText(heading);
  }
  const missing = await page.goto('/no/such/page');
  expect(missing?.status()).toBe(404);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Page not found');
});

test('signed in: a channel survives reload; other channels say not found', async ({ browser, allowConsoleErrors }) => {
  allowConsoleErrors(/status of 404/);
  const ann = await newUser(browser, `Route${runId}`);
  const bob = await newUser(browser, `Other${runId}`);
  const mine = await createChannel(ann.page, 'Reloaded', []);
  await apiSend(ann.page, mine, 'still here after reload');
  const bobsOwn = await createChannel(bob.page, 'Private to Bob', []);

  // Reload inside a channel, and open it by URL in a fresh tab.
  for (const open of [() => ann.page.reload(), () => ann.page.goto(`/c/${mine}`)]) {
    const response = await open();
    expect(response?.status()).toBe(200);
    await hydrated(ann.page);
    await expect(ann.page.getByRole('heading', { level: 1 })).toHaveText('Reloaded');
    await expect(messages(ann.page).getByText('still here after reload')).toBeVisible();
  }

  // Someone else's channel, one that does not exist, and a malformed id.
  for (const route of [`/c/${bobsOwn}`, '/c/999999', '/c/abc']) {
    const response = await ann.page.goto(route);
    expect(response?.status(), route).toBe(200);
    await hydrated(ann.page);
    await expect(ann.page.getByTestId('channel-missing'), route).toContainText('Conversation not found');
    await expect(ann.page.getByText('Private to Bob')).toHaveCount(0);
    await ann.page.reload();
    await hydrated(ann.page);
    await expect(ann.page.getByTestId('channel-missing'), route).toBeVisible();
  }

  // Home, and the public pages while signed in.
  for (const route of ['/', '/login', '/signup']) {
    const response = await ann.page.goto(route);
    expect(response?.status(), route).toBe(200);
    await hydrated(ann.page);
  }
  const missing = await ann.page.goto('/no/such/page');
  expect(missing?.status()).toBe(404);

  // My own dot is "online" from the first render, not after a presence event.
  await ann.page.goto('/');
  await expect(ann.page.locator('.sidebar__me [data-presence]')).toHaveAttribute('data-presence', 'online', { timeout: 500 });

  // Static files: the icon exists; bundles have hashed names and may be cached for good.
  expect((await ann.page.request.get('/favicon.ico')).status()).toBe(200);
  expect((await ann.page.request.get('/manifest.webmanifest')).status()).toBe(200);
  const css = await ann.page.locator('link#leptos').getAttribute('href');
  expect(css).toMatch(/^\/pkg\/dealnest-chat\.[\w-]+\.css$/);
  const bundle = await ann.page.request.get(css!);
  expect(bundle.headers()['cache-control']).toBe('public, max-age=31536000, immutable');
  await ann.context.close();
  await bob.context.close();
});
