// "Kíp chỉ đạo tuyến 1-4-4-2": the host admin builds a mentoring roster (PUT /rosters/{id})
// from doctors picked by name, one tier at a time, within the 1-4-4-2 limits.
(async function () {
  'use strict';
  const { el, say, who, t } = adm;
  const LIMITS = { central: 1, provincial: 4, district: 4, commune: 2 };
  const ORDER = ['central', 'provincial', 'district', 'commune'];
  const S = {
    title: { vi: 'Kíp chỉ đạo tuyến 1-4-4-2', en: '1-4-4-2 mentoring rosters' },
    intro: { vi: 'Một kíp gồm 1 bác sĩ tuyến trung ương, tối đa 4 bác sĩ tuyến tỉnh, 4 tuyến huyện và 2 tuyến xã (nhiều nhất 11 người, mỗi tuyến ít nhất 1). Yêu cầu thường quy của bệnh viện trong kíp được báo cho các bác sĩ tuyến trên của kíp trước.',
      en: 'A roster has 1 central doctor and up to 4 provincial, 4 district and 2 commune doctors (11 at most, at least 1 per tier). Routine requests from its hospitals page its upper-tier doctors first.' },
    current: { vi: 'Các kíp hiện có', en: 'Current rosters' },
    new: { vi: 'Tạo kíp mới', en: 'New roster' },
    create: { vi: 'Tạo kíp', en: 'New roster' },
    editing: { vi: 'Sửa kíp: {name}', en: 'Edit roster: {name}' },
    name: { vi: 'Tên kíp', en: 'Roster name' },
    code: { vi: 'Mã kíp (a-z, 0-9, -)', en: 'Roster code (a-z, 0-9, -)' },
    total: { vi: 'Số thành viên', en: 'Members' },
    add: { vi: 'Thêm bác sĩ', en: 'Add a doctor' },
    addTier: { vi: 'Vào tuyến', en: 'To the tier' },
    save: { vi: 'Lưu kíp', en: 'Save the roster' },
    none: { vi: 'Chưa có kíp nào.', en: 'No roster yet.' },
    nobody: { vi: 'Chưa chọn ai.', en: 'Nobody yet.' },
    remove: { vi: 'Bỏ', en: 'Remove' },
    addButton: { vi: '+ Thêm', en: '+ Add' },
    picked: { vi: 'Đã chọn', en: 'Chosen' },
    change: { vi: 'Sửa', en: 'Edit' },
    activity: { vi: 'Hoạt động chỉ đạo', en: 'Mentoring activity' },
    del: { vi: 'Xoá', en: 'Delete' },
    deleted: { vi: 'Đã xoá kíp {name}.', en: 'Roster {name} deleted.' },
    confirmDelete: { vi: 'Xoá kíp {name}?', en: 'Delete roster {name}?' },
    saved: { vi: 'Đã lưu kíp {name} ({n} thành viên).', en: 'Roster {name} saved ({n} members).' },
    already: { vi: '{name} đã có trong kíp.', en: '{name} is already on the roster.' },
    full: { vi: 'Không thêm được {name}: tuyến {tier} đã đủ {max}/{max} bác sĩ. Kíp 1-4-4-2 có nhiều nhất 1 bác sĩ trung ương, 4 tỉnh, 4 huyện, 2 xã (11 người); hãy bỏ bớt một người trước.',
      en: 'Cannot add {name}: the {tier} tier already has {max} of {max} doctors. A 1-4-4-2 roster has at most 1 central, 4 provincial, 4 district and 2 commune doctors (11 people); remove someone first.' },
    wrongTier: { vi: '{name} thuộc {hospital} (tuyến {actual}), không phải tuyến {tier}.', en: '{name} works at {hospital} ({actual}), not a {tier} hospital.' },
    missing: { vi: 'Chưa đủ: cần ít nhất 1 bác sĩ ở tuyến {tiers}.', en: 'Incomplete: at least 1 doctor is needed in the {tiers} tier(s).' },
    needName: { vi: 'Cần tên kíp.', en: 'The roster needs a name.' },
    badCode: { vi: 'Mã kíp chỉ gồm a-z, 0-9 và dấu -, tối đa 64 ký tự.', en: 'The code is a-z, 0-9 and -, up to 64 characters.' },
    tierLegend: { vi: 'Tuyến {tier}', en: '{tier} tier' },
    gone: { vi: '(bác sĩ không còn trong danh bạ)', en: '(no longer in the directory)' },
  };
  const fill = (s, v) => s.replace(/\{(\w+)\}/g, (_, k) => v[k] ?? '');
  vth.translate(S);

  const state = { members: { central: [], provincial: [], district: [], commune: [] }, editing: null, rosters: [] };
  const tierSelect = document.getElementById('add-tier');
  tierSelect.replaceChildren(...ORDER.map((x) => el('option', { value: x }, `${adm.tier(x)} (${LIMITS[x]})`)));
  const nameInput = document.getElementById('roster-name');
  const codeInput = document.getElementById('roster-code');

  function slug(s) {
    return s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').replace(/đ/g, 'd').replace(/Đ/g, 'd')
      .toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  }
  let codeTouched = false;
  codeInput.addEventListener('input', () => { codeTouched = true; });
  nameInput.addEventListener('input', () => { if (!state.editing && !codeTouched) codeInput.value = slug(nameInput.value); });

  function count() { return ORDER.reduce((n, x) => n + state.members[x].length, 0); }

  function render() {
    document.getElementById('total').textContent = `${count()}/11`;
    document.getElementById('tiers').replaceChildren(...ORDER.map((x) => {
      const people = state.members[x];
      const list = el('ul', { class: 'chosen', id: 'tier-' + x });
      if (!people.length) list.append(el('li', { class: 'empty' }, t(S.nobody)));
      people.forEach((p, i) => {
        const b = el('button', { type: 'button', class: 'secondary small', 'aria-label': t(S.remove) + ' ' + p.name }, t(S.remove));
        b.addEventListener('click', () => { people.splice(i, 1); adm.note(''); render(); });
        list.append(el('li', { 'data-name': p.name }, who(p), b));
      });
      const c = el('span', { class: 'count' + (people.length === LIMITS[x] ? ' full' : '') }, ` (${people.length}/${LIMITS[x]})`);
      return el('fieldset', { class: 'tier', 'data-tier': x }, el('legend', {}, fill(t(S.tierLegend), { tier: adm.tier(x) }), c), list);
    }));
  }

  const chosen = (id) => ORDER.some((k) => state.members[k].some((m) => m.id === id));

  function add(p) {
    const x = tierSelect.value;
    if (chosen(p.id)) { adm.note(fill(t(S.already), { name: p.name }), 'error'); return false; }
    if (p.tier && p.tier !== x) {
      adm.note(fill(t(S.wrongTier), { name: p.name, hospital: p.hospital_name, actual: adm.tier(p.tier), tier: adm.tier(x) }), 'error');
      return false;
    }
    if (state.members[x].length >= LIMITS[x]) {
      adm.note(fill(t(S.full), { name: p.name, tier: adm.tier(x).toLowerCase(), max: LIMITS[x] }), 'error');
      return false;
    }
    state.members[x].push({ id: p.id, name: p.name, title: p.title, hospital_name: p.hospital_name });
    adm.note('');
    render();
    return true;
  }

  adm.picker(document.getElementById('picker'), 'doctor', (p) => {
    const b = el('button', { type: 'button', class: 'small', 'data-add': 'member' }, t(S.addButton));
    const mark = () => { b.disabled = true; b.textContent = t(S.picked); };
    if (chosen(p.id)) mark();
    b.addEventListener('click', () => { if (add(p)) mark(); });
    return [b];
  }, () => ({ tier: tierSelect.value }));
  tierSelect.addEventListener('change', () => {
    document.getElementById('doctor-results').replaceChildren();
    const q = document.getElementById('doctor-q');
    if (q.value.trim()) document.getElementById('doctor-find').click();
  });

  function reset() {
    state.editing = null;
    adm.note('');
    codeTouched = false;
    ORDER.forEach((x) => { state.members[x] = []; });
    nameInput.value = '';
    codeInput.value = '';
    codeInput.disabled = false;
    document.getElementById('editor-title').textContent = t(S.create);
    render();
  }

  function person(m) { return { id: m.id, name: m.name || t(S.gone), title: m.title, hospital_name: m.hospital_name }; }

  async function edit(id) {
    const r = await vth.json('GET', 'rosters/' + encodeURIComponent(id));
    state.editing = r.id;
    nameInput.value = r.name;
    codeInput.value = r.id;
    codeInput.disabled = true;
    state.members.central = [person(r.members.central)];
    ['provincial', 'district', 'commune'].forEach((x) => { state.members[x] = r.members[x].map(person); });
    document.getElementById('editor-title').textContent = fill(t(S.editing), { name: r.name });
    render();
    document.getElementById('editor').scrollIntoView({ block: 'start' });
  }

  async function load() {
    const { rosters } = await vth.json('GET', 'rosters');
    state.rosters = rosters;
    const ul = document.getElementById('rosters');
    if (!rosters.length) { ul.replaceChildren(el('li', { class: 'muted' }, t(S.none))); return; }
    const views = await Promise.all(rosters.map((r) => vth.json('GET', 'rosters/' + encodeURIComponent(r.id))));
    ul.replaceChildren(...views.map((r) => {
      const names = (xs) => xs.map((m) => m.name || t(S.gone)).join(', ');
      const e = el('button', { type: 'button', class: 'secondary small', 'data-edit': r.id }, t(S.change));
      e.addEventListener('click', () => edit(r.id).catch((x) => say(x.message, 'error')));
      const d = el('button', { type: 'button', class: 'danger small', 'data-delete': r.id }, t(S.del));
      d.addEventListener('click', () => vth.once(d, async () => {
        if (!window.confirm(fill(t(S.confirmDelete), { name: r.name }))) return;
        try { await vth.json('DELETE', 'rosters/' + encodeURIComponent(r.id)); await load(); say(fill(t(S.deleted), { name: r.name }), 'ok'); }
        catch (x) { say(x.message, 'error'); }
      }));
      return el('li', { 'data-roster': r.id },
        el('h3', {}, r.name),
        el('dl', { class: 'facts' },
          el('dt', {}, adm.tier('central')), el('dd', {}, names([r.members.central])),
          el('dt', {}, adm.tier('provincial')), el('dd', {}, names(r.members.provincial)),
          el('dt', {}, adm.tier('district')), el('dd', {}, names(r.members.district)),
          el('dt', {}, adm.tier('commune')), el('dd', {}, names(r.members.commune))),
        el('div', { class: 'row' }, e,
          el('a', { class: 'button small', href: adm.link('admin-activity.html', { roster: r.id }), 'data-activity': r.id }, t(S.activity)),
          d));
    }));
  }

  document.getElementById('new').addEventListener('click', () => { reset(); say(''); nameInput.focus(); });

  const save = document.getElementById('save');
  save.addEventListener('click', () => vth.once(save, async () => {
    const name = nameInput.value.trim();
    const code = codeInput.value.trim();
    if (!name) { say(t(S.needName), 'error'); return; }
    if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(code)) { say(t(S.badCode), 'error'); return; }
    const empty = ORDER.filter((x) => !state.members[x].length);
    if (empty.length) { say(fill(t(S.missing), { tiers: empty.map((x) => adm.tier(x).toLowerCase()).join(', ') }), 'error'); return; }
    try {
      const r = await vth.json('PUT', 'rosters/' + encodeURIComponent(code), {
        name,
        central: state.members.central[0].id,
        provincial: state.members.provincial.map((p) => p.id),
        district: state.members.district.map((p) => p.id),
        commune: state.members.commune.map((p) => p.id),
      });
      state.editing = r.id;
      codeInput.disabled = true;
      document.getElementById('editor-title').textContent = fill(t(S.editing), { name: r.name });
      await load();
      say(fill(t(S.saved), { name: r.name, n: count() }), 'ok');
      document.body.dataset.saved = r.id;
    } catch (e) {
      say(e.message, 'error');
    }
  }));

  try {
    reset();
    await load();
  } catch (e) {
    say(e.message, 'error');
  }
  document.body.dataset.ready = 'true';
})();
