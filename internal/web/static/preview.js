// The impact table of a secret write: what the change would do (a dry
// run) or did, per reason and per workspace. Built with DOM calls only:
// no HTML strings, so nothing from the server is parsed as markup.
const restarting = new Set(['restart_queued', 'coalesced']);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

export function renderPreview(box, data, names, isDelete, after) {
  if (!box) return;
  const decisions = (data && data.decisions) || [];
  const counts = new Map();
  for (const d of decisions) counts.set(d.reason, (counts.get(d.reason) || 0) + 1);
  const restarts = decisions.filter((d) => d.action === 'restart').length;
  const verb = isDelete ? 'Deleting' : 'Setting';
  const head = after
    ? `Done: ${data.key} ${isDelete ? 'deleted' : 'is at version ' + data.version}; ${restarts} restart${restarts === 1 ? '' : 's'} queued.`
    : `${verb} ${data.key} would restart ${restarts} of ${decisions.length} workspace${decisions.length === 1 ? '' : 's'} it concerns. Nothing is changed until you confirm.`;
  const parts = [el('p', { class: 'impact-head' }, head)];
  if (counts.size) {
    const rows = [...counts.entries()].sort().map(([r, n]) =>
      el('tr', {}, el('td', {}, el('code', { class: restarting.has(r) ? 'r-restart' : 'r-skip' }, r)), el('td', {}, String(n))));
    parts.push(el('table', { class: 'counts' }, el('caption', {}, 'By reason'),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Reason'), el('th', { scope: 'col' }, 'Workspaces'))),
      el('tbody', {}, ...rows)));
  }
  if (decisions.length) {
    const rows = decisions.map((d) => el('tr', {},
      el('td', {}, el('a', { href: '/workspaces/' + encodeURIComponent(d.workspace_id) }, (names && names.get(d.workspace_id)) || d.workspace_id)),
      el('td', {}, d.action), el('td', {}, el('code', {}, d.reason))));
    const det = el('details', { open: '' }, el('summary', {}, `Workspaces (${decisions.length})`),
      el('table', { class: 'decisions' },
        el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Workspace'), el('th', { scope: 'col' }, 'Action'), el('th', { scope: 'col' }, 'Reason'))),
        el('tbody', {}, ...rows)));
    if (decisions.length > 20) det.removeAttribute('open');
    parts.push(det);
  }
  box.replaceChildren(el('div', { class: 'impact' + (after ? ' impact-done' : '') }, ...parts));
}
