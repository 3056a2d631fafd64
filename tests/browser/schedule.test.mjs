// "Send later" in the card tab, in headless Chromium, by label and keyboard: a message is
// scheduled in the zone the tab names, listed as scheduled with Cancel and Edit, and either
// leaves at its time (the sandbox runner sweeps every 5 s) or is cancelled and never leaves.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ARTIFACTS, appAndBrowser, eventually, unique, withTab } from './support.mjs';

const started = appAndBrowser();

async function telegram() {
  return (await started.app.json('/sandbox/telegram/messages')).messages;
}

// The demo users' TIME_ZONE is Europe/Moscow: UTC+3 all year round.
const MOSCOW_MS = 3 * 3600 * 1000;

/** The picker's value for unix ms `at`, in Moscow wall time (seconds too when `seconds`). */
function moscowWall(at, seconds = false) {
  return new Date(at + MOSCOW_MS).toISOString().slice(0, seconds ? 19 : 16);
}

const tab = (t) => withTab(started, t);

/** Turns "Send later" on by keyboard, picks `wall`, writes `text` and schedules it. */
async function scheduleMessage(page, { later, sendAt, message, schedule }, wall, text) {
  await page.getByLabel(later, { exact: true }).focus();
  await page.keyboard.press('Space');
  await page.getByLabel(sendAt, { exact: true }).fill(wall);
  await page.getByLabel(message, { exact: true }).fill(text);
  await page.getByRole('button', { name: schedule, exact: true }).click();
  const item = page.locator('#messages li', { hasText: text }).first();
  await eventually(async () => (await item.getAttribute('data-status')) === 'scheduled');
  return item;
}

describe('send later', () => {
  test('scheduled in English: listed with Cancel and Edit, one leaves at its time, one is cancelled', () => tab({})(async ({ page }) => {
    const labels = { later: 'Send later', sendAt: 'Send at', message: 'Message', schedule: 'Schedule' };
    assert.equal(await page.getByLabel('Send at', { exact: true }).isVisible(), false, 'the picker shows once asked for');
    const kept = unique('Good morning');
    const item = await scheduleMessage(page, labels, moscowWall(Date.now() + 3600_000), kept);
    assert.equal(await page.getByLabel('Send at', { exact: true }).isVisible(), false, 'the picker closes after scheduling');
    assert.match(await item.innerText(), /Scheduled/);
    assert.match(await item.innerText(), /Scheduled for /);
    assert.ok(await item.getByRole('button', { name: 'Cancel', exact: true }).isVisible());
    assert.ok(await item.getByRole('button', { name: 'Edit', exact: true }).isVisible());

    // A few seconds ahead: the runner's tick sends it.
    await page.getByLabel('Send later', { exact: true }).check();
    assert.ok(await page.getByText('In your Bitrix24 time zone: Europe/Moscow (UTC+3)').isVisible(), 'the zone is named');
    await page.getByLabel('Send later', { exact: true }).uncheck();
    const soon = unique('In a moment');
    const due = Date.now() + 3000;
    const leaving = await scheduleMessage(page, labels, moscowWall(due, true), soon);
    await page.screenshot({ path: join(ARTIFACTS, 'schedule-en.png'), fullPage: true });
    await eventually(async () => ['sent', 'read'].includes(await leaving.getAttribute('data-status')), { timeout: 30_000 });
    const got = (await telegram()).filter((m) => m.text === soon);
    assert.equal(got.length, 1, 'sent once');
    assert.ok(got[0].date * 1000 >= due - 1000, 'not before its time');
    assert.equal(await leaving.getByRole('button', { name: 'Cancel', exact: true }).count(), 0, 'no Cancel once it left');

    await item.getByRole('button', { name: 'Cancel', exact: true }).click();
    await eventually(async () => (await item.getAttribute('data-status')) === 'cancelled');
    assert.match(await item.innerText(), /Cancelled/);
    assert.equal((await telegram()).filter((m) => m.text === kept).length, 0);
  }));

  test('scheduled in Russian, edited and cancelled', () => tab({ lang: 'ru' })(async ({ page }) => {
    const labels = { later: 'Отправить позже', sendAt: 'Время отправки', message: 'Сообщение', schedule: 'Запланировать' };
    await page.getByLabel(labels.later, { exact: true }).check();
    assert.ok(await page.getByText('В вашем часовом поясе в Битрикс24: Europe/Moscow (UTC+3)').isVisible());
    await page.getByLabel(labels.later, { exact: true }).uncheck();
    const draft = unique('Доброе утро');
    const item = await scheduleMessage(page, labels, moscowWall(Date.now() + 2 * 3600_000), draft);
    assert.match(await item.innerText(), /Запланировано на /);

    await item.getByRole('button', { name: 'Изменить', exact: true }).click();
    const edited = unique('Добрый вечер');
    await item.getByLabel('Сообщение', { exact: true }).fill(edited);
    await item.getByRole('button', { name: 'Сохранить', exact: true }).click();
    const now = page.locator('#messages li', { hasText: edited }).first();
    await eventually(async () => (await now.getAttribute('data-status')) === 'scheduled');
    await page.screenshot({ path: join(ARTIFACTS, 'schedule-ru.png'), fullPage: true });

    await now.getByRole('button', { name: 'Отменить', exact: true }).click();
    await eventually(async () => (await now.getAttribute('data-status')) === 'cancelled');
    assert.match(await now.innerText(), /Отменено/);
    const sent = await telegram();
    assert.equal(sent.filter((m) => m.text === draft || m.text === edited).length, 0);
  }));
});
