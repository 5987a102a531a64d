// The canvas's script: live updates from /v1/events and forms over the
// JSON API. The pages are complete without it; it only adds.
import { api, workspaceNames } from './api.js';
import { renderPreview } from './preview.js';

const live = new Set(); // ids of live regions left alone while in use

function reveal(root) {
  for (const el of root.querySelectorAll('[data-needs-js], [data-signout]')) el.hidden = false;
}

function toast(msg) {
  const t = document.getElementById('toast');
  if (!t) return;
  t.textContent = msg;
  t.classList.add('on');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('on'), 6000);
}

// A region is in use while a person types in it: replacing it would lose
// what they typed.
function inUse(el) {
  const a = document.activeElement;
  if (a && el.contains(a) && a.matches('input, textarea, select')) return true;
  for (const i of el.querySelectorAll('input:not([type=hidden]), textarea')) {
    if (i.value !== i.defaultValue) return true;
  }
  return el.querySelector('.preview:not(:empty), .secret-once:not(:empty), .link-once:not(:empty)') !== null;
}

// refresh fetches the page again and swaps its live regions in: the
// server renders, the script only places. Events that arrive meanwhile
// give one more fetch, never a queue of them.
let inflight = false;
let again = false;
let lastEventAt = '';
async function refresh() {
  if (inflight) {
    again = true;
    return;
  }
  inflight = true;
  try {
    do {
      again = false;
      const eventAt = lastEventAt;
      const res = await fetch(location.href, { headers: { Accept: 'text/html' }, credentials: 'same-origin' });
      if (!res.ok) break;
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      if (!doc.querySelector('meta[name="orgplane-csrf"]')) {
        location.reload(); // signed out meanwhile
        return;
      }
      reveal(doc);
      for (const el of document.querySelectorAll('[data-live][id]')) {
        const next = doc.getElementById(el.id);
        if (!next) continue;
        if (el.innerHTML === next.innerHTML && el.className === next.className) continue;
        if (inUse(el)) {
          live.add(el.id);
          continue;
        }
        live.delete(el.id);
        const open = [...el.querySelectorAll('details[open][id]')].map((d) => d.id);
        el.className = next.className;
        if (next.hasAttribute('aria-label')) el.setAttribute('aria-label', next.getAttribute('aria-label'));
        el.innerHTML = next.innerHTML;
        for (const id of open) document.getElementById(id)?.setAttribute('open', '');
      }
      document.body.dataset.eventAt = eventAt;
      document.body.dataset.renderedAt = String(Date.now());
    } while (again);
  } catch (e) {
    setLive('update failed; retrying on the next change');
  } finally {
    inflight = false;
  }
}

function setLive(text) {
  const s = document.getElementById('live-state');
  if (s) s.textContent = text;
}

// Every kind of change the org's stream carries (the stream names each
// event by its type, so each is listened to by name).
const eventTypes = [
  'box.provision', 'box.healthy', 'box.failed', 'box.stop', 'box.gave_up', 'box.running', 'box.degraded',
  'box.provisioning', 'box.stopped', 'box.paused', 'box.removed',
  'restart.pending', 'restart.running', 'restart.succeeded', 'restart.failed', 'restart.skipped',
  'restart.superseded', 'restart.retry',
  'secret.set', 'secret.delete',
  'workspace.create', 'workspace.update', 'workspace.delete', 'workspace.restart', 'workspace.pause',
  'workspace.resume',
  'token.create', 'token.revoke', 'user.create', 'user.delete', 'policy.set', 'platform.recovery_scheduled',
  'approval.requested', 'approval.decision', 'approval.approved', 'approval.denied', 'approval.executing',
  'approval.succeeded', 'approval.failed', 'approval.expired', 'approval.cancelled', 'approval.result_delivered',
  'request.created', 'request.answered', 'request.declined', 'request.cancelled', 'request.expired',
  'keys.rotate', 'keys.retire',
];

function listen() {
  if (!window.EventSource) return;
  const es = new EventSource('/v1/events');
  const on = (e) => {
    try {
      lastEventAt = JSON.parse(e.data).at || '';
    } catch {
      lastEventAt = '';
    }
    refresh();
    if (logs && e.type.startsWith('box.')) loadLogs();
  };
  for (const t of eventTypes) es.addEventListener(t, on);
  es.addEventListener('open', () => {
    setLive('live');
    document.body.dataset.stream = 'open';
  });
  es.addEventListener('error', () => setLive('reconnecting…'));
  es.addEventListener('stream.closed', (e) => {
    es.close();
    let why = '';
    try {
      why = JSON.parse(e.data).reason;
    } catch {}
    setLive('live updates stopped' + (why ? ': ' + why : ''));
  });
  window.addEventListener('pagehide', () => es.close());
}

// Box log tail: output is not an event, so it is read again while the
// page is in view.
const logs = document.getElementById('logs');
async function loadLogs() {
  if (!logs || document.visibilityState !== 'visible') return;
  try {
    const res = await fetch(logs.dataset.logs, { credentials: 'same-origin' });
    if (!res.ok) return;
    const text = await res.text();
    if (text === logs.textContent) return;
    const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
    logs.textContent = text;
    if (atEnd) logs.scrollTop = logs.scrollHeight;
  } catch {}
}

// Forms: data-api="METHOD /path/{field}". Named fields make the JSON
// body (data-type bool|number, data-optional: left out when empty,
// data-local: never sent); {field} in the path takes a field's value.
function collect(form, submitter) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled || el.type === 'submit' || el.type === 'button') continue;
    if (el.hasAttribute('data-local')) continue;
    let v;
    if (el.dataset.type === 'bool') v = el.type === 'checkbox' ? el.checked : el.value === 'true';
    else if (el.dataset.type === 'number') v = Number(el.value);
    else v = el.value;
    if (el.hasAttribute('data-optional') && v === '') continue;
    const parts = el.name.split('.');
    let o = body;
    for (const p of parts.slice(0, -1)) o = o[p] ??= {};
    o[parts.at(-1)] = v;
  }
  if (submitter && submitter.name) body[submitter.name] = submitter.value;
  return body;
}

function target(form, body) {
  const [method, tmpl] = form.dataset.api.split(' ');
  const path = tmpl.replace(/\{(\w+)\}/g, (_, k) => {
    const v = body[k];
    delete body[k];
    return encodeURIComponent(v ?? '');
  });
  return { method, path };
}

function submitButton(form) {
  return form.querySelector('button[type=submit]');
}

function resetPreview(form) {
  form.previewed = null;
  const p = form.querySelector('.preview');
  if (p) p.replaceChildren();
  const b = submitButton(form);
  if (b && b.dataset.label) b.textContent = b.dataset.label;
}

function showError(form, err) {
  const box = form.querySelector('.form-error');
  const msg = err.code ? `${err.code}: ${err.message}` : err.message;
  if (box) box.textContent = msg;
  else toast(msg);
}

async function submit(form, submitter) {
  const errBox = form.querySelector('.form-error');
  if (errBox) errBox.textContent = '';
  const must = form.dataset.confirmName;
  if (must !== undefined) {
    const typed = form.querySelector('[name=confirm_name]');
    if (!typed || typed.value !== must) {
      showError(form, { message: `type ${must} exactly to confirm` });
      typed?.focus();
      return;
    }
  }
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
  const body = collect(form, submitter);
  const { method, path } = target(form, body);
  const hasBody = Object.keys(body).length > 0;
  const btn = submitter || submitButton(form);
  if (form.hasAttribute('data-preview')) {
    const sig = method + path + JSON.stringify(body);
    if (form.previewed !== sig) {
      btn.disabled = true;
      try {
        const [r, names] = await Promise.all([api(method, path + '?dry_run=true', hasBody ? body : undefined), workspaceNames()]);
        renderPreview(form.querySelector('.preview'), r.data, names, method === 'DELETE');
        form.previewed = sig;
        btn.dataset.label ??= btn.textContent;
        btn.textContent = method === 'DELETE' ? `Confirm: delete ${r.data.key}` : `Confirm: set ${r.data.key}`;
        btn.classList.add('confirm');
      } catch (e) {
        showError(form, e);
      } finally {
        btn.disabled = false;
      }
      return;
    }
  }
  btn.disabled = true;
  try {
    const r = await api(method, path, hasBody ? body : undefined);
    done(form, r);
  } catch (e) {
    showError(form, e);
  } finally {
    btn.disabled = false;
  }
}

function done(form, r) {
  const data = r.data || {};
  if (r.status === 202 && data.approval) toast(`Held for approval: ${data.approval.title}`);
  else toast(form.dataset.done || 'Done');
  if (form.hasAttribute('data-show-secret') && data.secret) {
    const out = form.querySelector('.secret-once');
    const p = document.createElement('p');
    p.textContent = 'The token, shown this once (copy it now):';
    const c = document.createElement('code');
    c.className = 'once';
    c.textContent = data.secret;
    out.replaceChildren(p, c);
  }
  if (form.hasAttribute('data-show-link') && data.url) {
    const out = form.querySelector('.link-once');
    const c = document.createElement('code');
    c.className = 'once';
    c.textContent = data.url;
    const p = document.createElement('span');
    p.textContent = ' works once, for 10 minutes';
    out.replaceChildren(c, p);
  }
  if (form.hasAttribute('data-preview')) {
    const preview = form.querySelector('.preview');
    // A form inside a live region clears: the region shows the outcome.
    if (form.closest('[data-live]')) preview.replaceChildren();
    else renderPreview(preview, data, null, false, true);
  }
  for (const i of form.querySelectorAll('input[type=password], input:not([type=hidden]):not([type=checkbox]):not([type=number]), textarea')) {
    i.value = '';
  }
  form.previewed = null;
  const b = submitButton(form);
  if (b && b.dataset.label) b.textContent = b.dataset.label;
  b?.classList.remove('confirm');
  form.closest('dialog')?.close();
  refresh();
}

document.addEventListener('submit', (ev) => {
  const form = ev.target.closest('form[data-api]');
  if (!form) return;
  ev.preventDefault();
  submit(form, ev.submitter);
});

document.addEventListener('input', (ev) => {
  const form = ev.target.closest('form[data-preview]');
  if (form && form.previewed) resetPreview(form);
});

document.addEventListener('click', async (ev) => {
  const t = ev.target.closest('[data-open-dialog], [data-close-dialog], [data-reset], [data-signout]');
  if (!t) return;
  if (t.hasAttribute('data-open-dialog')) {
    document.getElementById(t.dataset.openDialog)?.showModal();
  } else if (t.hasAttribute('data-close-dialog')) {
    const d = t.closest('dialog');
    d.querySelector('form')?.reset();
    for (const e of d.querySelectorAll('.form-error')) e.textContent = '';
    d.close();
  } else if (t.hasAttribute('data-reset')) {
    const f = t.closest('form');
    f.reset();
    resetPreview(f);
    f.querySelector('.form-error')?.replaceChildren();
  } else if (t.hasAttribute('data-signout')) {
    try {
      await api('DELETE', '/v1/session');
    } catch {}
    location.href = '/';
  }
});

reveal(document);
listen();
if (logs) {
  logs.scrollTop = logs.scrollHeight;
  setInterval(loadLogs, 5000);
}
document.body.dataset.ready = 'yes';
