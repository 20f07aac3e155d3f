// "Lịch phiên hội chẩn mở": the network sessions a hospital hosts, for the
// doctors of every hospital: join as an observer with one click, then
// enter the room. Another hospital's schedule opens through the console.
'use strict';

(async () => {
  const S = {
    title: { vi: 'Lịch phiên hội chẩn mở', en: 'Open sessions' },
    at: { vi: 'Lịch phiên tại {hospital}', en: 'Sessions at {hospital}' },
    others: { vi: 'Lịch của bệnh viện khác', en: 'Other hospitals\' schedules' },
    empty: { vi: 'Chưa có phiên hội chẩn mở nào.', en: 'No open session.' },
    from: { vi: 'Ca của {hospital}', en: 'Case from {hospital}' },
    chair: { vi: 'Chủ tọa {name}', en: 'Chaired by {name}' },
    observers: { vi: '{n} người quan sát', en: '{n} observer(s)' },
    join: { vi: 'Tham dự (quan sát)', en: 'Join as observer' },
    joined: { vi: 'Bạn đã đăng ký tham dự phiên “{title}”.', en: 'You joined “{title}”.' },
    youJoined: { vi: 'Bạn đã đăng ký tham dự', en: 'You are in' },
    enter: { vi: 'Vào phòng', en: 'Enter the room' },
    entering: { vi: 'Đang mở phòng hội chẩn…', en: 'Opening the room…' },
    roomHint: { vi: 'Phòng hội chẩn mở trong một thẻ mới; chủ tọa cho bạn vào phòng.', en: 'The room opens in a new tab; the chair admits you.' },
    details: { vi: 'Xem trang hội chẩn', en: 'Consultation page' },
    reload: { vi: 'Tải lại', en: 'Reload' },
  };
  const T = vth.t;
  const fill = (d, vars) => T(d).replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined ? '' : vars[k]));
  const el = vth.el;
  vth.translate(S);
  const content = document.getElementById('content');

  async function enterRoom(btn, id) {
    await vth.once(btn, async () => {
      try {
        tc.say(T(S.entering), 'info');
        const r = await vth.json('POST', `consultations/${encodeURIComponent(id)}/join-token`);
        tc.openRoom(r.room_url);
        tc.say(T(S.roomHint), 'ok');
      } catch (e) { tc.fail(e); }
    });
  }

  function card(s) {
    const actions = el('div', { class: 'row' });
    const enter = el('button', { type: 'button', 'data-enter': s.consultation, text: T(S.enter) });
    enter.addEventListener('click', () => enterRoom(enter, s.consultation));
    const details = el('a', { href: `consultation.html?id=${encodeURIComponent(s.consultation)}&lang=${vth.lang}`, 'data-open': s.consultation, text: T(S.details) });
    if (s.joined) {
      actions.append(el('span', { class: 'badge', text: T(S.youJoined) }), enter, details);
    } else {
      const join = el('button', { type: 'button', 'data-join': s.consultation, text: T(S.join) });
      join.addEventListener('click', () => vth.once(join, async () => {
        try {
          await vth.json('POST', `sessions/${encodeURIComponent(s.consultation)}/join`);
          tc.say(fill(S.joined, { title: s.title }), 'ok');
          await render();
        } catch (e) { tc.fail(e); }
      }));
      actions.append(join);
    }
    return el('li', { 'data-session': s.consultation },
      el('h3', { text: s.title || '' }),
      el('p', {}, el('strong', { text: vth.when(s.starts_at) }), ' ', tc.badge('urgency', s.urgency)),
      el('p', { class: 'muted', text: [s.specialty_name || s.specialty, fill(S.from, { hospital: s.requesting_hospital_name || '' }),
        s.chair_name ? fill(S.chair, { name: s.chair_name }) : '', fill(S.observers, { n: s.observers })].filter(Boolean).join(' · ') }),
      actions);
  }

  async function render() {
    const ctx = await tc.context();
    const [{ sessions }, hospitals, spec] = await Promise.all([vth.json('GET', 'sessions'), tc.hospitals(),
      vth.json('GET', 'specialties').catch(() => ({ specialties: [] }))]);
    const names = {};
    for (const x of spec.specialties || []) names[x.code] = x.name;
    for (const s of sessions) s.specialty_name = names[s.specialty] || s.specialty;
    const reload = el('button', { type: 'button', id: 'reload', class: 'secondary', text: T(S.reload) });
    reload.addEventListener('click', () => vth.once(reload, () => render().catch(tc.fail)));
    const others = hospitals.filter((h) => h.id !== ctx.hospital.id).sort((a, b) => tc.rank(a.tier) - tc.rank(b.tier) || a.name.localeCompare(b.name));
    const switcher = others.map((h) => {
      const b = el('button', { type: 'button', class: 'secondary', 'data-hospital': h.id, text: h.name });
      b.addEventListener('click', () => tc.openAt(h.id, '/ui/sessions.html', T(S.title)));
      return b;
    });
    tc.show(content, 
      el('section', { class: 'panel', id: 'sessions' }, el('h2', { text: fill(S.at, { hospital: ctx.hospital.name }) }),
        sessions.length ? el('ul', { class: 'cards' }, sessions.map(card)) : el('p', { id: 'sessions-empty', class: 'muted', text: T(S.empty) }),
        el('div', { class: 'row' }, reload)),
      switcher.length ? el('section', { class: 'panel', id: 'other-hospitals' }, el('h2', { text: T(S.others) }),
        el('div', { class: 'switcher' }, switcher)) : null);
    content.removeAttribute('aria-busy');
    document.body.dataset.ready = 'true';
  }
  try { await render(); } catch (e) { tc.fail(e); content.removeAttribute('aria-busy'); }
})();
