// Starts the product (the `local` binary on a free port, fresh data directory) and Debian's
// Chromium through playwright-core. Nothing leaves the loopback interface.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = join(here, '..', 'artifacts');

const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // A fake microphone (a beeping tone) that needs no permission prompt.
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
];

function binary() {
  if (process.env.OLCHAT_BIN) return process.env.OLCHAT_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(here, '..', '..', 'target');
  return join(target, 'debug', 'local');
}

/** The local process in sandbox mode; resolves once it printed its URL. */
export async function startApp() {
  const dataDir = mkdtempSync(join(tmpdir(), 'olchat-browser-'));
  const child = spawn(binary(), [], {
    env: { ...process.env, OLCHAT_ADDR: '127.0.0.1:0', OLCHAT_DATA_DIR: dataDir, RUST_LOG: process.env.RUST_LOG || 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the app did not start: ${out}`)), 30_000);
    child.once('exit', (code) => reject(new Error(`the app exited with ${code}: ${out}`)));
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = out.match(/Open (http:\/\/127\.0\.0\.1:\d+)\/sandbox/);
      if (match) { clearTimeout(timer); resolve(match[1]); }
    });
  });
  return {
    url,
    async json(path, init) {
      const res = await fetch(url + path, init);
      if (!res.ok) throw new Error(`${path}: ${res.status}`);
      return res.json();
    },
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_FLAGS });
}

/** A page of the card tab, opened as Bitrix24 opens it (a form POST through /sandbox/open). */
export async function openCard(browser, app, { entity = 'lead', id = 1, lang = 'en' } = {}) {
  const context = await browser.newContext({ viewport: { width: 460, height: 900 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: app.url });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => { problems.push(`dialog: ${d.message()}`); d.dismiss(); });
  const placement = page.waitForResponse((r) => r.url().includes('/placement'));
  await page.goto(`${app.url}/sandbox/open?entity=${entity}&id=${id}&lang=${lang}`);
  const response = await placement;
  await page.locator('#to-list input[type=radio]').first().waitFor({ state: 'attached', timeout: 10_000 }).catch(() => {});
  return { page, context, problems, placementHeaders: await response.allHeaders() };
}

/** Runs `fn` on a card tab opened in `started.browser`, then checks the page raised no script
 * error or dialog, and closes it. */
export function withTab(started, t) {
  return async (fn) => {
    const opened = await openCard(started.browser, started.app, t);
    try {
      await fn(opened);
      assert.deepEqual(opened.problems, [], 'no script errors or dialogs');
    } finally {
      await opened.context.close();
    }
  };
}

/** Polls `check` until it returns a truthy value; that value. */
export async function eventually(check, { timeout = 10_000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Runs `action` and waits until the PUT or POST it causes to `path` succeeded: a navigation
 *  right after a click would otherwise abort the save it started. */
export async function saved(page, path, action) {
  await Promise.all([page.waitForResponse((r) => r.url().endsWith(path) && r.ok()), action()]);
}

export function unique(label) {
  return `${label} ${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** The app and Chromium for one test file: started before its tests, stopped after them. */
export function appAndBrowser() {
  const started = {};
  before(async () => {
    started.app = await startApp();
    started.browser = await launchBrowser();
  });
  after(async () => {
    await started.browser?.close();
    await started.app?.stop();
  });
  return started;
}
