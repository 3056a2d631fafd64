// The card tab in headless Chromium, used the way a person uses it: by label, by click and
// by keyboard. What reached Telegram and the portal is checked on the sandbox's endpoints.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ARTIFACTS, eventually, launchBrowser, saved, startApp, unique, withTab } from './support.mjs';

let app;
let browser;

before(async () => {
  app = await startApp();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

async function telegram() {
  return (await app.json('/sandbox/telegram/messages')).messages;
}

async function olMessages() {
  return (await app.json('/sandbox/portal/openlines/messages')).messages;
}

/** Sends what is composed with the Send button and waits until the tab shows it sent. */
async function sendAndWait(page, marker) {
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  const item = page.locator('#messages li', { hasText: marker }).first();
  await eventually(async () => ['sent', 'read'].includes(await item.getAttribute('data-status')));
  return item;
}

async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

const tab = (t) => withTab({ browser, app }, t);

describe('the card tab', () => {
  test('every control has a visible label; only the portal may frame the tab', () => tab({})(async ({ page, placementHeaders }) => {
    for (const label of ['From', 'Message', 'Files', 'Send as document', 'Publication in Open Lines', 'Create activity']) {
      assert.ok(await page.getByLabel(label, { exact: true }).isVisible(), label);
    }
    assert.ok(await page.getByRole('group', { name: 'To' }).isVisible());
    assert.ok(await page.getByRole('group', { name: 'Voice' }).isVisible());
    for (const name of ['Emoji', 'Record', 'Send']) {
      assert.ok(await page.getByRole('button', { name, exact: false }).first().isVisible(), name);
    }
    assert.ok(await page.getByText('Create chat').first().isVisible());
    assert.ok(await page.getByText('2 GB').isVisible(), 'the size limit is stated');
    assert.ok(await page.getByRole('button', { name: 'Copy username' }).count() >= 2, 'Ivan and Olga have usernames');
    // Svetlana hides her number: the reason is explained inline.
    assert.match(await page.locator('#to-unavailable').innerText(), /My contacts/);
    // Bitrix24 shows the tab in a frame of the portal's page: that portal (and the app) only.
    assert.equal(placementHeaders['x-frame-options'], undefined);
    assert.match(placementHeaders['content-security-policy'] || '', /frame-ancestors 'self' https?:\/\/demo\.bitrix24\.sandbox;/);
    assert.equal(placementHeaders['cache-control'], 'no-store', 'the page carries a token');
    // Fits the narrow slider: nothing scrolls sideways.
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
    await shot(page, 'tab-en');
  }));

  test('in Russian by the portal LANG', () => tab({ lang: 'ru' })(async ({ page }) => {
    for (const label of ['Откуда', 'Сообщение', 'Файлы', 'Отправить как документ', 'Создать дело']) {
      assert.ok(await page.getByLabel(label, { exact: true }).isVisible(), label);
    }
    assert.ok(await page.getByRole('group', { name: 'Кому' }).isVisible());
    assert.ok(await page.getByRole('group', { name: 'Голосовое' }).isVisible());
    assert.ok(await page.getByRole('button', { name: 'Скопировать имя пользователя' }).first().isVisible());
    await shot(page, 'tab-ru');
  }));

  test('a text is sent, by keyboard', () => tab({})(async ({ page }) => {
    const marker = unique('Hello from the browser');
    await page.getByLabel('Message', { exact: true }).focus();
    await page.keyboard.type(marker);
    await page.keyboard.press('Control+Enter');
    const item = page.locator('#messages li', { hasText: marker }).first();
    await eventually(async () => (await item.getAttribute('data-status')) === 'sent');
    const got = await eventually(async () => (await telegram()).find((m) => m.text === marker));
    assert.equal(got.media, 'text');
    assert.equal(got.to_username, 'ivan_petrov');
  }));

  test('a photo and a document upload with progress and arrive as photo and document', () => tab({})(async ({ page }) => {
    const marker = unique('Files');
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(300_000, 7)]);
    await page.getByLabel('Files', { exact: true }).setInputFiles([
      { name: 'chair.jpg', mimeType: 'image/jpeg', buffer: jpeg },
      { name: 'offer.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4 the offer') },
    ]);
    const rows = page.locator('#file-list li');
    assert.equal(await rows.count(), 2);
    await eventually(async () => (await rows.evaluateAll((li) => li.map((x) => x.dataset.status))).every((s) => s === 'done'));
    assert.equal(await rows.first().locator('progress').evaluate((p) => p.value), 1, 'the progress bar reached the end');
    await page.getByLabel('Message', { exact: true }).fill(marker);
    await shot(page, 'files-attached');
    const item = await sendAndWait(page, marker);
    assert.match(await item.innerText(), /chair\.jpg, offer\.pdf/);
    assert.equal(await rows.count(), 0, 'the list is cleared after sending');
    const received = await telegram();
    const at = received.findIndex((m) => m.text === marker);
    assert.deepEqual(received.slice(at, at + 3).map((m) => m.media), ['text', 'photo', 'document']);
    assert.equal(received[at + 1].file.received_bytes, jpeg.length);
    assert.equal(received[at + 2].file.file_name, 'offer.pdf');
  }));

  test('"Send as document" sends a photo uncompressed; an empty file is refused', () => tab({})(async ({ page }) => {
    const files = page.getByLabel('Files', { exact: true });
    await files.setInputFiles({ name: 'empty.txt', mimeType: 'text/plain', buffer: Buffer.alloc(0) });
    assert.match(await page.locator('#alert').innerText(), /empty/);
    await files.setInputFiles({ name: 'plan.png', mimeType: 'image/png', buffer: Buffer.from('\x89PNG\r\n\x1a\n plan') });
    await eventually(async () => (await page.locator('#file-list li').getAttribute('data-status')) === 'done');
    await page.getByLabel('Send as document').check();
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    const got = await eventually(async () => (await telegram()).find((m) => m.file?.file_name === 'plan.png'));
    assert.equal(got.media, 'document');
  }));

  test('a voice note from the microphone arrives as an OGG/Opus voice note', () => tab({})(async ({ page }) => {
    const record = page.getByRole('button', { name: 'Record' });
    await record.click();
    const stop = page.getByRole('button', { name: 'Stop recording' });
    await stop.waitFor();
    await page.waitForTimeout(2300);
    assert.match(await page.locator('#voice-timer').innerText(), /^0:0[2-3]$/, 'the timer runs');
    await stop.click();
    await page.locator('#voice-preview').waitFor();
    assert.match(await page.locator('#voice-label').innerText(), /Voice note, 0:0[2-3]/);
    assert.ok(await page.getByLabel('Listen back').isVisible());
    assert.ok(await page.locator('#voice-wave span').count() > 10, 'the waveform is drawn');
    await shot(page, 'voice-recorded');
    // Delete, record again, send.
    await page.getByRole('button', { name: 'Delete recording' }).click();
    assert.ok(await page.locator('#voice-preview').isHidden());
    await record.click();
    await page.waitForTimeout(1500);
    await stop.click();
    await page.locator('#voice-preview').waitFor();
    const before = (await telegram()).length;
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    const got = await eventually(async () => (await telegram()).slice(before).find((m) => m.media === 'voice'));
    assert.equal(got.file.format, 'ogg_opus', 'remuxed from WebM to OGG/Opus');
    assert.equal(got.file.mime_type, 'audio/ogg');
    assert.ok(got.file.duration >= 1 && got.file.duration <= 3, `duration ${got.file.duration}`);
    assert.ok(got.file.waveform_bytes > 0, 'the waveform went along');
    await eventually(async () => (await page.locator('#messages li').last().innerText()).includes('Voice note'), { timeout: 15_000 });
    assert.ok(await page.locator('#voice-preview').isHidden(), 'the recording is cleared after sending');
  }));

  test('an emoji is inserted from the picker, by mouse and by keyboard', () => tab({})(async ({ page }) => {
    const message = page.getByLabel('Message', { exact: true });
    await message.fill('Hi ');
    await page.getByRole('button', { name: 'Emoji' }).click();
    await page.getByRole('heading', { name: 'Smileys & emotion' }).waitFor();
    assert.ok(await page.getByRole('heading', { name: 'Flags' }).count(), 'grouped');
    await shot(page, 'emoji-picker');
    await page.getByLabel('Search emoji').fill('rocket');
    await page.getByRole('button', { name: 'rocket', exact: true }).click();
    assert.equal(await message.inputValue(), 'Hi 🚀');
    await page.getByRole('button', { name: 'Emoji' }).click();
    await page.getByLabel('Search emoji').fill('red heart');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Enter');
    assert.equal(await message.inputValue(), 'Hi 🚀❤️');
    await page.getByRole('button', { name: 'Emoji' }).click();
    await page.keyboard.press('Escape');
    assert.ok(await page.locator('#emoji-panel').isHidden(), 'Escape closes the picker');
    await sendAndWait(page, 'Hi 🚀❤️');
    assert.ok((await telegram()).some((m) => m.text === 'Hi 🚀❤️'));
  }));

  test('each publication mode reaches the Open Line as chosen', () => tab({})(async ({ page }) => {
    const publication = page.getByLabel('Publication in Open Lines', { exact: true });
    const sent = {};
    // 'none' first: one portal's Open Line work runs in order, so once the later ones are in,
    // anything the first had queued has run.
    for (const mode of ['none', 'outgoing', 'incoming']) {
      sent[mode] = unique(`Publication ${mode}`);
      await publication.selectOption(mode);
      await page.getByLabel('Message', { exact: true }).fill(sent[mode]);
      await sendAndWait(page, sent[mode]);
    }
    const outgoing = await eventually(async () => (await olMessages()).find((m) => m.text === sent.outgoing));
    assert.equal(outgoing.direction, 'outgoing');
    assert.equal(outgoing.author, 'Anna Smirnova');
    const incoming = await eventually(async () => (await olMessages()).find((m) => m.text.endsWith(sent.incoming)));
    assert.equal(incoming.direction, 'incoming');
    assert.match(incoming.text, /OLChat/);
    assert.ok(!(await olMessages()).some((m) => m.text.includes(sent.none)), 'without publication nothing is published');
  }));

  test('an activity is created in the card and follows the status', () => tab({})(async ({ page }) => {
    const marker = unique('With an activity');
    await page.getByLabel('Create activity').check();
    await page.getByLabel('Message', { exact: true }).fill(marker);
    await sendAndWait(page, marker);
    const activity = await eventually(async () => (await app.json('/sandbox/portal/activities')).activities
      .find((a) => JSON.stringify(a.layout).includes(marker) && a.status?.title === 'Sent'));
    assert.deepEqual(activity.owner, { type_id: 1, id: 1 }, 'on the lead');
    assert.equal(activity.history.at(-1).title, 'Sent', 'the timeline shows the delivery');
    // Ivan reads it: within a catch-up interval the same activity shows it read.
    await app.json('/sandbox/telegram/read', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user_id: 1001 }),
    });
    const read = await eventually(async () => (await app.json('/sandbox/portal/activities')).activities
      .find((a) => a.id === activity.id && a.status?.title === 'Read'), { timeout: 20_000 });
    assert.deepEqual(read.history.slice(-2).map((h) => h.title), ['Sent', 'Read'], 'the timeline follows the status');
  }));

  test('Copy username puts the @username on the clipboard', () => tab({})(async ({ page }) => {
    const olga = page.locator('.olc-choice', { hasText: '@olga_smirnova' });
    await olga.getByRole('button', { name: 'Copy username' }).click();
    await eventually(async () => (await page.locator('#status').innerText()).includes('Copied @olga_smirnova'));
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), '@olga_smirnova');
  }));

  test('Create chat opens the Open Line chat with the invited employee', () => tab({})(async ({ page }) => {
    await page.getByRole('button', { name: 'Create chat', exact: true }).click();
    const employees = page.getByLabel('Employees to invite');
    await eventually(async () => (await employees.locator('option').count()) > 1);
    await employees.selectOption({ label: 'Boris Ivanov' });
    await page.getByRole('button', { name: 'Create the chat' }).click();
    await eventually(async () => /chat is ready/.test(await page.locator('#status').innerText()));
    const state = await app.json('/sandbox/portal/state?member_id=sandbox-demo-portal');
    assert.ok(state.chats.some((c) => c.members.includes(2)), JSON.stringify(state.chats));
  }));

  test('a recipient name and a message with <script> are shown as text, never run', () => tab({ entity: 'contact', id: 3 })(async ({ page, problems }) => {
    const name = page.locator('#to-list .olc-name');
    await name.waitFor();
    assert.match(await name.innerText(), /<script>alert\('name'\)<\/script>/);
    const evil = `<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> ${unique('x')}`;
    await page.getByLabel('Message', { exact: true }).fill(evil);
    const item = await sendAndWait(page, evil);
    assert.equal(await item.locator('.olc-msg-text').innerText(), evil);
    assert.equal(await page.locator('#messages script, #messages img, #to-list script, #to-list img').count(), 0);
    assert.notEqual(await page.evaluate(() => window.pwned), 1);
    assert.notEqual(await page.evaluate(() => window.pwned), 2);
    assert.deepEqual(problems, []);
    assert.ok((await telegram()).some((m) => m.text === evil), 'the text itself is sent as written');
    await shot(page, 'escaped');
  }));
});

describe('the other direction', () => {
  test('a client answers with a photo on the Telegram page: it reaches the Open Line; reading shows in the tab', () => tab({})(async ({ page, context }) => {
    const marker = unique('Question');
    await page.getByLabel('Publication in Open Lines', { exact: true }).selectOption('incoming');
    await page.getByLabel('Message', { exact: true }).fill(marker);
    const item = await sendAndWait(page, marker);

    const client = await context.newPage();
    await client.goto(`${app.url}/sandbox/telegram`);
    const chat = client.locator('section', { hasText: marker });
    const answer = unique('Answer');
    await chat.getByLabel('Reply as Ivan Petrov').fill(answer);
    await chat.getByLabel('Attach', { exact: true }).selectOption('photo');
    await chat.getByRole('button', { name: 'Send', exact: true }).click();
    await client.locator('li', { hasText: answer }).waitFor();
    // The schedule's next catch-up (5 s) brings it to the Open Line, as the client's, with the file.
    const reply = await eventually(async () => (await olMessages()).find((m) => m.text === answer), { timeout: 20_000 });
    assert.equal(reply.direction, 'incoming');
    assert.equal(reply.author, 'Ivan Petrov');
    // A Telegram photo has no file name of its own: it is named after its message.
    assert.match(reply.files[0].name, /^photo-\d+\.jpg$/);

    await client.locator('section', { hasText: marker }).getByRole('button', { name: 'Read as Ivan Petrov' }).click();
    await eventually(async () => (await item.getAttribute('data-status')) === 'read', { timeout: 20_000 });
    await shot(client, 'telegram-clients');
  }));

  test('an administrator lets messages from anyone reach the Open Line', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const label = 'Forward messages from anyone, not only from people we wrote to';
      await page.goto(`${app.url}/sandbox/connectors?lang=en`);
      const box = () => page.locator('tr[data-connector="sales"]').getByLabel(label);
      await box().waitFor();
      assert.equal(await box().isChecked(), false);
      await saved(page, '/api/connectors/sales/accept-all', () => box().check());
      await page.reload();
      await box().waitFor();
      assert.equal(await box().isChecked(), true, 'the choice is kept');
      // Olga, whom nobody here wrote to, writes to the sales account: with the box checked,
      // the next catch-up (5 s) brings her message to the Open Line, as hers.
      const text = unique('Hi, I saw your ad');
      await app.json('/sandbox/telegram/reply', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ from_user_id: 1002, to_user_id: 9001, text, attach: 'none' }),
      });
      const arrived = await eventually(async () => (await olMessages()).find((m) => m.text === text), { timeout: 20_000 });
      assert.equal(arrived.direction, 'incoming');
      assert.equal(arrived.author, 'Olga Smirnova');
      await saved(page, '/api/connectors/sales/accept-all', () => box().uncheck());
    } finally {
      await context.close();
    }
  });

  test('an administrator chooses who may write from an account and allows Open Lines greetings', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const access = () => page.locator('tr[data-connector="sales"]').getByRole('group', { name: 'Who may write from this account' });
    const greetings = "Let Open Lines' automatic messages (greetings, ratings) reach clients";
    try {
      await page.goto(`${app.url}/sandbox/connectors?lang=en`);
      await access().getByLabel('Everyone').waitFor();
      assert.equal(await access().getByLabel('Everyone').isChecked(), true, 'everyone, by default');
      await access().getByLabel('Everyone').uncheck();
      await access().getByLabel('Employees').selectOption({ label: 'Boris Ivanov' });
      await access().getByLabel('Departments').selectOption({ label: 'Customer care' });
      await saved(page, '/api/connectors/sales/access', () => access().getByRole('button', { name: 'Save' }).click());

      const box = page.getByLabel(greetings);
      assert.equal(await box.isChecked(), false, 'off by default');
      await saved(page, '/api/connectors/system-messages', () => box.check());
      await shot(page, 'connectors-access');

      await page.reload();
      await access().getByLabel('Everyone').waitFor();
      assert.equal(await access().getByLabel('Everyone').isChecked(), false);
      const chosen = async (label) => access().getByLabel(label).evaluate((s) => [...s.selectedOptions].map((o) => o.text));
      assert.deepEqual(await chosen('Employees'), ['Boris Ivanov']);
      assert.deepEqual(await chosen('Departments'), ['Customer care']);
      assert.equal(await page.getByLabel(greetings).isChecked(), true);
    } finally {
      // The other tests write from the sales account as Anna, without greetings.
      await access().getByLabel('Everyone').check();
      await saved(page, '/api/connectors/sales/access', () => access().getByRole('button', { name: 'Save' }).click());
      await saved(page, '/api/connectors/system-messages', () => page.getByLabel(greetings).uncheck());
      await context.close();
    }
  });
});
