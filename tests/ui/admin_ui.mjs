// Browser test of the admin UI in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core). Started by tests/admin_ui.rs, which runs llm-relay with usage records
// already produced through the API server. Steps: log in, visit every page (screenshot each),
// add an alias through the Aliases form, check the Usage page shows the records and that the
// Chart.js chart rendered (its data points add up to the records, and the canvas has
// non-blank pixels).
//
// Environment: ADMIN_URL, ADMIN_PASSWORD, ALIAS_NAME, ALIAS_TARGET, EXPECTED_REQUESTS, INSTANCE_MODEL,
// ARTIFACTS (screenshot directory), CHROMIUM (default /usr/bin/chromium).
// Exit code 0 on success; failures print a message and exit 1.

import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const base = env('ADMIN_URL');
const password = env('ADMIN_PASSWORD');
const aliasName = env('ALIAS_NAME');
const aliasTarget = env('ALIAS_TARGET');
const expected = Number(env('EXPECTED_REQUESTS'));
const artifacts = env('ARTIFACTS');
mkdirSync(artifacts, { recursive: true });

function check(cond, message) {
  if (!cond) throw new Error('check failed: ' + message);
}

const profile = mkdtempSync(join(tmpdir(), 'llm-relay-chromium-'));
// The network is closed: these flags keep Chromium from stalling on background services.
// A fresh profile directory (the user-data-dir) per run.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1366, height: 768 }, // a common laptop screen
  timeout: 60_000,
});
let failed = false;
const page = await browser.newPage();
const consoleErrors = [];
// 401s are expected (the session check before login, the wrong-password attempt): the
// browser logs every failed fetch as a console error.
page.on('console', (m) => {
  if (m.type() === 'error' && !/status of 401/.test(m.text())) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));
page.setDefaultTimeout(20_000);

async function shot(name) {
  await page.screenshot({ path: join(artifacts, name + '.png'), fullPage: true });
}
/** Open a page by its hash route and wait until it finished rendering. */
async function open(route) {
  await page.evaluate((r) => { location.hash = r; }, route);
  await page.waitForSelector(`#page[data-page="${route.replace('#/', '').split('?')[0]}"][data-ready="true"]`);
}

try {
  await page.goto(base + '/');
  await page.waitForSelector('#login-form:visible');
  await shot('00-login');

  // A wrong password shows an error and stays on the login form.
  await page.fill('#login-password', 'not-the-password');
  await page.click('#login-submit');
  await page.waitForSelector('#login-error:visible');
  check((await page.textContent('#login-error')).includes('Wrong password'), 'wrong-password message');

  await page.fill('#login-password', password);
  await page.click('#login-submit');
  await page.waitForSelector('#page[data-page="dashboard"][data-ready="true"]');
  const requestsToday = await page.textContent('#dashboard-cards');
  check(requestsToday.includes('Requests today'), 'dashboard cards');
  await shot('01-dashboard');

  await open('#/providers');
  await page.waitForSelector('#model-search');
  const rowsBefore = await page.locator('.table-wrap').nth(1).locator('tbody tr').count();
  check(rowsBefore > 50, `model list shows models (${rowsBefore})`);
  await shot('02-providers');
  await page.fill('#model-search', aliasTarget.split('/').slice(1).join('/'));
  const rowsAfter = await page.locator('.table-wrap').nth(1).locator('tbody tr').count();
  check(rowsAfter >= 1 && rowsAfter < rowsBefore, `search narrows the list (${rowsBefore} -> ${rowsAfter})`);
  await shot('03-providers-search');

  // Override a model's prices through the edit dialog, then clear the override.
  const row = page.locator('.table-wrap').nth(1).locator('tbody tr').first();
  await row.locator('button:text-is("Edit")').click();
  await page.waitForSelector('#dialog[open]');
  await page.fill('#dialog input[name="input"]', '123.5');
  await shot('03b-model-override-dialog');
  await page.click('#dialog-actions button:text-is("Save")');
  await page.waitForSelector('#page[data-page="providers"][data-ready="true"] .badge:text-is("overridden")');
  check((await page.locator('.table-wrap').nth(1).locator('tbody tr').first().textContent()).includes('$123.5'), 'the override price is shown');
  // Only the edited field was sent: the others keep their compiled values.
  const saved = await page.evaluate(async (target) => {
    const all = await (await fetch('/api/models')).json();
    return all.models.find((m) => `${m.provider}/${m.id}` === target);
  }, aliasTarget);
  check(saved.pricing.input === 123.5 && saved.pricing.output === saved.compiled.pricing.output, 'override of the input price only: ' + JSON.stringify(saved));
  await page.locator('.table-wrap').nth(1).locator('tbody tr').first().locator('button:text-is("Edit")').click();
  await page.click('#dialog-actions button:text-is("Clear override")');
  await page.waitForSelector('#page .badge:text-is("overridden")', { state: 'detached' });

  // Add an OpenAI-compatible provider through the dialog.
  await page.click('button:text-is("+ Add provider")');
  await page.fill('#dialog input[name="id"]', 'ui-test-provider');
  await page.fill('#dialog input[name="base_url"]', 'http://127.0.0.1:9/v1');
  await page.fill('#dialog input[name="api_key_env"]', 'UI_TEST_PROVIDER_KEY');
  await page.click('#dialog-actions button:text-is("Add")');
  await page.waitForSelector('#page[data-page="providers"][data-ready="true"] code:text-is("ui-test-provider")');

  await open('#/instances');
  const instanceModel = env('INSTANCE_MODEL');
  await page.waitForSelector(`#page code:text-is("${instanceModel}")`);
  check((await page.textContent('#page')).includes('reachable'), 'the instance is shown reachable');
  await shot('04-instances');

  await open('#/aliases');
  await page.fill('#alias-name', aliasName);
  await page.fill('#alias-target', aliasTarget);
  await page.click('#alias-add');
  await page.waitForSelector(`#alias-table code:text-is("${aliasName}")`);
  await page.waitForSelector('#page[data-page="aliases"][data-ready="true"]');
  await shot('05-aliases');

  await open('#/usage?since=24h');
  await page.waitForSelector('#usage-chart');
  const chart = await page.evaluate(() => {
    const c = window.__usageChart;
    if (!c) return null;
    const requests = c.data.datasets.find((d) => d.label === 'Requests');
    const canvas = document.getElementById('usage-chart');
    // Non-blank pixels: the canvas holds drawn bars/lines, not an empty bitmap.
    const ctx = canvas.getContext('2d');
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
    return { points: requests.data.length, total: requests.data.reduce((a, b) => a + b, 0), painted, width: canvas.width, height: canvas.height };
  });
  check(chart !== null, 'the Chart.js instance exists');
  check(chart.total === expected, `chart requests add up to ${expected}: ${JSON.stringify(chart)}`);
  check(chart.width > 300 && chart.height > 100 && chart.painted > 1000, `chart canvas is drawn: ${JSON.stringify(chart)}`);
  const cards = await page.textContent('#usage-cards');
  check(cards.includes(String(expected)), `summary card shows ${expected} requests: ${cards}`);
  const recentRows = await page.locator('#usage-recent tbody tr').count();
  check(recentRows === expected, `recent requests table has ${expected} rows (${recentRows})`);
  await shot('06-usage');

  // Drill-down: clicking a breakdown row filters the page by it.
  await page.locator('#usage-breakdown tbody tr.clickable').first().click();
  await page.waitForFunction(() => location.hash.includes('provider='));
  await page.waitForSelector('#page[data-page="usage"][data-ready="true"] .chip');
  await shot('07-usage-filtered');

  await open('#/settings');
  await page.fill('input[name="default_tag"]', 'ui-default');
  await page.click('button:text-is("Save settings")');
  await page.waitForSelector('#toast:text-is("Settings saved")');
  await shot('08-settings');

  check(consoleErrors.length === 0, 'no console errors: ' + consoleErrors.join(' | '));
  console.log(`ui test passed: ${expected} requests charted (${chart.points} points, ${chart.painted} painted pixels); screenshots in ${artifacts}`);
} catch (e) {
  failed = true;
  console.error(String(e && e.stack ? e.stack : e));
  await shot('99-failure').catch(() => {});
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
