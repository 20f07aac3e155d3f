// The e-pharmacy's order queue for the hospital's staff: GET queue (the
// paid orders, without who ordered them), shown as a table.
const strings = {
  title: { vi: 'Hàng đợi đơn thuốc', en: 'Order queue' },
  hint: {
    vi: 'Các đơn đã thanh toán của bệnh viện, mới nhất trước. Nhà thuốc đối tác cập nhật trạng thái cấp phát và giao hàng.',
    en: "The hospital's paid orders, newest first. The pharmacy partner updates dispensing and delivery.",
  },
  reload: { vi: 'Tải lại', en: 'Reload' },
  empty: { vi: 'Chưa có đơn thuốc nào đã thanh toán.', en: 'No paid orders yet.' },
  order: { vi: 'Mã đơn', en: 'Order' },
  medication: { vi: 'Thuốc', en: 'Medication' },
  quantity: { vi: 'Số lượng', en: 'Quantity' },
  amount: { vi: 'Thành tiền', en: 'Amount' },
  pharmacy: { vi: 'Nhà thuốc', en: 'Pharmacy' },
  status: { vi: 'Trạng thái', en: 'Status' },
  refunded: { vi: 'Đã hoàn {amount}', en: '{amount} refunded' },
  count: { vi: '{n} đơn', en: '{n} orders' },
};
const STATUS = {
  confirmed: { vi: 'đã xác nhận, chờ cấp phát', en: 'confirmed, to dispense', cls: 'warn' },
  dispensed: { vi: 'đã cấp phát', en: 'dispensed', cls: 'ok' },
  'out-for-delivery': { vi: 'đang giao', en: 'out for delivery', cls: 'ok' },
  delivered: { vi: 'đã giao', en: 'delivered', cls: 'ok' },
  cancelled: { vi: 'đã hủy', en: 'cancelled', cls: 'bad' },
};
const money = new Intl.NumberFormat(vth.lang === 'vi' ? 'vi-VN' : 'en-GB', { style: 'currency', currency: 'VND' });
const say = (text, kind) => {
  const box = document.getElementById('message');
  box.className = `msg ${kind}`;
  box.textContent = text;
};

async function load() {
  const { orders } = await vth.json('GET', 'queue');
  const box = document.getElementById('queue');
  if (!orders.length) {
    box.replaceChildren(vth.el('p', { class: 'muted', id: 'queue-empty', text: vth.t(strings.empty) }));
    return;
  }
  // Order ids count up (dh-1, dh-2, …): newest first.
  orders.sort((a, b) => Number(String(b.id).replace(/\D/g, '')) - Number(String(a.id).replace(/\D/g, '')));
  const status = (o) => {
    const s = STATUS[o.status];
    const pill = vth.el('span', { class: `pill ${s ? s.cls : ''}`, text: s ? vth.t(s) : o.status });
    return o.refunded ? [pill, ' ', vth.t(strings.refunded).replace('{amount}', money.format(o.refunded))] : pill;
  };
  box.replaceChildren(
    vth.el('p', { class: 'muted', text: vth.t(strings.count).replace('{n}', orders.length) }),
    vth.table(
      [vth.t(strings.order), vth.t(strings.medication), vth.t(strings.quantity), vth.t(strings.amount), vth.t(strings.pharmacy), vth.t(strings.status)],
      orders.map((o) => [o.id, o.medication || '', String(o.quantity), money.format(o.amount), o.pharmacy, status(o)]),
      { id: 'orders' },
    ),
  );
}

vth.translate(strings);
const reload = document.getElementById('reload');
reload.addEventListener('click', () => vth.once(reload, () => load().catch((e) => say(e.message, 'error'))));
load().then(() => { document.body.dataset.ready = 'true'; }, (e) => say(e.message, 'error'));
