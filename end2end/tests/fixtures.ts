import fs from 'node:fs';
import path from 'node:path';
import { test as base, expect, type BrowserContext } from '@playwright/test';

export { expect };

const root = path.resolve(__dirname, '../..');

/** Server logs scanned for panics: the config's webServer, and the servers restart.spec and
 * cluster.spec start themselves. */
const serverLogs = [
  path.join(root, 'target/e2e-data/server.log'),
  path.join(root, 'target/e2e-restart-data/server.log'),
  path.join(root, 'target/e2e-cluster-data/node-3160.log'),
  path.join(root, 'target/e2e-cluster-data/node-3161.log'),
];

type BrowserError = { kind: 'console.error' | 'pageerror'; text: string; url: string };

/** Leptos warnings that point at a bug: reading signals untracked by mistake, or after disposal. */
const leptosMisuse = /outside a reactive tracking context|already been disposed|disposed/i;

type ErrorWatch = {
  watch: (context: BrowserContext) => void;
  allow: (pattern: RegExp) => void;
};

type LogMark = { file: string; fd?: number; offset: number };

function markLog(file: string): LogMark {
  try {
    // Kept open until the end so that, if the test deletes and recreates the file, the old inode
    // cannot be reused and the new file is told apart by its inode number.
    const fd = fs.openSync(file, 'r');
    return { file, fd, offset: fs.fstatSync(fd).size };
  } catch {
    return { file, offset: 0 };
  }
}

/** What was written to the log since `mark` was taken (all of it if the file was replaced). */
function readSince(mark: LogMark): string {
  let current: fs.Stats;
  try {
    current = fs.statSync(mark.file);
  } catch {
    return '';
  }
  let start = 0;
  if (mark.fd !== undefined) {
    const before = fs.fstatSync(mark.fd);
    if (before.dev === current.dev && before.ino === current.ino) start = mark.offset;
  }
  if (current.size <= start) return '';
  const buffer = Buffer.alloc(current.size - start);
  const fd = fs.openSync(mark.file, 'r');
  try {
    fs.readSync(fd, buffer, 0, buffer.length, start);
  } finally {
    fs.closeSync(fd);
  }
  return buffer.toString('utf8');
}

/** Lines that report a panic, each with the line after it (where Rust puts the message). */
function panicLines(log: string): string[] {
  const lines = log.split('\n');
  const found: string[] = [];
  lines.forEach((line, i) => {
    if (/panicked/i.test(line)) found.push([line, lines[i + 1] ?? ''].join('\n    ').trimEnd());
  });
  return found;
}

export const test = base.extend<{ errorWatch: ErrorWatch; allowConsoleErrors: (pattern: RegExp) => void }>({
  errorWatch: [
    async ({ browser }, use) => {
      const errors: BrowserError[] = [];
      const allowed: RegExp[] = [];
      // Playwright's own context fixture may also come through the patched newContext.
      const watched = new WeakSet<BrowserContext>();
      const watch = (context: BrowserContext) => {
        if (watched.has(context)) return;
        watched.add(context);
        context.on('console', (msg) => {
          if (msg.type() === 'error') errors.push({ kind: 'console.error', text: msg.text(), url: msg.location().url });
          // Leptos reports misuse of signals as warnings; each one is a bug in the app.
          if (msg.type() === 'warning' && leptosMisuse.test(msg.text())) {
            errors.push({ kind: 'console.error', text: msg.text(), url: msg.location().url });
          }
        });
        context.on('weberror', (webError) => {
          const error = webError.error();
          errors.push({ kind: 'pageerror', text: error.stack ?? error.message, url: webError.page()?.url() ?? '' });
        });
      };

      const logMarks = serverLogs.map(markLog);
      try {
        // Tests open their users' contexts with browser.newContext (see newUser), which no fixture
        // sees; the worker's browser outlives the test, so the original is put back afterwards.
        const newContext = browser.newContext;
        browser.newContext = async (...args) => {
          const context = await newContext.apply(browser, args);
          watch(context);
          return context;
        };
        try {
          await use({ watch, allow: (pattern) => allowed.push(pattern) });
        } finally {
          browser.newContext = newContext;
        }

        const problems: string[] = [];
        // Checked after the test so an allowConsoleErrors call anywhere in it counts.
        // (String.search ignores a /g flag's lastIndex, so a pattern can match many times.)
        const unexpected = errors.filter((e) => !allowed.some((pattern) => e.text.search(pattern) !== -1));
        if (unexpected.length > 0) {
          problems.push(
            'Browser errors (call allowConsoleErrors(/…/) in the test if one is expected):',
            ...unexpected.map((e) => `  [${e.kind}] ${e.text}\n    at ${e.url || '(unknown)'}`),
          );
        }
        for (const mark of logMarks) {
          const panics = panicLines(readSince(mark));
          if (panics.length > 0) {
            problems.push(`Server panicked (${path.relative(root, mark.file)}):`, ...panics.map((p) => `  ${p}`));
          }
        }
        if (problems.length > 0) throw new Error(problems.join('\n'));
      } finally {
        for (const mark of logMarks) if (mark.fd !== undefined) fs.closeSync(mark.fd);
      }
    },
    { auto: true },
  ],

  allowConsoleErrors: async ({ errorWatch }, use) => {
    await use(errorWatch.allow);
  },

  // The built-in context (behind `page`) is watched too, whichever way it was created.
  context: async ({ context, errorWatch }, use) => {
    errorWatch.watch(context);
    await use(context);
  },
});
