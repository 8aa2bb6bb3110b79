// The admin UI's pages. Each page is {render(el), leave?()}; render fetches what it shows from
// the admin API (admin/API.md) and builds the DOM with dom.js helpers.

import { api, qs } from './api.js';
import { h, int, compact, usd, price, ms, when, badge, toggle, toast, dialog, table, stat, formData } from './dom.js';

const enc = encodeURIComponent;
const modelQuery = (m) => `provider=${enc(m.provider)}&model=${enc(m.id)}`;
const todayUtc = () => new Date().toISOString().slice(0, 10);
const noneKey = (k) => (k === '' ? '(none)' : k);
/** A request's token count, `≈` in front (and a tooltip) when llm-relay estimated the request's
 * counts: a stream cut before the upstream reported its usage. */
const approx = (r, n) => (r.tokens_estimated
  ? h('span', { title: 'Estimated (characters / 4): the stream ended before the upstream reported its usage' }, '≈' + int(n))
  : int(n));

function head(title, sub, ...actions) {
  return h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, title), sub ? h('div', { class: 'muted' }, sub) : null), h('div', { class: 'toolbar' }, actions));
}

/** Fetch, showing a soft note instead of failing the whole page (e.g. routes not available). */
async function maybe(promise, fallback) {
  try { return await promise; } catch (e) { if (e.status === 401) throw e; return { __error: e.message, ...fallback }; }
}

function note(message) { return h('div', { class: 'card muted' }, message); }

// ---------------------------------------------------------------- Dashboard
function topTable(title, rows, by) {
  const max = Math.max(1e-12, ...rows.map((r) => r.cost_usd || 0));
  return h('div', { class: 'card' }, h('h3', {}, title), table([
    { label: by, cell: (r) => noneKey(r.key) },
    { label: 'Requests', num: true, cell: (r) => int(r.requests) },
    { label: 'Tokens', num: true, cell: (r) => compact(r.input_tokens + r.output_tokens) },
    { label: 'Cost', num: true, cell: (r) => usd(r.cost_usd) },
    { label: '', cell: (r) => h('div', { class: 'bar' }, h('div', { style: `width:${Math.round(100 * (r.cost_usd || 0) / max)}%` })) },
  ], rows.slice(0, 5), { empty: 'No requests in the last 7 days.', onclick: (r) => { if (r.key) location.hash = `#/usage?${by.toLowerCase()}=${enc(r.key)}`; } }));
}

const dashboard = {
  async render(el) {
    el.append(head('Dashboard', 'Providers, catalog and today’s traffic at a glance'));
    const [prov, models, aliases, today, ...tops] = await Promise.all([
      maybe(api('GET', '/api/providers'), { providers: [] }),
      maybe(api('GET', '/api/models'), { models: [] }),
      maybe(api('GET', '/api/aliases'), { aliases: [] }),
      api('GET', '/api/usage/summary' + qs({ since: todayUtc() })),
      ...['provider', 'model', 'client', 'tag'].map((by) => api('GET', '/api/usage/breakdown' + qs({ by, since: '7d' }))),
    ]);
    const active = prov.providers.filter((p) => p.enabled && (p.key_configured || p.api_key_env === null));
    const enabledModels = models.models.filter((m) => m.enabled);
    el.append(h('div', { class: 'cards', id: 'dashboard-cards' },
      stat('Providers ready', int(active.length), `of ${int(prov.providers.length)}`),
      stat('Models enabled', int(enabledModels.length), `of ${int(models.models.length)}`),
      stat('Aliases', int(aliases.aliases.filter((a) => a.enabled).length)),
      stat('Requests today', int(today.requests), `${int(today.errors)} errors`),
      stat('Tokens today', compact(today.input_tokens + today.output_tokens), `${compact(today.input_tokens)} in · ${compact(today.output_tokens)} out`),
      stat('Cost today', usd(today.cost_usd), today.unpriced_requests ? `${int(today.unpriced_requests)} unpriced` : 'UTC day'),
    ));
    const labels = ['Provider', 'Model', 'Client', 'Tag'];
    el.append(h('div', { class: 'grid cols-2' }, tops.map((t, i) => topTable(`Top ${labels[i].toLowerCase()}s · 7 days`, t.rows, labels[i]))));
    const shown = prov.providers.filter((p) => p.enabled && (p.key_configured || p.source !== 'builtin' || p.api_key_env === null));
    el.append(h('div', { class: 'card' }, h('h3', {}, 'Provider status'),
      prov.__error ? h('p', { class: 'muted' }, prov.__error) : table([
        { label: 'Provider', cell: (p) => h('span', {}, p.name || p.id, ' ', h('code', { class: 'muted' }, p.id)) },
        { label: 'Source', cell: (p) => badge(p.source, p.source === 'builtin' ? '' : 'info') },
        { label: 'Status', cell: (p) => (p.key_configured || p.api_key_env === null ? badge('ready', 'ok') : badge('no key', 'warn')) },
        { label: 'Base URL', cell: (p) => h('code', {}, p.base_url) },
        { label: 'Models', num: true, cell: (p) => int(p.model_count) },
      ], shown, { empty: 'No provider has a key yet: set <PROVIDER>_API_KEY or add one under Providers & Models.' })));
  },
};

// ---------------------------------------------------------------- Providers & Models
const CAPS = ['vision', 'tools', 'reasoning', 'embeddings'];

function capBadges(c) {
  return c ? CAPS.filter((k) => c[k]).map((k) => badge(k)) : [];
}

function numberOrNull(v) {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${v} is not a number ≥ 0`);
  return n;
}

function modelDialog(m, reload) {
  const p = m.pricing || {};
  const c = m.capabilities || {};
  const field = (label, name, value, type = 'number') => h('label', {}, label, h('input', { name, type, step: 'any', min: type === 'number' ? '0' : undefined, value: value ?? '' }));
  const form = h('div', {},
    m.source === 'discovered' ? h('p', { class: 'muted' }, 'A discovered model: only enabling/disabling is stored.') : null,
    h('div', { class: 'form-grid' },
      field('Input $ / 1M tokens', 'input', p.input),
      field('Output $ / 1M tokens', 'output', p.output),
      field('Cache read $ / 1M', 'cache_read', p.cache_read),
      field('Cache write $ / 1M', 'cache_write', p.cache_write),
      field('Cache write 1h $ / 1M', 'cache_write_1h', p.cache_write_1h),
      field('Context length (tokens)', 'context_length', m.context_length),
      h('label', {}, 'Description', h('input', { name: 'description', type: 'text', value: m.description ?? '' })),
    ),
    h('div', { class: 'toolbar', style: 'margin-top:12px' }, CAPS.map((k) => {
      const i = h('input', { type: 'checkbox', name: 'cap_' + k }); i.checked = !!c[k]; return h('label', { class: 'check' }, i, k);
    })),
    m.compiled ? h('p', { class: 'muted small' }, `Compiled: ${price(m.compiled.pricing?.input)} in / ${price(m.compiled.pricing?.output)} out per 1M, context ${int(m.compiled.context_length)}.`) : null,
  );
  const buttons = [{
    label: 'Save', primary: true, action: async () => {
      // Only what changed is sent: an untouched field stays the compiled (or synced) value, so a
      // later pricing sync still updates it.
      const f = formData(form);
      const body = {};
      if (m.source !== 'discovered') {
        const prices = {};
        for (const k of ['input', 'output', 'cache_read', 'cache_write', 'cache_write_1h']) {
          const v = numberOrNull(f[k]);
          if (v !== undefined && v !== (p[k] ?? undefined)) prices[k] = v;
        }
        if (Object.keys(prices).length) body.pricing = prices;
        const ctx = numberOrNull(f.context_length);
        if (ctx !== undefined && Math.round(ctx) !== m.context_length) body.context_length = Math.round(ctx);
        if (f.description !== undefined && f.description !== (m.description ?? '')) body.description = f.description;
        const newCaps = Object.fromEntries(CAPS.map((k) => [k, !!f['cap_' + k]]));
        if (CAPS.some((k) => newCaps[k] !== !!c[k])) body.capabilities = newCaps;
      }
      if (!Object.keys(body).length) return true;
      await api('PUT', '/api/models/override?' + modelQuery(m), body);
      toast(`Saved ${m.provider}/${m.id}`);
      reload();
    },
  }];
  if (m.overridden && m.source === 'builtin') {
    buttons.push({ label: 'Clear override', danger: true, action: async () => { await api('DELETE', '/api/models/override?' + modelQuery(m)); toast('Compiled values restored'); reload(); } });
  }
  if (m.source === 'custom') {
    buttons.push({ label: 'Delete model', danger: true, action: async () => { await api('DELETE', '/api/models/custom?' + modelQuery(m)); toast('Model deleted'); reload(); } });
  }
  dialog(`${m.provider}/${m.id}`, form, buttons);
}

function providerDialog(reload, family = 'openai') {
  const families = [['openai', 'OpenAI-compatible'], ['anthropic', 'Anthropic-compatible'], ['ollama', 'Ollama instance']];
  const form = h('div', { class: 'form-grid' },
    h('label', {}, 'Id', h('input', { name: 'id', placeholder: family === 'ollama' ? 'gpu-box' : 'my-vllm', pattern: '[a-z0-9][a-z0-9_\\-]{0,62}', required: true })),
    h('label', {}, 'API family', h('select', { name: 'family' }, families.map(([v, l]) => h('option', { value: v, selected: v === family }, l)))),
    h('label', {}, 'Base URL', h('input', { name: 'base_url', placeholder: family === 'ollama' ? 'http://192.168.1.100:11434' : 'http://10.0.0.5:8000/v1', required: true })),
    h('label', {}, 'API key variable (name, not the key)', h('input', { name: 'api_key_env', placeholder: 'MY_VLLM_API_KEY' })),
  );
  dialog('Add provider', [form, h('p', { class: 'muted small' }, 'The key is read from that environment variable of the server; it is never stored in the database.')], [{
    label: 'Add', primary: true, action: async () => { const p = await api('POST', '/api/providers', formData(form)); toast(`Added ${p.id}`); reload(); },
  }]);
}

function addModelDialog(providers, reload) {
  const form = h('div', { class: 'form-grid' },
    h('label', {}, 'Provider', h('select', { name: 'provider' }, providers.map((p) => h('option', { value: p.id }, p.id)))),
    h('label', {}, 'Model id (as the upstream names it)', h('input', { name: 'id', required: true })),
    h('label', {}, 'Context length', h('input', { name: 'context_length', type: 'number', min: '0' })),
    h('label', {}, 'Description', h('input', { name: 'description' })),
    h('label', {}, 'Input $ / 1M', h('input', { name: 'input', type: 'number', step: 'any', min: '0' })),
    h('label', {}, 'Output $ / 1M', h('input', { name: 'output', type: 'number', step: 'any', min: '0' })),
  );
  dialog('Add model', form, [{
    label: 'Add', primary: true, action: async () => {
      const f = formData(form);
      const body = { provider: f.provider, id: f.id };
      if (f.context_length) body.context_length = Math.round(numberOrNull(f.context_length));
      if (f.description) body.description = f.description;
      if (f.input !== undefined || f.output !== undefined) body.pricing = { input: numberOrNull(f.input) ?? 0, output: numberOrNull(f.output) ?? 0 };
      await api('POST', '/api/models', body);
      toast(`Added ${f.provider}/${f.id}`);
      reload();
    },
  }]);
}

const providers = {
  state: { search: '', provider: '', onlyEnabled: false, limit: 200 },
  async render(el) {
    const reload = () => this.render(el.replaceChildren() || el);
    const [prov, models] = await Promise.all([api('GET', '/api/providers'), api('GET', '/api/models')]);
    el.append(head('Providers & Models', `${int(prov.providers.length)} providers · ${int(models.models.length)} models`,
      h('button', { onclick: () => providerDialog(reload) }, '+ Add provider'),
      h('button', { onclick: () => addModelDialog(prov.providers, reload) }, '+ Add model')));

    el.append(h('div', { class: 'card' }, h('h2', {}, 'Providers'), h('div', { class: 'table-wrap', style: 'max-height:340px' }, table([
      { label: 'Provider', cell: (p) => h('span', {}, p.name || p.id, ' ', h('code', { class: 'muted' }, p.id)) },
      { label: 'Family', cell: (p) => p.family },
      { label: 'Source', cell: (p) => badge(p.source, p.source === 'builtin' ? '' : 'info') },
      { label: 'Key', cell: (p) => (p.api_key_env === null ? badge('none needed') : p.key_configured ? badge(p.api_key_env, 'ok') : badge(p.api_key_env + ' unset', 'warn')) },
      { label: 'Base URL', cell: (p) => h('code', {}, p.base_url) },
      { label: 'Models', num: true, cell: (p) => int(p.model_count) },
      { label: 'Enabled', cell: (p) => toggle(p.enabled, async (on) => { await api('PUT', `/api/providers/${enc(p.id)}`, { enabled: on }); toast(`${p.id} ${on ? 'enabled' : 'disabled'}`); }) },
      { label: '', cell: (p) => h('span', {},
        h('button', { class: 'small', onclick: async (ev) => {
          const b = ev.target; b.disabled = true;
          try {
            const r = await api('POST', `/api/providers/${enc(p.id)}/test`);
            toast(r.ok ? `${p.id}: OK in ${r.latency_ms} ms${r.models !== null ? `, ${r.models} models` : ''}` : `${p.id}: ${r.message}`, !r.ok);
          } catch (e) { toast(e.message, true); }
          b.disabled = false;
        } }, 'Test'),
        p.source === 'custom' ? h('button', { class: 'small danger', onclick: () => dialog(`Delete ${p.id}?`, h('p', {}, 'Its custom models go with it.'), [{ label: 'Delete', danger: true, action: async () => { await api('DELETE', `/api/providers/${enc(p.id)}`); reload(); } }]) }, 'Delete') : null) },
    ], prov.providers, { rowClass: (p) => (p.enabled ? '' : 'disabled') }))));

    const s = this.state;
    const listEl = h('div');
    const countEl = h('span', { class: 'muted' });
    const draw = () => {
      const q = s.search.toLowerCase();
      const rows = models.models.filter((m) => (!s.provider || m.provider === s.provider) && (!s.onlyEnabled || m.enabled) &&
        (!q || m.id.toLowerCase().includes(q) || m.provider.includes(q) || (m.description || '').toLowerCase().includes(q) || m.aliases.some((a) => a.toLowerCase().includes(q))));
      countEl.textContent = `${int(rows.length)} match${rows.length === 1 ? '' : 'es'}`;
      const shown = rows.slice(0, s.limit);
      listEl.replaceChildren(...[h('div', { class: 'table-wrap' }, table([
        { label: 'Provider', cell: (m) => m.provider },
        { label: 'Model', cell: (m) => h('span', {}, h('code', {}, m.id), m.aliases.length ? h('div', { class: 'muted small' }, 'aliases: ' + m.aliases.join(', ')) : null) },
        { label: 'Source', cell: (m) => [badge(m.source, m.source === 'builtin' ? '' : 'info'), m.overridden ? badge('overridden', 'warn') : null] },
        { label: 'Context', num: true, cell: (m) => compact(m.context_length) },
        { label: 'In $/1M', num: true, cell: (m) => price(m.pricing?.input) },
        { label: 'Out $/1M', num: true, cell: (m) => price(m.pricing?.output) },
        { label: 'Capabilities', cell: (m) => capBadges(m.capabilities) },
        { label: 'Enabled', cell: (m) => toggle(m.enabled, async (on) => { await api('PUT', '/api/models/override?' + modelQuery(m), { enabled: on }); m.enabled = on; toast(`${m.id} ${on ? 'enabled' : 'disabled'}`); }) },
        { label: '', cell: (m) => h('button', { class: 'small', onclick: () => modelDialog(m, reload) }, 'Edit') },
      ], shown, { rowClass: (m) => (m.enabled ? '' : 'disabled'), empty: 'No model matches.' })),
      rows.length > shown.length ? h('div', { class: 'toolbar', style: 'margin-top:8px' }, h('button', { onclick: () => { s.limit += 300; draw(); } }, `Show more (${int(rows.length - shown.length)} left)`)) : null].filter(Boolean));
    };
    const search = h('input', { type: 'search', id: 'model-search', placeholder: 'Search models, providers, aliases…', value: s.search, oninput: (e) => { s.search = e.target.value; s.limit = 200; draw(); } });
    const provSel = h('select', { onchange: (e) => { s.provider = e.target.value; draw(); } }, h('option', { value: '' }, 'All providers'),
      [...new Set(models.models.map((m) => m.provider))].sort().map((p) => h('option', { value: p, selected: p === s.provider }, p)));
    const only = h('input', { type: 'checkbox', onchange: (e) => { s.onlyEnabled = e.target.checked; draw(); } }); only.checked = s.onlyEnabled;
    el.append(h('div', { class: 'card' }, h('h2', {}, 'Models'), h('div', { class: 'toolbar' }, search, provSel, h('label', { class: 'check' }, only, 'Enabled only'), countEl), listEl));
    draw();
  },
};

// ---------------------------------------------------------------- Ollama instances
const instances = {
  async render(el) {
    const data = await api('GET', '/api/instances');
    const reload = () => this.render(el.replaceChildren() || el);
    el.append(head('Ollama instances', 'Ollama servers used as upstreams (OLLAMA_INSTANCES or added as providers) and the models discovered on each',
      h('button', { onclick: () => providerDialog(reload, 'ollama') }, '+ Add instance')));
    if (!data.instances.length) { el.append(note('No Ollama instance configured. Set OLLAMA_INSTANCES or add a provider of family “Ollama instance”.')); return; }
    for (const i of data.instances) {
      el.append(h('div', { class: 'card' },
        h('div', { class: 'page-head' }, h('div', {}, h('h2', {}, i.name, ' ', badge(i.source, 'info'), ' ', i.reachable ? badge('reachable', 'ok') : badge('unreachable', 'bad'), i.enabled ? null : badge('disabled', 'warn')),
          h('div', { class: 'muted' }, h('code', {}, i.base_url), ' · last refresh ', when(i.last_refresh)), i.error ? h('div', { class: 'error' }, i.error) : null)),
        table([
          { label: 'Model', cell: (m) => h('code', {}, m.name) },
          { label: 'Family', cell: (m) => m.family || '–' },
          { label: 'Parameters', cell: (m) => m.parameter_size || '–' },
          { label: 'Size', num: true, cell: (m) => (m.size ? (m.size / 1e9).toFixed(2) + ' GB' : '–') },
        ], i.models, { empty: 'No models discovered.' })));
    }
  },
};

// ---------------------------------------------------------------- Aliases
const aliases = {
  async render(el) {
    const reload = () => this.render(el.replaceChildren() || el);
    const [data, models] = await Promise.all([api('GET', '/api/aliases'), maybe(api('GET', '/api/models'), { models: [] })]);
    el.append(head('Aliases', 'Short names clients can use for a provider/model'));
    const list = h('datalist', { id: 'targets' }, models.models.filter((m) => m.enabled).map((m) => h('option', { value: `${m.provider}/${m.id}` })));
    const form = h('form', { class: 'form-row', id: 'alias-form' },
      h('label', {}, 'Alias', h('input', { name: 'alias', id: 'alias-name', placeholder: 'fast', required: true, pattern: '[A-Za-z0-9._:\\-]{1,128}' })),
      h('label', { style: 'flex:1' }, 'Target (provider/model)', h('input', { name: 'target', id: 'alias-target', list: 'targets', placeholder: 'provider/model', required: true })),
      h('button', { type: 'submit', class: 'primary', id: 'alias-add' }, 'Add alias'), list);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try { const a = await api('POST', '/api/aliases', formData(form)); toast(`Alias ${a.alias} → ${a.target}`); reload(); } catch (e) { toast(e.message, true); }
    });
    el.append(h('div', { class: 'card' }, h('h2', {}, 'Add an alias'), form));
    const rows = data.aliases.slice().sort((a, b) => (a.source === b.source ? a.alias.localeCompare(b.alias) : a.source === 'custom' ? -1 : 1));
    el.append(h('div', { class: 'card' }, h('h2', {}, `${int(rows.length)} aliases`), h('div', { class: 'table-wrap', id: 'alias-table' }, table([
      { label: 'Alias', cell: (a) => h('code', {}, a.alias) },
      { label: 'Target', cell: (a) => h('code', {}, a.target) },
      { label: 'Source', cell: (a) => badge(a.source, a.source === 'custom' ? 'info' : '') },
      { label: 'Enabled', cell: (a) => toggle(a.enabled, async (on) => { await api('PUT', `/api/aliases/${enc(a.alias)}`, { enabled: on }); toast(`${a.alias} ${on ? 'enabled' : 'disabled'}`); }) },
      { label: '', cell: (a) => (a.source === 'custom' ? h('button', { class: 'small danger', onclick: async () => { try { await api('DELETE', `/api/aliases/${enc(a.alias)}`); toast(`Deleted ${a.alias}`); reload(); } catch (e) { toast(e.message, true); } } }, 'Delete') : null) },
    ], rows, { rowClass: (a) => (a.enabled ? '' : 'disabled') }))));
  },
};

// ---------------------------------------------------------------- Usage
let chart = null;
const FILTER_KEYS = ['tag', 'provider', 'model', 'client'];

function usageParams() {
  const q = new URLSearchParams(location.hash.split('?')[1] || '');
  const p = { since: q.get('since') || '7d', granularity: q.get('granularity') || '' };
  for (const k of FILTER_KEYS) if (q.get(k)) p[k] = q.get(k);
  if (!p.granularity) p.granularity = ['24h', '48h'].includes(p.since) ? 'hour' : 'day';
  return p;
}

function setUsageParams(p) {
  location.hash = '#/usage' + qs(p);
}

const SINCE_MS = { '24h': 864e5, '7d': 7 * 864e5, '30d': 30 * 864e5, '90d': 90 * 864e5, '365d': 365 * 864e5 };

/** The series with empty buckets as zeros, so the time axis is continuous (the API leaves them out). */
function fillBuckets(points, granularity, since) {
  const step = granularity === 'hour' ? 36e5 : 864e5;
  const back = SINCE_MS[since];
  if (!back || back / step > 800) return points;
  const byTime = new Map(points.map((p) => [Date.parse(p.t), p]));
  const now = Date.now();
  const out = [];
  for (let t = Math.floor((now - back) / step) * step + step; t <= now; t += step) {
    out.push(byTime.get(t) || { t: new Date(t).toISOString(), requests: 0, input_tokens: 0, output_tokens: 0, cost_usd: 0 });
    byTime.delete(t);
  }
  // Points outside the generated range (clock skew) are kept, in order.
  return byTime.size ? points : out;
}

function drawChart(canvas, points, granularity) {
  if (chart) { chart.destroy(); chart = null; }
  const day = (d) => d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  const hour = (d) => String(d.getHours()).padStart(2, '0') + ':00';
  // Hourly: the time, with the date on the first bucket and at each midnight.
  const labels = points.map((p, i) => {
    const d = new Date(p.t);
    if (granularity !== 'hour') return day(d);
    return i === 0 || d.getHours() === 0 ? `${day(d)} ${hour(d)}` : hour(d);
  });
  // Chart.js is loaded as a classic script (window.Chart), vendored under assets/vendor/.
  chart = new window.Chart(canvas, {
    data: {
      labels,
      datasets: [
        { type: 'bar', label: 'Input tokens', data: points.map((p) => p.input_tokens), backgroundColor: '#93c5fd', stack: 'tokens', yAxisID: 'tokens' },
        { type: 'bar', label: 'Output tokens', data: points.map((p) => p.output_tokens), backgroundColor: '#2563eb', stack: 'tokens', yAxisID: 'tokens' },
        { type: 'line', label: 'Requests', data: points.map((p) => p.requests), borderColor: '#16a34a', backgroundColor: '#16a34a', yAxisID: 'requests', cubicInterpolationMode: 'monotone', pointRadius: 3 },
        { type: 'line', label: 'Cost (USD)', data: points.map((p) => p.cost_usd), borderColor: '#f59e0b', backgroundColor: '#f59e0b', yAxisID: 'cost', cubicInterpolationMode: 'monotone', pointRadius: 3, borderDash: [4, 3] },
      ],
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: 'index', intersect: false },
      plugins: { legend: { position: 'bottom' }, tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.dataset.yAxisID === 'cost' ? usd(c.parsed.y) : int(c.parsed.y)}` } } },
      scales: {
        tokens: { position: 'left', stacked: true, beginAtZero: true, title: { display: true, text: 'tokens' }, ticks: { callback: (v) => compact(v) } },
        requests: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: 'requests' }, ticks: { precision: 0 } },
        cost: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: 'USD' }, ticks: { callback: (v) => usd(v) } },
        x: { stacked: true, grid: { display: false } },
      },
    },
  });
  window.__usageChart = chart; // for the browser test: the rendered chart instance
}

const usage = {
  tab: 'provider',
  leave() { if (chart) { chart.destroy(); chart = null; } },
  async render(el) {
    const p = usageParams();
    const filter = Object.fromEntries(Object.entries(p).filter(([k]) => k !== 'granularity'));
    const [sum, series, recent, breakdown] = await Promise.all([
      api('GET', '/api/usage/summary' + qs(filter)),
      api('GET', '/api/usage/series' + qs(p)),
      api('GET', '/api/usage/recent' + qs({ ...filter, limit: 100 })),
      api('GET', '/api/usage/breakdown' + qs({ ...filter, by: this.tab })),
    ]);
    const sinceSel = h('select', { id: 'usage-since', onchange: (e) => setUsageParams({ ...p, since: e.target.value, granularity: '' }) },
      [['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days'], ['90d', 'Last 90 days'], ['365d', 'Last year']].map(([v, l]) => h('option', { value: v, selected: v === p.since }, l)));
    const granSel = h('select', { onchange: (e) => setUsageParams({ ...p, granularity: e.target.value }) },
      ['hour', 'day'].map((g) => h('option', { value: g, selected: g === p.granularity }, 'per ' + g)));
    const chips = FILTER_KEYS.filter((k) => p[k]).map((k) => h('span', { class: 'chip' }, `${k}: ${p[k]}`, h('button', { title: 'remove filter', onclick: () => { const n = { ...p }; delete n[k]; setUsageParams(n); } }, '×')));
    el.append(head('Usage', 'Requests, tokens and cost; click a breakdown row to filter by it', ...chips, sinceSel, granSel));

    el.append(h('div', { class: 'cards', id: 'usage-cards' },
      stat('Requests', int(sum.requests), `${int(sum.errors)} errors`),
      stat('Input tokens', compact(sum.input_tokens), `${compact(sum.cached_input_tokens + sum.cache_read_tokens)} cached`),
      stat('Output tokens', compact(sum.output_tokens), `${compact(sum.reasoning_tokens)} reasoning`),
      stat('Cost', usd(sum.cost_usd), sum.unpriced_requests ? `${int(sum.unpriced_requests)} unpriced` : `${int(sum.reported_cost_requests)} provider-reported`),
      stat('Mean latency', ms(sum.mean_latency_ms)),
    ));

    const canvas = h('canvas', { id: 'usage-chart', 'aria-label': 'usage over time' });
    el.append(h('div', { class: 'card' }, h('h2', {}, `Over time (per ${p.granularity})`),
      series.points.length ? h('div', { class: 'chart-box' }, canvas) : h('div', { class: 'empty' }, 'No requests in this period.')));
    if (series.points.length) drawChart(canvas, fillBuckets(series.points, p.granularity, p.since), p.granularity);

    const tabs = h('div', { class: 'tabs' }, ['provider', 'model', 'tag', 'client'].map((by) => h('button', { class: by === this.tab ? 'active' : '', onclick: () => { this.tab = by; this.render(el.replaceChildren() || el); } }, 'By ' + by)));
    const total = Math.max(1e-12, ...breakdown.rows.map((r) => r.requests));
    el.append(h('div', { class: 'card' }, h('h2', {}, 'Breakdown'), tabs, h('div', { class: 'table-wrap', id: 'usage-breakdown', style: 'max-height:360px' }, table([
      { label: this.tab[0].toUpperCase() + this.tab.slice(1), cell: (r) => noneKey(r.key) },
      { label: 'Requests', num: true, cell: (r) => int(r.requests) },
      { label: '', cell: (r) => h('div', { class: 'bar' }, h('div', { style: `width:${Math.round(100 * r.requests / total)}%` })) },
      { label: 'Errors', num: true, cell: (r) => int(r.errors) },
      { label: 'Input', num: true, cell: (r) => compact(r.input_tokens) },
      { label: 'Output', num: true, cell: (r) => compact(r.output_tokens) },
      { label: 'Cost', num: true, cell: (r) => usd(r.cost_usd) },
      { label: 'Mean latency', num: true, cell: (r) => ms(r.mean_latency_ms) },
    ], breakdown.rows, { empty: 'No requests.', onclick: (r) => { if (r.key !== '') setUsageParams({ ...p, [this.tab]: r.key }); } }))));

    el.append(h('div', { class: 'card' }, h('h2', {}, 'Recent requests'), h('div', { class: 'table-wrap', id: 'usage-recent' }, table([
      { label: 'Time', cell: (r) => when(r.time) },
      { label: 'Model', cell: (r) => h('span', {}, r.provider ? `${r.provider}/` : '', h('code', {}, r.model || r.model_requested || '–')) },
      { label: 'API', cell: (r) => [r.api, r.stream ? ' · stream' : ''] },
      { label: 'Tags', cell: (r) => r.tags.map((t) => badge(t)) },
      { label: 'Client', cell: (r) => h('span', { title: r.user_agent || '' }, r.client_host || r.client_ip || '–') },
      { label: 'Status', cell: (r) => (r.status >= 400 || r.error ? badge(r.error || String(r.status), 'bad') : badge(String(r.status), 'ok')) },
      { label: 'In', num: true, cell: (r) => approx(r, r.input_tokens) },
      { label: 'Out', num: true, cell: (r) => approx(r, r.output_tokens) },
      { label: 'Cost', num: true, cell: (r) => h('span', { title: r.cost_source }, usd(r.cost_usd)) },
      { label: 'TTFT', num: true, cell: (r) => ms(r.ttft_ms) },
      { label: 'Latency', num: true, cell: (r) => ms(r.latency_ms) },
    ], recent.records, { empty: 'No requests in this period.' }))));
  },
};

// ---------------------------------------------------------------- Settings
const settings = {
  async render(el) {
    el.append(head('Settings', 'Runtime settings take effect at once and survive restarts'));
    const s = await maybe(api('GET', '/api/settings'), {});
    if (s.__error) {
      el.append(note('Settings are not available: ' + s.__error));
    } else {
      const check = (name, label) => { const i = h('input', { type: 'checkbox', name }); i.checked = !!s[name]; return h('label', { class: 'check' }, i, label); };
      const text = (name, label, ph) => h('label', {}, label, h('input', { name, value: s[name] ?? '', placeholder: ph || '' }));
      const form = h('form', {},
        h('div', { class: 'form-grid' },
          text('default_model', 'Default model for unknown names (empty: 404)', 'provider/model'),
          text('default_tag', 'Default tag for untagged requests'),
          h('label', {}, 'Keep raw request records (days, 0: forever)', h('input', { name: 'retention_days', type: 'number', min: '0', value: s.retention_days ?? '' })),
          h('div'),
          text('big_model', 'Anthropic frontend: model for big Claude names', 'provider/model'),
          text('small_model', 'Anthropic frontend: model for small Claude names', 'provider/model'),
        ),
        h('div', { class: 'toolbar', style: 'margin-top:12px' }, check('usage_tracking', 'Record usage'), check('dns_resolution', 'Resolve client host names (reverse DNS)')),
        h('button', { type: 'submit', class: 'primary' }, 'Save settings'));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const f = formData(form);
        const body = { usage_tracking: f.usage_tracking, dns_resolution: f.dns_resolution, default_tag: f.default_tag,
          default_model: f.default_model ?? null, big_model: f.big_model ?? null, small_model: f.small_model ?? null };
        if (f.retention_days) body.retention_days = Math.round(Number(f.retention_days));
        try { await api('PUT', '/api/settings', body); toast('Settings saved'); } catch (e) { toast(e.message, true); }
      });
      el.append(h('div', { class: 'card' }, h('h2', {}, 'Routing and usage'), form));
    }

    // Pricing sync from a LiteLLM price JSON.
    const url = h('input', { type: 'url', name: 'url', placeholder: 'https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json', style: 'flex:1;min-width:360px' });
    const file = h('input', { type: 'file', accept: 'application/json,.json' });
    const out = h('div');
    const source = async () => {
      if (file.files.length) return { data: JSON.parse(await file.files[0].text()) };
      if (url.value.trim()) return { url: url.value.trim() };
      throw new Error('Choose a file or enter a URL.');
    };
    const show = (r, imported) => out.replaceChildren(
      h('p', {}, `${int(r.changes.length)} price change(s) ${imported ? 'imported' : 'would be imported'}; ${int(r.kept_user_overrides)} hand-set price(s) kept; ${int(r.unmatched)} entries matched no model.`),
      r.changes.length ? h('div', { class: 'table-wrap', style: 'max-height:300px' }, table([
        { label: 'Model', cell: (c) => `${c.provider}/${c.model}` }, { label: 'Field', cell: (c) => c.field },
        { label: 'Old $/1M', num: true, cell: (c) => price(c.old) }, { label: 'New $/1M', num: true, cell: (c) => price(c.new) },
      ], r.changes)) : null);
    const run = (path, imported) => async () => { try { show(await api('POST', path, await source()), imported); } catch (e) { toast(e.message, true); } };
    el.append(h('div', { class: 'card' }, h('h2', {}, 'Pricing sync (LiteLLM price JSON)'),
      h('div', { class: 'toolbar' }, url, h('span', { class: 'muted' }, 'or'), file),
      h('div', { class: 'toolbar' }, h('button', { onclick: run('/api/pricing/preview', false) }, 'Preview changes'), h('button', { class: 'primary', onclick: run('/api/pricing/import', true) }, 'Import')),
      out));

    const pw = h('form', { class: 'form-row', id: 'password-form' },
      h('label', {}, 'Current password', h('input', { type: 'password', name: 'current', autocomplete: 'current-password', required: true })),
      h('label', {}, 'New password (8+ characters)', h('input', { type: 'password', name: 'new', autocomplete: 'new-password', minlength: '8', required: true })),
      h('button', { type: 'submit', class: 'primary' }, 'Change password'));
    pw.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try { await api('POST', '/api/password', formData(pw)); pw.reset(); toast('Password changed; other sessions were logged out'); } catch (e) { toast(e.message, true); }
    });
    el.append(h('div', { class: 'card' }, h('h2', {}, 'Admin password'), pw,
      h('p', { class: 'muted small' }, 'Stored only as an argon2id hash. When ADMIN_PASSWORD is set, it wins again at the next start.')));
  },
};

/** Pages by route name. */
export const pages = { dashboard, providers, instances, aliases, usage, settings };
