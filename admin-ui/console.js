// The VTelehealth consoles: one ES module, no build step. Logs in with the
// platform's OIDC provider (authorization code + PKCE), keeps the access
// token in sessionStorage, and shows each person the console of their role.
// The server enforces every rule again; hiding a control is only courtesy.
import { dict } from './i18n.js';

const CLIENT_ID = 'vtelehealth-console';
const store = window.sessionStorage;
const $ = (id) => document.getElementById(id);

let lang = localStorage.getItem('vth.lang') === 'en' ? 'en' : 'vi';
let me = null; // the principal, from /api/v1/me
let currentTab = null;
let rerender = () => {};

// ----- strings -----

function t(key, vars = {}) {
  const s = dict[lang][key] ?? dict.vi[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? ''));
}

function applyChrome() {
  document.documentElement.lang = lang;
  document.title = t('app.title');
  $('app-title').textContent = t('app.title');
  $('skip-link').textContent = t('skip');
  const sw = $('lang-switch');
  sw.textContent = t('lang.other');
  sw.lang = lang === 'vi' ? 'en' : 'vi';
  $('sign-out').textContent = t('signout');
}

// ----- DOM helpers (text only: no HTML from data is ever parsed) -----

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

function field(labelText, input, hint) {
  const id = input.id || nextId('f');
  input.id = id;
  const parts = [el('label', { for: id, text: labelText }), input];
  if (hint) {
    const hid = `${id}-hint`;
    input.setAttribute('aria-describedby', hid);
    parts.push(el('p', { class: 'hint', id: hid, text: hint }));
  }
  return el('div', { class: 'field' }, parts);
}

function table(headers, rows, attrs = {}) {
  return el('div', { class: 'table-wrap' },
    el('table', { class: 'stack', ...attrs },
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c, i) => el('td', { 'data-label': headers[i] }, c)))))));
}

const card = (title, ...children) => el('section', { class: 'card' }, title ? el('h2', { text: title }) : null, ...children);
const pill = (text, cls) => el('span', { class: `pill ${cls || ''}`, text });
const stateText = (s) => t(`state.${s}`);
const statePill = (s) => pill(stateText(s), `state-${s}`);
// Times as people here read them, whatever the browser's own zone.
const when = (ms) => (ms
  ? new Date(ms).toLocaleString(lang === 'vi' ? 'vi-VN' : 'en-GB', { timeZone: 'Asia/Ho_Chi_Minh' })
  : '');
const compact = (v) => (v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v));

const VI_RESOURCES = {
  Patient: 'thông tin hành chính của người bệnh', Observation: 'kết quả xét nghiệm, chỉ số', Encounter: 'lượt khám',
  ServiceRequest: 'chỉ định', DiagnosticReport: 'kết quả chẩn đoán', ImagingStudy: 'chẩn đoán hình ảnh',
  MedicationRequest: 'đơn thuốc', Communication: 'trao đổi chuyên môn', Appointment: 'lịch hẹn',
  Consent: 'sự đồng ý', Practitioner: 'nhân viên y tế', Organization: 'cơ sở y tế',
};
const VI_OPS = { c: 'tạo', r: 'đọc', u: 'sửa', d: 'xóa', s: 'tìm' };
const VI_CONTEXT = {
  user: 'trong phạm vi quyền của người dùng', patient: 'của chính người bệnh đang dùng',
  system: 'của cả bệnh viện (dịch vụ hệ thống)',
};

// A records scope (`user/Observation.rs?category=laboratory`) in Vietnamese.
function recordsScopeVi(scope) {
  if (scope.startsWith('purpose=')) {
    const p = scope.slice(8);
    return `mục đích sử dụng: ${dict.vi[`purpose.${p}`] || p}`;
  }
  const m = /^(user|patient|system)\/(\w+|\*)\.([cruds]+)(\?.*)?$/.exec(scope);
  if (!m) return scope;
  const ops = [...m[3]].map((o) => VI_OPS[o]).join(', ');
  const what = m[2] === '*' ? 'mọi loại hồ sơ' : VI_RESOURCES[m[2]] || m[2];
  return `${ops} ${what} ${VI_CONTEXT[m[1]]}${m[4] ? ` (chỉ ${m[4].slice(1)})` : ''}`;
}

function capabilityText(c) {
  const base = c.capability.split(':')[0];
  if (lang === 'en') return `${c.meaning} (${c.capability})`;
  const vi = dict.vi[`cap.${c.capability}`] || dict.vi[`cap.${base}`];
  if (!vi) return `${c.meaning} (${c.capability})`;
  return base === 'records' ? `${vi}: ${recordsScopeVi(c.capability.slice(8))}` : `${vi} (${c.capability})`;
}

// ----- messages (an aria-live region) -----

function say(text, kind = 'info', extra = null) {
  const box = $('messages');
  box.replaceChildren(el('div', { class: `msg ${kind}`, 'data-kind': kind }, text, extra ? ' ' : null, extra));
}
const clearMessages = () => $('messages').replaceChildren();

class SessionExpired extends Error {}
class ApiFailure extends Error {
  constructor(status, body) {
    super(body?.error?.message || body?.error_description || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function errorText(e) {
  if (e instanceof ApiFailure) {
    // The server says it in both languages; the English keeps the detail.
    const vi = e.body?.error?.message_vi;
    if (lang === 'vi' && vi) return `${vi} (${e.message})`;
    const why = e.message;
    if (e.status === 403) return t('err.forbidden', { why });
    if (e.status === 409) return t('err.conflict', { why });
    if (e.status === 422 || e.status === 400) return t('err.invalid', { why });
    if (e.status === 404) return t('err.notfound', { why });
    return t('err.other', { status: e.status, why });
  }
  if (e instanceof TypeError && /fetch/i.test(e.message)) return t('err.network');
  return String(e.message || e);
}

function sessionExpired() {
  store.removeItem('vth.token');
  store.removeItem('vth.refresh');
  say(t('session.expired'), 'error',
    actionButton(t('signin.again'), signIn, { id: 'sign-in-again' }));
}

// ----- API -----

// One refresh at a time: refresh tokens rotate, and presenting a spent one
// again revokes the whole session.
let refreshing = null;

async function refreshSession() {
  const refresh = store.getItem('vth.refresh');
  if (!refresh) return false;
  refreshing ??= (async () => {
    try {
      const resp = await fetch('/oidc/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh, client_id: CLIENT_ID }),
      });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok || !body.access_token) {
        store.removeItem('vth.refresh');
        return false;
      }
      store.setItem('vth.token', body.access_token);
      if (body.refresh_token) store.setItem('vth.refresh', body.refresh_token);
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function api(method, path, body, raw = false, retried = false) {
  const token = store.getItem('vth.token');
  if (!token) {
    sessionExpired();
    throw new SessionExpired();
  }
  const headers = { authorization: `Bearer ${token}` };
  let payload;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = raw ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers, body: payload });
  if (resp.status === 401) {
    // Refused before anything was done: renew the session once and retry.
    if (!retried && await refreshSession()) return api(method, path, body, raw, true);
    sessionExpired();
    throw new SessionExpired();
  }
  let data = null;
  if (resp.status !== 204) {
    try { data = await resp.json(); } catch { data = null; }
  }
  if (!resp.ok) throw new ApiFailure(resp.status, data);
  return data;
}

// Run `action` once per click: the button is disabled while the request is
// in flight, so a double click does nothing twice.
async function once(button, action) {
  if (button.disabled) return;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    await action();
  } catch (e) {
    if (!(e instanceof SessionExpired)) say(errorText(e), 'error');
  } finally {
    if (button.isConnected) {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }
}

// A button that runs `action` once per click.
const actionButton = (text, action, attrs = {}) => {
  const b = el('button', { type: 'button', ...attrs }, text);
  b.addEventListener('click', () => once(b, action));
  return b;
};

// ----- login: authorization code with PKCE -----

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const randomString = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

async function discovery() {
  const resp = await fetch('/.well-known/openid-configuration');
  if (!resp.ok) throw new ApiFailure(resp.status, null);
  return resp.json();
}

// `provider`: the number of an external provider's button (VNeID, a
// hospital's own); without it, the platform's own sign-in form.
async function signIn(provider) {
  if (!window.crypto?.subtle) {
    say(t('signin.insecure'), 'error');
    return;
  }
  const d = await discovery();
  const verifier = randomString(32);
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  const challenge = b64url(new Uint8Array(digest));
  const state = randomString(16);
  const redirect = `${d.issuer}/console/callback`;
  store.setItem('vth.pkce', JSON.stringify({ verifier, state, redirect, token: d.token_endpoint }));
  const q = new URLSearchParams({
    response_type: 'code', client_id: CLIENT_ID, redirect_uri: redirect, state, scope: 'openid',
    code_challenge: challenge, code_challenge_method: 'S256', nonce: randomString(16), lang,
  });
  const to = Number.isInteger(provider)
    ? `${d.issuer}/oidc/external/${provider}/start`
    : d.authorization_endpoint;
  window.location.assign(`${to}?${q}`);
}

async function finishSignIn() {
  const q = new URLSearchParams(window.location.search);
  const saved = JSON.parse(store.getItem('vth.pkce') || 'null');
  store.removeItem('vth.pkce');
  window.history.replaceState(null, '', '/console/');
  if (!saved || !q.get('code') || saved.state !== q.get('state')) {
    say(t('signin.failed', { why: 'state' }), 'error');
    return;
  }
  const resp = await fetch(saved.token, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: q.get('code'), client_id: CLIENT_ID,
      redirect_uri: saved.redirect, code_verifier: saved.verifier,
    }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok || !body.access_token) {
    say(t('signin.failed', { why: body.error_description || resp.status }), 'error');
    return;
  }
  store.setItem('vth.token', body.access_token);
  if (body.refresh_token) store.setItem('vth.refresh', body.refresh_token);
}

async function signOut() {
  if (feed) { feed.abort(); feed = null; }
  unread = 0;
  const refresh = store.getItem('vth.refresh');
  store.clear();
  if (refresh) {
    await fetch('/oidc/logout', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ refresh_token: refresh }),
    }).catch(() => {});
  }
  me = null;
  // The next person's modules may differ.
  names.loaded = false;
  names.modules.clear();
  clearMessages();
  showSignIn();
}

// The external providers' buttons and, in a demo run only, the demo
// accounts: asked once per page load.
let signInOptions = null;

function showSignIn() {
  shown += 1;
  $('main').removeAttribute('aria-busy');
  $('tabs').replaceChildren();
  $('who').textContent = '';
  $('sign-out').hidden = true;
  rerender = showSignIn;
  const providers = el('div', { id: 'sign-in-providers', class: 'sign-in-providers' });
  const demo = el('div', { id: 'sign-in-demo' });
  const view = el('section', { class: 'card sign-in', 'aria-labelledby': 'sign-in-title' },
    el('h2', { id: 'sign-in-title', text: t('signin.title') }),
    el('p', { class: 'hint', text: t('signin.text') }),
    providers,
    el('div', { class: 'or', 'aria-hidden': 'true', text: t('signin.or') }),
    actionButton(t('signin.own'), () => signIn(), { id: 'sign-in', class: 'secondary' }),
    el('p', { class: 'hint', text: t('signin.own.hint') }),
    demo);
  $('main').dataset.view = 'sign-in';
  $('main').replaceChildren(view);
  const fill = (o) => {
    if (!view.isConnected || !o) return;
    const several = (kind) => o.providers.filter((p) => p.kind === kind).length > 1;
    providers.replaceChildren(...o.providers.map((p) => {
      const label = lang === 'vi' ? p.label_vi : p.label_en;
      const key = p.kind === 'citizen' ? 'signin.vneid' : 'signin.hospital';
      const text = several(p.kind) ? t(`${key}.named`, { label }) : t(key);
      return el('div', { class: 'provider' },
        actionButton(text, () => signIn(p.index), { 'data-kind': p.kind, 'data-provider': p.index, title: label }),
        el('p', { class: 'hint', text: t(`${key}.hint`) }));
    }));
    view.querySelector('.or').hidden = o.providers.length === 0;
    if (o.demo_accounts?.length) {
      demo.replaceChildren(el('details', { class: 'demo-accounts' },
        el('summary', { text: t('signin.demo') }),
        el('p', { class: 'hint', text: t('signin.demo.hint') }),
        table([t('signin.demo.name'), t('signin.demo.username'), t('signin.demo.password')],
          o.demo_accounts.map((a) => [a.name, el('code', { text: a.username }), el('code', { text: a.password })]))));
    }
  };
  if (signInOptions) {
    fill(signInOptions);
  } else {
    view.querySelector('.or').hidden = true;
    fetch('/oidc/sign-in-options')
      .then((r) => (r.ok ? r.json() : null))
      .then((o) => { signInOptions = o; fill(o); })
      .catch(() => {});
  }
}

// ----- consoles by role -----

const has = (role) => me?.roles?.includes(role);

function tabsFor() {
  if (has('reviewer')) return ['queue', 'audit', 'network', 'facilities', 'vendors'];
  if (has('operator')) return ['queue', 'audit', 'network', 'facilities', 'vendors'];
  if (has('hospital-admin')) return ['catalogue', 'modules', 'staff', 'clients', 'directory'];
  if (has('vendor-user')) return ['submit', 'versions', 'activations', 'team'];
  if (has('practitioner')) return ['workspace', 'notices', 'directory'];
  if (has('pharmacist')) return ['directory'];
  if (has('citizen')) return ['records', 'access', 'consents', 'payments', 'notices'];
  return [];
}

const views = {
  queue: viewQueue, audit: viewAudit, network: viewNetwork,
  facilities: viewFacilities, vendors: viewVendors,
  catalogue: viewCatalogue, modules: viewModules,
  submit: viewSubmit, versions: viewVersions, activations: viewVendorActivations,
  records: viewRecords, access: viewAccess, consents: viewConsents, payments: viewPayments,
  workspace: viewWorkspace, notices: viewNotices,
  staff: viewStaff, clients: viewClients, directory: viewDirectory, team: viewTeam,
};

function showConsole() {
  const tabs = tabsFor();
  $('sign-out').hidden = false;
  const roleNames = (me.roles || []).map((r) => t(`role.${r}`)).join(', ');
  // The hospital by its name, never its id; filled in once the directory answers.
  $('who').textContent = `${me.name} · ${roleNames}`;
  if (me.hospital_id) {
    const who = me;
    fetch('/api/v1/hospitals').then((r) => r.json()).then(({ hospitals }) => {
      const h = (hospitals || []).find((x) => x.id === who.hospital_id);
      if (h && me === who) $('who').textContent = `${who.name} · ${roleNames} · ${h.name}`;
    }).catch(() => {});
  }
  if (!tabs.length) {
    $('tabs').replaceChildren();
    $('main').replaceChildren(card(null, el('p', { text: t('role.none') })));
    return;
  }
  if (!tabs.includes(currentTab)) currentTab = store.getItem('vth.tab');
  if (!tabs.includes(currentTab)) currentTab = tabs[0];
  $('tabs').replaceChildren(...tabs.map((name) => el('button', {
    type: 'button', id: `tab-${name}`, 'aria-current': name === currentTab ? 'page' : false,
    onclick: async () => { clearMessages(); openedPage = null; await openTab(name); $('main').focus(); },
  }, t(`tab.${name}`))));
  setUnread(unread);
  openTab(currentTab, true);
  if (tabs.includes('notices') && !feed) follow();
}

async function openTab(name, keepMessages = false) {
  currentTab = name;
  store.setItem('vth.tab', name);
  for (const b of $('tabs').querySelectorAll('button')) {
    if (b.id === `tab-${name}`) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  if (!keepMessages) clearMessages();
  await show(() => views[name]());
}

// Render what `build` returns into <main>; remembered for the language switch.
// A view that answers after a newer one, or after signing out, is dropped:
// it must not cover what the person now sees.
let shown = 0;
async function show(build) {
  const mine = ++shown;
  rerender = () => show(build);
  const main = $('main');
  main.setAttribute('aria-busy', 'true');
  try {
    const content = await build();
    if (mine === shown) main.replaceChildren(...[content].flat().filter((x) => x != null));
  } catch (e) {
    if (mine === shown && !(e instanceof SessionExpired)) say(errorText(e), 'error');
  } finally {
    if (mine === shown) {
      main.removeAttribute('aria-busy');
      main.dataset.view = currentTab || '';
    }
  }
}

// ----- ministry: review queue, version detail, audit, network -----

async function viewQueue() {
  const { versions } = await api('GET', '/api/v1/plugin-versions');
  const row = (v) => [
    v.plugin, v.version, v.vendor, statePill(v.state), when(v.submitted_at),
    el('button', { type: 'button', class: 'secondary', 'data-version': v.id, onclick: () => show(() => viewVersion(v.id)) },
      `${t('open')} ${v.plugin} ${v.version}`),
  ];
  const heads = [t('col.plugin'), t('col.version'), t('col.vendor'), t('col.state'), t('col.submitted'), t('col.actions')];
  const pending = versions.filter((v) => v.state === 'submitted');
  const others = versions.filter((v) => v.state !== 'submitted');
  return [
    card(t('queue.pending'), pending.length ? table(heads, pending.map(row), { id: 'queue-pending' }) : el('p', { text: t('queue.empty') })),
    card(t('queue.others'), others.length ? table(heads, others.map(row)) : el('p', { text: t('queue.empty') })),
  ];
}

async function viewVersion(id) {
  const [v, changes, declared] = await Promise.all([
    api('GET', `/api/v1/plugin-versions/${encodeURIComponent(id)}`),
    api('GET', `/api/v1/plugin-versions/${encodeURIComponent(id)}/changes`),
    api('GET', `/api/v1/plugin-versions/${encodeURIComponent(id)}/pages`),
  ]);
  const back = el('button', { type: 'button', class: 'secondary', onclick: () => openTab(currentTab, true) }, t('back'));
  const desc = v.description ? v.description[lang] || v.description.vi : '';
  const head = card(`${declared.name ? byLang(declared.name) : v.plugin} ${v.version}`,
    el('p', {}, statePill(v.state), ` ${t('col.vendor')}: ${v.vendor} · ${v.kind || ''}`),
    el('p', { text: desc }),
    v.network ? el('p', { class: 'hint', text: t('detail.network') }) : null);
  const caps = card(t('detail.requested'),
    el('ul', { class: 'plain' }, v.requested.map((c) => el('li', { text: capabilityText(c) }))),
    v.granted ? el('h3', { text: t('detail.granted') }) : null,
    v.granted ? el('ul', { class: 'plain', id: 'granted' }, v.granted.map((c) => el('li', { text: capabilityText(c) }))) : null);
  const checks = card(t('detail.checks'), checksTable(v.checks));
  // The same table the host enforces before the plugin runs.
  const routes = card(t('detail.routes'), (v.routes || []).length
    ? table([t('col.path'), t('col.methods'), t('col.roles')], v.routes.map((r) => [
      el('code', { text: r.path }), r.methods.join(', '), r.roles.length ? r.roles.join(', ') : t('routes.anyone')]), { id: 'routes-table' })
    : el('p', { text: t('detail.noroutes') }));
  // The pages the consoles will list, and to whom.
  const pages = card(t('detail.pages'), declared.pages.length
    ? table([t('col.title_vi'), t('col.title_en'), t('col.path'), t('col.shown_to')], declared.pages.map((p) => [
      p.title.vi, p.title.en, el('code', { text: p.path }), p.roles.map((r) => t(`role.${r}`)).join(', ')]), { id: 'pages-table' })
    : el('p', { text: t('detail.nopages') }));
  let changeBody;
  if (!changes.previous) {
    changeBody = [el('p', { text: t('detail.first') })];
  } else {
    changeBody = [el('p', { text: t('detail.previous', { version: changes.previous.version, state: stateText(changes.previous.state) }) })];
    if (changes.capabilities_added.length) {
      changeBody.push(el('h3', { text: t('detail.added') }), el('ul', { class: 'plain' }, changes.capabilities_added.map((c) => el('li', { text: c }))));
    }
    if (changes.capabilities_removed.length) {
      changeBody.push(el('h3', { text: t('detail.removed') }), el('ul', { class: 'plain' }, changes.capabilities_removed.map((c) => el('li', { text: c }))));
    }
    if (changes.manifest_changes.length) {
      changeBody.push(el('h3', { text: t('detail.fields') }), el('ul', { class: 'plain' },
        changes.manifest_changes.map((c) => el('li', {}, el('strong', { text: c.field }), `: ${compact(c.before)} → ${compact(c.after)}`))));
    }
    if (changes.component_changed) changeBody.push(el('p', { text: t('detail.component') }));
    if (!changes.capabilities_added.length && !changes.capabilities_removed.length && !changes.manifest_changes.length && !changes.component_changed) {
      changeBody.push(el('p', { text: t('detail.nochange') }));
    }
  }
  const decisions = card(t('detail.decisions'), (v.decisions || []).length
    ? el('ul', { class: 'plain', id: 'decisions' }, v.decisions.map((d) => el('li', {},
      el('strong', { text: t(`decision.${d.decision}`) }), ` · ${d.reviewer_name || d.reviewer} · ${when(d.decided_at)}`, d.reason ? ` — ${d.reason}` : '')))
    : el('p', { text: t('detail.nodecisions') }));
  const out = [back, head, caps, routes, pages, checks, card(t('detail.changes'), el('div', { id: 'changes' }, changeBody)), decisions];
  if (has('reviewer')) out.push(...reviewActions(v));
  out.push(card(t('detail.manifest'), el('pre', { text: v.manifest || '' })));
  return out;
}

function reviewActions(v) {
  const done = (key) => async (result) => {
    await show(() => viewVersion(v.id));
    say(t(key, { plugin: v.plugin, version: v.version }), 'ok');
    return result;
  };
  if (v.state === 'submitted') {
    const boxes = v.requested.map((c) => {
      const id = nextId('grant');
      return el('label', { class: 'inline', for: id },
        el('input', { type: 'checkbox', id, checked: true, value: c.capability, 'data-capability': c.capability }), capabilityText(c));
    });
    const note = el('textarea', { id: 'approve-note' });
    const approve = actionButton(t('review.approve'), async () => {
      const granted = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      await api('POST', `/api/v1/plugin-versions/${encodeURIComponent(v.id)}/approve`, { granted, note: note.value });
      await done('review.approved')();
    }, { id: 'approve' });
    const reason = el('textarea', { id: 'reject-reason', required: true });
    const reject = actionButton(t('review.reject'), async () => {
      if (!reason.value.trim()) { say(t('review.need_reason'), 'error'); reason.focus(); return; }
      await api('POST', `/api/v1/plugin-versions/${encodeURIComponent(v.id)}/reject`, { reason: reason.value });
      await done('review.rejected')();
    }, { id: 'reject', class: 'danger' });
    return [
      card(t('review.approve'), el('fieldset', {}, el('legend', { text: t('review.grant') }), boxes),
        field(t('review.note'), note), el('div', { class: 'row' }, approve)),
      card(t('review.reject'), field(t('review.reason'), reason), el('div', { class: 'row' }, reject)),
    ];
  }
  if (v.state === 'approved') {
    const reason = el('textarea', { id: 'revoke-reason', required: true });
    const revoke = actionButton(t('review.revoke'), async () => {
      if (!reason.value.trim()) { say(t('review.need_reason'), 'error'); reason.focus(); return; }
      await api('POST', `/api/v1/plugin-versions/${encodeURIComponent(v.id)}/revoke`, { reason: reason.value });
      await done('review.revoked')();
    }, { id: 'revoke', class: 'danger' });
    return [card(t('review.revoke'), field(t('review.reason'), reason), el('div', { class: 'row' }, revoke))];
  }
  return [];
}

// An audit entry's details as `key: value` lines; signatures shortened.
function detailsList(details) {
  if (!details || typeof details !== 'object') return compact(details);
  return el('ul', { class: 'plain details' }, Object.entries(details).map(([k, v]) => {
    let text = Array.isArray(v) ? v.map(compact).join(', ') : compact(v);
    if (k.endsWith('signature') && text.length > 16) text = `${text.slice(0, 16)}…`;
    return el('li', {}, el('span', { class: 'hint', text: `${k}: ` }), text);
  }));
}

// A configuration value in words: a list item by its name, nested settings as `key: value`.
function readable(v) {
  if (v === null || v === undefined) return '';
  if (Array.isArray(v)) return v.map(readable).join('; ');
  if (typeof v === 'object') {
    const parts = Object.entries(v).filter(([k]) => k !== 'name' && k !== 'id').map(([k, x]) => `${k}: ${readable(x)}`);
    if (!v.name) return parts.join(', ');
    return parts.length ? `${v.name} (${parts.join(', ')})` : v.name;
  }
  return String(v);
}

// A module's configuration as `key: value` lines.
const configList = (config) => el('ul', { class: 'plain details' }, Object.entries(config).map(([k, v]) =>
  el('li', {}, el('span', { class: 'hint', text: `${k}: ` }), readable(v))));

let auditFilter = { action: '', actor: '', hospital: '', target: '', limit: '100' };

async function viewAudit() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(auditFilter)) if (v) q.set(k, v);
  const { entries } = await api('GET', `/api/v1/audit?${q}`);
  const inputs = {};
  const labels = { action: 'audit.action', actor: 'audit.actor', hospital: 'audit.hospital', target: 'audit.target', limit: 'audit.limit' };
  const fields = Object.keys(labels).map((k) => {
    inputs[k] = el('input', { id: `audit-${k}`, value: auditFilter[k], type: k === 'limit' ? 'number' : 'text', min: k === 'limit' ? '1' : null });
    return field(t(labels[k]), inputs[k]);
  });
  const go = actionButton(t('audit.search'), async () => {
    for (const k of Object.keys(inputs)) auditFilter[k] = inputs[k].value.trim();
    await show(viewAudit);
  }, { id: 'audit-search' });
  const rows = entries.map((e) => [String(e.seq), when(e.at), e.actor, e.action, e.target, e.hospital_id || '', detailsList(e.details)]);
  return [
    card(t('audit.filters'), el('div', { class: 'grid' }, fields), el('div', { class: 'row' }, go)),
    card(t('tab.audit'), rows.length
      ? table(['#', t('col.when'), t('col.who'), t('col.action'), t('col.target'), t('col.hospital'), t('col.details')], rows, { id: 'audit-table' })
      : el('p', { text: t('audit.empty') })),
  ];
}

async function viewNetwork() {
  const { hospitals } = await api('GET', '/api/v1/network');
  const order = ['central', 'provincial', 'district', 'commune'];
  const rows = hospitals.map((h) => ({ h, acts: h.active }))
    .sort((a, b) => order.indexOf(a.h.tier) - order.indexOf(b.h.tier) || a.h.province.localeCompare(b.h.province));
  const byTier = order.map((tier) => [t(`tier.${tier}`), String(hospitals.filter((h) => h.tier === tier).length)]);
  const provinces = [...new Set(hospitals.map((h) => h.province))].sort((a, b) => a.localeCompare(b));
  const byProvince = provinces.map((p) => {
    const here = rows.filter((r) => r.h.province === p);
    return [p, String(here.length), String(here.reduce((n, r) => n + r.acts.length, 0))];
  });
  return [
    ...await networkSummaryCards(),
    card(t('network.summary'), table([t('col.tier'), t('col.count')], byTier)),
    card(t('network.provinces'), table([t('col.province'), t('col.count'), t('col.active')], byProvince, { id: 'province-table' })),
    card(t('tab.network'), table([t('col.hospital'), t('col.tier'), t('col.province'), t('col.active')],
      rows.map(({ h, acts }) => [h.name, t(`tier.${h.tier}`), h.province,
        acts.length ? acts.map((a) => `${a.plugin} ${a.version}${a.mandatory ? ` (${t('col.mandatory').toLowerCase()})` : ''}`).join(', ') : t('network.none')]),
      { id: 'network-table' })),
  ];
}

// ----- hospital admin: catalogue, activation, modules and usage -----

async function viewCatalogue() {
  const h = me.hospital_id;
  const [{ versions }, { activations }] = await Promise.all([
    api('GET', '/api/v1/plugin-versions'),
    api('GET', `/api/v1/hospitals/${encodeURIComponent(h)}/activations`),
  ]);
  if (!versions.length) return card(t('tab.catalogue'), el('p', { text: t('catalogue.empty') }));
  return el('div', { class: 'grid', id: 'catalogue' }, versions.map((v) => {
    const active = activations.find((a) => a.plugin_id === v.plugin && a.state === 'active');
    const label = !active ? t('catalogue.activate') : active.version_id === v.id ? t('catalogue.reconfigure') : t('catalogue.upgrade');
    const slot = el('div', { class: 'activation-slot' });
    return el('section', { class: 'card', 'data-plugin': v.plugin, 'data-version': v.version },
      el('h2', { text: `${v.plugin} ${v.version}` }),
      el('p', { class: 'hint', text: `${t('col.vendor')}: ${v.vendor}` }),
      el('p', { text: v.description ? v.description[lang] || v.description.vi : '' }),
      el('h3', { text: t('catalogue.capabilities') }),
      el('ul', { class: 'plain' }, (v.granted || v.requested).map((c) => el('li', { text: capabilityText(c) }))),
      active && active.version_id === v.id ? el('p', {}, pill(t('catalogue.is_active'), 'pass')) : null,
      el('button', {
        type: 'button', 'data-activate': v.plugin, 'data-version': v.version,
        // One form open at a time, so its field ids are unique.
        onclick: () => {
          for (const other of document.querySelectorAll('.activation-slot')) other.replaceChildren();
          slot.replaceChildren(activationForm(v, active));
        },
      },
        `${label}: ${v.plugin} ${v.version}`),
      slot);
  }));
}

// A form generated from the plugin's JSON Schema (flat object properties).
function activationForm(v, active) {
  const schema = v.config?.schema || {};
  // An upgrade starts from the hospital's current settings.
  const values = { ...(v.config?.defaults || {}), ...(active?.config || {}) };
  const props = schema.properties || {};
  const inputs = {};
  const fields = Object.entries(props).map(([name, p]) => {
    const id = `cfg-${v.plugin}-${name}`;
    let input;
    if (Array.isArray(p.enum)) {
      input = el('select', { id, name }, p.enum.map((o) => el('option', { value: String(o), selected: values[name] === o }, String(o))));
    } else if (p.type === 'boolean') {
      input = el('input', { id, name, type: 'checkbox', checked: values[name] === true });
    } else if (p.type === 'integer' || p.type === 'number') {
      input = el('input', { id, name, type: 'number', inputmode: 'numeric', min: p.minimum ?? null, max: p.maximum ?? null, value: values[name] ?? '' });
    } else {
      input = el('input', { id, name, type: 'text', value: values[name] ?? '' });
    }
    inputs[name] = { input, p };
    const range = p.minimum !== undefined || p.maximum !== undefined ? ` [${p.minimum ?? ''}…${p.maximum ?? ''}]` : '';
    return field(name, input, `${p.description || ''}${range}`);
  });
  const secrets = el('textarea', { id: `secrets-${v.plugin}`, autocomplete: 'off', spellcheck: 'false' });
  const submit = actionButton(t('activate.submit'), async () => {
    const config = {};
    for (const [name, { input, p }] of Object.entries(inputs)) {
      if (p.type === 'boolean') config[name] = input.checked;
      else if (p.type === 'integer' || p.type === 'number') {
        if (input.value.trim() === '') continue;
        const n = Number(input.value);
        if (!Number.isFinite(n)) { say(t('activate.number_invalid', { field: name }), 'error'); input.focus(); return; }
        config[name] = n;
      } else if (input.value !== '') config[name] = input.value;
    }
    const body = { version_id: v.id, config };
    if (secrets.value.trim()) {
      let parsed;
      try { parsed = JSON.parse(secrets.value); } catch { parsed = null; }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
        say(t('activate.secrets_invalid'), 'error');
        secrets.focus();
        return;
      }
      body.secrets = parsed;
    }
    await api('PUT', `/api/v1/hospitals/${encodeURIComponent(me.hospital_id)}/activations/${encodeURIComponent(v.plugin)}`, body);
    // Confirmed once the catalogue is redrawn, so nothing clicked after
    // the confirmation lands on the page being replaced.
    await show(viewCatalogue);
    say(t('activate.done', { plugin: v.plugin, version: v.version }), 'ok');
  }, { id: `activate-submit-${v.plugin}` });
  return el('form', { class: 'activation', onsubmit: (e) => e.preventDefault(), 'aria-label': t('activate.title', { plugin: v.plugin, version: v.version }) },
    el('h3', { text: t('activate.title', { plugin: v.plugin, version: v.version }) }),
    el('fieldset', {}, el('legend', { text: t('activate.config') }), fields.length ? fields : el('p', { text: t('activate.noconfig') })),
    field(t('activate.secrets'), secrets, t('activate.secrets_hint')),
    el('div', { class: 'row' }, submit));
}

async function viewModules() {
  const h = encodeURIComponent(me.hospital_id);
  const [{ activations }, { usage }, { modules }] = await Promise.all([
    api('GET', `/api/v1/hospitals/${h}/activations`),
    api('GET', `/api/v1/hospitals/${h}/plugin-usage`),
    api('GET', '/api/v1/me/plugin-pages'),
  ]);
  if (!activations.length) return card(t('tab.modules'), el('p', { text: t('modules.empty') }));
  // The pages modules declare for hospital admins, as a menu.
  const frameSlot = el('div', { id: 'frame-slot' });
  const withPages = modules.filter((m) => m.pages.length);
  const pagesCard = card(t('pages.admin'), withPages.length
    ? el('div', { class: 'grid', id: 'modules-menu' }, withPages.map((m) => el('section', { class: 'card', 'data-plugin': m.plugin },
      el('h3', { text: byLang(m.name) }), pageMenu(m, me.hospital_id, frameSlot))))
    : el('p', { text: t('pages.admin_none') }));
  await reopenPage(withPages, me.hospital_id, frameSlot);
  const nameOf = (id) => byLang(modules.find((m) => m.plugin === id)?.name) || id;
  const rows = activations.map((a) => {
    const u = usage.find((x) => x.plugin === a.plugin_id) || { calls: 0, errors: 0 };
    const remove = a.mandatory ? '' : actionButton(`${t('modules.deactivate')} ${nameOf(a.plugin_id)}`, async () => {
      await api('DELETE', `/api/v1/hospitals/${h}/activations/${encodeURIComponent(a.plugin_id)}`);
      await show(viewModules);
      say(t('modules.deactivated', { plugin: nameOf(a.plugin_id) }), 'ok');
    }, { class: 'danger', 'data-deactivate': a.plugin_id });
    return [nameOf(a.plugin_id), a.version, stateText(a.state) || a.state, a.mandatory ? t('yes') : t('no'),
      Object.keys(a.config || {}).length ? configList(a.config) : t('modules.defaults'),
      String(u.calls), String(u.errors), remove];
  });
  return [pagesCard, frameSlot, card(t('tab.modules'), el('p', { class: 'hint', text: t('modules.usage_hint') }),
    table([t('col.plugin'), t('col.version'), t('col.state'), t('col.mandatory'), t('col.config'), t('col.calls'), t('col.errors'), t('col.actions')], rows, { id: 'modules-table' }))];
}

// ----- vendor: key, bundle submission, versions, activations -----

async function viewSubmit() {
  const key = el('input', { id: 'vendor-key', type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const register = actionButton(t('vendor.key_submit'), async () => {
    const r = await api('POST', '/api/v1/vendor/keys', { public_key: key.value.trim() });
    say(t('vendor.key_done', { key: r.key_id }), 'ok');
  }, { id: 'vendor-key-submit' });
  const file = el('input', { id: 'bundle-file', type: 'file', accept: '.vtpkg,.json,application/json' });
  const result = el('div', { id: 'bundle-result' });
  const submit = actionButton(t('vendor.bundle_submit'), async () => {
    const f = file.files && file.files[0];
    if (!f) { say(t('vendor.bundle_none'), 'error'); file.focus(); return; }
    const text = await f.text();
    try {
      const r = await api('POST', '/api/v1/plugin-versions', text, true);
      say(t('vendor.bundle_done', { plugin: r.plugin, version: r.version }), 'ok');
      result.replaceChildren(checksTable(r.checks));
    } catch (e) {
      if (e instanceof ApiFailure && e.status === 422 && e.body?.checks) {
        const failed = e.body.checks.filter((c) => !c.passed && !c.skipped).map((c) => c.name).join(', ');
        say(t('vendor.bundle_failed', { checks: failed }), 'error');
        result.replaceChildren(checksTable(e.body.checks));
      } else if (e instanceof ApiFailure && e.status === 422) {
        say(t('vendor.bundle_unreadable', { why: e.message }), 'error');
      } else throw e;
    }
  }, { id: 'bundle-submit' });
  return [
    card(t('vendor.bundle'), field(t('vendor.bundle_label'), file, t('vendor.bundle_hint')), el('div', { class: 'row' }, submit), result),
    card(t('vendor.key'), field(t('vendor.key_label'), key), el('div', { class: 'row' }, register)),
  ];
}

// A check report is a list, or an object holding one (as stored).
const checkList = (c) => (Array.isArray(c) ? c : Array.isArray(c?.checks) ? c.checks : []);
const checksTable = (checks) => table([t('col.check'), t('col.result'), t('col.details')],
  checkList(checks).map((c) => [c.name, pill(c.skipped ? '—' : c.passed ? '✓' : '✗', c.passed ? 'pass' : 'fail'), c.detail || '']));

async function viewVersions() {
  const { versions } = await api('GET', '/api/v1/plugin-versions');
  if (!versions.length) return card(t('tab.versions'), el('p', { text: t('queue.empty') }));
  return card(t('tab.versions'), table([t('col.plugin'), t('col.version'), t('col.state'), t('col.submitted'), t('col.actions')],
    versions.map((v) => [v.plugin, v.version, statePill(v.state), when(v.submitted_at),
      el('button', { type: 'button', class: 'secondary', 'data-version': v.id, onclick: () => show(() => viewVersion(v.id)) }, `${t('open')} ${v.plugin} ${v.version}`)]),
    { id: 'versions-table' }));
}

async function viewVendorActivations() {
  const { activations } = await api('GET', '/api/v1/vendor/activations');
  if (!activations.length) return card(t('tab.activations'), el('p', { text: t('vendor.no_activations') }));
  return card(t('tab.activations'), el('p', { class: 'hint', text: t('modules.usage_hint') }),
    table([t('col.hospital'), t('col.plugin'), t('col.version'), t('col.state'), t('col.calls'), t('col.errors')],
      activations.map((a) => [a.hospital_name || a.hospital, a.plugin, a.version, stateText(a.state) || a.state, String(a.calls), String(a.errors)]),
      { id: 'vendor-activations' }));
}

// ----- citizen: access log, consents -----

// A FHIR resource in a few words: what, when, result.
function recordSummary(r) {
  const cc = (c) => c?.text || c?.coding?.[0]?.display || c?.coding?.[0]?.code || '';
  const qty = (q) => (q ? `${q.value ?? ''} ${q.unit || q.code || ''}`.trim() : '');
  switch (r.resourceType) {
    case 'Patient': {
      const n = r.name?.[0];
      return [n?.text || [n?.family, ...(n?.given || [])].filter(Boolean).join(' '), r.birthDate].filter(Boolean).join(' · ');
    }
    case 'Observation': return [cc(r.code), qty(r.valueQuantity) || r.valueString || cc(r.valueCodeableConcept)].filter(Boolean).join(': ');
    case 'DiagnosticReport': return [cc(r.code), r.conclusion].filter(Boolean).join(': ');
    case 'MedicationRequest': return [cc(r.medicationCodeableConcept), r.dosageInstruction?.[0]?.text].filter(Boolean).join(' · ');
    case 'Encounter': return [r.class?.display || r.class?.code, cc(r.type?.[0]), r.status].filter(Boolean).join(' · ');
    case 'ImagingStudy': return [r.description, (r.modality || []).map((m) => m.code).join(', ')].filter(Boolean).join(' · ');
    case 'Communication': return r.payload?.[0]?.contentString || '';
    default: return cc(r.code) || r.description || r.status || '';
  }
}

const recordDate = (r) => r.effectiveDateTime || r.issued || r.period?.start || r.started || r.authoredOn
  || r.sent || r.start || r.meta?.lastUpdated || '';

async function viewRecords() {
  const { hospitals, truncated } = await api('GET', '/api/v1/me/records');
  if (!hospitals.length) return card(t('tab.records'), el('p', { text: t('citizen.records_empty') }));
  const cards = hospitals.map((h) => card(h.hospital_name || h.hospital,
    table([t('col.record'), t('col.when'), t('col.details')],
      h.resources.map((r) => [t(`fhir.${r.resourceType}`) === `fhir.${r.resourceType}` ? r.resourceType : t(`fhir.${r.resourceType}`),
        recordDate(r) ? when(Date.parse(recordDate(r))) : '', recordSummary(r)]),
      { 'data-hospital': h.hospital, class: 'records-table' }),
    h.truncated ? el('p', { class: 'hint', text: t('citizen.records_more') }) : null,
    h.error ? el('p', { class: 'hint', 'data-error': 'true', text: t('citizen.records_error') }) : null));
  return [el('p', { class: 'hint', text: t('citizen.records_hint') }), ...cards,
    truncated ? el('p', { class: 'hint', text: t('citizen.records_more') }) : null].filter(Boolean);
}

async function viewAccess() {
  const { entries } = await api('GET', '/api/v1/me/record-access');
  if (!entries.length) return card(t('tab.access'), el('p', { text: t('citizen.access_empty') }));
  return card(t('tab.access'), table(
    [t('col.when'), t('col.who'), t('col.hospital'), t('col.plugin'), t('col.purpose'), t('col.records'), t('col.basis')],
    entries.map((e) => [when(Date.parse(e.at)), e.reader_name || e.reader, e.reader_hospital_name || e.reader_hospital || '', e.plugin || '',
      dict[lang][`purpose.${e.purpose}`] || e.purpose_in_words || e.purpose, (e.resources || []).join(', '), basisText(e.basis)]),
    { id: 'access-table' }));
}

// Why a read was allowed: the own hospital, a consent or a consultation.
function basisText(basis) {
  const [kind, id] = String(basis).split(/:(.*)/);
  const words = t(`basis.${kind}`);
  return words === `basis.${kind}` ? basis : id ? `${words} (${id})` : words;
}

async function viewConsents() {
  const [{ consents }, { hospitals }] = await Promise.all([
    api('GET', '/api/v1/me/consents'),
    fetch('/api/v1/hospitals').then((r) => r.json()),
  ]);
  const name = (id) => hospitals.find((h) => h.id === id)?.name || id;
  const grantee = el('select', { id: 'consent-grantee' }, hospitals.map((h) => el('option', { value: h.id }, h.name)));
  const source = el('select', { id: 'consent-source' }, el('option', { value: '' }, t('citizen.any_source')),
    hospitals.map((h) => el('option', { value: h.id }, h.name)));
  const purposes = ['treatment', 'payment', 'public-health'].map((p) => {
    const id = `purpose-${p}`;
    return el('label', { class: 'inline', for: id }, el('input', { type: 'checkbox', id, value: p, checked: p === 'treatment' }), t(`purpose.${p}`));
  });
  const days = el('input', { id: 'consent-days', type: 'number', min: '1', max: '3650', inputmode: 'numeric' });
  const grant = actionButton(t('citizen.grant_submit'), async () => {
    const body = { grantee_hospital: grantee.value, purposes: purposes.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value) };
    if (source.value) body.source_hospital = source.value;
    if (days.value.trim()) body.expires_in_days = Number(days.value);
    await api('POST', '/api/v1/me/consents', body);
    await show(viewConsents);
    say(t('citizen.granted'), 'ok');
  }, { id: 'consent-grant' });
  const rows = consents.map((c) => {
    const to = c.provision?.actor?.[0]?.reference?.identifier?.value;
    const purposesText = (c.provision?.purpose || []).map((p) => p.display || p.code).join(', ');
    const revoke = c.status === 'active' ? actionButton(t('citizen.revoke'), async () => {
      await api('DELETE', `/api/v1/me/consents/${encodeURIComponent(c.id)}`);
      await show(viewConsents);
      say(t('citizen.revoked'), 'ok');
    }, { class: 'danger', 'data-consent': c.id }) : '';
    return [t('citizen.consent_to', { hospital: name(to) }), purposesText, c.status, c.provision?.period?.end || '', revoke];
  });
  return [
    card(t('tab.consents'), rows.length
      ? table([t('col.hospital'), t('col.purpose'), t('col.state'), t('col.when'), t('col.actions')], rows, { id: 'consents-table' })
      : el('p', { text: t('citizen.consents_empty') })),
    card(t('citizen.grant'), field(t('citizen.grantee'), grantee), field(t('citizen.source'), source),
      el('fieldset', {}, el('legend', { text: t('citizen.purposes') }), purposes), field(t('citizen.days'), days),
      el('div', { class: 'row' }, grant)),
  ];
}

async function viewPayments() {
  const { payments } = await api('GET', '/api/v1/me/payments');
  if (!payments.length) return card(t('tab.payments'), el('p', { text: t('citizen.payments_empty') }));
  const frameSlot = el('div', { id: 'frame-slot' });
  const money = new Intl.NumberFormat(lang === 'vi' ? 'vi-VN' : 'en-GB', { style: 'currency', currency: 'VND' });
  const rows = payments.map((p) => [when(p.created_at), p.hospital_name || p.hospital, p.plugin, p.purpose,
    money.format(p.amount), t(`pay.${p.state}`) === `pay.${p.state}` ? p.state : t(`pay.${p.state}`),
    p.refunded ? money.format(p.refunded) : '',
    p.order_path ? actionButton(`${t('citizen.order')} ${p.purpose}`, async () => {
      await openFrame(frameSlot, p.hospital, p.plugin, p.order_path);
    }, { class: 'secondary', 'data-order': p.id }) : '']);
  return [card(t('tab.payments'), table([t('col.when'), t('col.hospital'), t('col.plugin'), t('col.purpose'),
    t('col.amount'), t('col.state'), t('col.refunded'), t('col.actions')], rows, { id: 'payments-table' })), frameSlot];
}

// Open a plugin's page in a sandboxed frame (ADR 0011): a ticket for this
// person, hospital and plugin; no allow-same-origin, so the page gets an
// opaque origin and never the console's token.
async function openFrame(slot, hospital, plugin, path, page = null) {
  const r = await api('POST', '/api/v1/console/plugin-frames', { hospital, plugin });
  let sub = (path || '/').trim().replace(/^\/+/, '');
  // A fragment (state a page hands to its next page) stays after the query.
  const cut = sub.indexOf('#');
  const fragment = cut >= 0 ? sub.slice(cut) : '';
  if (cut >= 0) sub = sub.slice(0, cut);
  // A declared page follows the console's language (`lang` in its URL).
  if (page) sub += `${sub.includes('?') ? '&' : '?'}lang=${lang}`;
  sub += fragment;
  const heading = page ? t('pages.frame', { module: page.module, page: page.title }) : t('pract.frame', { plugin });
  const frame = el('iframe', {
    class: 'frame', id: 'plugin-frame', title: heading,
    sandbox: 'allow-scripts allow-forms allow-popups', referrerpolicy: 'no-referrer',
    src: r.url + sub, 'data-plugin': plugin, 'data-page': page ? path : null,
  });
  slot.replaceChildren(el('h2', { text: heading }), frame, el('div', { id: 'room-slot' }));
  framed = { frame, slot, hospital, plugin, page };
  say(page ? t('pages.opened', { module: page.module, page: page.title }) : t('pract.opened', { plugin }), 'ok');
  frame.focus();
}

// What a plugin page may ask of the console (postMessage from its frame;
// the frame has an opaque origin, so the message's source is checked, not
// its origin): `vth.hospitals` (the network's hospitals by name and tier,
// answered to the frame), `vth.open` (the same plugin's page at another
// hospital, e.g. the upper hospital's copy of a network plugin: a ticket for
// that copy, as a notification's link gets) and `vth.room` (a consultation
// room page of this server, with the join token the page fetched).
let framed = null;

window.addEventListener('message', async (e) => {
  const f = framed;
  const m = e.data;
  if (!f || !f.frame.isConnected || e.source !== f.frame.contentWindow || !m || typeof m !== 'object') return;
  try {
    if (m.type === 'vth.hospitals') {
      const { hospitals } = await api('GET', '/api/v1/hospitals');
      const list = hospitals.map((h) => ({ id: h.id, name: h.name, tier: h.tier, province: h.province }));
      e.source.postMessage({ type: 'vth.hospitals', hospitals: list }, '*');
    } else if (m.type === 'vth.open' && typeof m.hospital === 'string' && typeof m.path === 'string'
      && /^\/ui\/[A-Za-z0-9._-]+\.html([?#].*)?$/.test(m.path)) {
      const title = typeof m.title === 'string' ? m.title.slice(0, 200) : '';
      await openFrame(f.slot, m.hospital, f.plugin, m.path, { module: f.page?.module || f.plugin, title: title || f.page?.title || '' });
    } else if (m.type === 'vth.room' && typeof m.url === 'string'
      && /^\/rooms\/[A-Za-z0-9._-]+(\?lang=(vi|en))?#token=[A-Za-z0-9._~+/=-]+$/.test(m.url)) {
      // Rooms are never framed (clickjacking): their own tab, opened with the click
      // the person just made in the page; a link too, to reopen it or if the
      // browser blocked the tab.
      const tab = window.open(m.url, '_blank');
      if (tab) tab.opener = null;
      const slot = $('room-slot');
      if (slot) {
        slot.replaceChildren(el('p', { class: 'row' }, el('a', {
          class: 'button', id: 'room-link', href: m.url, target: '_blank', rel: 'noopener noreferrer', text: t('pages.room_link'),
        })));
      }
      say(t(tab ? 'pages.room_opened' : 'pages.room_blocked'), tab ? 'ok' : 'info');
    }
  } catch (err) {
    say(errorText(err), 'error');
  }
});

// ----- plugin pages: each active module's declared pages, as a menu -----

// The page last opened from a menu, reopened when the view is redrawn
// (e.g. in the other language); forgotten when another tab is chosen.
let openedPage = null;

const byLang = (d) => (d ? d[lang] || d.vi || '' : '');

// The menu of one module's pages; a click opens the page in `slot`.
function pageMenu(m, hospital, slot) {
  const name = byLang(m.name);
  return el('nav', { 'aria-label': t('pages.menu', { module: name }), class: 'page-menu', 'data-menu': m.plugin },
    el('ul', { class: 'plain menu' }, m.pages.map((p) => {
      const title = byLang(p.title);
      const b = actionButton(title, async () => {
        openedPage = { plugin: m.plugin, path: p.path };
        for (const other of document.querySelectorAll('button[data-page]')) other.removeAttribute('aria-current');
        b.setAttribute('aria-current', 'page');
        await openFrame(slot, hospital, m.plugin, p.path, { module: name, title });
      }, {
        class: 'secondary', 'data-page': `${m.plugin}${p.path}`,
        'aria-current': openedPage?.plugin === m.plugin && openedPage?.path === p.path ? 'page' : null,
      });
      return el('li', {}, b);
    })));
}

// Reopen the page last opened from a menu, when this view lists it.
async function reopenPage(modules, hospital, slot) {
  const o = openedPage;
  const m = o && modules.find((x) => x.plugin === o.plugin);
  const p = m && m.pages.find((x) => x.path === o.path);
  if (!p) return;
  await openFrame(slot, hospital, m.plugin, p.path, { module: byLang(m.name), title: byLang(p.title) });
}

// ----- practitioner: the hospital's modules, a plugin's pages in a sandbox -----

async function viewWorkspace() {
  const h = me.hospital_id;
  const { modules } = await api('GET', '/api/v1/me/plugin-pages');
  if (!modules.length) return card(t('tab.workspace'), el('p', { text: t('pract.empty') }));
  const frameSlot = el('div', { id: 'frame-slot' });
  const cards = modules.map((m) => {
    const head = [el('h2', { text: byLang(m.name) }), el('p', { class: 'hint', text: byLang(m.description) })];
    if (m.pages.length) {
      return el('section', { class: 'card', 'data-plugin': m.plugin }, head, pageMenu(m, h, frameSlot));
    }
    if (m.declares_pages) {
      return el('section', { class: 'card', 'data-plugin': m.plugin }, head, el('p', { class: 'hint', text: t('pages.none') }));
    }
    // A module that declares no page yet (an older manifest): one of its
    // paths can still be opened.
    const path = el('input', { id: `path-${m.plugin}`, type: 'text', value: '/', spellcheck: 'false' });
    const open = actionButton(`${t('pract.open')} ${byLang(m.name)}`, async () => {
      openedPage = null;
      await openFrame(frameSlot, h, m.plugin, path.value);
    }, { 'data-open': m.plugin, class: 'secondary' });
    return el('section', { class: 'card', 'data-plugin': m.plugin }, head,
      el('p', { class: 'hint', text: t('pages.legacy') }), field(t('pract.path'), path), el('div', { class: 'row' }, open));
  });
  await reopenPage(modules, h, frameSlot);
  return [el('div', { class: 'grid', id: 'modules-menu' }, cards), frameSlot];
}

// ----- notifications: listed, and pushed as they happen -----

let unread = 0;
// The live stream's AbortController, while one runs.
let feed = null;
let pushed = 0;

function setUnread(n) {
  unread = Math.max(0, n || 0);
  const b = $('tab-notices');
  if (b) b.textContent = unread ? `${t('tab.notices')} (${unread})` : t('tab.notices');
}

// `/hospitals/{h}/plugins/{p}/rest` → [h, p, rest], for opening in a frame.
function linkTarget(link) {
  const m = typeof link === 'string' && link.match(/^\/hospitals\/([^/]+)\/plugins\/([^/]+)(\/.*)?$/);
  return m ? [decodeURIComponent(m[1]), decodeURIComponent(m[2]), m[3] || '/'] : null;
}

// Hospitals and modules by name, for notifications that carry their ids.
const names = { hospitals: new Map(), modules: new Map(), loaded: false };

async function loadNames() {
  if (names.loaded) return;
  names.loaded = true;
  try {
    const { hospitals } = await (await fetch('/api/v1/hospitals')).json();
    for (const h of hospitals || []) names.hospitals.set(h.id, h.name);
  } catch (_) { /* the ids' places stay empty rather than show ids */ }
  if ((me.roles || []).some((r) => r === 'practitioner' || r === 'hospital-admin')) {
    try {
      const { modules } = await api('GET', '/api/v1/me/plugin-pages');
      for (const m of modules || []) names.modules.set(m.plugin, m.name);
    } catch (_) { /* as above */ }
  }
}

function noticeItem(n) {
  const target = linkTarget(n.link);
  const module = names.modules.has(n.plugin) ? byLang(names.modules.get(n.plugin)) : t('notices.module');
  // Opened as a page: the plugin answers a browser with its page (in the
  // console's language) where it has one, with JSON otherwise.
  const open = target ? actionButton(t('notices.open'), async () => {
    await openFrame($('frame-slot'), ...target, { module, title: n.title });
  }, { class: 'secondary', 'data-open-notice': String(n.seq) }) : null;
  const meta = [module, names.hospitals.get(n.hospital), when(Date.parse(n.created_at))].filter(Boolean);
  return el('li', { 'data-seq': String(n.seq), 'data-topic': n.topic, 'data-read': String(!!n.read), class: n.read ? '' : 'unread' },
    el('strong', { text: n.title }),
    el('div', { class: 'muted', text: meta.join(' · ') }),
    open ? el('div', { class: 'row' }, open) : null);
}

async function viewNotices() {
  await loadNames();
  const r = await api('GET', '/api/v1/me/notifications?newest=200');
  setUnread(r.unread);
  const items = [...r.notifications].reverse();
  const list = el('ul', { class: 'notices', id: 'notices', 'aria-live': 'polite' }, ...items.map(noticeItem));
  const newest = items.length ? items[0].seq : 0;
  const markAll = actionButton(t('notices.markRead'), async () => {
    const top = Number(list.firstElementChild?.dataset.seq || newest);
    const res = await api('POST', '/api/v1/me/notifications/read', { upto: top });
    setUnread(res.unread);
    for (const li of list.querySelectorAll('li')) { li.dataset.read = 'true'; li.classList.remove('unread'); }
    say(t('notices.marked'), 'ok');
  }, { id: 'notices-read', class: 'secondary' });
  return [
    card(t('tab.notices'), el('p', { class: 'muted', text: t('notices.live') }),
      list, items.length ? null : el('p', { id: 'notices-empty', text: t('notices.empty') }),
      el('div', { class: 'row' }, markAll)),
    el('div', { id: 'frame-slot' }),
  ];
}

// A notification pushed by the stream.
function onNotice(n) {
  pushed += 1;
  setUnread(unread + 1);
  say(t('notices.new', { title: n.title }), 'info');
  const list = $('notices');
  if (list && !list.querySelector(`li[data-seq="${n.seq}"]`)) {
    $('notices-empty')?.remove();
    list.prepend(noticeItem(n));
  }
}

// Follow `/api/v1/me/notifications/stream` with fetch (EventSource cannot
// send the bearer token), from the newest one already there; reconnect
// with `after` when the server ends the stream or the network drops.
async function follow() {
  const ctl = new AbortController();
  feed = ctl;
  let after = 0;
  try {
    after = (await api('GET', '/api/v1/me/notifications?newest=1')).newest_seq || 0;
  } catch { /* the stream starts from the beginning then */ }
  while (!ctl.signal.aborted) {
    const token = store.getItem('vth.token');
    if (!token) break;
    try {
      const resp = await fetch(`/api/v1/me/notifications/stream?after=${after}`, {
        headers: { authorization: `Bearer ${token}` }, signal: ctl.signal,
      });
      if (resp.status === 401) {
        if (!(await refreshSession())) break;
        continue;
      }
      if (!resp.ok || !resp.body) throw new Error(String(resp.status));
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const lines = buf.slice(0, cut).split('\n');
          buf = buf.slice(cut + 2);
          if (!lines.includes('event: notification')) continue;
          const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
          try {
            const n = JSON.parse(data);
            after = Math.max(after, n.seq);
            onNotice(n);
          } catch { /* a malformed event is skipped */ }
        }
      }
    } catch {
      if (ctl.signal.aborted) break;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  if (feed === ctl) feed = null;
}

// ----- ministry: the network register (facilities, vendors) -----

const facFilter = { q: '', tier: '', province: '', status: '', offset: 0 };
const FAC_PAGE = 50;
const facStatusPill = (s) => pill(t(`fac.status.${s}`), s === 'active' ? 'pass' : 'fail');

// Suspend (with a reason) or reactivate, after a confirmation naming it.
function confirmPanel(slot, { title, needReason, confirmText, run }) {
  const reason = el('textarea', { id: nextId('reason'), required: needReason || null });
  const ok = actionButton(confirmText, async () => {
    if (needReason && !reason.value.trim()) { say(t('review.need_reason'), 'error'); reason.focus(); return; }
    await run(reason.value.trim());
  }, { class: needReason ? 'danger' : null, 'data-confirm': 'yes' });
  const cancel = el('button', { type: 'button', class: 'secondary', onclick: () => slot.replaceChildren() }, t('fac.cancel'));
  slot.replaceChildren(el('div', { class: 'confirm', role: 'group', 'aria-label': title },
    el('p', { text: title }),
    needReason ? field(t('review.reason'), reason) : null,
    el('div', { class: 'row' }, ok, cancel)));
  (needReason ? reason : ok).focus();
}

// A dry run's or an import's counts as one sentence.
const importCounts = (r) => t(r.dry_run ? 'fac.import.would' : 'fac.import.did',
  { created: r.created, updated: r.updated, unchanged: r.unchanged });

function importCard() {
  const file = el('input', { type: 'file', id: 'fac-import-file', accept: '.csv,text/csv' });
  const out = el('div', { id: 'fac-import-result', 'aria-live': 'polite' });
  let text = null;
  const progress = (busy) => out.replaceChildren(el('p', { class: 'hint', text: busy }));
  const showErrors = (e) => {
    const errors = e instanceof ApiFailure ? e.body?.error?.details?.errors : null;
    if (!errors) throw e;
    out.replaceChildren(el('p', { class: 'msg error', text: t('fac.import.bad', { n: errors.length }) }),
      el('ul', { id: 'fac-import-errors' }, errors.map((r) => el('li', { text: t('fac.import.line', { line: r.line, message: (lang === 'vi' && r.message_vi) || r.message }) }))));
  };
  const changesList = (r) => el('ul', { class: 'plain', id: 'fac-import-changes' }, r.changes.map((c) =>
    el('li', { text: t(`fac.import.change.${c.action}`, { line: c.line, code: c.facility_code, name: c.name, fields: (c.fields || []).map((f) => t(`fac.field.${f}`)).join(', ') }) })));
  const check = actionButton(t('fac.import.check'), async () => {
    const f = file.files[0];
    if (!f) { say(t('fac.import.choose'), 'error'); file.focus(); return; }
    text = await f.text();
    progress(t('fac.import.checking'));
    let r;
    try {
      r = await api('POST', '/api/v1/network/facilities/import?dry_run=true', { csv: text });
    } catch (e) { showErrors(e); return; }
    const apply = actionButton(t('fac.import.apply'), async () => {
      progress(t('fac.import.running'));
      try {
        const done = await api('POST', '/api/v1/network/facilities/import?dry_run=false', { csv: text });
        facFilter.offset = 0;
        await show(viewFacilities);
        say(importCounts(done), 'ok');
      } catch (e) { showErrors(e); }
    }, { id: 'fac-import-apply' });
    out.replaceChildren(...[el('p', { id: 'fac-import-summary', text: importCounts(r) }),
      r.changes.length ? changesList(r) : null,
      r.created + r.updated > r.changes.length ? el('p', { class: 'hint', text: t('fac.import.more', { n: r.created + r.updated - r.changes.length }) }) : null,
      r.created + r.updated ? el('div', { class: 'row' }, apply) : el('p', { text: t('fac.import.nothing') })].filter(Boolean));
  }, { id: 'fac-import-check' });
  return card(t('fac.import.title'),
    el('p', { class: 'hint', text: t('fac.import.hint') }),
    field(t('fac.import.file'), file), el('div', { class: 'row' }, check), out);
}

async function viewFacilities() {
  const q = new URLSearchParams({ limit: String(FAC_PAGE), offset: String(facFilter.offset) });
  for (const k of ['q', 'tier', 'province', 'status']) if (facFilter[k]) q.set(k, facFilter[k]);
  const { facilities, total } = await api('GET', `/api/v1/network/facilities?${q}`);
  const operator = has('operator');
  const inputs = {
    q: el('input', { id: 'fac-q', type: 'search', value: facFilter.q }),
    tier: el('select', { id: 'fac-tier' }, el('option', { value: '', text: t('fac.any') }),
      ['central', 'provincial', 'district', 'commune'].map((v) => el('option', { value: v, text: t(`tier.${v}`), selected: facFilter.tier === v }))),
    province: el('input', { id: 'fac-province', value: facFilter.province }),
    status: el('select', { id: 'fac-status' }, el('option', { value: '', text: t('fac.any') }),
      ['active', 'suspended'].map((v) => el('option', { value: v, text: t(`fac.status.${v}`), selected: facFilter.status === v }))),
  };
  const search = actionButton(t('audit.search'), async () => {
    for (const k of Object.keys(inputs)) facFilter[k] = inputs[k].value.trim();
    facFilter.offset = 0;
    await show(viewFacilities);
  }, { id: 'fac-search' });
  const slot = el('div', { id: 'fac-confirm' });
  const act = (f) => {
    if (!operator) return '';
    // Suspension goes by the BHYT code; a hospital from before the register gets one by import.
    if (!f.facility_code) return el('span', { class: 'hint', text: t('fac.no_code') });
    const suspend = f.status === 'active';
    const label = t(suspend ? 'fac.suspend' : 'fac.reactivate', { name: f.name });
    return el('button', {
      type: 'button', class: suspend ? 'danger' : 'secondary', 'data-facility': f.facility_code,
      onclick: () => confirmPanel(slot, {
        title: t(suspend ? 'fac.suspend.confirm' : 'fac.reactivate.confirm', { name: f.name }),
        needReason: suspend,
        confirmText: label,
        run: async (reason) => {
          const verb = suspend ? 'suspend' : 'reactivate';
          await api('POST', `/api/v1/network/facilities/${encodeURIComponent(f.facility_code)}/${verb}`, reason ? { reason } : {});
          await show(viewFacilities);
          say(t(suspend ? 'fac.suspended' : 'fac.reactivated', { name: f.name }), 'ok');
        },
      }),
    }, label);
  };
  const rows = facilities.map((f) => [
    f.name, f.facility_code || '', t(`tier.${f.tier}`), f.level ? t(`level.${f.level}`) : '',
    f.province, f.commune || '', f.parent_name || '', f.ownership ? t(`ownership.${f.ownership}`) : '',
    facStatusPill(f.status), act(f),
  ]);
  const page = (delta) => async () => { facFilter.offset = Math.max(0, facFilter.offset + delta); await show(viewFacilities); };
  const pager = el('div', { class: 'row' },
    el('p', { class: 'hint', id: 'fac-count', text: t('fac.count', { from: total ? facFilter.offset + 1 : 0, to: facFilter.offset + facilities.length, total }) }),
    facFilter.offset > 0 ? actionButton(t('fac.prev'), page(-FAC_PAGE), { class: 'secondary' }) : null,
    facFilter.offset + facilities.length < total ? actionButton(t('fac.next'), page(FAC_PAGE), { class: 'secondary', id: 'fac-next' }) : null);
  const heads = [t('col.hospital'), t('fac.code'), t('col.tier'), t('fac.level'), t('col.province'), t('fac.commune'), t('fac.parent'), t('fac.ownership'), t('col.state'), t('col.actions')];
  return [
    card(t('fac.filters'), el('div', { class: 'grid' },
      field(t('fac.q'), inputs.q), field(t('col.tier'), inputs.tier), field(t('col.province'), inputs.province, t('fac.province.hint')), field(t('col.state'), inputs.status)),
    el('div', { class: 'row' }, search)),
    operator ? importCard() : null,
    card(t('tab.facilities'), slot, rows.length ? table(heads, rows, { id: 'facility-table' }) : el('p', { text: t('fac.empty') }), pager),
  ];
}

async function viewVendors() {
  const { vendors } = await api('GET', '/api/v1/network/vendors');
  const operator = has('operator');
  const slot = el('div', { id: 'vendor-confirm' });
  const act = (v) => {
    if (!operator) return '';
    const suspend = v.status === 'active';
    const label = t(suspend ? 'fac.suspend' : 'fac.reactivate', { name: v.name });
    return el('button', {
      type: 'button', class: suspend ? 'danger' : 'secondary', 'data-vendor': v.id,
      onclick: () => confirmPanel(slot, {
        title: t(suspend ? 'vendor.suspend.confirm' : 'fac.reactivate.confirm', { name: v.name }),
        needReason: suspend,
        confirmText: label,
        run: async (reason) => {
          await api('POST', `/api/v1/network/vendors/${encodeURIComponent(v.id)}/${suspend ? 'suspend' : 'reactivate'}`, reason ? { reason } : {});
          await show(viewVendors);
          say(t(suspend ? 'fac.suspended' : 'fac.reactivated', { name: v.name }), 'ok');
        },
      }),
    }, label);
  };
  const once = el('div', { id: 'vendor-once' });
  // The ministry invites a vendor's first admin; the admin invites colleagues.
  const inviteAdmin = (v) => {
    const username = el('input', { id: 'vendor-admin-username', autocomplete: 'off', required: true });
    const name = el('input', { id: 'vendor-admin-name', autocomplete: 'off', required: true });
    const email = el('input', { id: 'vendor-admin-email', type: 'email', autocomplete: 'off' });
    const send = actionButton(t('vendor.invite.send'), async () => {
      const r = await api('POST', `/api/v1/vendors/${encodeURIComponent(v.id)}/users`, {
        username: username.value.trim(), display_name: name.value.trim(), email: email.value.trim() || null, admin: true,
      });
      slot.replaceChildren();
      once.replaceChildren(invitationBox(r.user.display_name, r.invitation));
    }, { id: 'vendor-admin-invite' });
    slot.replaceChildren(card(t('vendor.invite.title', { name: v.name }), el('div', { class: 'grid' },
      field(t('staff.username'), username), field(t('staff.name'), name), field(t('staff.email'), email)),
    el('div', { class: 'row' }, send,
      el('button', { type: 'button', class: 'secondary', onclick: () => slot.replaceChildren() }, t('vendor.invite.cancel')))));
    username.focus();
  };
  const actions = (v) => (operator ? el('div', { class: 'row' }, act(v),
    v.status === 'active' ? el('button', {
      type: 'button', class: 'secondary', 'data-vendor-invite': v.id, onclick: () => inviteAdmin(v),
    }, t('vendor.invite', { name: v.name })) : null) : '');
  const rows = vendors.map((v) => [v.name, v.tax_code || t('vendor.no_tax_code'),
    [v.contact_name, v.contact_email, v.contact_phone].filter(Boolean).join(' · '), facStatusPill(v.status), actions(v)]);
  const cards = [once, card(t('tab.vendors'), slot, rows.length
    ? table([t('col.vendor'), t('vendor.tax_code'), t('vendor.contact'), t('col.state'), t('col.actions')], rows, { id: 'vendor-table' })
    : el('p', { text: t('vendor.empty') }))];
  if (operator) {
    const inputs = {
      name: el('input', { id: 'vendor-name', required: true }),
      id: el('input', { id: 'vendor-id', required: true, pattern: '[a-z0-9][a-z0-9-]*' }),
      tax_code: el('input', { id: 'vendor-tax', required: true, inputmode: 'numeric' }),
      contact_name: el('input', { id: 'vendor-contact' }),
      contact_email: el('input', { id: 'vendor-email', type: 'email' }),
      contact_phone: el('input', { id: 'vendor-phone', type: 'tel' }),
    };
    const register = actionButton(t('vendor.register'), async () => {
      const body = Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value.trim()]));
      const { vendor } = await api('POST', '/api/v1/network/vendors', body);
      await show(viewVendors);
      say(t('vendor.registered', { name: vendor.name }), 'ok');
    }, { id: 'vendor-register' });
    cards.push(card(t('vendor.register'), el('div', { class: 'grid' },
      field(t('vendor.name'), inputs.name), field(t('vendor.id'), inputs.id, t('vendor.id.hint')),
      field(t('vendor.tax_code'), inputs.tax_code, t('vendor.tax_code.hint')), field(t('vendor.contact_name'), inputs.contact_name),
      field(t('vendor.email'), inputs.contact_email), field(t('vendor.phone'), inputs.contact_phone)),
    el('div', { class: 'row' }, register)));
  }
  return cards;
}

// Registered, active and connected facilities per tier and province.
async function networkSummaryCards() {
  const s = await api('GET', '/api/v1/network/summary');
  const pct = (c) => (c.public_registered ? `${Math.round((100 * c.public_connected) / c.public_registered)}%` : '–');
  const cols = [t('net.registered'), t('net.active'), t('net.connected'), t('net.public_connected')];
  const nums = (c) => [String(c.registered), String(c.active), String(c.connected), `${c.public_connected}/${c.public_registered} (${pct(c)})`];
  return [
    card(t('net.register'), el('p', { class: 'hint', text: t('net.connected.hint') }),
      table([t('col.tier'), ...cols], [...s.tiers.map((r) => [t(`tier.${r.tier}`), ...nums(r.counts)]), [t('net.total'), ...nums(s.total)]], { id: 'register-tiers' })),
    card(t('net.register.provinces'),
      table([t('col.province'), ...cols], s.provinces.map((r) => [r.name, ...nums(r.counts)]), { id: 'register-provinces' })),
  ];
}

// ----- hospital admin: staff, service clients; practitioner directory -----

const STAFF_ROLES = ['practitioner', 'hospital-admin', 'pharmacist', 'assessor'];
let specialtyList = null;
const specialtyName = (s) => (lang === 'vi' ? s.name_vi : s.name_en);
async function specialtyCodes() {
  specialtyList ??= (await api('GET', '/api/v1/specialties')).specialties;
  return specialtyList;
}
const hospitalPath = (rest) => `/api/v1/hospitals/${encodeURIComponent(me.hospital_id)}/${rest}`;

// A confirmation naming what it does; `run` on yes.
function staffConfirm(slot, text, yes, run, danger = true) {
  const ok = actionButton(yes, run, { class: danger ? 'danger' : null, 'data-confirm': 'yes' });
  const cancel = el('button', { type: 'button', class: 'secondary', onclick: () => slot.replaceChildren() }, t('staff.cancel'));
  slot.replaceChildren(el('div', { class: 'confirm', role: 'group', 'aria-label': text },
    el('p', { text }), el('div', { class: 'row' }, ok, cancel)));
  ok.focus();
}

// A one-time value (an invitation link, a client secret) with a copy button.
function shownOnce(id, title, value, warning) {
  const out = el('output', { id, class: 'once', text: value });
  const copy = el('button', {
    type: 'button', class: 'secondary', 'data-copy': id,
    onclick: async () => {
      try { await navigator.clipboard.writeText(value); say(t('staff.copied'), 'ok'); } catch { say(t('staff.copy.failed'), 'error'); }
    },
  }, t('staff.copy'));
  return el('div', { class: 'msg ok shown-once', role: 'status' },
    el('p', {}, el('strong', { text: title })), out, ' ', copy,
    warning ? el('p', { class: 'hint', text: warning }) : null);
}

function invitationBox(name, inv) {
  return shownOnce('invitation-link', t('staff.invite.link', { name }), inv.url,
    t('staff.invite.expires', { when: when(inv.expires_at) }));
}

const roleChecks = (prefix, selected) => el('fieldset', { class: 'roles' },
  el('legend', { text: t('staff.roles') }),
  STAFF_ROLES.map((r) => el('label', { class: 'check' },
    el('input', { type: 'checkbox', name: `${prefix}-role`, value: r, id: `${prefix}-role-${r}`, checked: selected.includes(r) }),
    ` ${t(`role.${r}`)}`)));
const checkedRoles = (form, prefix) => [...form.querySelectorAll(`input[name="${prefix}-role"]:checked`)].map((i) => i.value);

function specialtySelect(id, list, selected) {
  return el('select', { id, multiple: true, size: '6' },
    list.map((s) => el('option', { value: s.code, selected: selected.includes(s.code) }, specialtyName(s))));
}
const selectedOptions = (select) => [...select.selectedOptions].map((o) => o.value);

function staffForm(list, out) {
  const inputs = {
    username: el('input', { id: 'staff-username', autocomplete: 'off', required: true }),
    display_name: el('input', { id: 'staff-name', autocomplete: 'off', required: true }),
    national_id: el('input', { id: 'staff-cccd', inputmode: 'numeric', maxlength: '12', autocomplete: 'off', required: true }),
    licence_number: el('input', { id: 'staff-licence', autocomplete: 'off' }),
    email: el('input', { id: 'staff-email', type: 'email', autocomplete: 'off' }),
  };
  const specs = specialtySelect('staff-specialties', list, []);
  const form = el('form', { id: 'staff-add', novalidate: true });
  const roles = roleChecks('staff-add', ['practitioner']);
  const add = actionButton(t('staff.add.submit'), async () => {
    const body = {
      username: inputs.username.value.trim(), display_name: inputs.display_name.value.trim(),
      national_id: inputs.national_id.value.trim(), licence_number: inputs.licence_number.value.trim() || null,
      specialties: selectedOptions(specs), roles: checkedRoles(form, 'staff-add'), email: inputs.email.value.trim() || null,
    };
    const r = await api('POST', hospitalPath('staff'), body);
    await show(viewStaff);
    say(t('staff.added', { name: r.user.display_name }), 'ok');
    $('staff-once').replaceChildren(invitationBox(r.user.display_name, r.invitation));
    $('invitation-link')?.focus();
  }, { id: 'staff-add-submit' });
  form.append(el('div', { class: 'grid' },
    field(t('staff.username'), inputs.username, t('staff.username.hint')),
    field(t('staff.name'), inputs.display_name),
    field(t('staff.cccd'), inputs.national_id, t('staff.cccd.hint')),
    field(t('staff.licence'), inputs.licence_number, t('staff.licence.hint')),
    field(t('staff.specialties'), specs, t('staff.specialties.hint')),
    field(t('staff.email'), inputs.email)),
  roles, el('div', { class: 'row' }, add));
  return card(t('staff.add'), form, out);
}

function staffEdit(slot, m, list) {
  const name = el('input', { id: 'staff-edit-name', value: m.display_name });
  const licence = el('input', { id: 'staff-edit-licence', value: m.licence_number || '' });
  const specs = specialtySelect('staff-edit-specialties', list, m.specialties.map((s) => s.code));
  const form = el('form', { id: 'staff-edit', novalidate: true });
  const save = actionButton(t('staff.save'), async () => {
    await api('PATCH', hospitalPath(`staff/${encodeURIComponent(m.id)}`), {
      display_name: name.value.trim(), licence_number: licence.value.trim(),
      specialties: selectedOptions(specs), roles: checkedRoles(form, 'staff-edit'),
    });
    await show(viewStaff);
    say(t('staff.saved', { name: name.value.trim() }), 'ok');
  }, { id: 'staff-edit-save' });
  form.append(el('h3', { text: t('staff.edit.title', { name: m.display_name }) }),
    el('div', { class: 'grid' }, field(t('staff.name'), name), field(t('staff.licence'), licence, t('staff.licence.hint')),
      field(t('staff.specialties'), specs)),
    roleChecks('staff-edit', m.roles), el('div', { class: 'row' }, save,
      el('button', { type: 'button', class: 'secondary', onclick: () => slot.replaceChildren() }, t('staff.cancel'))));
  slot.replaceChildren(form);
  name.focus();
}

function staffImportCard() {
  const file = el('input', { type: 'file', id: 'staff-import-file', accept: '.csv,text/csv' });
  const out = el('div', { id: 'staff-import-result', 'aria-live': 'polite' });
  const errors = (e) => {
    const lines = e instanceof ApiFailure ? e.body?.error?.lines : null;
    if (!lines) throw e;
    out.replaceChildren(el('p', { class: 'msg error', text: errorText(e) }),
      el('ul', { id: 'staff-import-errors' }, lines.map((l) => el('li', { text: t('staff.import.line', { line: l.line, message: l.message }) }))));
  };
  const check = actionButton(t('staff.import.check'), async () => {
    const f = file.files[0];
    if (!f) { say(t('staff.import.choose'), 'error'); file.focus(); return; }
    const csv = await f.text();
    let r;
    try { r = await api('POST', hospitalPath('staff/import?dry_run=true'), { csv }); } catch (e) { errors(e); return; }
    const apply = actionButton(t('staff.import.apply', { n: r.accounts.length }), async () => {
      let done;
      try { done = await api('POST', hospitalPath('staff/import?dry_run=false'), { csv }); } catch (e) { errors(e); return; }
      out.replaceChildren(el('p', { text: t('staff.import.done', { n: done.created.length }) }),
        el('ul', { class: 'plain', id: 'staff-import-links' }, done.created.map((c) => el('li', {},
          el('strong', { text: c.user.display_name }), ': ', el('code', { text: c.invitation.url })))));
    }, { id: 'staff-import-apply' });
    out.replaceChildren(el('p', { id: 'staff-import-summary', text: t('staff.import.would', { n: r.accounts.length }) }),
      el('ul', { class: 'plain' }, r.accounts.map((a) => el('li', { text: `${a.display_name} (${a.roles.map((x) => t(`role.${x}`)).join(', ')})` }))),
      el('div', { class: 'row' }, apply));
  }, { id: 'staff-import-check' });
  return card(t('staff.import.title'), el('p', { class: 'hint', text: t('staff.import.hint') }),
    field(t('staff.import.file'), file), el('div', { class: 'row' }, check), out);
}

async function viewStaff() {
  const [{ staff }, list] = await Promise.all([api('GET', hospitalPath('staff')), specialtyCodes()]);
  const once = el('div', { id: 'staff-once' });
  const slot = el('div', { id: 'staff-slot' });
  const actions = (m) => {
    if (m.id === me.subject) return '';
    const suspend = m.status === 'active';
    return el('div', { class: 'row' },
      el('button', { type: 'button', class: 'secondary', 'data-edit': m.username, onclick: () => staffEdit(slot, m, list) }, t('staff.edit', { name: m.display_name })),
      el('button', {
        type: 'button', class: suspend ? 'danger' : 'secondary', 'data-suspend': m.username,
        onclick: () => staffConfirm(slot, t(suspend ? 'staff.suspend.confirm' : 'staff.reactivate.confirm', { name: m.display_name }),
          t(suspend ? 'staff.suspend' : 'staff.reactivate', { name: m.display_name }), async () => {
            await api('POST', hospitalPath(`staff/${encodeURIComponent(m.id)}/${suspend ? 'suspend' : 'reactivate'}`));
            await show(viewStaff);
            say(t(suspend ? 'staff.suspended' : 'staff.reactivated', { name: m.display_name }), 'ok');
          }, suspend),
      }, t(suspend ? 'staff.suspend' : 'staff.reactivate', { name: m.display_name })),
      m.invitation_pending ? actionButton(t('staff.reinvite', { name: m.display_name }), async () => {
        const r = await api('POST', hospitalPath(`staff/${encodeURIComponent(m.id)}/invitation`));
        $('staff-once').replaceChildren(invitationBox(m.display_name, r.invitation));
      }, { class: 'secondary', 'data-reinvite': m.username }) : null);
  };
  const rows = staff.map((m) => [
    m.display_name, m.roles.map((r) => t(`role.${r}`)).join(', '),
    m.specialties.map(specialtyName).join(', '), m.licence_number || '',
    pill(t(`staff.status.${m.status}`), m.status === 'active' ? 'pass' : 'fail'),
    m.invitation_pending ? t('staff.pending') : when(m.last_login) || t('staff.never'),
    actions(m),
  ]);
  const heads = [t('staff.name'), t('staff.roles'), t('staff.specialties'), t('staff.licence'), t('col.state'), t('staff.last_login'), t('col.actions')];
  return [
    once,
    card(t('tab.staff'), slot, rows.length ? table(heads, rows, { id: 'staff-table' }) : el('p', { text: t('staff.empty') })),
    staffForm(list, null),
    staffImportCard(),
  ];
}

const clientState = (c) => {
  if (c.revoked_at) return pill(t('clients.revoked'), 'fail');
  if (c.previous_secret_expires_at && c.previous_secret_expires_at > Date.now()) return pill(t('clients.grace', { when: when(c.previous_secret_expires_at) }), 'state-submitted');
  return pill(t('clients.active'), 'pass');
};

async function viewClients() {
  const { clients } = await api('GET', hospitalPath('clients'));
  const once = el('div', { id: 'client-once' });
  const slot = el('div', { id: 'client-slot' });
  const secretBox = (name, r) => shownOnce('client-secret', t('clients.secret.title', { name }),
    `client_id=${r.client_id}\nclient_secret=${r.client_secret}`, t('clients.secret.warning'));
  const actions = (c) => (c.revoked_at ? '' : el('div', { class: 'row' },
    el('button', {
      type: 'button', class: 'secondary', 'data-rotate': c.name,
      onclick: () => staffConfirm(slot, t('clients.rotate.confirm', { name: c.name }), t('clients.rotate', { name: c.name }), async () => {
        const r = await api('POST', hospitalPath(`clients/${encodeURIComponent(c.client_id)}/rotate`), { grace_secs: 86400 });
        await show(viewClients);
        $('client-once').replaceChildren(secretBox(c.name, r));
      }, false),
    }, t('clients.rotate', { name: c.name })),
    el('button', {
      type: 'button', class: 'danger', 'data-revoke': c.name,
      onclick: () => staffConfirm(slot, t('clients.revoke.confirm', { name: c.name }), t('clients.revoke', { name: c.name }), async () => {
        await api('POST', hospitalPath(`clients/${encodeURIComponent(c.client_id)}/revoke`));
        await show(viewClients);
        say(t('clients.revoked.done', { name: c.name }), 'ok');
      }),
    }, t('clients.revoke', { name: c.name }))));
  const rows = clients.map((c) => [c.name, t(`clients.kind.${c.kind}`), c.scope, when(c.created_at),
    when(c.last_used_at) || t('staff.never'), clientState(c), actions(c)]);
  const name = el('input', { id: 'client-name', required: true });
  const kind = el('select', { id: 'client-kind' }, ['his', 'lis', 'pacs', 'pharmacy', 'other'].map((k) => el('option', { value: k }, t(`clients.kind.${k}`))));
  const scope = el('input', { id: 'client-scope', value: 'service' });
  const create = actionButton(t('clients.create'), async () => {
    const r = await api('POST', hospitalPath('clients'), { name: name.value.trim(), kind: kind.value, scope: scope.value.trim() });
    await show(viewClients);
    $('client-once').replaceChildren(secretBox(r.name, r));
  }, { id: 'client-create' });
  return [
    once,
    card(t('tab.clients'), slot, rows.length
      ? table([t('clients.name'), t('clients.kind'), t('clients.scope'), t('clients.created'), t('clients.last_used'), t('col.state'), t('col.actions')], rows, { id: 'client-table' })
      : el('p', { text: t('clients.empty') })),
    card(t('clients.new'), el('div', { class: 'grid' }, field(t('clients.name'), name), field(t('clients.kind'), kind),
      field(t('clients.scope'), scope, t('clients.scope.hint'))), el('div', { class: 'row' }, create)),
  ];
}

const dirFilter = { q: '', specialty: '', province: '', tier: '' };

async function viewDirectory() {
  const list = await specialtyCodes();
  const q = new URLSearchParams({ limit: '50' });
  for (const k of Object.keys(dirFilter)) if (dirFilter[k]) q.set(k, dirFilter[k]);
  const { practitioners } = await api('GET', `/api/v1/practitioners?${q}`);
  const inputs = {
    q: el('input', { id: 'dir-q', type: 'search', value: dirFilter.q }),
    specialty: el('select', { id: 'dir-specialty' }, el('option', { value: '', text: t('fac.any') }),
      list.map((s) => el('option', { value: s.code, selected: dirFilter.specialty === s.code }, specialtyName(s)))),
    province: el('input', { id: 'dir-province', value: dirFilter.province }),
    tier: el('select', { id: 'dir-tier' }, el('option', { value: '', text: t('fac.any') }),
      ['central', 'provincial', 'district', 'commune'].map((v) => el('option', { value: v, text: t(`tier.${v}`), selected: dirFilter.tier === v }))),
  };
  const search = actionButton(t('audit.search'), async () => {
    for (const k of Object.keys(inputs)) dirFilter[k] = inputs[k].value.trim();
    await show(viewDirectory);
  }, { id: 'dir-search' });
  const rows = practitioners.map((p) => [p.display_name, p.title || '', p.specialties.map(specialtyName).join(', '),
    p.hospital.name || '', p.hospital.tier ? t(`tier.${p.hospital.tier}`) : '', p.hospital.province || '']);
  return [
    card(t('dir.search'), el('div', { class: 'grid' }, field(t('dir.q'), inputs.q), field(t('staff.specialties'), inputs.specialty),
      field(t('col.province'), inputs.province), field(t('col.tier'), inputs.tier)), el('div', { class: 'row' }, search)),
    card(t('tab.directory'), rows.length
      ? table([t('staff.name'), t('dir.title'), t('staff.specialties'), t('col.hospital'), t('col.tier'), t('col.province')], rows, { id: 'directory-table' })
      : el('p', { text: t('dir.empty') })),
  ];
}

async function viewTeam() {
  const v = me.vendor_id;
  const { vendor, users } = await api('GET', `/api/v1/vendors/${encodeURIComponent(v)}/users`);
  const self = users.find((u) => u.id === me.subject);
  const once = el('div', { id: 'team-once' });
  const rows = users.map((u) => [u.display_name, u.email || '', u.admin ? t('team.admin') : t('team.member'),
    pill(t(`staff.status.${u.status}`), u.status === 'active' ? 'pass' : 'fail'),
    u.invitation_pending ? t('staff.pending') : when(u.last_login) || t('staff.never')]);
  const cards = [once, card(t('team.title', { vendor: vendor.name }), table([t('staff.name'), t('staff.email'), t('team.role'), t('col.state'), t('staff.last_login')], rows, { id: 'team-table' }))];
  if (self?.admin) {
    const username = el('input', { id: 'team-username', autocomplete: 'off' });
    const name = el('input', { id: 'team-name', autocomplete: 'off' });
    const email = el('input', { id: 'team-email', type: 'email', autocomplete: 'off' });
    const admin = el('input', { id: 'team-admin', type: 'checkbox' });
    const invite = actionButton(t('team.invite'), async () => {
      const r = await api('POST', `/api/v1/vendors/${encodeURIComponent(v)}/users`, {
        username: username.value.trim(), display_name: name.value.trim(), email: email.value.trim() || null, admin: admin.checked,
      });
      await show(viewTeam);
      $('team-once').replaceChildren(invitationBox(name.value.trim() || r.user?.display_name || '', r.invitation));
    }, { id: 'team-invite' });
    cards.push(card(t('team.invite'), el('div', { class: 'grid' }, field(t('staff.username'), username, t('staff.username.hint')),
      field(t('staff.name'), name), field(t('staff.email'), email)),
    el('label', { class: 'check' }, admin, ` ${t('team.admin.check')}`), el('div', { class: 'row' }, invite)));
  }
  return cards;
}


// ----- start -----

async function start() {
  applyChrome();
  $('lang-switch').addEventListener('click', () => {
    lang = lang === 'vi' ? 'en' : 'vi';
    localStorage.setItem('vth.lang', lang);
    applyChrome();
    if (me) showConsole(); else rerender();
  });
  $('sign-out').addEventListener('click', () => signOut());
  // The provider redirects to the issuer: run where the callback lands, so
  // the PKCE state in sessionStorage is found again.
  try {
    const d = await discovery();
    if (new URL(d.issuer).origin !== window.location.origin) {
      window.location.replace(`${d.issuer}/console/`);
      return;
    }
  } catch { /* the sign-in button reports an unreachable provider */ }
  if (window.location.pathname === '/console/callback') await finishSignIn();
  if (!store.getItem('vth.token')) {
    showSignIn();
    return;
  }
  try {
    me = (await api('GET', '/api/v1/me')).principal;
  } catch (e) {
    if (!(e instanceof SessionExpired)) say(errorText(e), 'error');
    showSignIn();
    if (e instanceof SessionExpired) sessionExpired();
    return;
  }
  showConsole();
}

// For the browser tests: which view is shown and the last message.
window.vthConsole = {
  view: () => $('main').dataset.view || null,
  message: () => $('messages').textContent,
  messageKind: () => $('messages').firstElementChild?.dataset.kind || null,
  pushed: () => pushed,
  following: () => !!feed,
};

start();
