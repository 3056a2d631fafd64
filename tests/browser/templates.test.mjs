// Message templates in headless Chromium, by label: an administrator adds one with a file on
// the connectors page; in the deal's tab, in English and in Russian, the manager picks it, sees
// it filled from the deal with the field the deal cannot fill flagged and Send disabled, edits
// it out, keeps the file (English) or removes it (Russian), sends, and the client receives the
// filled text, with the file when it was kept.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ARTIFACTS, appAndBrowser, eventually, openCard, unique } from './support.mjs';

const started = appAndBrowser();
const TEMPLATE = 'Hello {CONTACT.NAME}! {DEAL.TITLE}: {DEAL.OPPORTUNITY} {DEAL.CURRENCY_ID}. Yours, {ASSIGNED_BY.NAME} {ASSIGNED_BY.LAST_NAME}. {CONTACT.EMAIL}';
const FILLED = 'Hello Dmitry! Chairs for Acme Shop: 96000.00 RUB. Yours, Boris Ivanov. {CONTACT.EMAIL}';

async function telegram() {
  return (await started.app.json('/sandbox/telegram/messages')).messages;
}

describe('templates', () => {
  const name = unique('Order');

  test('an administrator adds a template on the connectors page', async () => {
    const context = await started.browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${started.app.url}/sandbox/connectors?lang=en`);
      const section = page.getByRole('region', { name: 'Message templates' });
      await section.getByLabel('Name', { exact: true }).fill(name);
      await section.getByLabel('Text', { exact: true }).fill(TEMPLATE);
      await section.getByLabel('Files sent with the text', { exact: true })
        .setInputFiles({ name: 'price.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4 price list') });
      await section.locator('#template-file-list li[data-status="done"]', { hasText: 'price.pdf' }).waitFor();
      await section.getByRole('button', { name: 'Add the template', exact: true }).click();
      await section.locator('#templates li', { hasText: name }).waitFor();
      assert.match(await section.locator('#templates li', { hasText: name }).innerText(), /price\.pdf/, 'the list names its file');
      assert.equal(await section.locator('#template-file-list li').count(), 0, 'the form is empty again');
      await page.screenshot({ path: join(ARTIFACTS, 'connectors-templates.png'), fullPage: true });
    } finally {
      await context.close();
    }
  });

  const languages = [
    { lang: 'en', template: 'Template', message: 'Message', send: 'Send', warning: /Not filled from this card: \{CONTACT\.EMAIL\}/, keepFile: true },
    { lang: 'ru', template: 'Шаблон', message: 'Сообщение', send: 'Отправить', warning: /Не заполнено из этой карточки: \{CONTACT\.EMAIL\}/, remove: 'Убрать price.pdf', keepFile: false },
  ];
  const prices = async () => (await telegram()).filter((m) => m.file?.file_name === 'price.pdf' && m.to_user_id === 1005).length;
  for (const l of languages) {
    test(`in ${l.lang}, the manager picks it, sees it filled from the deal and the missing field flagged, edits it and sends ${l.keepFile ? 'with its file' : 'without the file'}`, async () => {
      const opened = await openCard(started.browser, started.app, { entity: 'deal', id: 1, lang: l.lang });
      const { page } = opened;
      try {
        await page.getByLabel(l.template, { exact: true }).selectOption({ label: name });
        const message = page.getByLabel(l.message, { exact: true });
        await eventually(async () => (await message.inputValue()) === FILLED);
        const file = page.locator('#file-list li', { hasText: 'price.pdf' });
        assert.equal(await file.getAttribute('data-status'), 'done', "the template's file is listed, stored already");
        const before = await prices();
        if (!l.keepFile) await page.getByRole('button', { name: l.remove, exact: true }).click();
        const warning = page.locator('#template-missing');
        assert.match(await warning.innerText(), l.warning);
        const send = page.getByRole('button', { name: l.send, exact: true });
        assert.equal(await send.isDisabled(), true, 'Send waits for the missing field');
        await page.screenshot({ path: join(ARTIFACTS, `tab-template-${l.lang}.png`), fullPage: true });

        const edited = FILLED.replace('{CONTACT.EMAIL}', unique('Thanks'));
        await message.fill(edited);
        await eventually(async () => !(await send.isDisabled()));
        assert.equal(await warning.isVisible(), false);
        await send.click();
        await eventually(async () => (await telegram()).some((m) => m.text === edited && m.to_user_id === 1005), { timeout: 30_000 });
        const sent = page.locator('#messages li[data-status]', { hasText: edited });
        await eventually(async () => ['sent', 'read'].includes(await sent.getAttribute('data-status')), { timeout: 30_000 });
        assert.equal(await prices(), before + (l.keepFile ? 1 : 0), l.keepFile ? 'the file went after the text' : 'the removed file stayed behind');
        assert.deepEqual(opened.problems, [], 'no script errors or dialogs');
      } finally {
        await opened.context.close();
      }
    });
  }
});
