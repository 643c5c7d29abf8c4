import { defineConfig } from '@playwright/test';

// The server under test: the binary `cargo leptos build` made, on its own port, with a fresh
// SQLite database per run (the folder is wiped before start). Its output goes to server.log in that
// folder, where the test fixture looks for panics; a server that fails to start says why there too,
// not on the terminal.
const port = Number(process.env.E2E_PORT ?? 3100);
const baseURL = `http://127.0.0.1:${port}`;

export default defineConfig({
  testDir: './tests',
  outputDir: './test-results',
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  webServer: {
    command: 'rm -rf target/e2e-data && mkdir -p target/e2e-data && exec ./target/debug/dealnest-chat >> target/e2e-data/server.log 2>&1',
    cwd: '..',
    url: `${baseURL}/health`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      DATABASE_URL: 'target/e2e-data/dealnest.db',
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: 'target/site',
      LOG_LEVEL: 'warn',
      // Short grace so "goes offline" is observable quickly.
      PRESENCE_GRACE_SECS: '1',
      DRAIN_SECS: '1',
      // Specs fill channels through the API (130 messages in a row, far over the default 5 a
      // second per user); the other per-user limits stay at their defaults.
      RATE_LIMIT_SEND: 'off',
    },
  },
});
