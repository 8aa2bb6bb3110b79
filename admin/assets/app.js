// Entry point of the admin UI: login/logout, the hash router (#/dashboard, #/usage, ...), and
// the page frame. Pages live in pages.js; the API client in api.js.

import { api, setCsrf, setUnauthorizedHandler, ApiError } from './api.js';
import { pages } from './pages.js';
import { toast } from './dom.js';

const loginView = document.getElementById('login-view');
const appView = document.getElementById('app-view');
const pageEl = document.getElementById('page');

function showLogin(message) {
  appView.hidden = true;
  loginView.hidden = false;
  const err = document.getElementById('login-error');
  err.textContent = message || '';
  err.hidden = !message;
  document.getElementById('login-password').focus();
}

function showApp() {
  loginView.hidden = true;
  appView.hidden = false;
  route();
}

let current = null;
/** Render the page named by the location hash (default: dashboard). */
async function route() {
  if (appView.hidden) return;
  const name = (location.hash.replace(/^#\/?/, '').split('?')[0]) || 'dashboard';
  const page = pages[name] || pages.dashboard;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === name);
  if (current && current.leave) current.leave();
  current = page;
  pageEl.replaceChildren();
  pageEl.dataset.page = name;
  pageEl.dataset.ready = 'false';
  try {
    await page.render(pageEl);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) toast(e.message, true);
  }
  pageEl.dataset.ready = 'true';
}

document.getElementById('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = document.getElementById('login-password');
  const button = document.getElementById('login-submit');
  button.disabled = true;
  try {
    const s = await api('POST', '/api/login', { password: input.value });
    setCsrf(s.csrf_token);
    input.value = '';
    showApp();
  } catch (e) {
    showLogin(e.status === 401 ? 'Wrong password.' : e.message);
  }
  button.disabled = false;
});

document.getElementById('logout').addEventListener('click', async () => {
  try { await api('POST', '/api/logout'); } catch { /* the session may be gone already */ }
  setCsrf(null);
  showLogin();
});

setUnauthorizedHandler(() => { setCsrf(null); showLogin('Your session ended. Sign in again.'); });
window.addEventListener('hashchange', route);

(async () => {
  try {
    const s = await api('GET', '/api/session');
    setCsrf(s.csrf_token);
    showApp();
  } catch {
    showLogin();
  }
})();
