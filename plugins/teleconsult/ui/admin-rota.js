// "Lịch trực hội chẩn": the host admin sets each specialty's on-call rota (PUT /oncall/{code})
// with doctors picked by name from the practitioner directory.
(async function () {
  'use strict';
  const { el, say, who, t } = adm;
  const S = {
    title: { vi: 'Lịch trực hội chẩn', en: 'On-call rotas' },
    intro: { vi: 'Mỗi chuyên khoa có bác sĩ trực nhận yêu cầu khẩn ngay, nhóm chuyên khoa được báo khi không ai trả lời, và bạn là cấp cuối cùng.',
      en: 'Each specialty has on-call doctors paged at once for urgent requests, a group paged when nobody answers, and you as the last step.' },
    current: { vi: 'Lịch trực hiện có', en: 'Current rotas' },
    edit: { vi: 'Đặt lịch trực', en: 'Set a rota' },
    specialty: { vi: 'Chuyên khoa', en: 'Specialty' },
    name: { vi: 'Tên chuyên khoa hiển thị', en: 'Name shown' },
    onCall: { vi: 'Bác sĩ trực', en: 'On call' },
    group: { vi: 'Nhóm chuyên khoa (báo khi bác sĩ trực không trả lời)', en: 'Specialty group (paged when on-call doctors do not answer)' },
    minutes: { vi: 'Nhắc lại và chuyển cấp (phút)', en: 'Reminders and escalation (minutes)' },
    resend: { vi: 'Nhắc lại sau mỗi', en: 'Remind every' },
    escalate: { vi: 'Chuyển cho nhóm sau (khẩn)', en: 'Escalate to the group after (urgent)' },
    routine: { vi: 'Chuyển cho nhóm sau (thường quy)', en: 'Escalate to the group after (routine)' },
    save: { vi: 'Lưu lịch trực', en: 'Save the rota' },
    none: { vi: 'Chưa có lịch trực nào.', en: 'No rota yet.' },
    nobody: { vi: 'Chưa chọn ai.', en: 'Nobody yet.' },
    remove: { vi: 'Bỏ', en: 'Remove' },
    addOnCall: { vi: '+ Trực', en: '+ On call' },
    addGroup: { vi: '+ Nhóm', en: '+ Group' },
    change: { vi: 'Sửa', en: 'Edit' },
    saved: { vi: 'Đã lưu lịch trực {name}.', en: 'Rota {name} saved.' },
    already: { vi: '{name} đã có trong danh sách.', en: '{name} is already listed.' },
    fullOnCall: { vi: 'Không thêm được {name}: tối đa 10 bác sĩ trực cùng lúc.', en: 'Cannot add {name}: at most 10 doctors on call at once.' },
    fullGroup: { vi: 'Không thêm được {name}: nhóm chuyên khoa tối đa 60 bác sĩ.', en: 'Cannot add {name}: at most 60 doctors in a group.' },
    needOnCall: { vi: 'Cần ít nhất một bác sĩ trực.', en: 'At least one doctor must be on call.' },
    needName: { vi: 'Cần tên chuyên khoa.', en: 'The specialty needs a name.' },
    escalation: { vi: 'Nhắc lại mỗi {r} phút; chuyển nhóm sau {e} phút (khẩn), {q} phút (thường quy); cuối cùng: {admin}.',
      en: 'Reminder every {r} min; to the group after {e} min (urgent), {q} min (routine); last: {admin}.' },
    updated: { vi: 'Cập nhật', en: 'Updated' },
    other: { vi: 'Chuyên khoa khác…', en: 'Other specialty…' },
    code: { vi: 'Mã chuyên khoa (a-z, 0-9, -)', en: 'Specialty code (a-z, 0-9, -)' },
  };
  const SPECIALTIES = [
    ['tim-mach', 'Tim mạch', 'Cardiology'], ['noi-khoa', 'Nội khoa', 'Internal medicine'],
    ['nhi-khoa', 'Nhi khoa', 'Paediatrics'], ['san-phu-khoa', 'Sản phụ khoa', 'Obstetrics and gynaecology'],
    ['ngoai-khoa', 'Ngoại khoa', 'Surgery'], ['than-kinh', 'Thần kinh', 'Neurology'],
    ['ho-hap', 'Hô hấp', 'Respiratory medicine'], ['ung-buou', 'Ung bướu', 'Oncology'],
    ['hoi-suc-cap-cuu', 'Hồi sức cấp cứu', 'Emergency and critical care'], ['truyen-nhiem', 'Truyền nhiễm', 'Infectious diseases'],
  ];
  const fill = (s, v) => s.replace(/\{(\w+)\}/g, (_, k) => v[k] ?? '');
  vth.translate(S);

  const state = { code: '', onCall: [], group: [], rotas: [] };
  const select = document.getElementById('specialty');
  const nameInput = document.getElementById('rota-name');

  function options() {
    const known = new Map(SPECIALTIES.map(([c, vi, en]) => [c, { vi, en }]));
    state.rotas.forEach((r) => { if (!known.has(r.code)) known.set(r.code, { vi: r.name, en: r.name }); });
    select.replaceChildren(...[...known].map(([c, n]) => el('option', { value: c }, t(n))));
  }

  function renderChosen(listId, people, max) {
    const ul = document.getElementById(listId);
    document.getElementById(listId + '-count').textContent = `(${people.length}/${max})`;
    if (!people.length) { ul.replaceChildren(el('li', { class: 'empty' }, t(S.nobody))); return; }
    ul.replaceChildren(...people.map((p, i) => el('li', { 'data-name': p.name }, who(p),
      (() => { const b = el('button', { type: 'button', class: 'secondary small', 'aria-label': t(S.remove) + ' ' + p.name }, t(S.remove));
        b.addEventListener('click', () => { people.splice(i, 1); render(); }); return b; })())));
  }

  function render() {
    renderChosen('on-call', state.onCall, 10);
    renderChosen('group', state.group, 60);
  }

  function add(list, max, full, p) {
    if (list.some((x) => x.id === p.id)) { adm.note(fill(t(S.already), { name: p.name }), 'error'); return; }
    if (list.length >= max) { adm.note(fill(t(full), { name: p.name }), 'error'); return; }
    list.push({ id: p.id, name: p.name, title: p.title, hospital_name: p.hospital_name });
    adm.note('');
    render();
  }

  adm.picker(document.getElementById('picker'), 'doctor', (p) => {
    const a = el('button', { type: 'button', class: 'small', 'data-add': 'on-call' }, t(S.addOnCall));
    a.addEventListener('click', () => add(state.onCall, 10, S.fullOnCall, p));
    const b = el('button', { type: 'button', class: 'secondary small', 'data-add': 'group' }, t(S.addGroup));
    b.addEventListener('click', () => add(state.group, 60, S.fullGroup, p));
    return [a, b];
  }, () => ({ hospital: 'here' }));

  function edit(r) {
    if (![...select.options].some((o) => o.value === r.code)) select.append(el('option', { value: r.code }, r.name));
    select.value = r.code;
    nameInput.value = r.name;
    state.onCall = r.on_call.map((p) => ({ ...p }));
    state.group = r.group.map((p) => ({ ...p }));
    document.getElementById('resend').value = r.resend_minutes;
    document.getElementById('escalate').value = r.escalate_after_minutes;
    document.getElementById('routine').value = r.routine_escalate_after_minutes;
    render();
    document.getElementById('editor').scrollIntoView({ block: 'start' });
  }

  // The rota's own name; in English, the English name of a known specialty.
  function label(r) {
    const s = SPECIALTIES.find(([c]) => c === r.code);
    return vth.lang === 'en' && s ? s[2] : r.name;
  }

  function names(people) { return people.map((p) => p.name).join(', ') || '—'; }

  function renderRotas() {
    const ul = document.getElementById('rotas');
    if (!state.rotas.length) { ul.replaceChildren(el('li', { class: 'muted' }, t(S.none))); return; }
    ul.replaceChildren(...state.rotas.map((r) => {
      const b = el('button', { type: 'button', class: 'secondary small', 'data-edit': r.code }, t(S.change));
      b.addEventListener('click', () => edit(r));
      return el('li', { 'data-rota': r.code },
        el('h3', {}, label(r)),
        el('dl', { class: 'facts' },
          el('dt', {}, t(S.onCall)), el('dd', {}, names(r.on_call)),
          el('dt', {}, t({ vi: 'Nhóm chuyên khoa', en: 'Group' })), el('dd', {}, names(r.group)),
          el('dt', {}, t(S.minutes)), el('dd', {}, fill(t(S.escalation), { r: r.resend_minutes, e: r.escalate_after_minutes, q: r.routine_escalate_after_minutes, admin: r.admin && r.admin.name })),
          el('dt', {}, t(S.updated)), el('dd', {}, vth.when(r.updated_at))),
        el('div', { class: 'row' }, b));
    }));
  }

  async function load() {
    const { rotas } = await vth.json('GET', 'oncall');
    state.rotas = rotas.sort((a, b) => a.name.localeCompare(b.name, 'vi'));
    renderRotas();
  }

  select.addEventListener('change', () => {
    const r = state.rotas.find((x) => x.code === select.value);
    if (r) { edit(r); return; }
    const s = SPECIALTIES.find(([c]) => c === select.value);
    nameInput.value = s ? s[1] : '';
  });

  const save = document.getElementById('save');
  save.addEventListener('click', () => vth.once(save, async () => {
    const name = nameInput.value.trim();
    if (!name) { say(t(S.needName), 'error'); return; }
    if (!state.onCall.length) { say(t(S.needOnCall), 'error'); return; }
    const num = (id) => Number(document.getElementById(id).value);
    try {
      const r = await vth.json('PUT', 'oncall/' + encodeURIComponent(select.value), {
        name,
        on_call: state.onCall.map((p) => p.id),
        group: state.group.map((p) => p.id),
        resend_minutes: num('resend'),
        escalate_after_minutes: num('escalate'),
        routine_escalate_after_minutes: num('routine'),
      });
      await load();
      say(fill(t(S.saved), { name: r.name }), 'ok');
      document.body.dataset.saved = r.code;
    } catch (e) {
      say(e.message, 'error');
    }
  }));

  try {
    await load();
    options();
    const first = state.rotas[0];
    if (first) edit(first); else { select.value = 'tim-mach'; nameInput.value = 'Tim mạch'; render(); }
    window.scrollTo(0, 0);
  } catch (e) {
    say(e.message, 'error');
  }
  document.body.dataset.ready = 'true';
})();
