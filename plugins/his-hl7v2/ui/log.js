// The HIS adapter's message log for the hospital admin: GET log, newest first.
const strings = {
  title: { vi: 'Nhật ký bản tin HL7', en: 'HL7 message log' },
  hint: {
    vi: 'Các bản tin HIS gửi đến gần nhất và kết quả xác nhận (ACK). Nhật ký không lưu dữ liệu người bệnh.',
    en: 'The latest messages from the HIS and how they were acknowledged (ACK). The log keeps no patient data.',
  },
  reload: { vi: 'Tải lại', en: 'Reload' },
  empty: { vi: 'Chưa nhận bản tin nào.', en: 'No message received yet.' },
  at: { vi: 'Thời điểm (giờ Việt Nam)', en: 'Time (Viet Nam)' },
  type: { vi: 'Loại bản tin', en: 'Message type' },
  control: { vi: 'Mã bản tin (MSH-10)', en: 'Control ID (MSH-10)' },
  ack: { vi: 'Kết quả', en: 'Outcome' },
  resources: { vi: 'Hồ sơ đã lưu', en: 'Records stored' },
  issue: { vi: 'Lý do', en: 'Reason' },
  summary: { vi: '{n} bản tin: {aa} chấp nhận, {ae} lỗi, {ar} từ chối', en: '{n} messages: {aa} accepted, {ae} errors, {ar} rejected' },
};
const ACK = {
  AA: { vi: 'AA: đã chấp nhận và lưu', en: 'AA: accepted and stored', cls: 'ok' },
  AE: { vi: 'AE: lỗi bản tin, không lưu', en: 'AE: message error, nothing stored', cls: 'bad' },
  AR: { vi: 'AR: từ chối, HIS cần gửi lại', en: 'AR: rejected, the HIS should resend', cls: 'warn' },
};
const TYPES = {
  ADT: { vi: 'hành chính, lượt khám', en: 'admission, visit' },
  ORM: { vi: 'chỉ định', en: 'order' },
  OML: { vi: 'chỉ định xét nghiệm', en: 'lab order' },
  ORU: { vi: 'kết quả', en: 'results' },
};
const say = (text, kind) => {
  const box = document.getElementById('message');
  box.className = `msg ${kind}`;
  box.textContent = text;
};

async function load() {
  const { entries } = await vth.json('GET', 'log?limit=100');
  const box = document.getElementById('log');
  if (!entries.length) {
    box.replaceChildren(vth.el('p', { class: 'muted', id: 'log-empty', text: vth.t(strings.empty) }));
    return;
  }
  const count = (code) => String(entries.filter((e) => e.ack_code === code).length);
  const fill = (s, vars) => s.replace(/\{(\w+)\}/g, (_, k) => vars[k]);
  const type = (e) => {
    const words = TYPES[e.message_type.split('^')[0]];
    return e.message_type ? `${e.message_type}${words ? ` (${vth.t(words)})` : ''}` : '—';
  };
  const ack = (e) => {
    const a = ACK[e.ack_code];
    return vth.el('span', { class: `pill ${a ? a.cls : ''}`, 'data-ack': e.ack_code, text: a ? vth.t(a) : e.ack_code });
  };
  box.replaceChildren(
    vth.el('p', { class: 'muted', id: 'log-summary', text: fill(vth.t(strings.summary), { n: entries.length, aa: count('AA'), ae: count('AE'), ar: count('AR') }) }),
    vth.table(
      [vth.t(strings.at), vth.t(strings.type), vth.t(strings.control), vth.t(strings.ack), vth.t(strings.resources), vth.t(strings.issue)],
      entries.map((e) => [vth.when(e.at_millis), type(e), e.control_id || '—', ack(e), String(e.resources), e.issue || '']),
      { id: 'log-table' },
    ),
  );
}

vth.translate(strings);
const reload = document.getElementById('reload');
reload.addEventListener('click', () => vth.once(reload, () => load().catch((e) => say(e.message, 'error'))));
load().then(() => { document.body.dataset.ready = 'true'; }, (e) => say(e.message, 'error'));
