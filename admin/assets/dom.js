// Small DOM and formatting helpers shared by the pages. Text always goes in as text nodes
// (never innerHTML), so model names, tags and user agents cannot inject markup.

/** Create an element: h('td', {class: 'num'}, '12'), children are nodes or strings. */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const intFmt = new Intl.NumberFormat('en-US');
/** 1234567 → "1,234,567". */
export const int = (n) => (n === null || n === undefined ? '–' : intFmt.format(n));
/** Compact token counts: 1234567 → "1.23M". */
export function compact(n) {
  if (n === null || n === undefined) return '–';
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(2) + 'B';
  if (a >= 1e6) return (n / 1e6).toFixed(2) + 'M';
  if (a >= 1e5) return Math.round(n / 1e3) + 'k';
  if (a >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  return intFmt.format(n);
}
/** USD with precision that keeps small costs visible. null → "–" (unpriced, not zero). */
export function usd(n) {
  if (n === null || n === undefined) return '–';
  if (n === 0) return '$0';
  if (Math.abs(n) < 0.01) return '$' + n.toFixed(6);
  if (Math.abs(n) < 100) return '$' + n.toFixed(4);
  return '$' + intFmt.format(Math.round(n * 100) / 100);
}
/** Price per 1M tokens. */
export const price = (n) => (n === null || n === undefined ? '–' : '$' + (+n.toFixed(4)));
/** Milliseconds. */
export const ms = (n) => (n === null || n === undefined ? '–' : n >= 10000 ? (n / 1000).toFixed(1) + ' s' : intFmt.format(n) + ' ms');
/** RFC 3339 → local "YYYY-MM-DD HH:MM:SS". */
export function when(t) {
  if (!t) return '–';
  const d = new Date(t);
  if (isNaN(d)) return t;
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A status badge. */
export const badge = (text, kind = '') => h('span', { class: 'badge ' + kind }, text);

/** An on/off switch calling onchange(checked). */
export function toggle(checked, onchange, label) {
  const input = h('input', { type: 'checkbox', 'aria-label': label || 'enabled' });
  input.checked = !!checked;
  input.addEventListener('change', async () => {
    input.disabled = true;
    try { await onchange(input.checked); } catch (e) { input.checked = !input.checked; toast(e.message, true); }
    input.disabled = false;
  });
  return h('label', { class: 'switch' }, input, h('span'));
}

let toastTimer = null;
/** Show a short message at the bottom right. */
export function toast(message, bad = false) {
  const t = document.getElementById('toast');
  t.textContent = message;
  t.className = 'toast' + (bad ? ' bad' : '');
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, bad ? 6000 : 3000);
}

/**
 * A modal dialog: body nodes, and buttons [{label, primary, danger, action}] where action()
 * may throw (the message is shown in the dialog) or return false to keep it open.
 */
export function dialog(title, body, buttons) {
  const d = document.getElementById('dialog');
  document.getElementById('dialog-title').textContent = title;
  const bodyEl = document.getElementById('dialog-body');
  bodyEl.replaceChildren(...[].concat(body));
  const err = document.getElementById('dialog-error');
  err.hidden = true;
  const actions = document.getElementById('dialog-actions');
  actions.replaceChildren();
  for (const b of buttons.concat([{ label: 'Cancel' }])) {
    const btn = h('button', { type: 'button', class: b.primary ? 'primary' : b.danger ? 'danger' : '' }, b.label);
    btn.addEventListener('click', async () => {
      if (!b.action) { d.close(); return; }
      btn.disabled = true;
      try {
        if ((await b.action()) !== false) d.close();
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
      }
      btn.disabled = false;
    });
    actions.append(btn);
  }
  d.showModal();
}

/** A table: columns [{label, num, cell(row) → node|string}], rows; onclick(row) makes rows clickable. */
export function table(columns, rows, { onclick, rowClass, empty = 'Nothing yet.' } = {}) {
  const thead = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : '' }, c.label))));
  const tbody = h('tbody');
  if (!rows.length) tbody.append(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty)));
  for (const r of rows) {
    const tr = h('tr', { class: [onclick ? 'clickable' : '', rowClass ? rowClass(r) : ''].join(' ').trim() || undefined },
      columns.map((c) => h('td', { class: c.num ? 'num' : '' }, c.cell(r))));
    if (onclick) tr.addEventListener('click', (ev) => { if (!ev.target.closest('button, input, label, a')) onclick(r); });
    tbody.append(tr);
  }
  return h('table', {}, thead, tbody);
}

/** A stat card. */
export const stat = (label, value, sub, id) => h('div', { class: 'stat', id }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);

/** Read a form's named inputs into an object (checkboxes as booleans, empty strings left out). */
export function formData(form) {
  const out = {};
  for (const el of form.querySelectorAll('input[name], select[name], textarea[name]')) {
    if (el.type === 'checkbox') out[el.name] = el.checked;
    else if (el.value.trim() !== '') out[el.name] = el.value.trim();
  }
  return out;
}
