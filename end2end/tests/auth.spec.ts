import { expect, test } from './fixtures';
import { hydrated, newUser, runId } from './helpers';

// Unique per run so reruns against a reused database never collide.
const suffix = Date.now().toString(36);

test('sign up, land on the home page, log out, log back in', async ({ page }) => {
  const username = `ann_${suffix}`;
  await page.goto('/signup');
  await hydrated(page);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Display name').fill('Ann Example');
  await page.getByLabel('Password').fill('correct horse');
  await page.getByRole('button', { name: 'Sign up' }).click();

  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId('current-user')).toHaveText('Ann Example');
  await expect(page.getByText('No conversations yet. Start one above.')).toBeVisible();

  await page.getByRole('button', { name: 'Log out' }).click();
  await expect(page).toHaveURL(/\/login$/);

  // The session is gone: the home page sends us back to log in.
  await page.goto('/');
  await expect(page).toHaveURL(/\/login$/);

  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill('correct horse');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByTestId('current-user')).toHaveText('Ann Example');
});

test('sign-up shows field errors from the form and from the server', async ({ page, allowConsoleErrors }) => {
  // The taken username is refused with 409, and Chromium logs every failed fetch as an error.
  allowConsoleErrors(/Failed to load resource: the server responded with a status of 409/);
  await page.goto('/signup');
  await hydrated(page);
  await page.getByLabel('Username').fill('x');
  await page.getByLabel('Display name').fill('Someone');
  await page.getByLabel('Password').fill('correct horse');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.locator('#username-error')).toContainText('3–32 characters');
  await expect(page.getByLabel('Username')).toHaveAttribute('aria-invalid', 'true');

  await page.getByLabel('Username').fill(`bob_${suffix}`);
  await page.getByLabel('Password').fill('short');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.locator('#password-error')).toContainText('at least 8 characters');
  await expect(page.locator('#username-error')).toHaveText('');

  // A taken username is refused by the server and the message is shown.
  await page.getByLabel('Password').fill('correct horse');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.getByTestId('current-user')).toHaveText('Someone');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.goto('/signup');
  await hydrated(page);
  await page.getByLabel('Username').fill(`bob_${suffix}`);
  await page.getByLabel('Display name').fill('Another Bob');
  await page.getByLabel('Password').fill('correct horse');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'is taken' })).toBeVisible();
});

test('wrong password is reported without saying which part was wrong', async ({ page, allowConsoleErrors }) => {
  // The refused login is a 401, which Chromium logs as an error.
  allowConsoleErrors(/Failed to load resource: the server responded with a status of 401/);
  await page.goto('/login');
  await hydrated(page);
  await page.getByLabel('Username').fill(`nobody_${suffix}`);
  await page.getByLabel('Password').fill('whatever123');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'wrong username or password' })).toBeVisible();
});

test('logging out in one tab signs out the other tabs of that browser', async ({ browser }) => {
  const { context, page: first, name } = await newUser(browser, `Cid${runId}`);

  // A second tab shares the session cookie and holds its own live connection.
  const second = await context.newPage();
  await second.goto('/');
  await hydrated(second);
  await expect(second.getByTestId('current-user')).toHaveText(name);
  await expect(second.getByTestId('connection-banner')).toHaveAttribute('data-status', 'connected');

  await first.getByRole('button', { name: 'Log out' }).click();
  await expect(first).toHaveURL(/\/login$/);
  // The server closes the other tab's socket (4001) and that tab goes to the sign-in page.
  await expect(second).toHaveURL(/\/login$/);
  await context.close();
});
