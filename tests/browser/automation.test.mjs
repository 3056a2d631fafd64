// Bitrix24's own automation in headless Chromium: a robot run from the sandbox's CRM card (as
// an automation rule would run it) reaches the client on Telegram and its result shows on the
// card; an administrator sets what automation does beyond an account's budgets.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ARTIFACTS, appAndBrowser, eventually, saved, unique } from './support.mjs';

const started = appAndBrowser();

async function withPage(fn) {
  const context = await started.browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  try {
    await fn(page);
    assert.deepEqual(problems, [], 'no script errors');
  } finally {
    await context.close();
  }
}

describe('automation', () => {
  test('a robot run from the sandbox card sends the filled text over Telegram and shows its result', () => withPage(async (page) => {
    // The robot's "From" lists the accounts once the app registered it again after they connected.
    await eventually(async () => {
      await page.goto(`${started.app.url}/sandbox/card?entity=deal&id=1&lang=en`);
      return (await page.locator('#robot option[value="sales"]').count()) > 0;
    });
    await page.locator('#robot-code').selectOption({ label: 'Send a Telegram message (OLChat)' });
    const fields = page.locator('#robot fieldset:not([disabled])');
    await fields.getByLabel('From (Telegram account)').selectOption('sales');
    const template = unique('Your deal: {=Document:TITLE}.');
    await fields.getByLabel('Message').fill(template);
    await Promise.all([page.waitForURL(/\/sandbox\/card\?/), page.locator('#run-robot').click()]);

    const expected = template.replace('{=Document:TITLE}', 'Chairs for Acme Shop');
    // An empty list is truthy: wait for one to arrive, then count them.
    const received = await eventually(async () => {
      const sent = (await started.app.json('/sandbox/telegram/messages')).messages.filter((m) => m.text === expected);
      return sent.length > 0 && sent;
    }, { timeout: 20_000 });
    assert.equal(received.length, 1, 'once');
    assert.equal(received[0].to_user_id, 1005, 'to Dmitry, the deal\'s first client on Telegram');

    const run = await eventually(async () => {
      await page.reload();
      const row = page.locator('#runs tr[data-workflow-id]').last();
      const shown = await row.textContent();
      return shown.includes('completed') && shown.includes('"status":"sent"') && row;
    }, { timeout: 20_000 });
    assert.match(await run.textContent(), /Telegram: sent to/);
    await page.screenshot({ path: join(ARTIFACTS, 'sandbox-card-robot.png'), fullPage: true });
  }));

  test('an administrator chooses what automation does beyond an account\'s budgets, and sees what it did today', () => withPage(async (page) => {
    const automation = () => page.locator('tr[data-connector="sales"]').getByRole('group', { name: 'Automation (robots, SMS, campaigns)' });
    await page.goto(`${started.app.url}/sandbox/connectors?lang=en`);
    await automation().getByLabel('Beyond the daily budgets:').waitFor();
    assert.match(await automation().textContent(), /Today: \d+ queued, \d+ sent/);
    assert.equal(await automation().getByLabel('Beyond the daily budgets:').inputValue(), 'wait', 'waiting, by default');
    await saved(page, '/api/connectors/sales/over-budget', () => automation().getByLabel('Beyond the daily budgets:').selectOption('fail'));
    await page.reload();
    await automation().getByLabel('Beyond the daily budgets:').waitFor();
    assert.equal(await automation().getByLabel('Beyond the daily budgets:').inputValue(), 'fail');
    await page.screenshot({ path: join(ARTIFACTS, 'connectors-automation.png'), fullPage: true });
    await saved(page, '/api/connectors/sales/over-budget', () => automation().getByLabel('Beyond the daily budgets:').selectOption('wait'));
  }));
});
