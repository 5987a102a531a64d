// The JSON API as the canvas calls it: the session cookie, and on every
// call the session's CSRF token (the server checks it, and the Origin
// the browser sends, on state-changing calls).
const csrf = document.querySelector('meta[name="orgplane-csrf"]')?.content || '';

export async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json', 'X-CSRF-Token': csrf } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const e = new Error((data && data.error && data.error.message) || res.statusText || 'request failed');
    e.code = data && data.error && data.error.code;
    e.status = res.status;
    throw e;
  }
  return { status: res.status, data };
}

// workspaceNames maps workspace ids to names (for impact tables).
export async function workspaceNames() {
  const out = new Map();
  try {
    const r = await api('GET', '/v1/workspaces');
    for (const w of r.data || []) out.set(w.id, w.name);
  } catch {}
  return out;
}
