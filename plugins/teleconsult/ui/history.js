// "Lịch sử hội chẩn": the consultations this hospital's copy holds (hosted
// here, or requested by / joined from the caller's hospital), newest first:
// status, the time of each step, the participants by name. The upper
// hospitals' histories open through the console.
'use strict';

(async () => {
  const S = {
    title: { vi: 'Lịch sử hội chẩn', en: 'Consultation history' },
    at: { vi: 'Hội chẩn tại {hospital}', en: 'Consultations at {hospital}' },
    others: { vi: 'Lịch sử tại bệnh viện khác', en: 'History at other hospitals' },
    empty: { vi: 'Chưa có hội chẩn nào.', en: 'No consultation yet.' },
    ref: { vi: 'Mã', en: 'No.' },
    case: { vi: 'Ca hội chẩn', en: 'Case' },
    status: { vi: 'Trạng thái', en: 'Status' },
    timings: { vi: 'Các mốc thời gian', en: 'Timings' },
    people: { vi: 'Người tham gia', en: 'Participants' },
    requested: { vi: 'Gửi', en: 'Requested' },
    accepted: { vi: 'Nhận', en: 'Accepted' },
    declined: { vi: 'Từ chối', en: 'Declined' },
    session: { vi: 'Phiên', en: 'Session' },
    concluded: { vi: 'Kết luận', en: 'Concluded' },
    acknowledged: { vi: 'Đã xác nhận', en: 'Acknowledged' },
    after: { vi: 'sau {d}', en: 'after {d}' },
    open: { vi: 'Mở', en: 'Open' },
    reload: { vi: 'Tải lại', en: 'Reload' },
  };
  const T = vth.t;
  const fill = (d, vars) => T(d).replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined ? '' : vars[k]));
  const el = vth.el;
  vth.translate(S);
  const content = document.getElementById('content');

  async function render() {
    const ctx = await tc.context();
    const [{ consultations }, hospitals] = await Promise.all([vth.json('GET', 'history'), tc.hospitals()]);
    const rows = consultations.map((c) => {
      const t = c.timings || {};
      const steps = [
        [S.requested, t.requested_at, null],
        [S.accepted, t.accepted_at, t.minutes_to_accept !== null && t.minutes_to_accept !== undefined ? fill(S.after, { d: tc.duration(t.minutes_to_accept * 60000) }) : null],
        [S.declined, t.declined_at, c.decline_reason || null],
        [S.session, t.session_starts_at, null],
        [S.concluded, t.concluded_at, c.signed_by_name || null],
        [S.acknowledged, t.acknowledged_at, c.acknowledged_by_name || null],
      ].filter((s) => s[1]);
      const open = el('a', { href: `consultation.html?id=${encodeURIComponent(c.id)}&lang=${vth.lang}`, 'data-open': c.id, text: `${T(S.open)} ${c.id}` });
      return [
        el('div', { 'data-consultation': c.id }, el('strong', { text: `${c.requesting_hospital_name || ''} → ${c.host_hospital_name || ''}` }),
          el('div', { class: 'muted', text: [c.specialty, c.requester_name].filter(Boolean).join(' · ') }), open),
        el('div', {}, tc.badge('status', c.status), tc.badge('urgency', c.urgency)),
        el('ul', { class: 'plain' }, steps.map(([label, at, extra]) => el('li', {}, `${T(label)}: ${vth.when(at)}`, extra ? el('span', { class: 'muted', text: ` (${extra})` }) : null))),
        el('ul', { class: 'plain' }, (c.participants || []).map((p) => el('li', {}, el('strong', { text: p.name }), ` — ${tc.word('role', p.role)}`,
          p.hospital_name ? el('span', { class: 'muted', text: ` · ${p.hospital_name}` }) : null))),
      ];
    });
    const reload = el('button', { type: 'button', id: 'reload', class: 'secondary', text: T(S.reload) });
    reload.addEventListener('click', () => vth.once(reload, () => render().catch(tc.fail)));
    const myRank = tc.rank(ctx.hospital.tier);
    const others = hospitals.filter((h) => h.id !== ctx.hospital.id && tc.rank(h.tier) < myRank);
    tc.show(content, 
      el('section', { class: 'panel', id: 'history' }, el('h2', { text: fill(S.at, { hospital: ctx.hospital.name }) }),
        rows.length ? vth.table([T(S.case), T(S.status), T(S.timings), T(S.people)], rows, { id: 'history-table' })
          : el('p', { id: 'history-empty', class: 'muted', text: T(S.empty) }),
        el('div', { class: 'row' }, reload)),
      others.length ? el('section', { class: 'panel', id: 'other-hospitals' }, el('h2', { text: T(S.others) }),
        el('div', { class: 'switcher' }, others.map((h) => {
          const b = el('button', { type: 'button', class: 'secondary', 'data-hospital': h.id, text: h.name });
          b.addEventListener('click', () => tc.openAt(h.id, '/ui/history.html', T(S.title)));
          return b;
        }))) : null);
    content.removeAttribute('aria-busy');
    document.body.dataset.ready = 'true';
  }
  try { await render(); } catch (e) { tc.fail(e); content.removeAttribute('aria-busy'); }
})();
