// Shared helpers of the teleconsult pages (after vth.js): the words of the
// workflow in Vietnamese and English, the console's help for what a page's
// own ticket cannot reach (another hospital's copy of this plugin, the
// network's hospitals, the room page), and small building blocks.
'use strict';

(function () {
  const T = vth.t;
  const WORDS = {
    status: {
      requested: { vi: 'Chờ tiếp nhận', en: 'Waiting for triage' },
      accepting: { vi: 'Đang tiếp nhận', en: 'Being accepted' },
      accepted: { vi: 'Đã nhận, đã lên lịch', en: 'Accepted, scheduled' },
      declined: { vi: 'Đã từ chối', en: 'Declined' },
      concluding: { vi: 'Đang ký kết luận', en: 'Being concluded' },
      concluded: { vi: 'Đã có kết luận', en: 'Concluded' },
    },
    urgency: {
      routine: { vi: 'Thường quy', en: 'Routine' },
      urgent: { vi: 'Khẩn', en: 'Urgent' },
      emergency: { vi: 'Cấp cứu', en: 'Emergency' },
    },
    role: {
      chair: { vi: 'Chủ tọa', en: 'Chair' },
      presenter: { vi: 'Trình bày (bên yêu cầu)', en: 'Presenter (requester)' },
      participant: { vi: 'Tham gia hội chẩn', en: 'Consultant' },
      observer: { vi: 'Quan sát', en: 'Observer' },
    },
    tier: {
      central: { vi: 'Trung ương', en: 'Central' },
      provincial: { vi: 'Tỉnh', en: 'Provincial' },
      district: { vi: 'Huyện', en: 'District' },
      commune: { vi: 'Xã', en: 'Commune' },
    },
    event: {
      requested: { vi: 'Gửi yêu cầu hội chẩn', en: 'Requested' },
      'page-acknowledged': { vi: 'Nhận xử lý tin báo', en: 'Page answered' },
      attached: { vi: 'Bổ sung hồ sơ', en: 'Records attached' },
      accepted: { vi: 'Nhận hội chẩn và lên lịch', en: 'Accepted and scheduled' },
      'room-opened': { vi: 'Mở phòng hội chẩn', en: 'Room opened' },
      declined: { vi: 'Từ chối', en: 'Declined' },
      'session-opened': { vi: 'Mở phiên cho mạng lưới', en: 'Opened to the network' },
      'observer-joined': { vi: 'Tham dự với vai trò quan sát', en: 'Joined as an observer' },
      concluded: { vi: 'Ký kết luận', en: 'Conclusion signed' },
      acknowledged: { vi: 'Xác nhận đã nhận kết luận', en: 'Conclusion acknowledged' },
    },
  };
  const RANK = { central: 0, provincial: 1, district: 2, commune: 3 };

  function word(kind, key) {
    const d = WORDS[kind] && WORDS[kind][key];
    return d ? T(d) : (key || '');
  }

  let contextPromise = null;
  let hospitalsPromise = null;

  // Ask the console (the parent window) for something the frame cannot
  // fetch itself; the answer comes back as a message of the same type.
  function ask(type, timeoutMs) {
    return new Promise((resolve) => {
      if (window.parent === window) { resolve(null); return; }
      const done = (v) => { window.removeEventListener('message', on); clearTimeout(timer); resolve(v); };
      const on = (e) => { if (e.source === window.parent && e.data && e.data.type === type) done(e.data); };
      const timer = setTimeout(() => done(null), timeoutMs || 8000);
      window.addEventListener('message', on);
      window.parent.postMessage({ type }, '*');
    });
  }

  window.tc = {
    word,
    rank: (tier) => (tier in RANK ? RANK[tier] : 9),
    // This copy's hospital and the caller, by name (GET /context), once.
    context: () => { contextPromise = contextPromise || vth.json('GET', 'context'); return contextPromise; },
    // The network's hospitals {id, name, tier}, from the console; [] outside it.
    hospitals: () => {
      hospitalsPromise = hospitalsPromise || ask('vth.hospitals').then((m) => (m && m.hospitals) || []);
      return hospitalsPromise;
    },
    hospitalName: async (id, fallback) => {
      const h = (await window.tc.hospitals()).find((x) => x.id === id);
      return (h && h.name) || fallback || '';
    },
    // Open this plugin's page `path` (`/ui/x.html?…#…`) at another hospital's copy, through
    // the console (a ticket for that copy); `false` outside the console.
    openAt: (hospital, path, title) => {
      if (window.parent === window) return false;
      window.parent.postMessage({ type: 'vth.open', hospital, path, title: title || '' }, '*');
      return true;
    },
    // Show the room page (`/rooms/{room}#token=…`) in the console, under this page.
    openRoom: (url) => {
      const withLang = url.replace('#', `?lang=${vth.lang}#`);
      if (window.parent === window) { window.open(withLang, '_blank', 'noopener'); return; }
      window.parent.postMessage({ type: 'vth.room', url: withLang }, '*');
    },
    // Replace `node`'s children with these (arrays flattened, nothing for null).
    show: (node, ...children) => node.replaceChildren(...children.flat(2).filter((x) => x !== null && x !== undefined && x !== false)),
    say: (text, kind) => {
      const m = document.getElementById('message');
      if (!m) return;
      m.textContent = text || '';
      m.dataset.kind = kind || 'info';
      m.className = `msg ${kind || 'info'}`;
    },
    fail: (e) => window.tc.say(e && e.message ? e.message : String(e), 'error'),
    badge: (kind, key) => vth.el('span', { class: `badge ${kind}-${key}`, [`data-${kind}`]: key, text: word(kind, key) }),
    field: (id, label, control, hint) => vth.el('div', { class: 'field' },
      vth.el('label', { for: id, text: label }), control, hint ? vth.el('p', { class: 'hint', text: hint }) : null),
    // Radio buttons in a fieldset: options [{value, label, hint}].
    radios: (name, legend, options, checked) => vth.el('fieldset', { class: 'choices', id: `${name}-choices` },
      vth.el('legend', { text: legend }),
      options.map((o, i) => vth.el('label', { class: 'choice', for: `${name}-${i}` },
        vth.el('input', { type: 'radio', name, id: `${name}-${i}`, value: o.value, checked: o.value === checked ? 'checked' : null }),
        vth.el('span', {}, vth.el('strong', { text: o.label }), o.hint ? vth.el('span', { class: 'hint', text: ` ${o.hint}` }) : null)))),
    picked: (name) => { const r = document.querySelector(`input[name="${name}"]:checked`); return r ? r.value : ''; },
    // A `datetime-local` value (Viet Nam time) for `ms`, and back.
    localInput: (ms) => {
      const d = new Date(ms + 7 * 3600 * 1000);
      return d.toISOString().slice(0, 16);
    },
    fromLocalInput: (v) => (v ? Date.parse(`${v}:00+07:00`) : NaN),
    params: () => new URLSearchParams(location.search),
    // Minutes as "2 giờ 5 phút".
    duration: (ms) => {
      if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
      const m = Math.max(0, Math.round(ms / 60000));
      const h = Math.floor(m / 60);
      const r = m % 60;
      if (vth.lang === 'vi') return h ? `${h} giờ ${r} phút` : `${r} phút`;
      return h ? `${h} h ${r} min` : `${r} min`;
    },
  };
})();
