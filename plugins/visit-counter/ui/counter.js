// The visit counter's page: the hospital's count, a button that records a
// visit (POST visits), and the most recent visits (GET visits/history).
// Every call goes to the plugin's own routes through vth.json (vth.js).
const strings = {
  title: { vi: 'Bộ đếm lượt khám', en: 'Visit counter' },
  count: { vi: 'Số lượt khám đã ghi nhận', en: 'Visits recorded' },
  increment: { vi: 'Ghi nhận một lượt khám', en: 'Record a visit' },
  recent: { vi: 'Các lượt gần nhất', en: 'Most recent visits' },
  recorded: { vi: 'Đã ghi nhận lượt khám số {n}.', en: 'Visit number {n} recorded.' },
  none: { vi: 'Chưa có lượt khám nào.', en: 'No visits yet.' },
  number: { vi: 'Lượt số', en: 'Visit number' },
  at: { vi: 'Thời điểm (giờ Việt Nam)', en: 'Time (Viet Nam)' },
};
const say = (text, kind) => {
  const box = document.getElementById('message');
  box.className = `msg ${kind}`;
  box.textContent = text;
};

async function refresh() {
  const [counter, history] = await Promise.all([
    vth.json('GET', 'visits'),
    vth.json('GET', 'visits/history?limit=10'),
  ]);
  document.getElementById('count').textContent = new Intl.NumberFormat(vth.lang === 'vi' ? 'vi-VN' : 'en-GB').format(counter.visits);
  document.getElementById('count').dataset.count = String(counter.visits);
  const list = document.getElementById('history');
  list.replaceChildren(history.visits.length
    ? vth.table([vth.t(strings.number), vth.t(strings.at)],
      history.visits.map((v) => [String(v.number), vth.when(v.at_millis)]), { id: 'visits' })
    : vth.el('p', { class: 'muted', text: vth.t(strings.none) }));
}

vth.translate(strings);
const button = document.getElementById('increment');
button.addEventListener('click', () => vth.once(button, async () => {
  try {
    const r = await vth.json('POST', 'visits');
    await refresh();
    say(vth.t(strings.recorded).replace('{n}', r.visits), 'ok');
  } catch (e) {
    say(e.message, 'error');
  }
}));
refresh().then(() => { document.body.dataset.ready = 'true'; }, (e) => say(e.message, 'error'));
