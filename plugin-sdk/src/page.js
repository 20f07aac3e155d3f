// VTelehealth plugin page helper (vtelehealth_plugin_sdk::web::PAGE_SCRIPT).
// Serve it as one of the plugin's assets (e.g. /ui/vth.js) and load it with
// <script src="vth.js"></script> before the page's own script.
//
// A page runs in a sandboxed frame of the console at
// /console/frame/{ticket}/{path}: the ticket in the URL is its only
// credential, so every call to the plugin's own routes must stay under that
// prefix. vth.url() builds such URLs whatever the page's depth, and also
// works when the page is opened on the plugin's own address
// (/hospitals/{h}/plugins/{p}/...). Anything else (other plugins, /api/v1,
// other sites) is blocked by the frame's Content-Security-Policy.
(function () {
  'use strict';
  var path = window.location.pathname;
  var m = /^\/console\/frame\/[^/]+\//.exec(path) || /^\/hospitals\/[^/]+\/plugins\/[^/]+\//.exec(path);
  var root = m ? m[0] : '/';
  var query = new URLSearchParams(window.location.search);
  var lang = query.get('lang') === 'en' ? 'en' : 'vi';
  document.documentElement.lang = lang;

  function url(p) {
    return root + String(p || '').replace(/^\/+/, '');
  }

  async function call(method, p, body, type) {
    var init = { method: method || 'GET', headers: { accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['content-type'] = type || 'application/json';
      init.body = type ? body : JSON.stringify(body);
    }
    var resp = await fetch(url(p), init);
    var text = await resp.text();
    var data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!resp.ok) {
      var msg = data && data.error && (data.error.message || data.error.code);
      if (resp.status === 401 && !msg) {
        msg = lang === 'vi' ? 'Phiên của trang đã hết hạn: hãy mở lại trang từ bảng điều khiển.'
          : "The page's session has expired: open the page again from the console.";
      }
      var err = new Error(msg || ('HTTP ' + resp.status));
      err.status = resp.status;
      err.body = data;
      throw err;
    }
    return { status: resp.status, data: data, text: text };
  }

  var timeFormat = new Intl.DateTimeFormat(lang === 'vi' ? 'vi-VN' : 'en-GB', {
    timeZone: 'Asia/Ho_Chi_Minh', dateStyle: 'short', timeStyle: 'medium',
  });

  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else if (attrs[k] !== undefined && attrs[k] !== null && attrs[k] !== false) node.setAttribute(k, attrs[k]);
    });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      [].concat(c).forEach(function (x) { node.append(x instanceof Node ? x : document.createTextNode(String(x))); });
    }
    return node;
  }

  window.vth = {
    lang: lang,
    root: root,
    url: url,
    // A JSON call to the plugin's own route `p` (relative to its mount point).
    json: async function (method, p, body) { return (await call(method, p, body)).data; },
    // A call with a non-JSON body (e.g. text/plain), answered with JSON or text.
    text: function (method, p, body, type) { return call(method, p, body, type || 'text/plain; charset=utf-8'); },
    // The string of the page's language from { vi: '…', en: '…' }.
    t: function (dict) { return (dict && (dict[lang] || dict.vi)) || ''; },
    // Milliseconds since the epoch as a time in Viet Nam.
    when: function (ms) { return ms ? timeFormat.format(new Date(ms)) : ''; },
    // Fill every element with data-t="key" with strings[key] in the page's language
    // (strings: { key: { vi: '…', en: '…' } }); the title from strings.title.
    translate: function (strings) {
      document.querySelectorAll('[data-t]').forEach(function (n) {
        var s = strings[n.getAttribute('data-t')];
        if (s) n.textContent = window.vth.t(s);
      });
      if (strings.title) document.title = window.vth.t(strings.title);
    },
    // Run `action` once per click: `button` is disabled while it runs.
    once: async function (button, action) {
      if (button.disabled) return undefined;
      button.disabled = true;
      button.setAttribute('aria-busy', 'true');
      try { return await action(); } finally { button.disabled = false; button.removeAttribute('aria-busy'); }
    },
    // An element with text children only (no HTML parsing of data).
    el: el,
    // A table whose rows stack as cards on phones (class "stack", cells labelled).
    table: function (headers, rows, attrs) {
      return el('div', { class: 'table-wrap' }, el('table', Object.assign({ class: 'stack' }, attrs || {}),
        el('thead', {}, el('tr', {}, headers.map(function (h) { return el('th', { scope: 'col', text: h }); }))),
        el('tbody', {}, rows.map(function (r) {
          return el('tr', {}, r.map(function (c, i) { return el('td', { 'data-label': headers[i] }, c); }));
        }))));
    },
  };
})();
