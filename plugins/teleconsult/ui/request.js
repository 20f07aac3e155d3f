// "Yêu cầu hội chẩn": a doctor of a lower-tier hospital finds the patient
// among their own hospital's patients (this page at their own hospital's
// copy), picks the upper hospital, then (this page at the upper hospital's
// copy, opened by the console with the patient in the URL's fragment, which
// never reaches a server) the specialty, the question, the urgency, the
// records and the consultants, and files the request there.
'use strict';

(async () => {
  const S = {
    title: { vi: 'Yêu cầu hội chẩn', en: 'Request a consultation' },
    step1: { vi: '1. Bệnh nhân', en: '1. Patient' },
    search: { vi: 'Tìm bệnh nhân của bệnh viện (họ tên, số CCCD hoặc mã BHXH)', en: 'Find a patient of your hospital (name, citizen ID or insurance number)' },
    searchDo: { vi: 'Tìm', en: 'Search' },
    noneFound: { vi: 'Không tìm thấy bệnh nhân nào.', en: 'No patient found.' },
    choose: { vi: 'Chọn', en: 'Choose' },
    chosen: { vi: 'Đã chọn bệnh nhân {name}.', en: 'Patient {name} chosen.' },
    born: { vi: 'sinh', en: 'born' },
    step2: { vi: '2. Bệnh viện tuyến trên', en: '2. Upper-level hospital' },
    upper: { vi: 'Gửi tới bệnh viện', en: 'Send to' },
    noUpper: { vi: 'Không có bệnh viện tuyến trên nào trong mạng lưới (hãy mở trang từ bảng điều khiển).', en: 'No upper-level hospital found (open this page from the console).' },
    next: { vi: 'Tiếp tục', en: 'Continue' },
    needPatient: { vi: 'Hãy chọn bệnh nhân trước.', en: 'Choose the patient first.' },
    needUpper: { vi: 'Hãy chọn bệnh viện tuyến trên.', en: 'Choose the upper-level hospital.' },
    opening: { vi: 'Đang mở mẫu yêu cầu của {hospital}…', en: 'Opening {hospital}\'s request form…' },
    startHere: { vi: 'Hãy bắt đầu yêu cầu từ trang "Yêu cầu hội chẩn" của bệnh viện bạn (để chọn bệnh nhân).', en: 'Start from your own hospital\'s "Request a consultation" page (to choose the patient).' },
    to: { vi: 'Yêu cầu hội chẩn gửi {hospital}', en: 'Consultation request to {hospital}' },
    patient: { vi: 'Bệnh nhân', en: 'Patient' },
    specialty: { vi: 'Chuyên khoa', en: 'Specialty' },
    onCall: { vi: 'trực: {names}', en: 'on call: {names}' },
    noSpecialties: { vi: 'Bệnh viện chưa khai báo chuyên khoa trực hội chẩn; yêu cầu vẫn được chuyển tới kíp chỉ đạo tuyến.', en: 'No specialty rota yet; the request goes to the mentoring roster.' },
    question: { vi: 'Câu hỏi hội chẩn (tóm tắt bệnh án, điều cần hỏi ý kiến)', en: 'Question (case summary, what you ask)' },
    urgency: { vi: 'Mức độ', en: 'Urgency' },
    urgentHint: { vi: 'gọi ngay bác sĩ trực', en: 'pages the on-call doctors at once' },
    routineHint: { vi: 'gửi kíp chỉ đạo tuyến', en: 'goes to the mentors' },
    records: { vi: 'Hồ sơ đính kèm (mỗi dòng một hồ sơ, ví dụ DiagnosticReport/xn-123, ImagingStudy/ct-1)', en: 'Attached records (one per line, e.g. DiagnosticReport/xn-123, ImagingStudy/ct-1)' },
    consultants: { vi: 'Đề xuất bác sĩ hội chẩn', en: 'Propose consultants' },
    noConsultants: { vi: 'Chưa có bác sĩ nào trong danh bạ của chuyên khoa này.', en: 'No doctor of this specialty in the directory yet.' },
    submit: { vi: 'Gửi yêu cầu', en: 'Send the request' },
    sent: { vi: 'Đã gửi yêu cầu {id}.', en: 'Request {id} sent.' },
    needQuestion: { vi: 'Hãy ghi câu hỏi hội chẩn.', en: 'Write the question.' },
  };
  const T = vth.t;
  const fill = (d, vars) => T(d).replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined ? '' : vars[k]));
  const el = vth.el;
  vth.translate(S);
  const content = document.getElementById('content');
  const ids = (p) => (p.identifiers || []).map((i) => `${i.system.includes('cccd') ? 'CCCD' : i.system.includes('bhxh') ? 'BHXH' : ''} ${i.value}`).join(' · ');

  const ctx = await tc.context().catch((e) => { tc.fail(e); return null; });
  if (!ctx) return;
  const own = ctx.me.hospital && ctx.me.hospital.id === ctx.hospital.id;

  // ---- at the doctor's own hospital: the patient and the upper hospital ----
  async function atOwnHospital() {
    let chosen = null;
    const q = el('input', { type: 'search', id: 'patient-q', autocomplete: 'off' });
    const go = el('button', { type: 'button', id: 'patient-search', text: T(S.searchDo) });
    const results = el('div', { id: 'patient-results' });
    const chosenLine = el('p', { id: 'patient-chosen', class: 'hint' });
    const find = () => vth.once(go, async () => {
      if (!q.value.trim()) return;
      try {
        const { patients } = await vth.json('GET', `patients?q=${encodeURIComponent(q.value.trim())}`);
        results.replaceChildren(patients.length ? el('ul', { class: 'cards' }, patients.map((p, i) => {
          const b = el('button', { type: 'button', class: 'secondary', 'data-patient': String(i), text: `${T(S.choose)} ${p.name}` });
          b.addEventListener('click', () => {
            chosen = p;
            chosenLine.textContent = fill(S.chosen, { name: p.name });
            for (const x of results.querySelectorAll('li')) x.removeAttribute('aria-current');
            b.closest('li').setAttribute('aria-current', 'true');
            document.getElementById('upper-panel').hidden = false;
          });
          return el('li', {}, el('strong', { text: p.name }),
            el('div', { class: 'muted', text: [p.birth_date ? `${T(S.born)} ${p.birth_date}` : '', ids(p)].filter(Boolean).join(' · ') }), b);
        })) : el('p', { class: 'muted', text: T(S.noneFound) }));
      } catch (e) { tc.fail(e); }
    });
    go.addEventListener('click', find);
    q.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); find(); } });

    const hospitals = await tc.hospitals();
    const myRank = tc.rank(ctx.hospital.tier);
    const uppers = hospitals.filter((h) => tc.rank(h.tier) < myRank).sort((a, b) => tc.rank(a.tier) - tc.rank(b.tier) || a.name.localeCompare(b.name));
    const next = el('button', { type: 'button', id: 'continue', text: T(S.next) });
    next.addEventListener('click', () => {
      if (!chosen) { tc.say(T(S.needPatient), 'error'); return; }
      const upper = tc.picked('upper');
      const h = uppers.find((x) => x.id === upper);
      if (!h) { tc.say(T(S.needUpper), 'error'); return; }
      const state = { patient: { reference: chosen.reference, identifiers: chosen.identifiers, name: chosen.name, birth_date: chosen.birth_date } };
      tc.say(fill(S.opening, { hospital: h.name }), 'info');
      if (!tc.openAt(h.id, `/ui/request.html#${encodeURIComponent(JSON.stringify(state))}`, T(S.title))) tc.say(T(S.noUpper), 'error');
    });
    tc.show(content, 
      el('section', { class: 'panel', id: 'patient-panel' }, el('h2', { text: T(S.step1) }),
        tc.field('patient-q', T(S.search), q), el('div', { class: 'row' }, go), results, chosenLine),
      el('section', { class: 'panel', id: 'upper-panel', hidden: 'hidden' }, el('h2', { text: T(S.step2) }),
        uppers.length ? tc.radios('upper', T(S.upper), uppers.map((h) => ({ value: h.id, label: h.name, hint: `(${tc.word('tier', h.tier)})` })), uppers.length === 1 ? uppers[0].id : null)
          : el('p', { class: 'muted', text: T(S.noUpper) }),
        el('div', { class: 'row' }, next)));
    content.removeAttribute('aria-busy');
    document.body.dataset.ready = 'true';
    document.body.dataset.step = 'patient';
  }

  // ---- at the upper hospital: the request itself ----
  async function atUpperHospital() {
    let state = null;
    try { state = JSON.parse(decodeURIComponent(location.hash.slice(1))); } catch { state = null; }
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
    if (!state || !state.patient) {
      tc.show(content, el('p', { id: 'start-here', text: T(S.startHere) }));
      content.removeAttribute('aria-busy');
      document.body.dataset.ready = 'true';
      return;
    }
    const p = state.patient;
    const sp = await vth.json('GET', 'specialties');
    const specialties = sp.specialties || [];
    const consultants = el('div', { id: 'consultants' });
    const loadConsultants = async (code) => {
      try {
        const { practitioners } = await vth.json('GET', `practitioners${code ? `?specialty=${encodeURIComponent(code)}` : ''}`);
        const mine = practitioners.filter((d) => d.hospital === ctx.hospital.id);
        consultants.replaceChildren(mine.length ? el('fieldset', { class: 'choices', id: 'consultant-choices' }, el('legend', { text: T(S.consultants) }),
          mine.map((d, i) => el('label', { class: 'choice', for: `consultant-${i}` },
            el('input', { type: 'checkbox', id: `consultant-${i}`, value: d.id, name: 'consultant' }),
            el('span', {}, el('strong', { text: [d.title, d.name].filter(Boolean).join(' ') }),
              el('span', { class: 'hint', text: ` ${d.specialty || ''}` })))))
          : el('p', { class: 'muted', text: T(S.noConsultants) }));
      } catch (e) { tc.fail(e); }
    };
    const question = el('textarea', { id: 'question', class: 'prose', rows: '5', maxlength: '4000' });
    const records = el('textarea', { id: 'records', class: 'prose', rows: '3', spellcheck: 'false' });
    const submit = el('button', { type: 'button', id: 'submit', text: T(S.submit) });
    submit.addEventListener('click', () => vth.once(submit, async () => {
      if (!question.value.trim()) { tc.say(T(S.needQuestion), 'error'); question.focus(); return; }
      const refs = records.value.split(/[\s,;]+/).map((x) => x.trim()).filter(Boolean);
      const body = {
        patient: { reference: p.reference, identifiers: p.identifiers || [], name: p.name },
        summary: question.value.trim(),
        urgency: tc.picked('urgency') || 'routine',
        records: refs.filter((r) => !/^(ImagingStudy|DocumentReference)\//.test(r)),
        imaging: refs.filter((r) => r.startsWith('ImagingStudy/')),
        documents: refs.filter((r) => r.startsWith('DocumentReference/')),
        consultants: [...document.querySelectorAll('input[name=consultant]:checked')].map((x) => x.value),
      };
      const specialty = tc.picked('specialty');
      if (specialty) body.specialty = specialty;
      try {
        const c = await vth.json('POST', 'consultations', body);
        tc.say(fill(S.sent, { id: c.id }), 'ok');
        location.assign(`consultation.html?id=${encodeURIComponent(c.id)}&lang=${vth.lang}`);
      } catch (e) { tc.fail(e); }
    }));
    const specialtyBlock = specialties.length
      ? tc.radios('specialty', T(S.specialty), specialties.map((s) => ({
        value: s.code, label: s.name,
        hint: s.on_call && s.on_call.length ? `(${fill(S.onCall, { names: s.on_call.map((d) => d.name).join(', ') })})` : '',
      })), specialties.length === 1 ? specialties[0].code : null)
      : el('p', { class: 'muted', text: T(S.noSpecialties) });
    tc.show(content, 
      el('section', { class: 'panel', id: 'patient-panel' }, el('h2', { text: fill(S.to, { hospital: ctx.hospital.name }) }),
        el('dl', { class: 'facts' }, el('dt', { text: T(S.patient) }),
          el('dd', { id: 'patient-name', text: [p.name, p.birth_date ? `${T(S.born)} ${p.birth_date}` : '', ids(p)].filter(Boolean).join(' · ') }))),
      el('section', { class: 'panel', id: 'request-form' }, specialtyBlock,
        tc.field('question', T(S.question), question),
        tc.radios('urgency', T(S.urgency), [
          { value: 'routine', label: tc.word('urgency', 'routine'), hint: `(${T(S.routineHint)})` },
          { value: 'urgent', label: tc.word('urgency', 'urgent'), hint: `(${T(S.urgentHint)})` },
          { value: 'emergency', label: tc.word('urgency', 'emergency'), hint: `(${T(S.urgentHint)})` },
        ], 'routine'),
        tc.field('records', T(S.records), records), consultants, el('div', { class: 'row' }, submit)));
    for (const r of document.querySelectorAll('input[name=specialty]')) r.addEventListener('change', () => loadConsultants(r.value));
    await loadConsultants(tc.picked('specialty'));
    content.removeAttribute('aria-busy');
    document.body.dataset.ready = 'true';
    document.body.dataset.step = 'request';
  }

  try {
    if (own) await atOwnHospital(); else await atUpperHospital();
  } catch (e) { tc.fail(e); content.removeAttribute('aria-busy'); }
})();
