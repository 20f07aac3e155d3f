// "Hàng chờ hội chẩn": the upper hospital's incoming requests, per
// specialty, most urgent and oldest first; accept with a schedule or
// decline with a reason, or open the request's page.
'use strict';

(async () => {
  const S = {
    title: { vi: 'Hàng chờ hội chẩn', en: 'Consultation queue' },
    empty: { vi: 'Không có yêu cầu nào đang chờ.', en: 'No request is waiting.' },
    notHost: { vi: 'Hàng chờ là của bệnh viện tuyến trên nhận hội chẩn; bệnh viện bạn chưa có yêu cầu gửi tới.', en: 'The queue belongs to the consulting hospital.' },
    from: { vi: '{hospital} — {doctor}', en: '{hospital} — {doctor}' },
    waiting: { vi: 'Đã chờ {time}', en: 'Waiting for {time}' },
    paged: { vi: 'Đang gọi: {names}', en: 'Paging: {names}' },
    answered: { vi: '{name} đã nhận tin báo', en: '{name} answered the page' },
    open: { vi: 'Xem chi tiết', en: 'Details' },
    when: { vi: 'Lịch hội chẩn (giờ Việt Nam)', en: 'Schedule (Viet Nam time)' },
    accept: { vi: 'Nhận và lên lịch', en: 'Accept and schedule' },
    reason: { vi: 'Lý do từ chối', en: 'Reason for declining' },
    decline: { vi: 'Từ chối', en: 'Decline' },
    needReason: { vi: 'Hãy ghi lý do từ chối.', en: 'Write the reason.' },
    accepted: { vi: 'Đã nhận yêu cầu {id}; bạn là chủ tọa.', en: 'Accepted {id}; you chair it.' },
    declined: { vi: 'Đã từ chối yêu cầu {id}.', en: 'Declined {id}.' },
    reload: { vi: 'Tải lại', en: 'Reload' },
    count: { vi: '{n} yêu cầu', en: '{n} request(s)' },
  };
  const T = vth.t;
  const fill = (d, vars) => T(d).replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined ? '' : vars[k]));
  const el = vth.el;
  vth.translate(S);
  const content = document.getElementById('content');

  function item(r) {
    const key = r.id.replace(/[^A-Za-z0-9_-]/g, '');
    const at = el('input', { type: 'datetime-local', id: `at-${key}`, value: tc.localInput(Date.now() + 3600 * 1000) });
    const acceptBtn = el('button', { type: 'button', 'data-accept': r.id, text: T(S.accept) });
    acceptBtn.addEventListener('click', () => vth.once(acceptBtn, async () => {
      const ms = tc.fromLocalInput(at.value);
      try {
        await vth.json('POST', `consultations/${encodeURIComponent(r.id)}/accept`, { scheduled_at: ms });
        tc.say(fill(S.accepted, { id: r.id }), 'ok');
        location.assign(`consultation.html?id=${encodeURIComponent(r.id)}&lang=${vth.lang}`);
      } catch (e) { tc.fail(e); }
    }));
    const reason = el('input', { type: 'text', id: `reason-${key}` });
    const declineBtn = el('button', { type: 'button', class: 'secondary', 'data-decline': r.id, text: T(S.decline) });
    declineBtn.addEventListener('click', () => vth.once(declineBtn, async () => {
      if (!reason.value.trim()) { tc.say(T(S.needReason), 'error'); reason.focus(); return; }
      try {
        await vth.json('POST', `consultations/${encodeURIComponent(r.id)}/decline`, { reason: reason.value.trim() });
        tc.say(fill(S.declined, { id: r.id }), 'ok');
        await render();
      } catch (e) { tc.fail(e); }
    }));
    const pg = r.paging || {};
    const names = (pg.stages || []).flatMap((s) => s.names || []);
    return el('li', { 'data-request': r.id, 'data-urgency': r.urgency },
      el('p', {}, tc.badge('urgency', r.urgency), el('strong', { text: fill(S.from, { hospital: r.requesting_hospital_name || '', doctor: r.requester_name || '' }) })),
      el('p', { class: 'prose', text: r.summary }),
      el('p', { class: 'muted', text: [vth.when(r.requested_at), fill(S.waiting, { time: tc.duration((r.waiting_minutes || 0) * 60000) }),
        pg.answered_by_name ? fill(S.answered, { name: pg.answered_by_name }) : names.length ? fill(S.paged, { names: names.join(', ') }) : ''].filter(Boolean).join(' · ') }),
      el('p', {}, el('a', { href: `consultation.html?id=${encodeURIComponent(r.id)}&lang=${vth.lang}`, 'data-open': r.id, text: T(S.open) })),
      tc.field(`at-${key}`, T(S.when), at), el('div', { class: 'row' }, acceptBtn),
      tc.field(`reason-${key}`, T(S.reason), reason), el('div', { class: 'row' }, declineBtn));
  }

  async function render() {
    let q;
    try { q = await vth.json('GET', 'queue'); } catch (e) {
      if (e.status === 403) { tc.show(content, el('p', { class: 'muted', text: T(S.notHost) })); content.removeAttribute('aria-busy'); document.body.dataset.ready = 'true'; return; }
      throw e;
    }
    const groups = (q.specialties || []).filter((s) => (s.requests || []).length);
    const reload = el('button', { type: 'button', id: 'reload', class: 'secondary', text: T(S.reload) });
    reload.addEventListener('click', () => vth.once(reload, () => render().catch(tc.fail)));
    tc.show(content, el('div', { class: 'row' }, reload),
      groups.length ? groups.map((s) => el('section', { class: 'panel', 'data-specialty': s.code || '' },
        el('h2', {}, s.name || s.code || '—', el('span', { class: 'muted', text: ` · ${fill(S.count, { n: s.requests.length })}` })),
        el('ul', { class: 'cards' }, s.requests.map(item))))
        : el('p', { id: 'queue-empty', class: 'muted', text: T(S.empty) }));
    content.removeAttribute('aria-busy');
    document.body.dataset.ready = 'true';
  }
  try { await render(); } catch (e) { tc.fail(e); content.removeAttribute('aria-busy'); }
})();
