// OLChat for Telegram: the CRM card tab. Plain DOM, no framework.
// All data from the server is inserted as text (createElement/textContent), never as HTML.
'use strict';

(() => {
  const TG_LIMIT = 4096; // Telegram's limit per text message; longer texts are split by the server
  const SYNC_POLL_MS = 3000;
  const FINAL = new Set(['sent', 'read', 'failed', 'cancelled']);
  // An open conversation asks for its change marker (304 while nothing changed): soon after a
  // change, then less and less often, but never later than the server's X-Olchat-Look-Within
  // says (on AWS replies and reads come with the minute's catch-ups: the tab looks just after
  // them, not between; each poll is a request); never while the page is hidden.
  const POLL_MIN_MS = 2000;
  const POLL_MAX_MS = 20000; // when the server says nothing
  const BACKOFF_MAX_MS = 600000;
  // How often a visible tab tells the server a manager is watching (its account is then
  // caught up at every tick for 15 minutes): well inside that window.
  const WATCH_EVERY_MS = 5 * 60 * 1000;
  // Scrolled this close to the top, the page further back is loaded.
  const EARLIER_MARGIN_PX = 40;

  const $ = (id) => document.getElementById(id);
  const el = {
    alert: $('alert'), status: $('status'),
    syncBox: $('sync-box'), syncLabel: $('sync-label'), sync: $('sync'),
    form: $('compose'), from: $('from'), fromEmpty: $('from-empty'),
    to: $('to'), toLoading: $('to-loading'), toList: $('to-list'), toEmpty: $('to-empty'),
    unavailableBox: $('to-unavailable-box'), unavailable: $('to-unavailable'),
    message: $('message'), counter: $('counter'), split: $('split'), send: $('send'),
    publication: $('publication'), createActivity: $('create-activity'),
    chatOpen: $('chat-open'), chatBox: $('chat-box'), employees: $('employees'), createChat: $('create-chat'),
    emojiToggle: $('emoji-toggle'), emojiPanel: $('emoji-panel'), emojiSearch: $('emoji-search'),
    emojiGroups: $('emoji-groups'), emojiNone: $('emoji-none'),
    files: $('files'), fileList: $('file-list'), asDocument: $('as-document'),
    voiceRecord: $('voice-record'), voiceRecordLabel: $('voice-record-label'), voiceTimer: $('voice-timer'), voiceDelete: $('voice-delete'),
    voicePreview: $('voice-preview'), voiceLabel: $('voice-label'), voiceWave: $('voice-wave'), voiceAudio: $('voice-audio'),
    messages: $('messages'), messagesLoading: $('messages-loading'), messagesEmpty: $('messages-empty'),
    conversation: $('conversation'), earlier: $('earlier'), backfilling: $('backfilling'),
    sendLater: $('send-later'), laterBox: $('later-box'), sendAt: $('send-at'), sendAtZone: $('send-at-zone'),
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
    files: [],           // {file, key, status: 'uploading'|'done'|'failed', progress, row, fromTemplate}
    voice: null,         // {blob, url, duration, waveform, upload: Promise<key>}
    recorder: null,      // {media, chunks, started, timer}
    emojiLoaded: false,
    timeZone: null,      // {name, source: 'user'|'browser'}: the zone "send later" is picked in
    editing: null,       // id of the scheduled message being edited: the list is not redrawn under it
    list: [],            // the conversation's items as last drawn, oldest first
    recipients: [],      // the card's recipients found on Telegram
    conv: freshConversation(null),
  };

  // The conversation through one connector with one recipient, as far back as it was loaded.
  function freshConversation(key) {
    return { key, items: new Map(), rev: null, earlier: null, olderLoaded: false, backfilling: false, delay: POLL_MIN_MS, loadingEarlier: false, watchedAt: 0, peer: null, lookWithin: null };
  }
  const MAX_FILES = Number(el.files.dataset.maxFiles) || 10;
  const MAX_BYTES = Number(el.files.dataset.maxBytes) || 2 ** 31;
  const WAVE_LEVELS = 100; // Telegram shows up to 100 levels of 0..31

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

  // ---- time zones: the picker's wall time in a named zone, without a library ----

  function validZone(name) {
    if (!name) return false;
    try { new Intl.DateTimeFormat('en', { timeZone: name }); return true; } catch { return false; }
  }

  // Minutes the zone is ahead of UTC at instant `ms`.
  function zoneOffset(zone, ms) {
    const parts = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    }).formatToParts(new Date(ms));
    const p = Object.fromEntries(parts.map((x) => [x.type, Number(x.value)]));
    const wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
    return Math.round((wall - Math.floor(ms / 1000) * 1000) / 60000);
  }

  // "2026-12-02T09:30" (seconds optional) in `zone` → unix ms; twice, so a guess across a
  // DST change settles.
  function wallToInstant(value, zone) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(value);
    if (!m) return null;
    const wall = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0));
    const first = wall - zoneOffset(zone, wall) * 60000;
    return wall - zoneOffset(zone, first) * 60000;
  }

  // unix ms → the picker's "YYYY-MM-DDTHH:mm" in `zone`.
  function instantToWall(ms, zone) {
    return new Date(ms + zoneOffset(zone, ms) * 60000).toISOString().slice(0, 16);
  }

  function zoneLabel(zone) {
    const offset = zoneOffset(zone, Date.now());
    const sign = offset < 0 ? '−' : '+';
    const abs = Math.abs(offset);
    const hm = abs % 60 ? `${Math.floor(abs / 60)}:${String(abs % 60).padStart(2, '0')}` : String(abs / 60);
    return `${zone} (UTC${offset ? sign + hm : ''})`;
  }

  function setTimeZone(fromCard) {
    state.timeZone = validZone(fromCard)
      ? { name: fromCard, source: 'user' }
      : { name: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC', source: 'browser' };
    const key = state.timeZone.source === 'user' ? 'time_zone_user' : 'time_zone_browser';
    setText(el.sendAtZone, fmt(key, { zone: zoneLabel(state.timeZone.name) }));
  }

  function zoneName() { return state.timeZone?.name || 'UTC'; }

  function scheduledTime(ms) {
    const options = { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZoneName: 'short', timeZone: zoneName() };
    return new Intl.DateTimeFormat(LANG, options).format(new Date(ms));
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

  async function api(path, { method = 'GET', body, onResponse } = {}) {
    const headers = { Authorization: `Bearer ${TOKEN}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(fmt('network_error'), 0, 'network');
    }
    onResponse?.(res);
    if (res.status === 304) return null; // nothing changed since the marker the request named
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
    el.chatOpen.disabled = !state.selectedKey;
    recipientChanged();
    renderSync(card.sync);
    setTimeZone(card.time_zone);
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
    state.recipients = found;
    if (!found.some((r) => r.key === state.selectedKey)) {
      state.selectedKey = found[0]?.key ?? null;
    }
    const focused = el.to.contains(document.activeElement);

    el.toList.replaceChildren(...found.map(recipientChoice));
    el.toEmpty.hidden = found.length > 0 || state.connectors.length === 0;
    el.unavailable.replaceChildren(...unavailableGroups(others));
    el.unavailableBox.hidden = others.length === 0;

    if (focused) el.toList.querySelector('input:checked')?.focus();
  }

  function recipientChoice(r, i) {
    const id = `recipient-${i}`;
    const { name, username } = r.account;
    const src = r.source || {};
    const copy = username
      ? h('button', { type: 'button', className: 'olc-btn olc-btn-light olc-btn-small olc-copy', dataset: { username: `@${username}` } },
        fmt('copy_username'))
      : null;
    if (copy) copy.setAttribute('aria-describedby', `${id}-name`);
    return h('div', { className: 'olc-choice' },
      h('input', { type: 'radio', name: 'recipient', id, value: r.key, checked: r.key === state.selectedKey }),
      h('label', { htmlFor: id, id: `${id}-name` },
        h('span', { className: 'olc-name' }, name || (username ? `@${username}` : src.value || r.key)),
        name && username ? h('span', { className: 'olc-username' }, `@${username}`) : null,
        h('span', { className: 'olc-source' }, sourceText(src))),
      copy);
  }

  async function copyUsername(username) {
    try {
      await navigator.clipboard.writeText(username);
      announce(fmt('copied', { username }));
    } catch {
      showAlert(fmt('copy_failed', { username }));
    }
  }

  function sourceText(src) {
    return [src.label, src.value].filter(Boolean).join(': ');
  }

  // Recipients with the same explanation (the privacy one, mostly) share it: said once, with
  // the numbers it concerns.
  function unavailableGroups(others) {
    const groups = new Map();
    for (const r of others) {
      const why = r.explanation || '';
      if (!groups.has(why)) groups.set(why, []);
      groups.get(why).push(r);
    }
    return Array.from(groups, ([why, list]) => h('li', { dataset: { state: list[0].state } },
      h('ul', { className: 'olc-sources' },
        ...list.map((r) => h('li', { className: 'olc-source', dataset: { key: r.key } }, sourceText(r.source || {}) || r.key))),
      why ? h('p', { className: 'olc-explanation' }, why) : null));
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
    return !state.sending && !state.recorder && Boolean(state.connectorId) && Boolean(state.selectedKey) && !templateUnfilled();
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
    if (templateUnfilled()) { el.message.focus(); return; }
    clearAlert();
    const text = el.message.value;
    if (state.files.some((f) => f.status === 'uploading')) {
      showAlert(fmt('uploads_pending'));
      return;
    }
    const files = state.files.filter((f) => f.status === 'done');
    if (!text.trim() && !files.length && !state.voice) {
      showAlert(fmt('empty_text'));
      el.message.focus();
      return;
    }
    if (!state.connectorId) { showAlert(fmt(state.connectors.length ? 'choose_connector' : 'no_connectors')); return; }
    if (!state.selectedKey) { showAlert(fmt('choose_recipient')); return; }
    const sendAt = el.sendLater.checked ? wallToInstant(el.sendAt.value, zoneName()) : null;
    if (el.sendLater.checked && sendAt === null) {
      showAlert(fmt('send_at_missing'));
      el.sendAt.focus();
      return;
    }

    if (!state.idemKey) state.idemKey = uuid();
    state.sending = true;
    el.message.readOnly = true; // the textarea is cleared on success: nothing typed now may be lost
    updateSendButton();
    el.send.textContent = fmt('sending');
    announce(fmt('sending'));
    try {
      const voice = state.voice
        ? { key: await state.voice.upload, duration: state.voice.duration, waveform: state.voice.waveform }
        : null;
      const res = await api('/api/send', {
        method: 'POST',
        body: {
          connector_id: state.connectorId,
          recipient: state.selectedKey,
          text,
          idempotency_key: state.idemKey,
          publication: el.publication.value,
          create_activity: el.createActivity.checked,
          attachments: files.filter((f) => !f.fromTemplate).map((f) => ({ key: f.key, name: f.file.name, size: f.file.size, content_type: f.file.type })),
          template_files: files.filter((f) => f.fromTemplate).map((f) => f.key),
          as_document: el.asDocument.checked,
          voice,
          send_at: sendAt,
          template_id: template.id,
        },
      });
      state.idemKey = null;
      el.message.value = '';
      templateDone();
      state.files = [];
      el.fileList.replaceChildren();
      deleteVoice();
      updateCounter();
      announce(sendAt === null ? fmt('queued') : fmt('message_scheduled', { time: scheduledTime(sendAt) }));
      if (sendAt !== null) { el.sendLater.checked = false; laterChanged(); }
      if (res.message_id) state.watched.set(String(res.message_id), 'queued');
      state.conv.delay = POLL_MIN_MS;
      loadMessages();
      el.message.focus();
    } catch (e) {
      // Keep the idempotency key: retrying the same text must not send it twice.
      announce('');
      showError(e);
    } finally {
      state.sending = false;
      el.message.readOnly = false;
      el.send.textContent = sendLabel();
      updateSendButton();
    }
  }

  function sendLabel() { return fmt(el.sendLater.checked ? 'schedule' : 'send'); }

  // The picker opens an hour ahead, in the zone it says, and never offers the past.
  function laterChanged() {
    const on = el.sendLater.checked;
    el.laterBox.hidden = !on;
    if (!state.sending) el.send.textContent = sendLabel();
    if (on) {
      const now = Date.now();
      el.sendAt.min = instantToWall(now, zoneName());
      if (!el.sendAt.value) el.sendAt.value = instantToWall(Math.ceil((now + 3600000) / 300000) * 300000, zoneName());
    }
    composeChanged();
    fit();
  }

  // ---- files: straight to storage, with progress ----

  // PUT to the upload slot with XMLHttpRequest: fetch has no upload progress.
  function putFile(slot, body, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(slot.method || 'PUT', slot.url);
      for (const [k, v] of Object.entries(slot.headers || {})) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) { resolve(); return; }
        let message = fmt('http_error', { status: xhr.status });
        try { message = JSON.parse(xhr.responseText).message || message; } catch { /* not JSON (S3 answers XML) */ }
        reject(new Error(message));
      };
      xhr.onerror = () => reject(new Error(fmt('network_error')));
      xhr.send(body);
    });
  }

  async function upload(blob, name, onProgress) {
    const slot = await api('/api/uploads', { method: 'POST', body: { name, size: blob.size, content_type: blob.type } });
    await putFile(slot, blob, onProgress);
    return slot.key;
  }

  function fileRow(entry) {
    const { file } = entry;
    const progress = h('progress', { max: 1, value: 0 });
    progress.setAttribute('aria-label', fmt('uploading', { name: file.name }));
    const note = h('span', { className: 'olc-muted' }, olc.formatSize(file.size));
    const remove = h('button', { type: 'button', className: 'olc-btn olc-btn-light olc-btn-small' }, '✕');
    remove.setAttribute('aria-label', fmt('remove_file', { name: file.name }));
    remove.addEventListener('click', () => {
      state.files = state.files.filter((f) => f !== entry);
      entry.row.remove();
      composeChanged();
      el.files.focus();
      fit();
    });
    entry.row = h('li', { className: 'olc-file-item', dataset: { status: 'uploading' } },
      h('span', { className: 'olc-file-name' }, file.name), note, progress, remove);
    entry.progress = progress;
    entry.note = note;
    return entry.row;
  }

  function addFiles(list) {
    clearAlert();
    for (const file of list) {
      if (state.files.length >= MAX_FILES) { showAlert(fmt('too_many_files', { count: MAX_FILES })); break; }
      if (file.size === 0) { showAlert(`${file.name}: ${fmt('empty_file')}`); continue; }
      if (file.size > MAX_BYTES) {
        showAlert(`${file.name}: ${fmt('file_too_large', { mb: Math.floor(MAX_BYTES / 2 ** 20) })}`);
        continue;
      }
      const entry = { file, key: null, status: 'uploading' };
      state.files.push(entry);
      el.fileList.append(fileRow(entry));
      composeChanged();
      upload(file, file.name, (p) => { entry.progress.value = p; })
        .then((key) => {
          entry.key = key;
          entry.status = 'done';
          entry.progress.value = 1;
          announce(fmt('uploaded', { name: file.name }));
        })
        .catch((e) => {
          entry.status = 'failed';
          setText(entry.note, fmt('upload_failed', { name: file.name, reason: e.message }));
          showAlert(fmt('upload_failed', { name: file.name, reason: e.message }));
        })
        .finally(() => { entry.row.dataset.status = entry.status; updateSendButton(); });
    }
    el.files.value = '';
    fit();
  }

  // ---- voice: record, listen back, delete; sent with the message ----

  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  // Peak level of each of WAVE_LEVELS slices, scaled to 0..31 against the loudest.
  async function analyse(blob, fallbackSeconds) {
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
      ctx.close();
      const data = audio.getChannelData(0);
      const step = Math.max(1, Math.floor(data.length / WAVE_LEVELS));
      const peaks = [];
      for (let i = 0; i < WAVE_LEVELS && i * step < data.length; i += 1) {
        let peak = 0;
        for (let j = i * step; j < Math.min(data.length, (i + 1) * step); j += 1) peak = Math.max(peak, Math.abs(data[j]));
        peaks.push(peak);
      }
      const max = Math.max(...peaks, 1e-6);
      return { duration: audio.duration, waveform: peaks.map((p) => Math.round((p / max) * 31)) };
    } catch {
      return { duration: fallbackSeconds, waveform: [] };
    }
  }

  function recorderType() {
    // Firefox records OGG/Opus (sent as is); Chromium WebM/Opus (the server remuxes it).
    return ['audio/ogg;codecs=opus', 'audio/webm;codecs=opus', 'audio/webm']
      .find((t) => window.MediaRecorder?.isTypeSupported?.(t)) || '';
  }

  async function startRecording() {
    clearAlert();
    if (!navigator.mediaDevices?.getUserMedia || !window.MediaRecorder) { showAlert(fmt('voice_unsupported')); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      showAlert(fmt('voice_denied', { reason: e.message || e.name }));
      return;
    }
    deleteVoice();
    const type = recorderType();
    const media = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    const rec = { media, chunks: [], started: performance.now(), timer: 0 };
    state.recorder = rec;
    media.ondataavailable = (e) => { if (e.data.size) rec.chunks.push(e.data); };
    media.onstop = () => finishRecording(rec, stream);
    media.start(250);
    el.voiceRecordLabel.textContent = fmt('voice_stop');
    el.voiceRecord.setAttribute('aria-pressed', 'true');
    el.voiceTimer.hidden = false;
    el.voiceTimer.textContent = '0:00';
    rec.timer = setInterval(() => { el.voiceTimer.textContent = clock((performance.now() - rec.started) / 1000); }, 250);
    updateSendButton();
    announce(fmt('voice_recording'));
  }

  async function finishRecording(rec, stream) {
    clearInterval(rec.timer);
    stream.getTracks().forEach((t) => t.stop());
    const elapsed = (performance.now() - rec.started) / 1000;
    const blob = new Blob(rec.chunks, { type: rec.media.mimeType.split(';')[0] || 'audio/webm' });
    const { duration, waveform } = await analyse(blob, elapsed);
    const seconds = Number.isFinite(duration) && duration > 0 ? duration : elapsed;
    const voice = { blob, url: URL.createObjectURL(blob), duration: seconds, waveform };
    const ext = blob.type.includes('ogg') ? 'ogg' : 'webm';
    voice.upload = upload(blob, `voice.${ext}`, () => {});
    voice.upload.catch((e) => { if (state.voice === voice) showAlert(fmt('upload_failed', { name: fmt('voice_note'), reason: e.message })); });
    state.voice = voice;
    state.recorder = null;
    composeChanged();
    el.voiceRecordLabel.textContent = fmt('voice_record');
    el.voiceRecord.setAttribute('aria-pressed', 'false');
    el.voiceTimer.hidden = true;
    el.voiceAudio.src = voice.url;
    setText(el.voiceLabel, fmt('voice_ready', { time: clock(seconds) }));
    el.voiceWave.replaceChildren(...waveform.map((l) => {
      const bar = h('span');
      bar.style.height = `${Math.max(2, (l / 31) * 100)}%`;
      return bar;
    }));
    el.voicePreview.hidden = false;
    el.voiceDelete.hidden = false;
    updateSendButton();
    announce(fmt('voice_ready', { time: clock(seconds) }));
    fit();
  }

  function deleteVoice() {
    if (!state.voice) return;
    URL.revokeObjectURL(state.voice.url);
    state.voice = null;
    el.voiceAudio.removeAttribute('src');
    el.voicePreview.hidden = true;
    el.voiceDelete.hidden = true;
    composeChanged();
    fit();
  }

  // ---- emoji picker (data: /assets/emoji.json, from the server's `emojis` crate) ----

  async function loadEmoji() {
    if (state.emojiLoaded) return;
    state.emojiLoaded = true;
    let data;
    try {
      const res = await fetch('/assets/emoji.json');
      data = await res.json();
    } catch {
      state.emojiLoaded = false;
      showAlert(fmt('network_error'));
      return;
    }
    el.emojiGroups.replaceChildren(...data.groups.map((g) => {
      const heading = h('h3', { className: 'olc-emoji-heading', id: `emoji-${g.id}` }, fmt(`emoji_group_${g.id}`));
      const grid = h('div', { className: 'olc-emoji-grid', role: 'group' },
        ...g.emojis.map(([char, name]) => {
          const b = h('button', { type: 'button', className: 'olc-emoji-btn', title: name, tabIndex: -1, dataset: { name } }, char);
          b.setAttribute('aria-label', name);
          return b;
        }));
      grid.setAttribute('aria-labelledby', heading.id);
      return h('section', { className: 'olc-emoji-group' }, heading, grid);
    }));
    filterEmoji();
  }

  function visibleEmoji() {
    return Array.from(el.emojiGroups.querySelectorAll('.olc-emoji-btn')).filter((b) => !b.hidden);
  }

  function filterEmoji() {
    const q = el.emojiSearch.value.trim().toLowerCase();
    let any = false;
    for (const section of el.emojiGroups.children) {
      let shown = 0;
      for (const b of section.querySelectorAll('.olc-emoji-btn')) {
        b.hidden = Boolean(q) && !b.dataset.name.includes(q);
        if (!b.hidden) shown += 1;
      }
      section.hidden = shown === 0;
      any = any || shown > 0;
    }
    el.emojiNone.hidden = any || !state.emojiLoaded;
    const first = visibleEmoji()[0];
    if (first) first.tabIndex = 0;
  }

  function toggleEmoji(open) {
    el.emojiPanel.hidden = !open;
    el.emojiToggle.setAttribute('aria-expanded', String(open));
    if (open) {
      loadEmoji();
      el.emojiSearch.focus();
    }
    fit();
  }

  function insertEmoji(char) {
    const { selectionStart: start, selectionEnd: end } = el.message;
    el.message.setRangeText(char, start, end, 'end');
    el.message.dispatchEvent(new Event('input', { bubbles: true }));
    toggleEmoji(false);
    el.message.focus();
  }

  // Arrow keys move between the visible emoji (8 to a row), Escape closes the picker.
  function emojiKeys(e) {
    if (e.key === 'Escape') { e.preventDefault(); toggleEmoji(false); el.emojiToggle.focus(); return; }
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 8, ArrowUp: -8 };
    if (!(e.key in moves)) return;
    const list = visibleEmoji();
    if (!list.length) return;
    const at = list.indexOf(document.activeElement);
    if (at < 0 && e.target !== el.emojiSearch) return;
    e.preventDefault();
    const next = list[Math.min(list.length - 1, Math.max(0, at < 0 ? 0 : at + moves[e.key]))];
    list.forEach((b) => { b.tabIndex = b === next ? 0 : -1; });
    next.focus();
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

  // ---- the conversation with the chosen recipient ----

  function conversationKey() {
    return state.connectorId && state.selectedKey ? `${state.connectorId}|${state.selectedKey}` : null;
  }

  function conversationPath(extra) {
    const q = `connector=${encodeURIComponent(state.connectorId)}&recipient=${encodeURIComponent(state.selectedKey)}`;
    return `/api/conversation?${q}${extra}`;
  }

  // Another connector or recipient is another conversation.
  function recipientChanged() {
    if (conversationKey() !== state.conv.key) loadMessages();
  }

  async function loadMessages() {
    clearTimeout(state.msgTimer);
    const key = conversationKey();
    if (key !== state.conv.key) {
      state.conv = freshConversation(key);
      state.msgSig = '';
      renderMessages();
    }
    if (!key || state.stopped) return;
    const seq = ++state.msgSeq;
    const conv = state.conv;
    let view;
    // The first look says so by itself (no rev); later polls every WATCH_EVERY_MS.
    const watching = conv.rev && Date.now() - conv.watchedAt >= WATCH_EVERY_MS;
    if (!conv.rev || watching) conv.watchedAt = Date.now();
    try {
      const polled = conv.rev ? `&rev=${encodeURIComponent(conv.rev)}&peer=${encodeURIComponent(conv.peer)}` : '';
      const lookWithin = (res) => { conv.lookWithin = Number(res.headers.get('X-Olchat-Look-Within')) || null; };
      view = await api(conversationPath(`${polled}${watching ? '&watching=true' : ''}`), { onResponse: lookWithin });
    } catch (e) {
      if (seq !== state.msgSeq) return;
      el.messagesLoading.hidden = true;
      showError(e);
      schedulePoll(false);
      return;
    }
    if (seq !== state.msgSeq || conv !== state.conv) return;
    if (view) {
      mergeNewest(conv, view);
      renderMessages();
    }
    schedulePoll(Boolean(view));
  }

  // The newest page replaces what it covers: everything from its oldest entry on (all of it
  // when it is the whole conversation), scheduled messages included.
  function mergeNewest(conv, view) {
    const items = Array.isArray(view.items) ? view.items : [];
    const listed = items.filter((i) => !isPlanned(i));
    const floor = view.earlier && listed.length ? String(listed[0].key) : null;
    for (const key of Array.from(conv.items.keys())) {
      if (floor === null || key >= floor) conv.items.delete(key);
    }
    for (const item of items) conv.items.set(String(item.key), item);
    conv.rev = view.rev ?? null;
    conv.peer = view.peer ?? null;
    conv.backfilling = Boolean(view.backfilling);
    if (!conv.olderLoaded) conv.earlier = view.earlier ?? null;
  }

  function schedulePoll(changed) {
    clearTimeout(state.msgTimer);
    if (state.stopped || !state.conv.key || document.hidden) return;
    const conv = state.conv;
    // The backoff grows on its own; the wait is the backoff or the server's bound, whichever
    // comes first (a bound met early does not start the backoff over).
    conv.delay = changed || conv.backfilling ? POLL_MIN_MS : Math.min(BACKOFF_MAX_MS, Math.round(conv.delay * 1.5));
    const wait = Math.max(POLL_MIN_MS, Math.min(conv.delay, conv.lookWithin ?? POLL_MAX_MS));
    state.msgTimer = setTimeout(loadMessages, wait);
  }

  async function loadEarlier() {
    const conv = state.conv;
    if (!conv.earlier || conv.loadingEarlier) return;
    conv.loadingEarlier = true;
    const box = el.conversation;
    const fromBottom = box.scrollHeight - box.scrollTop;
    try {
      const view = await api(conversationPath(`&before=${encodeURIComponent(conv.earlier)}`));
      if (conv !== state.conv || !view) return;
      for (const item of view.items || []) conv.items.set(String(item.key), item);
      conv.earlier = view.earlier ?? null;
      conv.olderLoaded = true;
      renderMessages();
      box.scrollTop = box.scrollHeight - fromBottom; // what was on screen stays there
    } catch (e) {
      showError(e);
    } finally {
      conv.loadingEarlier = false;
    }
  }

  function isPlanned(item) { return String(item.key).startsWith('talkplan#'); }

  // Oldest first; scheduled messages after everything sent, by the time they go.
  function sortedItems() {
    return Array.from(state.conv.items.values()).sort((a, b) => {
      const [pa, pb] = [isPlanned(a), isPlanned(b)];
      if (pa !== pb) return pa ? 1 : -1;
      if (pa) return Number(a.send_at) - Number(b.send_at);
      return a.key < b.key ? -1 : (a.key > b.key ? 1 : 0);
    });
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
    return h('li', { className: 'olc-msg olc-msg-out', dataset: { id: String(m.id), key: String(m.key), status: String(m.status) } },
      h('div', { className: 'olc-msg-head' },
        h('span', { className: 'olc-msg-to' }, String(m.recipient ?? '')),
        h('span', { className: 'olc-badge' }, statusText(m.status))),
      m.text ? h('p', { className: 'olc-msg-text' }, String(m.text)) : null,
      Array.isArray(m.files) && m.files.length
        ? h('p', { className: 'olc-msg-files' }, fmt('message_files', { names: m.files.join(', ') }))
        : null,
      m.voice ? h('p', { className: 'olc-msg-files' }, `🎤 ${fmt('voice_note')}`) : null,
      h('div', { className: 'olc-msg-meta' },
        m.connector ? fmt('message_meta', { connector: m.connector }) : null,
        m.connector && valid ? ' · ' : null,
        valid ? h('time', { dateTime: date.toISOString() }, timeFormat.format(date)) : null),
      m.status === 'scheduled' && m.send_at
        ? h('p', { className: 'olc-msg-meta' }, fmt('scheduled_for', { time: scheduledTime(Number(m.send_at)) }))
        : null,
      m.status === 'scheduled'
        ? h('div', { className: 'olc-actions' },
          h('button', { type: 'button', className: 'olc-btn olc-btn-light olc-btn-small', dataset: { action: 'edit' } }, fmt('edit_message')),
          h('button', { type: 'button', className: 'olc-btn olc-btn-light olc-btn-small', dataset: { action: 'cancel' } }, fmt('cancel_message')))
        : null,
      m.reason ? h('p', { className: 'olc-msg-reason' }, String(m.reason)) : null,
      m.published?.state === 'failed'
        ? h('p', { className: 'olc-msg-reason' }, fmt('publication_failed', { reason: String(m.published.reason ?? '') }))
        : null);
  }

  function clientName() {
    const r = state.recipients.find((x) => x.key === state.selectedKey);
    return r?.account?.name || (r?.account?.username ? `@${r.account.username}` : '');
  }

  function connectorName() {
    return state.connectors.find((c) => c.id === state.connectorId)?.name ?? '';
  }

  // A file of a written message: played or shown in place when it was brought over.
  function fileView(f) {
    const name = String(f.name ?? '');
    if (!f.url) return h('p', { className: 'olc-msg-files' }, fmt('message_files', { names: name }));
    if (f.kind === 'voice') {
      const audio = h('audio', { controls: true, preload: 'none', src: String(f.url), className: 'olc-msg-audio' });
      audio.setAttribute('aria-label', fmt('voice_note'));
      return audio;
    }
    if (f.kind === 'photo') return h('img', { src: String(f.url), alt: name, className: 'olc-msg-photo', loading: 'lazy' });
    return h('a', { href: String(f.url), download: name, className: 'olc-msg-file', target: '_blank', rel: 'noopener' }, `📎 ${name}`);
  }

  function writtenItem(w) {
    const date = new Date(Number(w.date));
    const valid = !Number.isNaN(date.getTime());
    const author = w.out ? fmt('from_account', { connector: connectorName() }) : clientName();
    return h('li', { className: `olc-msg ${w.out ? 'olc-msg-out' : 'olc-msg-in'}`, dataset: { key: String(w.key), direction: w.out ? 'out' : 'in', deleted: String(Boolean(w.deleted)) } },
      h('div', { className: 'olc-msg-head' }, h('span', { className: 'olc-msg-to' }, author)),
      w.deleted
        ? h('p', { className: 'olc-msg-deleted' }, fmt('message_deleted'))
        : (w.text ? h('p', { className: 'olc-msg-text' }, String(w.text)) : null),
      ...(w.deleted ? [] : (Array.isArray(w.files) ? w.files : []).map(fileView)),
      h('div', { className: 'olc-msg-meta' },
        valid ? h('time', { dateTime: date.toISOString() }, timeFormat.format(date)) : null,
        w.edited && !w.deleted ? h('span', { className: 'olc-msg-edited' }, ` · ${fmt('message_edited')}`) : null));
  }

  function renderMessages() {
    const conv = state.conv;
    const list = sortedItems();
    el.messagesLoading.hidden = Boolean(conv.key) && conv.rev === null && !list.length && !state.stopped;
    el.messagesEmpty.textContent = conv.key ? fmt('no_messages') : fmt('conversation_no_recipient');
    el.messagesEmpty.hidden = list.length > 0 || (Boolean(conv.key) && conv.rev === null) || conv.backfilling;
    el.backfilling.hidden = !conv.backfilling;
    el.earlier.hidden = !conv.earlier;
    const sig = JSON.stringify([list, conv.earlier]);
    if (sig !== state.msgSig && !state.editing) {
      const box = el.conversation;
      const atBottom = !state.msgSig || box.scrollHeight - box.scrollTop - box.clientHeight < EARLIER_MARGIN_PX;
      state.msgSig = sig;
      state.list = list;
      el.messages.replaceChildren(...list.map((i) => (i.kind === 'written' ? writtenItem(i) : messageItem(i))));
      if (atBottom) box.scrollTop = box.scrollHeight; // the newest stays in view
    }

    // Tell screen-reader users how the messages they sent here ended up.
    for (const m of list) {
      const id = String(m.id);
      if (m.kind !== 'ours' || !state.watched.has(id) || !FINAL.has(m.status)) continue;
      state.watched.delete(id);
      const status = m.reason ? `${statusText(m.status)}. ${m.reason}` : statusText(m.status);
      announce(fmt('status_changed', { recipient: m.recipient ?? '', status }));
    }
    fit();
  }

  // ---- scheduled messages: cancel, edit ----

  async function cancelScheduled(item) {
    clearAlert();
    try {
      await api(`/api/messages/${encodeURIComponent(item.dataset.id)}/cancel`, { method: 'POST' });
      announce(fmt('message_cancelled'));
    } catch (e) {
      showError(e);
    }
    // The button goes with the redrawn list: the keyboard carries on from the message field.
    el.message.focus();
    loadMessages();
  }

  function openEdit(item, m) {
    state.editing = item.dataset.id;
    const id = `edit-${item.dataset.id}`;
    const text = h('textarea', { id: `${id}-text`, className: 'olc-control', rows: 3, value: String(m.text ?? '') });
    const at = h('input', { id: `${id}-at`, type: 'datetime-local', className: 'olc-control', value: instantToWall(Number(m.send_at), zoneName()) });
    at.setAttribute('aria-describedby', 'send-at-zone');
    const form = h('form', { className: 'olc-msg-edit' },
      h('label', { className: 'olc-sublabel', htmlFor: text.id }, fmt('message')), text,
      h('label', { className: 'olc-sublabel', htmlFor: at.id }, fmt('send_at')), at,
      h('div', { className: 'olc-actions' },
        h('button', { type: 'submit', className: 'olc-btn olc-btn-small' }, fmt('save_message')),
        h('button', { type: 'button', className: 'olc-btn olc-btn-light olc-btn-small', dataset: { action: 'keep' } }, fmt('keep_message'))));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearAlert();
      const sendAt = wallToInstant(at.value, zoneName());
      if (sendAt === null) { showAlert(fmt('send_at_missing')); at.focus(); return; }
      try {
        await api(`/api/messages/${encodeURIComponent(item.dataset.id)}`, { method: 'PUT', body: { text: text.value, send_at: sendAt } });
        announce(fmt('message_changed'));
        closeEdit();
      } catch (e2) {
        showError(e2);
        if (e2.status === 409) closeEdit();
      }
    });
    item.querySelector('.olc-actions')?.replaceWith(form);
    text.focus();
    fit();
  }

  function closeEdit() {
    state.editing = null;
    state.msgSig = '';
    el.message.focus();
    loadMessages();
  }

  el.messages.addEventListener('click', (e) => {
    const button = e.target.closest('button[data-action]');
    const item = button?.closest('.olc-msg');
    if (!item) return;
    if (button.dataset.action === 'cancel') cancelScheduled(item);
    else if (button.dataset.action === 'keep') closeEdit();
    else if (button.dataset.action === 'edit' && !state.editing) {
      const m = state.list.find((x) => String(x.id) === item.dataset.id);
      if (m) openEdit(item, m);
    }
  });

  // ---- templates: picked, filled from this card, flagged until every field is filled ----

  const template = { id: null, missing: [], box: $('template-box'), select: $('template'), warning: $('template-missing') };

  // A placeholder the card could not fill that the text still has, written as it is.
  function templateUnfilled() {
    return template.missing.some((name) => el.message.value.includes(`{${name}}`));
  }

  function showTemplateWarning() {
    const left = template.missing.filter((name) => el.message.value.includes(`{${name}}`));
    template.warning.hidden = left.length === 0;
    setText(template.warning, left.length ? fmt('template_missing', { fields: left.map((n) => `{${n}}`).join(', ') }) : '');
    updateSendButton();
    fit();
  }

  async function loadTemplates() {
    try {
      const { templates = [] } = await api('/api/templates');
      template.select.append(...templates.map((t) => new Option(t.name, t.id)));
      template.box.hidden = templates.length === 0;
      fit();
    } catch (e) { showError(e); }
  }

  // The template's files join the message's, already stored: the manager may remove any.
  function useTemplateFiles(files) {
    for (const f of state.files.filter((x) => x.fromTemplate)) f.row.remove();
    state.files = state.files.filter((x) => !x.fromTemplate);
    for (const f of files.slice(0, Math.max(0, MAX_FILES - state.files.length))) {
      const entry = { file: { name: f.name, size: f.size, type: f.content_type }, key: f.key, status: 'done', fromTemplate: true };
      state.files.push(entry);
      el.fileList.append(fileRow(entry));
      entry.row.dataset.status = 'done';
      entry.progress.hidden = true; // stored already: nothing to upload
    }
    fit();
  }

  async function pickTemplate() {
    const id = template.select.value;
    template.id = id || null;
    template.missing = [];
    if (!id) useTemplateFiles([]);
    if (id) {
      try {
        const filled = await api(`/api/templates/${encodeURIComponent(id)}/fill`, { method: 'POST', body: {} });
        if (template.select.value !== id) return; // another pick superseded this one
        el.message.value = filled.text;
        template.missing = Array.isArray(filled.missing) ? filled.missing : [];
        useTemplateFiles(Array.isArray(filled.files) ? filled.files : []);
        composeChanged();
        updateCounter();
      } catch (e) { showError(e); }
    }
    showTemplateWarning();
  }

  function templateDone() {
    template.id = null;
    template.missing = [];
    template.select.value = '';
    showTemplateWarning();
  }

  template.select.addEventListener('change', pickTemplate);
  el.message.addEventListener('input', showTemplateWarning);
  loadTemplates();

  // ---- wiring ----

  el.from.addEventListener('change', () => {
    clearAlert();
    composeChanged();
    state.connectorId = el.from.value || null;
    updateSendButton();
    loadCard(state.connectorId);
  });

  el.toList.addEventListener('click', (e) => {
    const button = e.target.closest('.olc-copy');
    if (button) copyUsername(button.dataset.username);
  });

  el.files.addEventListener('change', () => addFiles(Array.from(el.files.files)));
  el.asDocument.addEventListener('change', composeChanged);
  el.voiceRecord.addEventListener('click', () => {
    if (state.recorder) state.recorder.media.stop();
    else startRecording();
  });
  el.voiceDelete.addEventListener('click', () => { deleteVoice(); el.voiceRecord.focus(); });
  el.emojiToggle.addEventListener('click', () => toggleEmoji(el.emojiPanel.hidden));
  el.emojiSearch.addEventListener('input', filterEmoji);
  el.emojiPanel.addEventListener('keydown', emojiKeys);
  el.emojiGroups.addEventListener('click', (e) => {
    const b = e.target.closest('.olc-emoji-btn');
    if (b) insertEmoji(b.textContent);
  });

  el.toList.addEventListener('change', (e) => {
    if (e.target.name !== 'recipient') return;
    state.selectedKey = e.target.value;
    composeChanged();
    updateSendButton();
    recipientChanged();
  });

  el.message.addEventListener('input', () => {
    composeChanged();
    updateCounter();
  });

  // Another publication mode or activity choice is another message: a new idempotency key.
  el.publication.addEventListener('change', composeChanged);
  el.createActivity.addEventListener('change', composeChanged);
  el.sendLater.addEventListener('change', laterChanged);
  el.sendAt.addEventListener('change', composeChanged);
  el.chatOpen.addEventListener('click', () => {
    const open = el.chatBox.hidden;
    el.chatBox.hidden = !open;
    el.chatOpen.setAttribute('aria-expanded', String(open));
    if (open) { loadEmployees(); el.employees.focus(); }
    fit();
  });
  el.earlier.addEventListener('click', loadEarlier);
  el.conversation.addEventListener('scroll', () => {
    if (el.conversation.scrollTop < EARLIER_MARGIN_PX) loadEarlier();
  });
  // A hidden page asks nothing; back in view, it asks at once.
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) { clearTimeout(state.msgTimer); return; }
    state.conv.delay = POLL_MIN_MS;
    loadMessages();
  });
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
