// Shared by the teleconsult admin pages (admin-*.html): strings, messages and the doctor
// picker that searches the platform's practitioner directory by name (tone marks optional).
(function () {
  'use strict';
  const TIERS = {
    central: { vi: 'Trung ương', en: 'Central' },
    provincial: { vi: 'Tỉnh', en: 'Provincial' },
    district: { vi: 'Huyện', en: 'District' },
    commune: { vi: 'Xã', en: 'Commune' },
  };
  const STATUS = {
    requested: { vi: 'Chờ tiếp nhận', en: 'Waiting' },
    accepting: { vi: 'Đang tiếp nhận', en: 'Being accepted' },
    accepted: { vi: 'Đã tiếp nhận', en: 'Accepted' },
    concluding: { vi: 'Đang kết luận', en: 'Being concluded' },
    concluded: { vi: 'Đã kết luận', en: 'Concluded' },
    declined: { vi: 'Đã từ chối', en: 'Declined' },
  };
  const URGENCY = {
    routine: { vi: 'Thường quy', en: 'Routine' },
    urgent: { vi: 'Khẩn', en: 'Urgent' },
    emergency: { vi: 'Cấp cứu', en: 'Emergency' },
  };
  const T = {
    search: { vi: 'Tìm bác sĩ theo tên', en: 'Find a doctor by name' },
    searchHint: { vi: 'Gõ tên, có dấu hay không dấu đều được (vd. "nguyen lan").', en: 'Type a name, tone marks optional (e.g. "nguyen lan").' },
    find: { vi: 'Tìm', en: 'Search' },
    none: { vi: 'Không tìm thấy bác sĩ nào.', en: 'No doctor found.' },
    searching: { vi: 'Đang tìm…', en: 'Searching…' },
  };
  const t = (d) => vth.t(d);
  const el = (...a) => vth.el(...a);

  function say(text, kind) {
    const m = document.getElementById('message');
    m.textContent = text || '';
    m.className = 'msg' + (kind ? ' ' + kind : '');
    if (text && kind) m.scrollIntoView({ block: 'nearest' });
  }

  // A refusal or confirmation next to the doctor picker, where the person is looking.
  function note(text, kind) {
    const m = document.getElementById('add-note');
    m.textContent = text || '';
    m.className = 'msg' + (kind ? ' ' + kind : '');
  }

  // "BS. Nguyễn Thị Lan" with "BS.CKII · Tim mạch · Bệnh viện Bạch Mai" below.
  function who(p) {
    const sub = [p.title, p.specialty, p.hospital_name].filter(Boolean).join(' · ');
    return el('span', { class: 'who' }, p.name || '—', sub ? el('small', {}, sub) : null);
  }

  // A search box (labelled) and its results; `actions(p)` gives each result's buttons;
  // `params()` the extra query (tier, hospital).
  function picker(root, id, actions, params) {
    const input = el('input', { id: id + '-q', type: 'search', autocomplete: 'off', placeholder: 'nguyen…' });
    const button = el('button', { type: 'button', class: 'secondary', id: id + '-find' }, t(T.find));
    const results = el('ul', { class: 'results', id: id + '-results', 'aria-live': 'polite' });
    const status = el('p', { class: 'hint', id: id + '-status' }, t(T.searchHint));
    root.replaceChildren(
      el('label', { for: id + '-q' }, t(T.search)),
      el('div', { class: 'row' }, input, button),
      status, results);
    let seq = 0;
    async function run() {
      const mine = ++seq;
      const q = new URLSearchParams(Object.assign({ q: input.value.trim() }, params ? params() : {}));
      status.textContent = t(T.searching);
      try {
        const { practitioners } = await vth.json('GET', 'admin/directory?' + q.toString());
        if (mine !== seq) return;
        results.replaceChildren(...practitioners.map((p) => {
          const li = el('li', { 'data-name': p.name }, who(p), el('span', { class: 'actions' }, actions(p)));
          return li;
        }));
        status.textContent = practitioners.length ? '' : t(T.none);
        root.dataset.searched = String(Date.now());
      } catch (e) {
        if (mine === seq) { status.textContent = ''; say(e.message, 'error'); }
      }
    }
    let timer = null;
    input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(run, 300); });
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); clearTimeout(timer); run(); } });
    button.addEventListener('click', run);
    return { run, input };
  }

  function link(page, query) {
    const q = new URLSearchParams(query || {});
    q.set('lang', vth.lang);
    return page + '?' + q.toString();
  }

  window.adm = { TIERS, STATUS, URGENCY, t, el, say, note, who, picker, link,
    tier: (x) => t(TIERS[x] || { vi: x, en: x }),
    status: (x) => t(STATUS[x] || { vi: x, en: x }),
    urgency: (x) => t(URGENCY[x] || { vi: x, en: x }) };
})();
