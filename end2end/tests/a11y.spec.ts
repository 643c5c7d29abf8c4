import AxeBuilder from '@axe-core/playwright';
import { type Page } from '@playwright/test';
import { expect, test } from './fixtures';
import { apiSend, createChannel, hydrated, messages, newUser, runId, send } from './helpers';

/** Serious or critical axe violations on the page as it is now. */
async function seriousViolations(page: Page) {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']).analyze();
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.map((n) => n.target.join(' ')).join('\n    ')}`);
}

const layouts = [
  { name: 'desktop', viewport: { width: 1280, height: 800 } },
  { name: 'phone', viewport: { width: 390, height: 844 } },
];

for (const layout of layouts) {
  for (const colorScheme of ['light', 'dark'] as const) {
    test(`axe: no serious violations, ${layout.name}, ${colorScheme}`, async ({ browser }) => {
      const ann = await newUser(browser, `Axe${layout.name}${colorScheme}${runId}`);
      const bob = await newUser(browser, `Bea${layout.name}${colorScheme}${runId}`);
      const channelId = await createChannel(ann.page, 'Audited', [bob.username]);
      await send(ann.page, 'a message to audit, with https://dealnest.example/link');
      await apiSend(bob.page, channelId, 'and another');
      await expect(messages(ann.page).getByText('and another')).toBeVisible();

      const page = await bob.context.newPage();
      await page.setViewportSize(layout.viewport);
      await page.emulateMedia({ colorScheme });
      const pages: [string, () => Promise<void>][] = [
        ['/login', async () => {}],
        ['/signup', async () => {}],
        ['/', async () => {}],
        [`/c/${channelId}`, async () => {
          await expect(messages(page).getByText('and another')).toBeVisible();
        }],
        [`/c/${channelId} with members`, async () => {
          await page.getByRole('button', { name: 'Members' }).click();
          await expect(page.getByRole('complementary', { name: 'Members' })).toBeVisible();
        }],
        ['/c/999999', async () => {}],
      ];
      for (const [route, prepare] of pages) {
        const url = route.split(' ')[0];
        if (!route.includes(' with ')) {
          await page.goto(url);
          await hydrated(page);
        }
        await prepare();
        expect(await seriousViolations(page), `${route} (${layout.name}, ${colorScheme})`).toEqual([]);
      }
      // A dialog open.
      if (layout.name === 'phone') await page.goto('/');
      await hydrated(page);
      await page.getByRole('button', { name: 'New channel' }).click();
      await expect(page.getByRole('dialog', { name: 'New channel' })).toBeVisible();
      expect(await seriousViolations(page), `new channel dialog (${layout.name}, ${colorScheme})`).toEqual([]);
      await ann.context.close();
      await bob.context.close();
    });
  }
}

test('keyboard: skip link, focus after opening a channel and after dialogs, combobox picker', async ({ browser }) => {
  const ann = await newUser(browser, `Keys${runId}`);
  const bob = await newUser(browser, `Combo${runId}`);
  const page = ann.page;
  await page.goto('/');
  await hydrated(page);
  await page.keyboard.press('Tab');
  await expect(page.getByRole('link', { name: 'Skip to conversation' })).toBeFocused();

  // The people picker is a combobox: type, arrow down, Enter picks.
  await page.getByRole('button', { name: 'New channel' }).click();
  const dialog = page.getByRole('dialog', { name: 'New channel' });
  await expect(dialog.getByLabel('Channel name')).toBeFocused();
  await dialog.getByLabel('Channel name').fill('Keyboard only');
  const picker = dialog.getByRole('combobox', { name: 'Add people' });
  await picker.fill(bob.username);
  await expect(dialog.getByRole('option', { name: new RegExp(`@${bob.username}`) })).toBeVisible();
  await picker.press('ArrowDown');
  await picker.press('ArrowUp');
  await expect(picker).toHaveAttribute('aria-activedescendant', /option-0$/);
  await picker.press('Enter');
  await expect(dialog.getByRole('list', { name: 'Members to add' })).toContainText(bob.name);
  // Esc closes the dialog and focus returns to the button that opened it.
  await page.keyboard.press('Escape');
  await expect(dialog).toBeHidden();
  await expect(page.getByRole('button', { name: 'New channel' })).toBeFocused();

  await createChannel(page, 'Keyboard only', [bob.username]);
  // Opening a channel puts the cursor in the message box.
  await expect(page.getByLabel('Message', { exact: true })).toBeFocused();
  await ann.context.close();
  await bob.context.close();
});
