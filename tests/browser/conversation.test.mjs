// The conversation in the card tab, in headless Chromium, in English and Russian: the
// history from before the app read back from the sandbox Telegram, pages further back on
// scroll, a client's reply and photo appearing without a reload, a client's edit and
// deletion shown; and the tab laid out as the help page describes it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ARTIFACTS, appAndBrowser, eventually, unique, withTab } from './support.mjs';

const started = appAndBrowser();
const SALES_ACCOUNT = 9001;
const IVAN = 1001;
const OLGA = 1002;
// The catch-up runs on the sandbox runner's tick: a reply shows within a few of them.
const CAUGHT_UP = { timeout: 30_000, interval: 250 };

async function hook(path, body) {
  const res = await fetch(started.app.url + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) assert.fail(`${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : res.json();
}

/** `from` writes to `to` in the sandbox Telegram, from their own app; the message id. */
async function writes(from, to, text, attach = 'none') {
  return (await hook('/sandbox/telegram/reply', { from_user_id: from, to_user_id: to, text, attach })).message_id;
}

const tab = (t) => withTab(started, t);

/** Sends `text` from the tab and waits until the conversation shows it sent. */
async function sendFromTab(page, label, button, text) {
  await page.getByLabel(label, { exact: true }).fill(text);
  await page.getByRole('button', { name: button, exact: true }).click();
  const item = page.locator('#messages li', { hasText: text }).first();
  await eventually(async () => ['sent', 'read'].includes(await item.getAttribute('data-status')));
}

async function layoutAsDescribed(page, createChat) {
  // "Create chat" is a button beside the recipient.
  const chat = page.getByRole('button', { name: createChat, exact: true });
  const recipient = page.locator('#to-list .olc-choice').first();
  const [c, r] = [await chat.boundingBox(), await recipient.boundingBox()];
  assert.ok(c.x >= r.x + r.width && c.y < r.y + r.height, `beside the recipient: ${JSON.stringify({ c, r })}`);
  // Beside it, the recipient's name still has room (its copy button goes under it if need be).
  const name = await page.locator('#to-list .olc-choice label').first().boundingBox();
  assert.ok(name.width >= 150, `the name has room: ${name.width}px`);
  // The emoji menu opens from the message field's top right corner.
  const field = await page.locator('#message').boundingBox();
  const emoji = await page.locator('#emoji-toggle').boundingBox();
  assert.ok(emoji.x + emoji.width <= field.x + field.width && emoji.x > field.x + field.width - 48, 'at the right edge');
  assert.ok(emoji.y >= field.y && emoji.y < field.y + 16, 'at the top');
  await page.locator('#emoji-toggle').click();
  const panel = await page.locator('#emoji-panel').boundingBox();
  assert.ok(Math.abs(panel.x + panel.width - (field.x + field.width)) < 2 && panel.y < field.y + field.height, 'the menu hangs from that corner');
  await page.keyboard.press('Escape');
  // The voice control shows a microphone.
  assert.ok(await page.locator('#voice-record svg.olc-mic').isVisible());
  // Svetlana's hidden number: the explanation once, with the number it concerns.
  const unavailable = page.locator('#to-unavailable > li');
  await unavailable.first().waitFor();
  const explanations = await page.locator('#to-unavailable .olc-explanation').allInnerTexts();
  assert.equal(new Set(explanations).size, explanations.length, `each explanation once: ${explanations}`);
}

describe('the conversation', () => {
  test('in English: the history from before, pages back on scroll, a reply and its photo without reloading', async () => {
    // Before the tab is first opened: Ivan wrote to the account from his own app.
    const marker = unique('Before');
    for (let n = 1; n <= 35; n += 1) await writes(IVAN, SALES_ACCOUNT, `${marker} [${n}]`);
    await tab({})(async ({ page }) => englishConversation(page, marker));
  });

  test('in Russian: a client’s edit and deletion show in the conversation', () => tab({ lang: 'ru' })(russianConversation));
});

async function englishConversation(page, marker) {
  await layoutAsDescribed(page, 'Create chat');
  assert.ok(await page.getByRole('heading', { name: 'Conversation' }).isVisible());
  const messages = page.locator('#messages li');
  await eventually(async () => (await messages.filter({ hasText: `${marker} [35]` }).count()) === 1, CAUGHT_UP);
  assert.equal(await messages.filter({ hasText: `${marker} [1]` }).count(), 0, 'only the newest page at first');
  assert.ok(await page.getByRole('button', { name: 'Show earlier messages' }).isVisible());
  await page.locator('#conversation').evaluate((box) => { box.scrollTop = 0; });
  await eventually(async () => (await messages.filter({ hasText: `${marker} [1]` }).count()) === 1);
  assert.equal(await messages.filter({ hasText: `${marker} [10]` }).getAttribute('data-direction'), 'in');

  const ours = unique('Here is our offer');
  await sendFromTab(page, 'Message', 'Send', ours);
  const reply = unique('Thanks, here is the room');
  await writes(IVAN, SALES_ACCOUNT, reply, 'photo');
  const item = messages.filter({ hasText: reply });
  await eventually(async () => (await item.count()) === 1, CAUGHT_UP);
  const photo = item.locator('img.olc-msg-photo');
  await photo.scrollIntoViewIfNeeded(); // loaded once in view
  await eventually(async () => photo.evaluate((img) => img.complete && img.naturalWidth > 0));
  const order = await messages.allInnerTexts();
  assert.ok(order.findIndex((t) => t.includes(ours)) < order.findIndex((t) => t.includes(reply)), 'newest at the bottom');
  await page.screenshot({ path: join(ARTIFACTS, 'conversation-en.png'), fullPage: true });
}

async function russianConversation({ page }) {
  await layoutAsDescribed(page, 'Создать чат');
  assert.ok(await page.getByRole('heading', { name: 'Переписка' }).isVisible());
  // The whole card of a recipient is its label: a click anywhere on it picks the radio.
  await page.locator('.olc-choice', { hasText: '@olga_smirnova' }).locator('input').check({ force: true });
  await sendFromTab(page, 'Сообщение', 'Отправить', unique('Добрый день'));
  const kept = unique('Доставка в понедельник');
  const keptId = await writes(OLGA, SALES_ACCOUNT, kept);
  const gone = unique('Номер карты');
  const goneId = await writes(OLGA, SALES_ACCOUNT, gone);
  const messages = page.locator('#messages li');
  await eventually(async () => (await messages.filter({ hasText: gone }).count()) === 1, CAUGHT_UP);

  const edited = unique('Доставка во вторник');
  await hook('/sandbox/telegram/edit', { from_user_id: OLGA, message_id: keptId, text: edited });
  await hook('/sandbox/telegram/delete', { from_user_id: OLGA, message_id: goneId });
  const now = messages.filter({ hasText: edited });
  await eventually(async () => (await now.count()) === 1 && (await messages.filter({ hasText: gone }).count()) === 0, CAUGHT_UP);
  assert.match(await now.innerText(), /изменено/);
  assert.equal(await messages.filter({ hasText: kept }).count(), 0, 'the old text is gone');
  assert.ok(await page.locator('#messages li[data-deleted="true"]', { hasText: 'Сообщение удалено' }).isVisible());
  await page.screenshot({ path: join(ARTIFACTS, 'conversation-ru.png'), fullPage: true });
}
