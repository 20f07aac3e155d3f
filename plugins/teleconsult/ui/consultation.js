// "Hội chẩn": one consultation, for everyone who takes part, at the upper
// (host) hospital's copy: status, timeline, people by name, "Vào phòng",
// the network session, the chair's conclusion, the requester's
// acknowledgement, and the answer to a page.
'use strict';

(async () => {
  const S = {
    title: { vi: 'Hội chẩn', en: 'Consultation' },
    reload: { vi: 'Tải lại', en: 'Reload' },
    noId: { vi: 'Thiếu mã hội chẩn trong đường dẫn.', en: 'The link names no consultation.' },
    facts: { vi: 'Thông tin', en: 'Details' },
    ref: { vi: 'Mã yêu cầu', en: 'Request number' },
    status: { vi: 'Trạng thái', en: 'Status' },
    urgency: { vi: 'Mức độ', en: 'Urgency' },
    specialty: { vi: 'Chuyên khoa', en: 'Specialty' },
    from: { vi: 'Bệnh viện yêu cầu', en: 'Requesting hospital' },
    requester: { vi: 'Bác sĩ yêu cầu', en: 'Requesting doctor' },
    host: { vi: 'Bệnh viện hội chẩn', en: 'Consulting hospital' },
    chair: { vi: 'Chủ tọa', en: 'Chair' },
    scheduled: { vi: 'Lịch hội chẩn', en: 'Scheduled' },
    requestedAt: { vi: 'Gửi lúc', en: 'Requested at' },
    patient: { vi: 'Bệnh nhân', en: 'Patient' },
    patientHidden: { vi: 'Người quan sát không xem thông tin bệnh nhân.', en: 'Observers do not see the patient.' },
    question: { vi: 'Câu hỏi hội chẩn', en: 'Question' },
    records: { vi: 'Hồ sơ đính kèm', en: 'Attached records' },
    none: { vi: 'Không có', en: 'None' },
    people: { vi: 'Người tham gia', en: 'Participants' },
    proposed: { vi: 'Bác sĩ được đề xuất', en: 'Proposed consultants' },
    timeline: { vi: 'Diễn biến', en: 'Timeline' },
    declineReason: { vi: 'Lý do từ chối', en: 'Reason for declining' },
    pageTitle: { vi: 'Tin báo hội chẩn', en: 'Consultation page' },
    pageAck: { vi: 'Tôi nhận xử lý', en: 'I have it' },
    pageAcked: { vi: 'Đã ghi nhận: việc gọi nhắc dừng lại; yêu cầu vẫn chờ nhận hoặc từ chối.', en: 'Noted: the reminders stop; the request still waits for an accept or a decline.' },
    pageStale: { vi: 'Tin báo này không cần trả lời nữa.', en: 'This page needs no answer any more.' },
    accept: { vi: 'Nhận hội chẩn', en: 'Accept' },
    acceptHint: { vi: 'Bạn sẽ là chủ tọa. Phòng hội chẩn mở và hồ sơ bệnh nhân được chia sẻ trong thời gian hội chẩn.', en: 'You will chair it. The room opens and the patient\'s records are shared during the consultation.' },
    when: { vi: 'Thời gian hội chẩn (giờ Việt Nam)', en: 'Time (Viet Nam time)' },
    acceptDo: { vi: 'Nhận và lên lịch', en: 'Accept and schedule' },
    accepted: { vi: 'Đã nhận hội chẩn.', en: 'Accepted.' },
    decline: { vi: 'Từ chối', en: 'Decline' },
    reason: { vi: 'Lý do từ chối', en: 'Reason' },
    declineDo: { vi: 'Từ chối yêu cầu', en: 'Decline the request' },
    declined: { vi: 'Đã từ chối yêu cầu.', en: 'Declined.' },
    needReason: { vi: 'Hãy ghi lý do từ chối.', en: 'Write the reason.' },
    badTime: { vi: 'Hãy chọn thời gian hội chẩn.', en: 'Pick a time.' },
    room: { vi: 'Phòng hội chẩn', en: 'Consultation room' },
    enter: { vi: 'Vào phòng', en: 'Enter the room' },
    entering: { vi: 'Đang mở phòng hội chẩn…', en: 'Opening the room…' },
    roomHint: { vi: 'Phòng hội chẩn mở trong một thẻ mới; chủ tọa cho người tham gia vào phòng.', en: 'The room opens in a new tab; the chair admits the participants.' },
    session: { vi: 'Phiên hội chẩn mở cho mạng lưới', en: 'Open to the network' },
    sessionHint: { vi: 'Bác sĩ các bệnh viện trong mạng lưới thấy lịch và tham dự với vai trò quan sát (không thấy thông tin bệnh nhân).', en: 'Doctors of every hospital see the schedule and join as observers (without the patient).' },
    sessionTitle: { vi: 'Tên phiên', en: 'Title' },
    sessionAt: { vi: 'Bắt đầu (giờ Việt Nam)', en: 'Starts (Viet Nam time)' },
    sessionDo: { vi: 'Mở cho mạng lưới', en: 'Open to the network' },
    sessionOpened: { vi: 'Đã mở phiên cho mạng lưới.', en: 'Opened to the network.' },
    sessionIs: { vi: 'Phiên mở: {title}, lúc {at}', en: 'Open session: {title}, at {at}' },
    needTitle: { vi: 'Hãy đặt tên phiên.', en: 'Give the session a title.' },
    conclusion: { vi: 'Kết luận hội chẩn', en: 'Conclusion' },
    assessment: { vi: 'Nhận định', en: 'Assessment' },
    recommendations: { vi: 'Khuyến nghị điều trị', en: 'Recommendations' },
    followUp: { vi: 'Theo dõi tiếp', en: 'Follow-up' },
    concludeDo: { vi: 'Ký kết luận', en: 'Sign the conclusion' },
    concluded: { vi: 'Đã ký kết luận; phòng hội chẩn đã đóng.', en: 'Signed; the room is closed.' },
    needAssessment: { vi: 'Hãy ghi nhận định.', en: 'Write the assessment.' },
    signed: { vi: 'Ký bởi {name}, lúc {at}', en: 'Signed by {name} at {at}' },
    ack: { vi: 'Xác nhận đã nhận kết luận', en: 'Acknowledge the conclusion' },
    acked: { vi: 'Đã xác nhận nhận kết luận.', en: 'Acknowledged.' },
    ackedBy: { vi: 'Đã được {name} xác nhận lúc {at}', en: 'Acknowledged by {name} at {at}' },
    delivered: { vi: 'Đã lưu vào hồ sơ bệnh án tại {hospital}.', en: 'Saved in the patient\'s record at {hospital}.' },
    noTimeline: { vi: 'Chưa có diễn biến.', en: 'Nothing yet.' },
    by: { vi: 'bởi', en: 'by' },
  };
  const T = vth.t;
  const fill = (d, vars) => T(d).replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined ? '' : vars[k]));
  const el = vth.el;
  vth.translate(S);
  const content = document.getElementById('content');
  const id = tc.params().get('id');
  if (!id) { tc.say(T(S.noId), 'error'); content.removeAttribute('aria-busy'); return; }

  const specialtyNames = {};
  // What the page shows of the consultation's state, to notice when it moves on.
  const stateOf = (c) => [c.status, !!c.session, c.acknowledged_at || 0].join('|');
  let shownState = null;
  const dl = (pairs) => el('dl', { class: 'facts' }, pairs.filter((p) => p && p[1] !== null && p[1] !== undefined && p[1] !== '')
    .flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]));

  async function loadSpecialties() {
    try {
      const s = await vth.json('GET', 'specialties');
      for (const x of s.specialties || []) { specialtyNames[x.code] = x.name; specialtyNames[x.name] = x.name; }
    } catch { /* names as typed */ }
  }

  function identifiersText(p) {
    return (p.identifiers || []).map((i) => {
      const kind = i.system.includes('cccd') ? 'CCCD' : i.system.includes('bhxh') ? 'BHXH' : i.system;
      return `${kind} ${i.value}`;
    }).join(' · ');
  }

  async function render() {
    const ctx = await tc.context();
    let c = null;
    let page = null;
    try { c = await vth.json('GET', `consultations/${encodeURIComponent(id)}`); } catch (e) { if (e.status !== 404) throw e; }
    try { page = await vth.json('GET', `consultations/${encodeURIComponent(id)}/page`); } catch { page = null; }
    if (!c && !page) throw new Error(T({ vi: 'Không tìm thấy hội chẩn này hoặc bạn không có quyền xem.', en: 'No such consultation, or you may not see it.' }));
    const me = ctx.me;
    const parts = [];
    const status = c ? c.status : page.status;
    const urgency = c ? c.urgency : page.urgency;
    const specialty = c ? c.specialty : page.specialty;
    const observer = !!(c && c.patient_hidden);
    const invitees = (c && c.invitees) || [];
    const mine = invitees.find((i) => i.practitioner === me.id);
    const isChair = !!(c && c.chair === me.id);
    const isRequester = !!(c && c.requester === me.id);
    const ofRequesting = !!(c && me.hospital && me.hospital.id === c.requesting_hospital);
    const hostStaff = me.host_staff;
    const hospitalName = async (hid) => (hid === (c && c.host_hospital) ? c.host_hospital_name
      : hid === (c && c.requesting_hospital) ? c.requesting_hospital_name : tc.hospitalName(hid, ''));

    // Heading: what and how urgent.
    document.title = `${T(S.title)} ${id}`;
    parts.push(el('p', {}, tc.badge('status', status), tc.badge('urgency', urgency),
      specialty ? el('span', { class: 'badge', text: specialtyNames[specialty] || specialty }) : null));

    // The page's answer, for a paged doctor.
    if (page && page.open && (hostStaff || !c) && page.paging && page.paging.status === 'paging') {
      const ackBtn = el('button', { type: 'button', id: 'page-ack', class: 'secondary', text: T(S.pageAck) });
      ackBtn.addEventListener('click', () => vth.once(ackBtn, async () => {
        try {
          const r = await vth.json('POST', `consultations/${encodeURIComponent(id)}/page/ack`);
          tc.say(T(r.acknowledged ? S.pageAcked : S.pageStale), 'ok');
          await render();
        } catch (e) { tc.fail(e); }
      }));
      parts.push(el('section', { class: 'panel', id: 'page-panel' }, el('h2', { text: T(S.pageTitle) }),
        el('p', { text: T({ vi: page.vi, en: page.en }) }), ackBtn));
    }

    // Details.
    const facts = [
      [T(S.ref), id],
      [T(S.from), c ? c.requesting_hospital_name : page.requesting_hospital_name],
      [T(S.requester), c ? c.requester_name : page.requester_name],
      [T(S.host), c ? c.host_hospital_name : ctx.hospital.name],
      [T(S.requestedAt), vth.when(c ? c.created_at : page.requested_at)],
      [T(S.chair), (c ? c.chair_name : page.chair_name) || ''],
      [T(S.scheduled), c && c.scheduled_at ? vth.when(c.scheduled_at) : ''],
      [T(S.declineReason), (c && c.decline_reason) || ''],
    ];
    if (c && c.patient && !observer) {
      const p = c.patient;
      facts.splice(1, 0, [T(S.patient), [p.name || '', p.name ? ' — ' : '', identifiersText(p)].join('')]);
    }
    parts.push(el('section', { class: 'panel', id: 'facts' }, el('h2', { text: T(S.facts) }), dl(facts),
      observer ? el('p', { class: 'hint', id: 'patient-hidden', text: T(S.patientHidden) }) : null));

    parts.push(el('section', { class: 'panel', id: 'question' }, el('h2', { text: T(S.question) }),
      el('p', { class: 'prose', text: c ? c.summary : page.summary })));

    if (c && !observer) {
      const refs = [...(c.records || []), ...(c.imaging || []), ...(c.documents || [])];
      parts.push(el('section', { class: 'panel', id: 'records' }, el('h2', { text: T(S.records) }),
        refs.length ? el('ul', {}, refs.map((r) => el('li', { text: r }))) : el('p', { class: 'muted', text: T(S.none) })));
    }

    // People by name.
    if (c) {
      const rows = await Promise.all(invitees.map(async (i) => el('li', { 'data-role': i.role },
        el('strong', { text: i.name }), ` — ${tc.word('role', i.role)}`,
        el('span', { class: 'muted', text: ` · ${await hospitalName(i.hospital)}` }))));
      const proposed = (c.proposed_consultants || []).map((p) => el('li', {}, el('strong', { text: p.name || '' }),
        p.specialty ? el('span', { class: 'muted', text: ` · ${p.specialty}` }) : null));
      parts.push(el('section', { class: 'panel', id: 'people' }, el('h2', { text: T(S.people) }),
        rows.length ? el('ul', { class: 'people' }, rows) : el('p', { class: 'muted', text: T(S.none) }),
        status === 'requested' && proposed.length ? [el('h3', { text: T(S.proposed) }), el('ul', { class: 'people' }, proposed)] : null));
    }

    // Accept or decline (the upper hospital's doctors).
    if (status === 'requested' && hostStaff && me.practitioner) {
      const at = el('input', { type: 'datetime-local', id: 'accept-at', value: tc.localInput(Date.now() + 3600 * 1000), required: 'required' });
      const acceptBtn = el('button', { type: 'button', id: 'accept', text: T(S.acceptDo) });
      acceptBtn.addEventListener('click', () => vth.once(acceptBtn, async () => {
        const ms = tc.fromLocalInput(at.value);
        if (Number.isNaN(ms)) { tc.say(T(S.badTime), 'error'); return; }
        try {
          await vth.json('POST', `consultations/${encodeURIComponent(id)}/accept`, { scheduled_at: ms });
          tc.say(T(S.accepted), 'ok');
          await render();
        } catch (e) { tc.fail(e); }
      }));
      const reason = el('textarea', { id: 'decline-reason', class: 'prose', rows: '3' });
      const declineBtn = el('button', { type: 'button', id: 'decline', class: 'secondary', text: T(S.declineDo) });
      declineBtn.addEventListener('click', () => vth.once(declineBtn, async () => {
        if (!reason.value.trim()) { tc.say(T(S.needReason), 'error'); reason.focus(); return; }
        try {
          await vth.json('POST', `consultations/${encodeURIComponent(id)}/decline`, { reason: reason.value.trim() });
          tc.say(T(S.declined), 'ok');
          await render();
        } catch (e) { tc.fail(e); }
      }));
      parts.push(el('section', { class: 'panel', id: 'triage' },
        el('h2', { text: T(S.accept) }), el('p', { class: 'hint', text: T(S.acceptHint) }),
        tc.field('accept-at', T(S.when), at), el('div', { class: 'row' }, acceptBtn),
        el('h2', { text: T(S.decline) }), tc.field('decline-reason', T(S.reason), reason), el('div', { class: 'row' }, declineBtn)));
    }

    // The room.
    if (status === 'accepted' && mine) {
      const enter = el('button', { type: 'button', id: 'enter-room', text: T(S.enter) });
      enter.addEventListener('click', () => vth.once(enter, async () => {
        try {
          tc.say(T(S.entering), 'info');
          const r = await vth.json('POST', `consultations/${encodeURIComponent(id)}/join-token`);
          tc.openRoom(r.room_url);
          tc.say(T(S.roomHint), 'ok');
        } catch (e) { tc.fail(e); }
      }));
      parts.push(el('section', { class: 'panel', id: 'room' }, el('h2', { text: T(S.room) }),
        el('p', { class: 'hint', text: `${tc.word('role', mine.role)} · ${T(S.roomHint)}` }), enter));
    }

    // The network session.
    if (c && c.session) {
      parts.push(el('section', { class: 'panel', id: 'session' }, el('h2', { text: T(S.session) }),
        el('p', { text: fill(S.sessionIs, { title: c.session.title, at: vth.when(c.session.starts_at) }) })));
    } else if (status === 'accepted' && isChair) {
      const title = el('input', { type: 'text', id: 'session-title', maxlength: '300' });
      const at = el('input', { type: 'datetime-local', id: 'session-at', value: tc.localInput(c.scheduled_at || Date.now()) });
      const open = el('button', { type: 'button', id: 'open-session', class: 'secondary', text: T(S.sessionDo) });
      open.addEventListener('click', () => vth.once(open, async () => {
        if (!title.value.trim()) { tc.say(T(S.needTitle), 'error'); title.focus(); return; }
        const body = { title: title.value.trim() };
        const ms = tc.fromLocalInput(at.value);
        if (!Number.isNaN(ms)) body.starts_at = ms;
        try {
          await vth.json('POST', `consultations/${encodeURIComponent(id)}/session`, body);
          tc.say(T(S.sessionOpened), 'ok');
          await render();
        } catch (e) { tc.fail(e); }
      }));
      parts.push(el('section', { class: 'panel', id: 'session' }, el('h2', { text: T(S.session) }),
        el('p', { class: 'hint', text: T(S.sessionHint) }), tc.field('session-title', T(S.sessionTitle), title),
        tc.field('session-at', T(S.sessionAt), at), el('div', { class: 'row' }, open)));
    }

    // The conclusion: the chair's form, then the signed text and the acknowledgement.
    if (status === 'accepted' && isChair) {
      const a = el('textarea', { id: 'conclusion-assessment', class: 'prose', rows: '4' });
      const r = el('textarea', { id: 'conclusion-recommendations', class: 'prose', rows: '4' });
      const f = el('textarea', { id: 'conclusion-follow-up', class: 'prose', rows: '3' });
      const sign = el('button', { type: 'button', id: 'sign-conclusion', text: T(S.concludeDo) });
      sign.addEventListener('click', () => vth.once(sign, async () => {
        if (!a.value.trim()) { tc.say(T(S.needAssessment), 'error'); a.focus(); return; }
        try {
          await vth.json('POST', `consultations/${encodeURIComponent(id)}/conclusion`, {
            assessment: a.value.trim(), recommendations: r.value.trim() || null, follow_up: f.value.trim() || null,
          });
          tc.say(T(S.concluded), 'ok');
          await render();
        } catch (e) { tc.fail(e); }
      }));
      parts.push(el('section', { class: 'panel', id: 'conclusion-form' }, el('h2', { text: T(S.conclusion) }),
        tc.field('conclusion-assessment', T(S.assessment), a), tc.field('conclusion-recommendations', T(S.recommendations), r),
        tc.field('conclusion-follow-up', T(S.followUp), f), el('div', { class: 'row' }, sign)));
    }
    if (c && c.signed_conclusion && !observer) {
      const sc = c.signed_conclusion;
      const block = [el('h2', { text: T(S.conclusion) }),
        el('div', { class: 'conclusion' },
          el('h3', { text: T(S.assessment) }), el('p', { id: 'conclusion-text', text: sc.assessment }),
          sc.recommendations ? [el('h3', { text: T(S.recommendations) }), el('p', { text: sc.recommendations })] : null,
          sc.follow_up ? [el('h3', { text: T(S.followUp) }), el('p', { text: sc.follow_up })] : null),
        el('p', { class: 'muted', text: fill(S.signed, { name: [sc.signed_by_title, sc.signed_by_name].filter(Boolean).join(' '), at: vth.when(sc.signed_at) }) })];
      if (c.delivered_reference) {
        block.push(el('p', { id: 'delivered', class: 'hint', text: fill(S.delivered, { hospital: c.requesting_hospital_name || '' }) }));
      }
      if (c.acknowledged_at) {
        block.push(el('p', { id: 'acknowledged', class: 'hint', text: fill(S.ackedBy, { name: c.acknowledged_by_name || '', at: vth.when(c.acknowledged_at) }) }));
      } else if (isRequester || (ofRequesting && me.practitioner)) {
        const ack = el('button', { type: 'button', id: 'acknowledge', text: T(S.ack) });
        ack.addEventListener('click', () => vth.once(ack, async () => {
          try {
            await vth.json('POST', `consultations/${encodeURIComponent(id)}/acknowledge`);
            tc.say(T(S.acked), 'ok');
            await render();
          } catch (e) { tc.fail(e); }
        }));
        block.push(el('div', { class: 'row' }, ack));
      }
      parts.push(el('section', { class: 'panel', id: 'conclusion' }, block));
    }

    // Timeline.
    if (c) {
      let events = [];
      try { events = (await vth.json('GET', `consultations/${encodeURIComponent(id)}/events`)).events || []; } catch { events = []; }
      parts.push(el('section', { class: 'panel', id: 'timeline' }, el('h2', { text: T(S.timeline) }),
        events.length ? el('ol', { class: 'timeline' }, events.map((e) => el('li', { 'data-type': e.type },
          el('time', { text: vth.when(e.at) }), el('strong', { text: tc.word('event', e.type) }),
          e.actor_name ? ` — ${e.actor_name}` : ''))) : el('p', { class: 'muted', text: T(S.noTimeline) })));
    }

    const reload = el('button', { type: 'button', id: 'reload', class: 'secondary', text: T(S.reload) });
    reload.addEventListener('click', () => vth.once(reload, () => render().catch(tc.fail)));
    parts.push(el('div', { class: 'row' }, reload));
    content.replaceChildren(...parts);
    content.removeAttribute('aria-busy');
    document.body.dataset.status = status;
    shownState = c ? stateOf(c) : null;
    document.body.dataset.ready = 'true';
  }

  await loadSpecialties();
  try { await render(); } catch (e) { tc.fail(e); content.removeAttribute('aria-busy'); document.body.dataset.ready = 'error'; }

  // Follow the consultation: when its state moves on (accepted, concluded, acknowledged,
  // opened to the network), redraw, unless the person is typing in a form.
  setInterval(async () => {
    if (document.visibilityState !== 'visible' || shownState === null) return;
    const busy = (content.contains(document.activeElement) && document.activeElement !== document.body)
      || [...content.querySelectorAll('textarea, input[type=text]')].some((x) => x.value.trim());
    if (busy) return;
    try {
      const c = await vth.json('GET', `consultations/${encodeURIComponent(id)}`);
      if (stateOf(c) !== shownState) await render();
    } catch { /* the next tick tries again */ }
  }, 10000);
})();
