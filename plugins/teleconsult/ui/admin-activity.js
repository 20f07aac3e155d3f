// "Hoạt động chỉ đạo tuyến": one roster's mentoring activity (GET /rosters/{id}/activity):
// the consultations involving its members, counted per member, by names.
(async function () {
  'use strict';
  const { el, say, t } = adm;
  const S = {
    title: { vi: 'Hoạt động chỉ đạo tuyến', en: 'Mentoring activity' },
    back: { vi: '← Các kíp 1-4-4-2', en: '← 1-4-4-2 rosters' },
    pick: { vi: 'Kíp', en: 'Roster' },
    summary: { vi: 'Tóm tắt', en: 'Summary' },
    members: { vi: 'Theo thành viên', en: 'By member' },
    consultations: { vi: 'Các ca hội chẩn có thành viên của kíp', en: 'Consultations involving the roster' },
    total: { vi: 'Số ca hội chẩn', en: 'Consultations' },
    concluded: { vi: 'Đã kết luận', en: 'Concluded' },
    open: { vi: 'Đang chờ hoặc đang hội chẩn', en: 'Waiting or in progress' },
    declined: { vi: 'Đã từ chối', en: 'Declined' },
    last: { vi: 'Hoạt động gần nhất', en: 'Last activity' },
    never: { vi: 'Chưa có', en: 'None yet' },
    noRoster: { vi: 'Chưa có kíp nào: hãy tạo kíp ở trang "Kíp chỉ đạo tuyến 1-4-4-2".', en: 'No roster yet: create one on the "1-4-4-2 mentoring rosters" page.' },
    noCases: { vi: 'Chưa có ca hội chẩn nào có thành viên của kíp.', en: 'No consultation has involved the roster yet.' },
    hName: { vi: 'Bác sĩ', en: 'Doctor' },
    hTier: { vi: 'Tuyến', en: 'Tier' },
    hHospital: { vi: 'Bệnh viện', en: 'Hospital' },
    hInvolved: { vi: 'Số ca', en: 'Cases' },
    hRequested: { vi: 'Gửi yêu cầu', en: 'Requested' },
    hChaired: { vi: 'Chủ trì', en: 'Chaired' },
    hConsulted: { vi: 'Tham gia', en: 'Took part' },
    hPaged: { vi: 'Được báo', en: 'Paged' },
    hLast: { vi: 'Lần cuối', en: 'Last' },
    cWhen: { vi: 'Yêu cầu lúc', en: 'Requested at' },
    cFrom: { vi: 'Từ', en: 'From' },
    cSpecialty: { vi: 'Chuyên khoa', en: 'Specialty' },
    cStatus: { vi: 'Trạng thái', en: 'Status' },
    cMembers: { vi: 'Thành viên của kíp', en: 'Roster members' },
    cLast: { vi: 'Hoạt động gần nhất', en: 'Last activity' },
    heading: { vi: 'Hoạt động chỉ đạo tuyến: {name}', en: 'Mentoring activity: {name}' },
  };
  const PARTS = {
    requester: { vi: 'gửi yêu cầu', en: 'requester' },
    chair: { vi: 'chủ trì', en: 'chair' },
    consultant: { vi: 'hội chẩn viên', en: 'consultant' },
    observer: { vi: 'dự thính', en: 'observer' },
    paged: { vi: 'được báo', en: 'paged' },
  };
  const fill = (s, v) => s.replace(/\{(\w+)\}/g, (_, k) => v[k] ?? '');
  vth.translate(S);
  document.getElementById('back').href = adm.link('admin-rosters.html');
  const select = document.getElementById('roster');

  async function show(id) {
    const a = await vth.json('GET', 'rosters/' + encodeURIComponent(id) + '/activity');
    document.getElementById('heading').textContent = fill(t(S.heading), { name: a.roster.name });
    document.title = document.getElementById('heading').textContent;
    const tot = a.totals;
    const facts = [
      [S.total, tot.consultations],
      [S.concluded, tot.concluded],
      [S.open, tot.requested + tot.accepted],
      [S.declined, tot.declined],
      [S.last, a.last_activity_at ? vth.when(a.last_activity_at) : t(S.never)],
    ];
    document.getElementById('summary').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, t(k)), el('dd', { 'data-fact': k.en }, String(v))]));
    const who = (m) => [m.name || '—', m.title ? ` (${m.title})` : ''].join('');
    document.getElementById('members').replaceChildren(vth.table(
      [t(S.hName), t(S.hTier), t(S.hHospital), t(S.hInvolved), t(S.hRequested), t(S.hChaired), t(S.hConsulted), t(S.hPaged), t(S.hLast)],
      a.members.map((m) => [who(m), adm.tier(m.slot), m.hospital_name || '—', String(m.involved), String(m.requested),
        String(m.chaired), String(m.consulted), String(m.paged), m.last_activity_at ? vth.when(m.last_activity_at) : t(S.never)]),
      { id: 'members-table' }));
    const cases = document.getElementById('consultations');
    if (!a.consultations.length) { cases.replaceChildren(el('p', { class: 'muted', id: 'no-cases' }, t(S.noCases))); return; }
    cases.replaceChildren(vth.table(
      [t(S.cWhen), t(S.cFrom), t(S.cSpecialty), t(S.cStatus), t(S.cMembers), t(S.cLast)],
      a.consultations.map((c) => [
        vth.when(c.requested_at),
        [c.requesting_hospital_name, c.requester_name].filter(Boolean).join(' — '),
        [c.specialty || '—', adm.urgency(c.urgency)].join(' · '),
        adm.status(c.status) + (c.chair_name ? ` (${c.chair_name})` : ''),
        c.members.map((m) => `${m.name} (${t(PARTS[m.part] || { vi: m.part, en: m.part })})`).join(', '),
        vth.when(c.last_activity_at),
      ]),
      { id: 'cases-table' }));
  }

  try {
    const { rosters } = await vth.json('GET', 'rosters');
    if (!rosters.length) {
      say(t(S.noRoster));
    } else {
      select.replaceChildren(...rosters.map((r) => el('option', { value: r.id }, r.name)));
      const wanted = new URLSearchParams(location.search).get('roster');
      select.value = rosters.some((r) => r.id === wanted) ? wanted : rosters[0].id;
      await show(select.value);
      document.body.dataset.roster = select.value;
    }
  } catch (e) {
    say(e.message, 'error');
  }
  select.addEventListener('change', async () => {
    try { await show(select.value); document.body.dataset.roster = select.value; say(''); }
    catch (e) { say(e.message, 'error'); }
  });
  document.body.dataset.ready = 'true';
})();
