// OLChat for Telegram: the connectors page. Plain DOM; server data goes in as text only.
'use strict';

(() => {
  const QR_POLL_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const TOKEN = document.querySelector('meta[name="olchat-token"]')?.content ?? '';
  const LANG = document.documentElement.lang || 'en';
  const T = (() => {
    const raw = JSON.parse($('i18n')?.textContent || '{}');
    return raw[LANG] && typeof raw[LANG] === 'object' ? raw[LANG] : raw;
  })();
  const t = (key, args = {}) => (T[key] || key).replace(/\{(\w+)\}/g, (_, k) => args[k] ?? '');

  const state = { loginId: null, reconnect: null, qrTimer: null, people: { employees: [], departments: [] } };

  const say = (text, isError) => {
    $('alert').textContent = isError ? text : '';
    $('status').textContent = isError ? '' : text;
  };

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || response.statusText);
    return data;
  }

  function show(step) {
    $('phone-form').hidden = step !== 'phone';
    $('code-form').hidden = step !== 'code';
    $('password-form').hidden = step !== 'password';
    $('qr-box').hidden = step !== 'qr';
    if (step !== 'qr') clearTimeout(state.qrTimer);
    const focus = { phone: 'phone', code: 'code', password: 'password' }[step];
    if (focus) $(focus).focus();
  }

  function cell(text) {
    const td = document.createElement('td');
    td.textContent = text;
    return td;
  }

  function button(label, onClick, secondary = true) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = secondary ? 'olc-btn olc-btn-secondary' : 'olc-btn';
    b.textContent = label;
    b.addEventListener('click', onClick);
    return b;
  }

  // This connector's own daily budgets, or the deployment's defaults (`limits`).
  function budgetsEditor(c, limits) {
    const box = document.createElement('fieldset');
    box.className = 'olc-budgets';
    const legend = document.createElement('legend');
    legend.textContent = t('budgets_label');
    box.append(legend);
    const number = (key, label) => {
      const wrap = document.createElement('label');
      wrap.textContent = `${t(label)} `;
      const input = document.createElement('input');
      input.type = 'number';
      input.min = '0';
      input.max = '1000';
      input.className = 'olc-control';
      input.dataset.budget = key;
      input.value = String(c.budgets[key]);
      wrap.append(input);
      box.append(wrap);
      return input;
    };
    const chats = number('new_chats_per_day', 'budget_chats_label');
    const lookups = number('phone_lookups_per_day', 'budget_lookups_label');
    const put = async (budgets) => {
      try {
        await api('PUT', `/api/connectors/${encodeURIComponent(c.id)}/budgets`, { budgets });
        say(t('saved'));
        await load();
      } catch (e) { say(e.message, true); }
    };
    box.append(
      button(t('save'), () => put({ new_chats_per_day: Number(chats.value), phone_lookups_per_day: Number(lookups.value) })),
      button(t('budgets_default'), () => put(null), false),
    );
    if (!c.own_budgets) {
      chats.placeholder = String(limits.new_chats_per_day);
      lookups.placeholder = String(limits.phone_lookups_per_day);
    }
    return box;
  }

  // One of the connector's yes-or-no choices: `field` of the connector, saved at `path`.
  function flagBox(c, field, path, label) {
    const wrap = document.createElement('label');
    wrap.className = 'olc-check';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = c[field];
    box.dataset.flag = field;
    box.dataset.connector = c.id;
    box.addEventListener('change', async () => {
      try {
        await api('PUT', `/api/connectors/${encodeURIComponent(c.id)}/${path}`, { [field]: box.checked });
        say(t('saved'));
      } catch (e) {
        box.checked = !box.checked;
        say(e.message, true);
      }
    });
    wrap.append(box, ` ${t(label)}`);
    return wrap;
  }

  // Who may write from the account: everyone, or the chosen employees and departments.
  function accessEditor(c) {
    const box = document.createElement('fieldset');
    box.className = 'olc-budgets';
    const legend = document.createElement('legend');
    legend.textContent = t('access_label');
    const everyoneLabel = document.createElement('label');
    everyoneLabel.className = 'olc-check';
    const everyone = document.createElement('input');
    everyone.type = 'checkbox';
    everyone.checked = c.access.kind === 'everyone';
    everyoneLabel.append(everyone, ` ${t('access_everyone')}`);
    const picker = (label, items, chosen) => {
      const wrap = document.createElement('label');
      wrap.textContent = `${t(label)} `;
      const select = document.createElement('select');
      select.multiple = true;
      select.size = 4;
      select.className = 'olc-control';
      for (const item of items) {
        const option = new Option(item.name || `#${item.id}`, String(item.id), false, chosen.includes(item.id));
        select.append(option);
      }
      wrap.append(select);
      return [wrap, select];
    };
    const [usersWrap, users] = picker('access_employees', state.people.employees, c.access.users ?? []);
    const [departmentsWrap, departments] = picker('access_departments', state.people.departments, c.access.departments ?? []);
    const sync = () => { users.disabled = everyone.checked; departments.disabled = everyone.checked; };
    everyone.addEventListener('change', sync);
    sync();
    const chosen = (select) => [...select.selectedOptions].map((o) => Number(o.value));
    box.append(legend, everyoneLabel, usersWrap, departmentsWrap, button(t('save'), async () => {
      const access = everyone.checked
        ? { kind: 'everyone' }
        : { kind: 'chosen', users: chosen(users), departments: chosen(departments) };
      try {
        await api('PUT', `/api/connectors/${encodeURIComponent(c.id)}/access`, { access });
        say(t('saved'));
      } catch (e) { say(e.message, true); }
    }));
    return box;
  }

  // Automation on this account: what it queued and sent today, what it does beyond the
  // budgets, and whether the portal's SMS go through it.
  function automationEditor(c, providerConnector) {
    const box = document.createElement('fieldset');
    box.className = 'olc-budgets';
    const legend = document.createElement('legend');
    legend.textContent = t('automation_label');
    const today = document.createElement('div');
    today.className = 'olc-muted';
    today.dataset.automationToday = c.id;
    today.textContent = t('automation_today', { queued: c.usage.automation_queued ?? 0, sent: c.usage.automation_sent ?? 0 });
    const choice = document.createElement('label');
    choice.textContent = `${t('over_budget_label')} `;
    const select = document.createElement('select');
    select.className = 'olc-control';
    select.dataset.overBudget = c.id;
    for (const value of ['wait', 'fail']) {
      select.append(new Option(t(`over_budget_${value}`), value, false, c.over_budget === value));
    }
    select.addEventListener('change', async () => {
      try {
        await api('PUT', `/api/connectors/${encodeURIComponent(c.id)}/over-budget`, { over_budget: select.value });
        say(t('saved'));
      } catch (e) {
        select.value = c.over_budget;
        say(e.message, true);
      }
    });
    choice.append(select);
    const providerLabel = document.createElement('label');
    providerLabel.className = 'olc-check';
    const provider = document.createElement('input');
    provider.type = 'radio';
    provider.name = 'provider-connector';
    provider.dataset.provider = c.id;
    provider.checked = providerConnector === c.id;
    provider.addEventListener('change', async () => {
      try {
        await api('PUT', '/api/connectors/provider', { connector_id: c.id });
        say(t('saved'));
      } catch (e) { say(e.message, true); await load(); }
    });
    providerLabel.append(provider, ` ${t('provider_connector_label')}`);
    box.append(legend, today, choice, providerLabel);
    return box;
  }

  function row(c, limits, providerConnector) {
    const tr = document.createElement('tr');
    tr.dataset.connector = c.id;
    tr.append(cell([c.name, c.username ? `@${c.username}` : '', c.phone].filter(Boolean).join(' · ')));
    const status = cell(t(`connector_status_${c.status}`));
    const usage = document.createElement('div');
    usage.className = 'olc-muted';
    usage.textContent = t('usage_today', {
      chats: c.usage.new_chats, chats_limit: c.budgets.new_chats_per_day,
      lookups: c.usage.phone_lookups, lookups_limit: c.budgets.phone_lookups_per_day,
    });
    status.append(usage, budgetsEditor(c, limits), automationEditor(c, providerConnector));
    tr.append(status);
    const line = document.createElement('td');
    const input = document.createElement('input');
    input.className = 'olc-control';
    input.inputMode = 'numeric';
    input.value = c.line ?? '';
    input.placeholder = t('line_default');
    input.setAttribute('aria-label', `${t('line_label')}: ${c.name}`);
    line.append(input, button(t('save'), async () => {
      try {
        await api('PUT', `/api/connectors/${encodeURIComponent(c.id)}/line`, { line: input.value.trim() || null });
        say(t('saved'));
      } catch (e) { say(e.message, true); }
    }));
    line.append(
      flagBox(c, 'accept_all', 'accept-all', 'accept_all_label'),
      flagBox(c, 'keep_imported_contacts', 'keep-imported-contacts', 'keep_imported_label'),
      accessEditor(c),
    );
    tr.append(line);
    const actions = document.createElement('td');
    if (c.status === 'needs_login') {
      actions.append(button(t('reconnect'), () => {
        state.reconnect = c.id;
        $('phone').value = c.phone;
        show('phone');
      }, false));
    }
    actions.append(button(t('disconnect'), async () => {
      if (!window.confirm(t('disconnect_confirm', { name: c.name }))) return;
      try {
        await api('POST', `/api/connectors/${encodeURIComponent(c.id)}/disconnect`);
        say(t('disconnected'));
        await load();
      } catch (e) { say(e.message, true); }
    }));
    tr.append(actions);
    return tr;
  }

  async function load() {
    const { connectors, limits, system_messages: systemMessages, provider_connector: providerConnector } = await api('GET', '/api/connectors');
    $('connectors').replaceChildren(...connectors.map((c) => row(c, limits, providerConnector)));
    $('connectors-empty').hidden = connectors.length > 0;
    $('system-messages').checked = systemMessages;
  }

  $('system-messages').addEventListener('change', async () => {
    const box = $('system-messages');
    try {
      await api('PUT', '/api/connectors/system-messages', { system_messages: box.checked });
      say(t('saved'));
    } catch (e) {
      box.checked = !box.checked;
      say(e.message, true);
    }
  });

  async function step(view) {
    state.loginId = view.login_id ?? null;
    if (view.step === 'done') {
      state.reconnect = null;
      say(t('connected_ok', { name: view.connector.name }));
      show('phone');
      $('phone').value = '';
      await load();
    } else if (view.step === 'password') {
      $('password-hint').textContent = view.hint ? t('password_hint', { hint: view.hint }) : '';
      show('password');
    } else if (view.step === 'qr') {
      $('qr').src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(view.svg)}`;
      show('qr');
      state.qrTimer = setTimeout(pollQr, QR_POLL_MS);
    } else {
      show('code');
    }
  }

  async function pollQr() {
    try {
      await step(await api('POST', '/api/connectors/login/qr', { login_id: state.loginId }));
    } catch (e) { say(e.message, true); show('phone'); }
  }

  const submit = (form, send) => $(form).addEventListener('submit', async (event) => {
    event.preventDefault();
    const buttons = $(form).querySelectorAll('button');
    buttons.forEach((b) => { b.disabled = true; });
    try {
      say('');
      await step(await send());
    } catch (e) { say(e.message, true); } finally { buttons.forEach((b) => { b.disabled = false; }); }
  });

  submit('phone-form', () => api('POST', '/api/connectors/login/phone', { phone: $('phone').value, reconnect: state.reconnect }));
  submit('code-form', () => api('POST', '/api/connectors/login/code', { login_id: state.loginId, code: $('code').value }));
  submit('password-form', () => api('POST', '/api/connectors/login/password', { login_id: state.loginId, password: $('password').value }));
  $('qr-start').addEventListener('click', async () => {
    try {
      say('');
      await step(await api('POST', '/api/connectors/login/qr', { reconnect: state.reconnect }));
    } catch (e) { say(e.message, true); }
  });
  $('qr-cancel').addEventListener('click', () => show('phone'));

  // ---- templates: the portal's, for the tab and the robot ----

  let editingTemplate = null; // id of the template in the form, or null for a new one
  let templateFiles = []; // { name, size, key, status: 'uploading' | 'done' | 'failed' }

  function showTemplateFiles() {
    $('template-file-list').replaceChildren(...templateFiles.map((f) => {
      const li = document.createElement('li');
      li.dataset.status = f.status;
      const name = document.createElement('span');
      name.textContent = f.name;
      const remove = button('✕', () => { templateFiles = templateFiles.filter((x) => x !== f); showTemplateFiles(); });
      remove.setAttribute('aria-label', t('remove_file', { name: f.name }));
      li.append(name, ' ', olc.formatSize(f.size), ' ', remove);
      return li;
    }));
  }

  // Uploaded as the tab uploads: a slot, then a PUT straight to storage.
  async function uploadTemplateFile(entry, file) {
    try {
      const slot = await api('POST', '/api/templates/admin/uploads', { name: file.name, size: file.size, content_type: file.type });
      const response = await fetch(slot.url, { method: slot.method || 'PUT', headers: slot.headers || {}, body: file });
      if (!response.ok) throw new Error(t('upload_failed', { name: file.name, reason: response.status }));
      entry.key = slot.key;
      entry.status = 'done';
    } catch (e) {
      entry.status = 'failed';
      say(t('upload_failed', { name: file.name, reason: e.message }), true);
    }
    showTemplateFiles();
  }

  $('template-files').addEventListener('change', () => {
    for (const file of $('template-files').files) {
      const entry = { name: file.name, size: file.size, key: null, status: 'uploading' };
      templateFiles.push(entry);
      uploadTemplateFile(entry, file);
    }
    $('template-files').value = '';
    showTemplateFiles();
  });

  function editTemplate(tpl) {
    editingTemplate = tpl ? tpl.id : null;
    $('template-name').value = tpl ? tpl.name : '';
    $('template-text').value = tpl ? tpl.text : '';
    templateFiles = (tpl?.files || []).map((f) => ({ name: f.name, size: f.size, key: f.key, status: 'done' }));
    showTemplateFiles();
    $('template-save').textContent = tpl ? t('save') : t('template_add');
    $('template-cancel').hidden = !tpl;
    if (tpl) $('template-name').focus();
  }

  function templateItem(tpl) {
    const li = document.createElement('li');
    li.dataset.template = tpl.id;
    const name = document.createElement('strong');
    name.textContent = tpl.name;
    const body = document.createElement('p');
    body.className = 'olc-muted';
    body.textContent = tpl.text;
    for (const f of tpl.files || []) {
      const file = document.createElement('span');
      file.className = 'olc-file-name';
      file.textContent = `📎 ${f.name}`;
      body.append(document.createElement('br'), file);
    }
    li.append(name, ' ', button(t('template_edit'), () => editTemplate(tpl)), button(t('template_delete'), async () => {
      if (!window.confirm(t('template_delete_confirm', { name: tpl.name }))) return;
      try {
        await api('DELETE', `/api/templates/admin/${encodeURIComponent(tpl.id)}`);
        say(t('template_deleted'));
        if (editingTemplate === tpl.id) editTemplate(null);
        await loadTemplates();
      } catch (e) { say(e.message, true); }
    }), body);
    return li;
  }

  async function loadTemplates() {
    const { templates } = await api('GET', '/api/templates/admin');
    $('templates').replaceChildren(...templates.map(templateItem));
    $('templates-empty').hidden = templates.length > 0;
  }

  $('template-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (templateFiles.some((f) => f.status === 'uploading')) { say(t('uploads_pending'), true); return; }
    const files = templateFiles.filter((f) => f.status === 'done').map((f) => ({ key: f.key, name: f.name }));
    const body = { name: $('template-name').value, text: $('template-text').value, files };
    try {
      if (editingTemplate) await api('PUT', `/api/templates/admin/${encodeURIComponent(editingTemplate)}`, body);
      else await api('POST', '/api/templates/admin', body);
      say(t('saved'));
      editTemplate(null);
      await loadTemplates();
    } catch (e) { say(e.message, true); }
  });
  $('template-cancel').addEventListener('click', () => editTemplate(null));
  loadTemplates().catch((e) => say(e.message, true));

  // Whom access can be given to; the list shows without it if the portal does not answer.
  api('GET', '/api/connectors/people')
    .then((people) => { state.people = people; })
    .catch((e) => say(e.message, true))
    .finally(() => load().catch((e) => say(e.message, true)));
})();
