// OLChat for Telegram: the CRM card tab. Plain DOM, no framework.
// All data from the server is inserted as text (createElement/textContent), never as HTML.
'use strict';

(() => {
  const TG_LIMIT = 4096; // Telegram's limit per text message; longer texts are split by the server
  const MESSAGES_POLL_MS = 1500;
  const SYNC_POLL_MS = 3000;
  const ACTIVE = new Set(['queued', 'sending']);
  const FINAL = new Set(['sent', 'read', 'failed']);

  const $ = (id) => document.getElementById(id);
  const el = {
    alert: $('alert'), status: $('status'),
    syncBox: $('sync-box'), syncLabel: $('sync-label'), sync: $('sync'),
    form: $('compose'), from: $('from'), fromEmpty: $('from-empty'),
    to: $('to'), toLoading: $('to-loading'), toList: $('to-list'), toEmpty: $('to-empty'),
    unavailableBox: $('to-unavailable-box'), unavailable: $('to-unavailable'),
    message: $('message'), counter: $('counter'), split: $('split'), send: $('send'),
    publication: $('publication'), createActivity: $('create-activity'),
    chatBox: $('chat-box'), employees: $('employees'), createChat: $('create-chat'),
    messages: $('messages'), messagesLoading: $('messages-loading'), messagesEmpty: $('messages-empty'),
  };

  const TOKEN = document.querySelector('meta[name="olchat-token"]')?.content ?? '';
  const LANG = document.documentElement.lang || 'en';
  const T = (() => {
    const raw = JSON.parse($('i18n')?.textContent || '{}');
    // Accept both the strings of one language and the whole {"en":…, "ru":…} file.
    return raw[LANG] && typeof raw[LANG] === 'object' ? raw[LANG] : raw;
  })();

  const state = {
    connectorId: null,
    connectors: [],
    selectedKey: null,   // recipient key of the checked radio
    idemKey: null,       // idempotency key of the message being composed
    sending: false,
    employeesLoaded: false,
    stopped: false,      // session no longer valid: stop polling
    cardSeq: 0, msgSeq: 0,
    syncTimer: 0, msgTimer: 0,
    connSig: '', rcptSig: '', msgSig: '',
    watched: new Map(),  // message id -> last status, for messages sent from this page
  };

  // ---- helpers ----

  function fmt(key, vars = {}) {
    return String(T[key] ?? key).replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  }

  // h('li', {className: 'x', dataset: {id: 1}}, 'text', childNode) — strings become text nodes.
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    const { dataset, ...rest } = props || {};
    Object.assign(node, rest);
    if (dataset) Object.assign(node.dataset, dataset);
    node.append(...children.filter((c) => c != null && c !== false && c !== ''));
    return node;
  }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    // randomUUID exists only in secure contexts; the local runner may serve the tab over plain http.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  }

  let bxReady = false;
  if (window.BX24) {
    window.BX24.init(() => { bxReady = true; window.BX24.fitWindow(); });
  }
  function fit() {
    if (bxReady) window.BX24.fitWindow();
  }

  // Live regions: set text only when it changes, so screen readers do not repeat it on every poll.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }
  // An expired or refused session outranks every later error: keep its message on screen.
  function showAlert(text) {
    if (state.stopped && el.alert.textContent) return;
    setText(el.alert, text);
    fit();
  }
  function clearAlert() { if (!state.stopped) setText(el.alert, ''); }
  function showError(e) {
    if (e.status === 401 || e.status === 403) {
      stopPolling();
      setText(el.alert, e.message);
      fit();
    } else {
      showAlert(e.message);
    }
  }
  function announce(text) { setText(el.status, text); }

  class ApiError extends Error {
    constructor(message, status, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, { method = 'GET', body } = {}) {
    const headers = { Authorization: `Bearer ${TOKEN}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(fmt('network_error'), 0, 'network');
    }
    let data = null;
    try { data = await res.json(); } catch { /* empty or non-JSON body */ }
    if (!res.ok) {
      throw new ApiError(data?.message || fmt('http_error', { status: res.status }), res.status, data?.error);
    }
    return data ?? {};
  }

  function stopPolling() {
    state.stopped = true;
    clearTimeout(state.syncTimer);
    clearTimeout(state.msgTimer);
  }

  // ---- card: connectors, recipients, sync ----

  async function loadCard(connectorId) {
    const seq = ++state.cardSeq;
    clearTimeout(state.syncTimer);
    el.to.setAttribute('aria-busy', 'true');
    const query = connectorId ? `?connector=${encodeURIComponent(connectorId)}` : '';
    let card;
    try {
      card = await api(`/api/card${query}`);
    } catch (e) {
      if (seq !== state.cardSeq) return;
      el.to.setAttribute('aria-busy', 'false');
      el.toLoading.hidden = true;
      showError(e);
      // Keep following a running sync through transient errors.
      if (!state.stopped && !el.syncBox.hidden) {
        state.syncTimer = setTimeout(() => loadCard(state.connectorId), SYNC_POLL_MS);
      }
      return;
    }
    if (seq !== state.cardSeq) return; // a newer request (e.g. another connector) superseded this one

    const connectors = Array.isArray(card.connectors) ? card.connectors : [];
    // No preselection from the server: resolve the recipients through the first connector.
    if (!connectorId && !card.connector_id && connectors.length) {
      loadCard(connectors[0].id);
      return;
    }
    state.connectors = connectors;
    state.connectorId = card.connector_id || connectorId || null;
    renderConnectors(connectors);
    renderRecipients(Array.isArray(card.recipients) ? card.recipients : []);
    renderSync(card.sync);
    el.to.setAttribute('aria-busy', 'false');
    updateSendButton();
    fit();

    if (card.sync && !state.stopped) {
      state.syncTimer = setTimeout(() => loadCard(state.connectorId), SYNC_POLL_MS);
    }
  }

  function connectorText(c) {
    const contact = c.phone || (c.username ? `@${c.username}` : '');
    let text = contact ? `${c.name} (${contact})` : String(c.name ?? c.id);
    if (c.status && c.status !== 'connected') text += ` — ${fmt('connector_not_connected')}`;
    return text;
  }

  function renderConnectors(connectors) {
    // Rebuilding an open <select> would close it under the user's hands: skip when nothing changed.
    const sig = JSON.stringify([connectors, state.connectorId]);
    if (sig === state.connSig) return;
    state.connSig = sig;
    el.from.replaceChildren(...connectors.map((c) => {
      const selected = c.id === state.connectorId;
      return new Option(connectorText(c), c.id, selected, selected);
    }));
    el.from.hidden = connectors.length === 0;
    el.from.disabled = connectors.length === 0;
    el.fromEmpty.hidden = connectors.length > 0;
  }

  function renderRecipients(recipients) {
    el.toLoading.hidden = true;
    const sig = JSON.stringify([recipients, state.connectors.length]);
    if (sig === state.rcptSig) return;
    state.rcptSig = sig;

    const found = recipients.filter((r) => r.state === 'found' && r.account);
    const others = recipients.filter((r) => !(r.state === 'found' && r.account));
    if (!found.some((r) => r.key === state.selectedKey)) {
      state.selectedKey = found[0]?.key ?? null;
    }
    const focused = el.to.contains(document.activeElement);

    el.toList.replaceChildren(...found.map(recipientChoice));
    el.toEmpty.hidden = found.length > 0 || state.connectors.length === 0;
    el.unavailable.replaceChildren(...others.map(unavailableItem));
    el.unavailableBox.hidden = others.length === 0;

    if (focused) el.toList.querySelector('input:checked')?.focus();
  }

  function recipientChoice(r, i) {
    const id = `recipient-${i}`;
    const { name, username } = r.account;
    const src = r.source || {};
    return h('div', { className: 'olc-choice' },
      h('input', { type: 'radio', name: 'recipient', id, value: r.key, checked: r.key === state.selectedKey }),
      h('label', { htmlFor: id },
        h('span', { className: 'olc-name' }, name || (username ? `@${username}` : src.value || r.key)),
        name && username ? h('span', { className: 'olc-username' }, `@${username}`) : null,
        h('span', { className: 'olc-source' }, sourceText(src))));
  }

  function sourceText(src) {
    return [src.label, src.value].filter(Boolean).join(': ');
  }

  function unavailableItem(r) {
    return h('li', { dataset: { key: r.key, state: r.state } },
      h('span', { className: 'olc-source' }, sourceText(r.source || {}) || r.key),
      r.explanation ? h('p', { className: 'olc-explanation' }, r.explanation) : null);
  }

  function renderSync(sync) {
    const active = sync != null && typeof sync === 'object';
    el.syncBox.hidden = !active;
    if (!active) return;
    const done = Number(sync.done) || 0;
    const total = Number(sync.total) || 0;
    el.sync.max = Math.max(total, 1);
    el.sync.value = Math.min(done, el.sync.max);
    setText(el.syncLabel, fmt('sync_progress', { done, total }));
  }

  // ---- composing and sending ----

  function canSend() {
    return !state.sending && Boolean(state.connectorId) && Boolean(state.selectedKey);
  }

  function updateSendButton() {
    el.send.disabled = !canSend();
  }

  function updateCounter() {
    const n = el.message.value.length; // UTF-16 code units, the unit Telegram counts in
    setText(el.counter, fmt('char_counter', { count: n, limit: TG_LIMIT }));
    const parts = Math.ceil(n / TG_LIMIT);
    setText(el.split, parts > 1 ? fmt('will_split', { count: parts }) : '');
  }

  // A changed text, recipient or sender is a new message: it needs a new idempotency key.
  function composeChanged() {
    if (!state.sending) state.idemKey = null;
  }

  async function send() {
    if (state.sending) return; // a second click or Ctrl+Enter while in flight sends nothing more
    clearAlert();
    const text = el.message.value;
    if (!text.trim()) {
      showAlert(fmt('empty_text'));
      el.message.focus();
      return;
    }
    if (!state.connectorId) { showAlert(fmt(state.connectors.length ? 'choose_connector' : 'no_connectors')); return; }
    if (!state.selectedKey) { showAlert(fmt('choose_recipient')); return; }

    if (!state.idemKey) state.idemKey = uuid();
    state.sending = true;
    el.message.readOnly = true; // the textarea is cleared on success: nothing typed now may be lost
    updateSendButton();
    el.send.textContent = fmt('sending');
    announce(fmt('sending'));
    try {
      const res = await api('/api/send', {
        method: 'POST',
        body: {
          connector_id: state.connectorId,
          recipient: state.selectedKey,
          text,
          idempotency_key: state.idemKey,
          publication: el.publication.value,
          create_activity: el.createActivity.checked,
        },
      });
      state.idemKey = null;
      el.message.value = '';
      updateCounter();
      announce(fmt('queued'));
      if (res.message_id) state.watched.set(String(res.message_id), 'queued');
      loadMessages();
      el.message.focus();
    } catch (e) {
      // Keep the idempotency key: retrying the same text must not send it twice.
      announce('');
      showError(e);
    } finally {
      state.sending = false;
      el.message.readOnly = false;
      el.send.textContent = fmt('send');
      updateSendButton();
    }
  }

  // ---- Open Line chat ----

  async function loadEmployees() {
    if (state.employeesLoaded) return;
    try {
      const { employees = [] } = await api('/api/employees');
      el.employees.replaceChildren(...employees.map((e) => new Option(String(e.name || e.id), String(e.id))));
      state.employeesLoaded = true;
      fit();
    } catch (e) {
      showError(e);
    }
  }

  async function createChat() {
    clearAlert();
    if (!state.connectorId) { showAlert(fmt(state.connectors.length ? 'choose_connector' : 'no_connectors')); return; }
    if (!state.selectedKey) { showAlert(fmt('choose_recipient')); return; }
    const userIds = Array.from(el.employees.selectedOptions, (o) => Number(o.value));
    el.createChat.disabled = true;
    try {
      const res = await api('/api/chats', {
        method: 'POST',
        body: { connector_id: state.connectorId, recipient: state.selectedKey, user_ids: userIds },
      });
      announce(fmt('chat_created', { chat: res.chat_id, count: (res.invited || []).length }));
    } catch (e) {
      showError(e);
    } finally {
      el.createChat.disabled = false;
    }
  }

  // ---- recent messages ----

  async function loadMessages() {
    const seq = ++state.msgSeq;
    clearTimeout(state.msgTimer);
    let list;
    try {
      ({ messages: list = [] } = await api('/api/messages'));
    } catch (e) {
      if (seq !== state.msgSeq) return;
      el.messagesLoading.hidden = true;
      showError(e);
      if (!state.stopped && state.watched.size) state.msgTimer = setTimeout(loadMessages, MESSAGES_POLL_MS * 2);
      return;
    }
    if (seq !== state.msgSeq) return;
    renderMessages(list);
    if (!state.stopped && list.some((m) => ACTIVE.has(m.status))) {
      state.msgTimer = setTimeout(loadMessages, MESSAGES_POLL_MS);
    }
  }

  function statusText(status) {
    return T[`status_${status}`] ?? String(status);
  }

  const timeFormat = (() => {
    try {
      return new Intl.DateTimeFormat(LANG, { dateStyle: 'short', timeStyle: 'short' });
    } catch {
      return new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });
    }
  })();

  function messageItem(m) {
    const date = new Date(Number(m.created_at));
    const valid = !Number.isNaN(date.getTime());
    return h('li', { className: 'olc-msg', dataset: { id: String(m.id), status: String(m.status) } },
      h('div', { className: 'olc-msg-head' },
        h('span', { className: 'olc-msg-to' }, String(m.recipient ?? '')),
        h('span', { className: 'olc-badge' }, statusText(m.status))),
      h('p', { className: 'olc-msg-text' }, String(m.text ?? '')),
      h('div', { className: 'olc-msg-meta' },
        m.connector ? fmt('message_meta', { connector: m.connector }) : null,
        m.connector && valid ? ' · ' : null,
        valid ? h('time', { dateTime: date.toISOString() }, timeFormat.format(date)) : null),
      m.reason ? h('p', { className: 'olc-msg-reason' }, String(m.reason)) : null,
      m.published?.state === 'failed'
        ? h('p', { className: 'olc-msg-reason' }, fmt('publication_failed', { reason: String(m.published.reason ?? '') }))
        : null);
  }

  function renderMessages(list) {
    el.messagesLoading.hidden = true;
    el.messagesEmpty.hidden = list.length > 0;
    const sig = JSON.stringify(list);
    if (sig !== state.msgSig) {
      state.msgSig = sig;
      el.messages.replaceChildren(...list.map(messageItem));
    }

    // Tell screen-reader users how the messages they sent here ended up.
    for (const m of list) {
      const id = String(m.id);
      if (!state.watched.has(id) || !FINAL.has(m.status)) continue;
      state.watched.delete(id);
      const status = m.reason ? `${statusText(m.status)}. ${m.reason}` : statusText(m.status);
      announce(fmt('status_changed', { recipient: m.recipient ?? '', status }));
    }
    fit();
  }

  // ---- wiring ----

  el.from.addEventListener('change', () => {
    clearAlert();
    composeChanged();
    state.connectorId = el.from.value || null;
    updateSendButton();
    loadCard(state.connectorId);
  });

  el.toList.addEventListener('change', (e) => {
    if (e.target.name !== 'recipient') return;
    state.selectedKey = e.target.value;
    composeChanged();
    updateSendButton();
  });

  el.message.addEventListener('input', () => {
    composeChanged();
    updateCounter();
  });

  // Another publication mode or activity choice is another message: a new idempotency key.
  el.publication.addEventListener('change', composeChanged);
  el.createActivity.addEventListener('change', composeChanged);
  el.chatBox.addEventListener('toggle', () => { if (el.chatBox.open) loadEmployees(); fit(); });
  el.createChat.addEventListener('click', createChat);

  el.message.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      send();
    }
  });

  el.form.addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });

  updateCounter();
  loadCard(null);
  loadMessages();
})();
