// The HIS adapter's translation tester: POST translate with an HL7 v2
// message (text/plain) and show the FHIR resources it maps to as a table.
const strings = {
  title: { vi: 'Thử chuyển đổi HL7 sang FHIR', en: 'Try an HL7 to FHIR translation' },
  hint: {
    vi: 'Dán một bản tin HL7 v2 (ADT, ORM/OML, ORU) để xem nó sẽ được lưu thành những hồ sơ FHIR nào. Không có gì được lưu.',
    en: 'Paste an HL7 v2 message (ADT, ORM/OML, ORU) to see the FHIR records it would be stored as. Nothing is stored.',
  },
  label: { vi: 'Bản tin HL7 v2', en: 'HL7 v2 message' },
  submit: { vi: 'Chuyển đổi', en: 'Translate' },
  sample: { vi: 'Dùng bản tin mẫu', en: 'Use a sample message' },
  empty: { vi: 'Hãy dán một bản tin.', en: 'Paste a message first.' },
  done: { vi: 'Bản tin chuyển thành {n} hồ sơ FHIR (ACK sẽ là AA).', en: 'The message maps to {n} FHIR records (the ACK would be AA).' },
  refused: { vi: 'Bản tin không chuyển đổi được: ACK sẽ là {ack}.', en: 'The message cannot be translated: the ACK would be {ack}.' },
  kind: { vi: 'Loại hồ sơ', en: 'Record' },
  action: { vi: 'Thao tác', en: 'Action' },
  content: { vi: 'Nội dung', en: 'Content' },
  why: { vi: 'Lý do', en: 'Reason' },
  where: { vi: 'Vị trí lỗi', en: 'Error location' },
  code: { vi: 'Mã lỗi HL7', en: 'HL7 error code' },
  ack: { vi: 'ACK', en: 'ACK' },
  create: { vi: 'tạo mới', en: 'create' },
  upsert: { vi: 'tạo hoặc cập nhật theo mã', en: 'create or update by identifier' },
};
const KINDS = {
  Patient: { vi: 'Người bệnh', en: 'Patient' },
  Encounter: { vi: 'Lượt khám', en: 'Visit' },
  ServiceRequest: { vi: 'Chỉ định', en: 'Order' },
  Observation: { vi: 'Kết quả xét nghiệm, chỉ số', en: 'Result' },
  DiagnosticReport: { vi: 'Phiếu kết quả', en: 'Report' },
};
const WORDS = {
  'in-progress': { vi: 'đang khám', en: 'in progress' }, finished: { vi: 'đã kết thúc', en: 'finished' },
  planned: { vi: 'dự kiến', en: 'planned' }, active: { vi: 'đang hiệu lực', en: 'active' },
  completed: { vi: 'đã hoàn thành', en: 'completed' }, final: { vi: 'chính thức', en: 'final' },
  preliminary: { vi: 'sơ bộ', en: 'preliminary' }, amended: { vi: 'đã sửa', en: 'amended' },
  order: { vi: 'chỉ định', en: 'order' }, ambulatory: { vi: 'ngoại trú', en: 'outpatient' },
  inpatient: { vi: 'nội trú', en: 'inpatient' }, emergency: { vi: 'cấp cứu', en: 'emergency' },
  AMB: { vi: 'ngoại trú', en: 'outpatient' }, IMP: { vi: 'nội trú', en: 'inpatient' }, EMER: { vi: 'cấp cứu', en: 'emergency' },
};
const word = (w) => (w && WORDS[w] ? vth.t(WORDS[w]) : w);
// A FHIR dateTime with a time of day as a time in Viet Nam; a date as written.
const date = (d) => (d && d.length > 10 && !Number.isNaN(Date.parse(d)) ? vth.when(Date.parse(d)) : d);
const GENDER = { male: { vi: 'nam', en: 'male' }, female: { vi: 'nữ', en: 'female' }, other: { vi: 'khác', en: 'other' }, unknown: { vi: 'không rõ', en: 'unknown' } };
const SAMPLE = [
  'MSH|^~\\&|HIS|BV|VTELEHEALTH|VTH|20240305083000||ADT^A04^ADT_A01|A04-0002|P|2.5||||||UNICODE UTF-8',
  'EVN||20240306090000',
  'PID|1||BN24005678^^^BV^MR~001195012345^^^BCA^CCCD||LÊ^THỊ HỒNG NHUNG||19950412|F',
  'PV1|1|O|KKB^P05^^BV||||||||||||||||VN24000888|||||||||||||||||||||||||20240306085500',
].join('\r');
const say = (text, kind) => {
  const box = document.getElementById('message');
  box.className = `msg ${kind}`;
  box.textContent = text;
};
const fill = (s, vars) => s.replace(/\{(\w+)\}/g, (_, k) => vars[k]);
const cc = (c) => (c ? c.text || (c.coding || []).map((x) => x.display || x.code).filter(Boolean).join(', ') : '');
const qty = (q) => (q ? `${q.value ?? ''} ${q.unit || q.code || ''}`.trim() : '');

// A resource in a few words.
function summary(r) {
  switch (r.resourceType) {
    case 'Patient': {
      const n = (r.name || [])[0] || {};
      const name = n.text || [n.family, ...(n.given || [])].filter(Boolean).join(' ');
      const ids = (r.identifier || []).map((i) => i.value).filter(Boolean).join(', ');
      return [name, r.birthDate, r.gender ? vth.t(GENDER[r.gender]) || r.gender : '', ids].filter(Boolean).join(' · ');
    }
    case 'Encounter': return [r.class && word(r.class.code || r.class.display), word(r.status), date(r.period && r.period.start)].filter(Boolean).join(' · ');
    case 'ServiceRequest': return [cc(r.code), word(r.status), date(r.authoredOn)].filter(Boolean).join(' · ');
    case 'Observation': return [cc(r.code), qty(r.valueQuantity) || r.valueString || cc(r.valueCodeableConcept), r.interpretation ? cc(r.interpretation[0]) : '', date(r.effectiveDateTime)].filter(Boolean).join(' · ');
    case 'DiagnosticReport': return [cc(r.code), word(r.status), r.conclusion].filter(Boolean).join(' · ');
    default: return cc(r.code) || r.status || '';
  }
}

function action(req) {
  if (!req) return '';
  if (req.method === 'POST') return vth.t(strings.create);
  return vth.t(strings.upsert);
}

async function translate() {
  const text = document.getElementById('message-text').value;
  const result = document.getElementById('result');
  if (!text.trim()) { say(vth.t(strings.empty), 'error'); return; }
  result.replaceChildren();
  try {
    const r = await vth.text('POST', 'translate', text);
    const entries = (r.data && r.data.entry) || [];
    say(fill(vth.t(strings.done), { n: entries.length }), 'ok');
    result.replaceChildren(vth.table([vth.t(strings.kind), vth.t(strings.action), vth.t(strings.content)],
      entries.map((e) => [KINDS[e.resource.resourceType] ? vth.t(KINDS[e.resource.resourceType]) : e.resource.resourceType,
        action(e.request), summary(e.resource)]), { id: 'fhir-table' }));
  } catch (e) {
    const hl7 = e.body && e.body.hl7;
    if (e.status === 422 && hl7) {
      say(fill(vth.t(strings.refused), { ack: hl7.ack_code }), 'error');
      result.replaceChildren(vth.table([vth.t(strings.why), vth.t(strings.where), vth.t(strings.code)],
        [[e.message, hl7.error_location || '—', String(hl7.error_code)]], { id: 'issue-table' }),
      vth.el('h2', { text: vth.t(strings.ack) }), vth.el('pre', { id: 'ack', text: (hl7.ack || '').replace(/\r/g, '\n') }));
    } else {
      say(e.message, 'error');
    }
  }
}

vth.translate(strings);
const button = document.getElementById('translate');
button.addEventListener('click', () => vth.once(button, translate));
document.getElementById('sample').addEventListener('click', () => {
  document.getElementById('message-text').value = SAMPLE;
});
document.getElementById('message-text').value = SAMPLE;
document.body.dataset.ready = 'true';
