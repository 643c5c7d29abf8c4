import { expect, type Browser, type Page } from '@playwright/test';

/** Unique per run so reruns against the same database never collide. */
export const runId = Date.now().toString(36).slice(-6);

/** Waits until the WASM bundle has hydrated the page (the app marks `<body data-hydrated>`). */
export async function hydrated(page: Page) {
  await page.locator('body[data-hydrated]').waitFor({ state: 'attached' });
}

/** A new browser context with a signed-up user on the chat screen. */
export async function newUser(browser: Browser, name: string, baseURL?: string) {
  const context = await browser.newContext(baseURL ? { baseURL } : {});
  const page = await context.newPage();
  page.on('dialog', (dialog) => {
    throw new Error(`unexpected browser dialog: ${dialog.message()}`);
  });
  const username = `${name.toLowerCase()}_${runId}`;
  await page.goto('/signup');
  await hydrated(page);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Display name').fill(name);
  await page.getByLabel('Password').fill('correct horse');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.getByTestId('current-user')).toHaveText(name);
  return { context, page, username, name };
}

/** Creates a group channel from `page` with the given members, and opens it. */
export async function createChannel(page: Page, channelName: string, memberUsernames: string[]) {
  await page.getByRole('button', { name: 'New channel' }).click();
  const dialog = page.getByRole('dialog', { name: 'New channel' });
  await expect(dialog.getByLabel('Channel name')).toBeFocused();
  await dialog.getByLabel('Channel name').fill(channelName);
  for (const username of memberUsernames) {
    await dialog.getByLabel('Add people').fill(username);
    await dialog.getByRole('option', { name: new RegExp(`@${username}`) }).click();
  }
  await dialog.getByRole('button', { name: 'Create channel' }).click();
  await expect(page).toHaveURL(/\/c\/\d+$/);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(channelName);
  return Number(page.url().split('/').pop());
}

/** Types a message in the composer and sends it with Enter. */
export async function send(page: Page, text: string) {
  const composer = page.getByLabel('Message', { exact: true });
  await composer.fill(text);
  await composer.press('Enter');
}

/** The sidebar link of a channel. */
export function channelLink(page: Page, channelId: number) {
  return page.locator(`a[data-channel="${channelId}"]`);
}

/** The messages area. */
export function messages(page: Page) {
  return page.getByRole('log', { name: 'Messages' });
}

/**
 * POSTs to a server function with the page's session cookie. The server requires a
 * cookie-authenticated POST to name this site in `Origin`: the browser adds it to the app's own
 * fetches, Playwright's request context does not, so it is set here from the page's address.
 */
export async function apiPost(page: Page, endpoint: string, data: unknown) {
  return page.request.post(`/api/${endpoint}`, { data, headers: { Origin: new URL(page.url()).origin } });
}

/** Sends a message through the HTTP API with the page's session (no UI involved). */
export async function apiSend(page: Page, channelId: number, body: string) {
  const response = await apiPost(page, 'messages/send', { channel_id: channelId, client_id: crypto.randomUUID(), body });
  expect(response.status()).toBe(200);
}

/** The channel's read state through the HTTP API, as the page's user. */
export async function readState(page: Page, channelId: number) {
  const response = await apiPost(page, 'read/state', { channel_id: channelId });
  expect(response.status()).toBe(200);
  return (await response.json()) as { last_seq: number; pointers: { user_id: number; last_read_seq: number }[] };
}

/** My read pointer in a channel (through the API). */
export async function myPointer(page: Page, channelId: number) {
  const me = await (await apiPost(page, 'auth/me', {})).json();
  const state = await readState(page, channelId);
  return state.pointers.find((p) => p.user_id === me.id)?.last_read_seq ?? 0;
}

/** Sends `count` numbered messages through the API: `${prefix} 1` … `${prefix} ${count}`. */
export async function apiSendMany(page: Page, channelId: number, prefix: string, count: number) {
  for (let n = 1; n <= count; n++) await apiSend(page, channelId, `${prefix} ${n}`);
}
