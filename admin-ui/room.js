// Consultation room page: joins the media relay over the signalling
// WebSocket (docs/video-media.md), shows everyone's video in tiles that fill
// the screen, a shared screen large, the people of the room (with the
// chair's admit, mute and remove), and the room's chat.
// Page URL: /rooms/{room}?token=... (or #token=...). For development,
// ?dev=1&name=...&role=... uses the dev join route. ?ws=/path overrides the
// WebSocket path (same origin only, so a token never leaves this server).
'use strict';

(() => {
  const TEXT = {
    vi: {
      title: 'Phòng hội chẩn', you: 'Bạn', controls: 'Điều khiển', participants: 'Người tham gia', videos: 'Hình ảnh',
      muteAudio: 'Tắt micro', unmuteAudio: 'Bật micro', muteVideo: 'Tắt camera', unmuteVideo: 'Bật camera',
      share: 'Chia sẻ màn hình', stopShare: 'Dừng chia sẻ', audioOnly: 'Chỉ âm thanh', videoBack: 'Bật lại hình ảnh',
      leave: 'Rời phòng', lang: 'English', langLabel: 'Switch to English',
      connecting: 'Đang kết nối…', connected: 'Đã kết nối', left: 'Bạn đã rời phòng', closed: 'Mất kết nối',
      reconnecting: 'Đang kết nối lại…', retry: 'Thử lại', poor: 'Mạng yếu',
      waiting: 'Đang chờ chủ tọa cho vào phòng…', waitingPreview: 'Bạn có thể kiểm tra camera và micro trong lúc chờ.',
      ended: 'Phòng đã kết thúc', removedMe: 'Chủ tọa đã mời bạn ra khỏi phòng', noToken: 'Thiếu mã tham gia (token)',
      camera: 'Không mở được camera/micro', screenFailed: 'Không chia sẻ được màn hình', error: 'Lỗi',
      chair: 'chủ tọa', presenter: 'trình bày', participant: 'tham gia', observer: 'quan sát', me: '(bạn)',
      inWaiting: 'đang chờ', admit: 'Cho vào', admitLabel: 'Cho vào phòng: ',
      muteOther: 'Tắt micro', muteOtherLabel: 'Yêu cầu tắt micro: ', remove: 'Mời ra', removeConfirm: 'Xác nhận mời ra?',
      removeLabel: 'Mời ra khỏi phòng: ', micOff: 'Micro tắt', camOff: 'Camera tắt',
      mutedBy: 'Chủ tọa {name} đã tắt micro của bạn. Bạn có thể bật lại khi cần phát biểu.',
      screenOf: 'Màn hình của {name}', yourScreen: 'Màn hình bạn đang chia sẻ', sharing: 'đang chia sẻ màn hình',
      audioOnlyOn: 'Chế độ chỉ âm thanh: không nhận và không gửi hình ảnh camera.',
      audioOnlyAuto: 'Mạng yếu: đã chuyển sang chỉ âm thanh để giữ cuộc hội chẩn.',
      poorNetwork: 'Mạng yếu: hình ảnh có thể bị giật.',
      noVideoYet: 'Đang chờ hình ảnh…',
      chat: 'Trò chuyện', chatLabel: 'Tin nhắn', send: 'Gửi', chatPlaceholder: 'Nhập tin nhắn…',
      chatObserver: 'Người quan sát theo dõi, không gửi tin nhắn.', chatNotYet: 'Trò chuyện mở khi bạn vào phòng.',
      joinedAt: 'vào lúc', people: 'Người tham gia ({n})',
      denied: 'bạn chưa cho phép trình duyệt dùng camera/micro', noDevice: 'không tìm thấy camera hoặc micro',
      busy: 'camera hoặc micro đang được ứng dụng khác dùng',
      'err-media': 'Không thiết lập được kết nối hình ảnh, âm thanh.',
      'err-bad-message': 'Yêu cầu không hợp lệ hoặc người này không còn trong phòng.',
      'err-forbidden': 'Vai trò của bạn không cho phép thao tác này.',
      'err-out-of-order': 'Chưa thực hiện được lúc này; vui lòng thử lại sau giây lát.',
      'err-bad-sdp': 'Trình duyệt và máy chủ không thống nhất được kết nối hình ảnh, âm thanh.',
      'err-unavailable': 'Máy chủ hình ảnh, âm thanh chưa sẵn sàng.',
      'err-internal': 'Máy chủ gặp lỗi; vui lòng thử lại.',
    },
    en: {
      title: 'Consultation room', you: 'You', controls: 'Controls', participants: 'Participants', videos: 'Video',
      muteAudio: 'Mute microphone', unmuteAudio: 'Unmute microphone', muteVideo: 'Turn camera off',
      unmuteVideo: 'Turn camera on', share: 'Share screen', stopShare: 'Stop sharing', audioOnly: 'Audio only',
      videoBack: 'Turn video back on',
      leave: 'Leave', lang: 'Tiếng Việt', langLabel: 'Chuyển sang tiếng Việt',
      connecting: 'Connecting…', connected: 'Connected', left: 'You left the room', closed: 'Connection lost',
      reconnecting: 'Reconnecting…', retry: 'Retry', poor: 'Poor network',
      waiting: 'Waiting for the chair to admit you…', waitingPreview: 'You can check your camera and microphone while you wait.',
      ended: 'The room has ended', removedMe: 'The chair removed you from the room', noToken: 'Missing join token',
      camera: 'Could not open camera/microphone', screenFailed: 'Could not share the screen', error: 'Error',
      chair: 'chair', presenter: 'presenter', participant: 'participant', observer: 'observer', me: '(you)',
      inWaiting: 'waiting', admit: 'Admit', admitLabel: 'Admit to the room: ',
      muteOther: 'Mute', muteOtherLabel: 'Ask to mute: ', remove: 'Remove', removeConfirm: 'Confirm removal?',
      removeLabel: 'Remove from the room: ', micOff: 'Microphone off', camOff: 'Camera off',
      mutedBy: 'The chair {name} muted your microphone. Unmute when you need to speak.',
      screenOf: 'Screen of {name}', yourScreen: 'The screen you are sharing', sharing: 'sharing the screen',
      audioOnlyOn: 'Audio only: camera video is neither received nor sent.',
      audioOnlyAuto: 'Poor network: switched to audio only to keep the consultation going.',
      poorNetwork: 'Poor network: video may stutter.',
      noVideoYet: 'Waiting for video…',
      chat: 'Chat', chatLabel: 'Message', send: 'Send', chatPlaceholder: 'Type a message…',
      chatObserver: 'Observers follow without sending messages.', chatNotYet: 'Chat opens once you are in the room.',
      joinedAt: 'joined at', people: 'Participants ({n})',
      denied: 'the browser was not allowed to use them', noDevice: 'no camera or microphone found',
      busy: 'another application is using them',
      'err-media': 'Could not set up audio and video.',
      'err-bad-message': 'Invalid request, or this person is no longer in the room.',
      'err-forbidden': 'Your role does not allow this.',
      'err-out-of-order': 'Not possible right now; try again in a moment.',
      'err-bad-sdp': 'The browser and the server could not agree on audio and video.',
      'err-unavailable': 'The media server is not available.',
      'err-internal': 'The server had a problem; please try again.',
    },
  };

  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const room = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
  const token = query.get('token') || fragment.get('token');
  const dev = query.get('dev') === '1';
  let lang = query.get('lang') === 'en' ? 'en' : 'vi';
  // Times are shown as in Vietnam, whatever the computer's zone.
  const clock = () => new Intl.DateTimeFormat(lang === 'vi' ? 'vi-VN' : 'en-GB',
    { timeZone: 'Asia/Ho_Chi_Minh', hour: '2-digit', minute: '2-digit' });

  let statusKey = 'connecting';
  // The media session's list (stream ids, mute states) and, when the room
  // service sends one, its roster (hospital names, the waiting room).
  let participants = [];
  let roster = null;
  let me = null;
  // From the control plane's `admitted` (or the dev URL); only a chair sees
  // admit, mute and remove (the server refuses anyone else anyway).
  let myRole = dev ? (query.get('role') || 'participant') : null;
  const admitting = new Set();
  let confirmRemove = null;
  let localStream = null;
  let screenStream = null;
  let audioMuted = false;
  let videoMuted = false;
  let audioOnly = false;
  let audioOnlyAuto = false;
  let leaving = false;
  let finished = null; // 'ended' | 'removed' | 'left': no reconnecting
  let notice = null; // a one-off message for the banner (text)
  let net = ''; // '', 'good', 'poor', 'reconnecting', 'lost'
  // The current session, rebuilt on reconnect.
  let pc = null;
  let ws = null;
  let screenSender = null;
  let offered = false;
  let chain = Promise.resolve();
  let attempts = 0;
  let retryTimer = null;
  let autoDeclined = false;
  // Remote streams by stream id (camera and screen streams alike).
  const remote = new Map();
  const tiles = new Map();
  const chatLines = [];
  const speaking = new Set();

  // Exposed for the browser tests and the benchmark.
  const metrics = { joinRequestedAt: performance.now(), firstFrameAt: {}, errors: [], reconnects: 0 };
  const cameraStreamIds = () => new Set(participants.map((p) => p.stream_id).filter(Boolean));
  window.vthState = () => ({
    me, participants, roster, status: statusKey, errors: metrics.errors, joinRequestedAt: metrics.joinRequestedAt,
    firstFrameAt: metrics.firstFrameAt, reconnects: metrics.reconnects, audioOnly, net,
    remoteVideoTracks: Object.fromEntries([...remote].filter(([id]) => cameraStreamIds().has(id))
      .map(([id, s]) => [id, s.getVideoTracks()[0]?.id])),
    remoteScreenTracks: Object.fromEntries(participants.filter((p) => p.screen_stream_id && remote.has(p.screen_stream_id))
      .map((p) => [p.screen_stream_id, remote.get(p.screen_stream_id).getVideoTracks()[0]?.id])),
    chat: chatLines.map((l) => ({ name: l.name, text: l.text, at: l.at })),
  });

  const t = (key, vars) => {
    let s = TEXT[lang][key] || key;
    for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, v);
    return s;
  };

  // What the token allows, read for the waiting-room preview only: the
  // server decides from its own records.
  function tokenGrant() {
    try {
      const claims = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
      return { canPublish: claims.video?.canPublish !== false, role: claims.vth?.role || null };
    } catch { return { canPublish: false, role: null }; }
  }
  const mayPublishGuess = () => (dev ? (query.get('role') || 'participant') !== 'observer' : tokenGrant().canPublish);
  const mayShare = () => ['chair', 'presenter'].includes(myRole || (dev ? null : tokenGrant().role));

  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const override = query.get('ws');
    if (override && override.startsWith('/') && !override.startsWith('//')) {
      return `${scheme}//${location.host}${override}`;
    }
    const r = encodeURIComponent(room);
    if (dev) {
      const p = new URLSearchParams({ name: query.get('name') || 'dev', role: query.get('role') || 'participant' });
      if (query.get('id')) p.set('id', query.get('id'));
      return `${scheme}//${location.host}/video/dev/${r}/ws?${p}`;
    }
    if (!token) return null;
    return `${scheme}//${location.host}/video/rooms/${r}/ws?token=${encodeURIComponent(token)}`;
  }

  // ---- people -------------------------------------------------------------

  // One person, from the media list and the roster: names, never ids.
  function person(id) {
    const p = participants.find((x) => x.participant_id === id) || {};
    const r = (roster || []).find((x) => x.participant_id === id) || {};
    return {
      id, name: r.name || p.display_name || '', role: r.role || p.role, hospital: r.hospital_name || '',
      state: r.state || 'in-room', joinedAt: r.joined_at, canPublish: p.can_publish ?? (r.role !== 'observer'),
      streamId: p.stream_id, screenId: p.screen_stream_id, audioMuted: !!p.audio_muted, videoMuted: !!p.video_muted,
      inMedia: !!p.participant_id,
    };
  }

  function initials(name) {
    // "BS. Nguyễn Văn An" -> "NA": skip titles, take the first and last words.
    const words = (name || '?').split(/\s+/).filter((w) => w && !w.endsWith('.'));
    const pick = words.length > 1 ? [words[0], words[words.length - 1]] : words;
    return pick.map((w) => w[0]).join('').toUpperCase() || '?';
  }

  function svg(kind) {
    const ns = 'http://www.w3.org/2000/svg';
    const el = document.createElementNS(ns, 'svg');
    el.setAttribute('viewBox', '0 0 24 24');
    el.setAttribute('aria-hidden', 'true');
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('fill', 'currentColor');
    path.setAttribute('d', kind === 'mic'
      ? 'M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11h-2zM3.3 2.3 2 3.6l18.4 18.4 1.3-1.3z'
      : 'M17 10.5V7a1 1 0 0 0-1-1H6.8l10.2 10.2V13.5l4 4v-11l-4 4zM3.3 2.3 2 3.6 4.4 6H4a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h12c.2 0 .4-.1.6-.2l3.8 3.8 1.3-1.3z');
    el.append(path);
    return el;
  }

  // ---- tiles --------------------------------------------------------------

  function makeTile(key) {
    const fig = document.createElement('figure');
    fig.className = 'tile';
    fig.dataset.tile = key;
    const video = document.createElement('video');
    video.autoplay = true; video.playsInline = true;
    const avatar = document.createElement('div');
    avatar.className = 'avatar';
    avatar.append(document.createElement('span'));
    const state = document.createElement('div');
    state.className = 'tile-state';
    const caption = document.createElement('figcaption');
    const label = document.createElement('span');
    label.className = 'label';
    const badges = document.createElement('span');
    badges.className = 'badges';
    caption.append(label, badges);
    fig.append(video, avatar, state, caption);
    const entry = { fig, video, avatar, state, label, badges, stream: null };
    tiles.set(key, entry);
    return entry;
  }

  function attach(entry, stream, { muted = false, id = null } = {}) {
    if (entry.stream === stream) return;
    entry.stream = stream;
    entry.video.muted = muted;
    entry.video.srcObject = stream;
    if (id && 'requestVideoFrameCallback' in entry.video) {
      entry.video.requestVideoFrameCallback(() => { metrics.firstFrameAt[id] ??= performance.now(); });
    }
    // Autoplay with sound may be refused; retry muted so video still shows.
    entry.video.play().catch(() => { entry.video.muted = true; entry.video.play().catch(() => {}); });
  }

  function setLabel(entry, name, hospital, extra) {
    const n = document.createElement('span');
    n.className = 'name';
    n.textContent = name;
    const parts = [n];
    if (hospital) {
      const h = document.createElement('span');
      h.className = 'hosp';
      h.textContent = hospital;
      parts.push(h);
    }
    if (extra) parts.push(document.createTextNode(` · ${extra}`));
    entry.label.replaceChildren(...parts);
  }

  function setBadges(entry, micOff, camOff) {
    const list = [];
    for (const [on, kind, key] of [[micOff, 'mic', 'micOff'], [camOff, 'cam', 'camOff']]) {
      if (!on) continue;
      const b = document.createElement('span');
      b.className = `badge ${kind}-off`;
      b.setAttribute('role', 'img');
      b.setAttribute('aria-label', t(key));
      b.title = t(key);
      b.append(svg(kind));
      list.push(b);
    }
    entry.badges.replaceChildren(...list);
  }

  function renderTiles() {
    const wanted = [];
    const publishing = localStream && statusKey !== 'left';
    if (publishing || statusKey === 'waiting') {
      if (localStream) wanted.push({ key: 'self', self: true });
    }
    if (screenStream) wanted.push({ key: 'self-screen', selfScreen: true });
    if (statusKey !== 'waiting') {
      for (const p of participants) {
        if (p.participant_id === me) continue;
        if (p.screen_stream_id) wanted.push({ key: `screen:${p.participant_id}`, screenOf: p.participant_id });
        if (p.can_publish) wanted.push({ key: `cam:${p.participant_id}`, camOf: p.participant_id });
      }
    }
    const keys = new Set(wanted.map((w) => w.key));
    for (const [key, entry] of tiles) {
      if (!keys.has(key)) { entry.fig.remove(); tiles.delete(key); }
    }
    const box = $('tiles');
    const presenting = wanted.some((w) => w.screenOf || w.selfScreen);
    // Screens first, then cameras: the order the eye reads.
    wanted.sort((a, b) => Number(!(a.screenOf || a.selfScreen)) - Number(!(b.screenOf || b.selfScreen)));
    const mainScreen = wanted.find((w) => w.screenOf || w.selfScreen);
    wanted.forEach((w, i) => {
      const entry = tiles.get(w.key) || makeTile(w.key);
      const fig = entry.fig;
      if (box.children[i] !== fig) box.insertBefore(fig, box.children[i] || null);
      const finishClass = () => fig.classList.toggle('main', w === mainScreen);
      if (w.self) {
        fig.className = 'tile self';
        attach(entry, localStream, { muted: true });
        setLabel(entry, t('you'), '', null);
        const camOff = videoMuted || audioOnly || localStream.getVideoTracks().length === 0;
        fig.classList.toggle('video-off', camOff);
        entry.avatar.firstChild.textContent = initials(myName());
        setBadges(entry, audioMuted, camOff);
        entry.state.textContent = '';
      } else if (w.selfScreen) {
        fig.className = 'tile screen self-screen';
        attach(entry, screenStream, { muted: true });
        setLabel(entry, t('yourScreen'), '', null);
        setBadges(entry, false, false);
        entry.state.textContent = '';
      } else if (w.screenOf) {
        const p = person(w.screenOf);
        fig.className = 'tile screen';
        const stream = remote.get(p.screenId);
        if (stream) attach(entry, stream, { muted: true, id: p.screenId });
        fig.classList.toggle('video-off', !stream);
        entry.avatar.firstChild.textContent = initials(p.name);
        setLabel(entry, t('screenOf', { name: p.name }), p.hospital, null);
        setBadges(entry, false, false);
        entry.state.textContent = stream ? '' : t('noVideoYet');
      } else {
        const p = person(w.camOf);
        fig.className = 'tile camera';
        fig.dataset.participant = p.id;
        const stream = p.streamId && remote.get(p.streamId);
        if (stream) attach(entry, stream, { id: p.streamId });
        const camOff = p.videoMuted || audioOnly || !stream;
        fig.classList.toggle('video-off', camOff);
        fig.classList.toggle('speaking', speaking.has(p.streamId));
        entry.avatar.firstChild.textContent = initials(p.name);
        setLabel(entry, p.name, p.hospital, t(p.role));
        setBadges(entry, p.audioMuted, p.videoMuted);
        entry.state.textContent = !p.streamId || stream ? (entry.stalled ? t('poor') : '') : t('noVideoYet');
      }
      finishClass();
    });
    // Fill the stage: as many columns as make near-square cells.
    const n = Math.max(wanted.length, 1);
    const phone = window.matchMedia('(max-width: 48rem)').matches;
    const wide = box.clientWidth >= box.clientHeight * 1.2;
    let cols = n <= 1 ? 1 : n <= 2 ? (wide ? 2 : 1) : n <= 4 ? 2 : n <= 6 ? (wide ? 3 : 2) : n <= 9 ? 3 : n <= 16 ? 4 : 5;
    // On a phone the page scrolls: one column for two people, two beyond.
    if (phone) cols = n <= 2 ? 1 : 2;
    if (presenting) cols = 1;
    const cameras = wanted.filter((w) => w !== mainScreen).length;
    box.classList.toggle('presenting', presenting);
    box.style.setProperty('--cols', String(cols));
    box.style.setProperty('--rows', String(presenting ? Math.max(cameras, 1) : Math.ceil(n / cols)));
  }

  function myName() {
    const mine = me && person(me);
    return (mine && mine.name) || query.get('name') || t('you');
  }

  // ---- the page -----------------------------------------------------------

  function button(text, label, onClick, cls) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    if (label) b.setAttribute('aria-label', label);
    if (cls) b.className = cls;
    b.addEventListener('click', onClick);
    return b;
  }

  function renderPeople() {
    // Who waits first (the chair acts on them), then you, then the others.
    const rank = (p) => (p.state === 'waiting' ? 0 : p.id === me ? 1 : 2);
    const list = (roster || participants).map((x) => person(x.participant_id))
      .map((p, i) => ({ p, i })).sort((a, b) => rank(a.p) - rank(b.p) || a.i - b.i).map((x) => x.p);
    $('people-heading').textContent = t('people', { n: list.filter((p) => p.state !== 'waiting').length });
    const chair = myRole === 'chair';
    $('participants').replaceChildren(...list.map((p) => {
      const li = document.createElement('li');
      li.dataset.role = p.role;
      li.dataset.state = p.state;
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = p.name + (me && p.id === me ? ` ${t('me')}` : '');
      const small = document.createElement('small');
      const bits = [t(p.role)];
      if (p.hospital) bits.push(p.hospital);
      if (p.state === 'waiting') bits.push(t('inWaiting'));
      if (p.screenId) bits.push(t('sharing'));
      if (p.joinedAt && p.state !== 'waiting') bits.push(`${t('joinedAt')} ${clock().format(new Date(p.joinedAt))}`);
      small.textContent = bits.join(' · ');
      who.append(small);
      const status = document.createElement('span');
      if (p.inMedia) setBadgesInto(status, p.audioMuted && p.canPublish, p.videoMuted && p.canPublish);
      const actions = document.createElement('span');
      actions.className = 'actions';
      if (chair && p.id !== me) {
        if (p.state === 'waiting') {
          const b = button(t('admit'), t('admitLabel') + p.name, () => admit(p.id), 'admit');
          b.dataset.admit = p.id;
          b.disabled = admitting.has(p.id);
          actions.append(b);
        } else {
          if (p.inMedia && p.canPublish) {
            const m = button(t('muteOther'), t('muteOtherLabel') + p.name, () => send({ type: 'mute', participant_id: p.id }));
            m.dataset.mute = p.id;
            m.disabled = p.audioMuted;
            actions.append(m);
          }
          // Removing is the room service's: not on the dev route.
          if (roster) {
            const confirming = confirmRemove === p.id;
            const r = button(confirming ? t('removeConfirm') : t('remove'), t('removeLabel') + p.name,
              () => remove(p.id), confirming ? 'danger confirm' : 'danger');
            r.dataset.remove = p.id;
            actions.append(r);
          }
        }
      }
      li.append(who, status, actions);
      return li;
    }));
  }

  function setBadgesInto(el, micOff, camOff) {
    const fake = { badges: el };
    setBadges(fake, micOff, camOff);
  }

  function renderChat() {
    const inRoom = statusKey !== 'waiting' && !finished && me;
    const canChat = inRoom && person(me).canPublish && myRole !== 'observer';
    $('chat-input').disabled = !canChat;
    $('chat-send').disabled = !canChat;
    $('chat-input').placeholder = t('chatPlaceholder');
    const hint = $('chat-hint');
    hint.hidden = canChat || finished;
    hint.textContent = myRole === 'observer' ? t('chatObserver') : t('chatNotYet');
    const log = $('chat-log');
    if (log.children.length !== chatLines.length || log.dataset.lang !== lang) {
      log.dataset.lang = lang;
      log.replaceChildren(...chatLines.map((l) => {
        const li = document.createElement('li');
        const time = document.createElement('time');
        time.dateTime = new Date(l.at).toISOString();
        time.textContent = clock().format(new Date(l.at));
        const from = document.createElement('span');
        from.className = 'from';
        from.textContent = l.participant_id === me ? t('you') : l.name;
        li.append(time, from, document.createTextNode(l.text));
        return li;
      }));
      log.scrollTop = log.scrollHeight;
    }
  }

  function renderBanner() {
    const banner = $('banner');
    const parts = [];
    let error = false;
    if (statusKey === 'waiting') parts.push(`${t('waiting')} ${localStream ? t('waitingPreview') : ''}`);
    else if (statusKey === 'reconnecting') parts.push(t('reconnecting'));
    else if (statusKey === 'closed') { parts.push(t('closed')); error = true; }
    else if (['ended', 'removedMe', 'noToken', 'left'].includes(statusKey)) { parts.push(t(statusKey)); error = statusKey !== 'left'; }
    else if (statusKey.startsWith('!')) { parts.push(`${t('error')}: ${statusKey.slice(1)}`); error = true; }
    if (audioOnly && !finished) parts.push(audioOnlyAuto ? t('audioOnlyAuto') : t('audioOnlyOn'));
    else if (net === 'poor' && !finished) parts.push(t('poorNetwork'));
    if (notice) parts.push(notice);
    const nodes = parts.filter(Boolean).map((p) => { const s = document.createElement('span'); s.textContent = p; return s; });
    if (statusKey === 'closed' && !finished) nodes.push(button(t('retry'), null, () => { attempts = 0; rejoin(); }));
    if (audioOnly && !finished) nodes.push(button(t('videoBack'), null, () => { autoDeclined = true; setAudioOnly(false); }));
    banner.replaceChildren(...nodes);
    banner.hidden = nodes.length === 0;
    banner.className = error ? 'error' : '';
  }

  function render() {
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll('[data-i18n-label]').forEach((el) => { el.setAttribute('aria-label', t(el.dataset.i18nLabel)); });
    $('title').textContent = t('title');
    document.title = `${t('title')} · VTelehealth`;
    const langBtn = $('lang');
    langBtn.textContent = t('lang');
    langBtn.lang = lang === 'vi' ? 'en' : 'vi';
    langBtn.setAttribute('aria-label', t('langLabel'));
    const toggle = (id, on, offKey, onKey) => {
      $(id).textContent = on ? t(onKey) : t(offKey);
      $(id).setAttribute('aria-pressed', String(on));
    };
    toggle('mute-audio', audioMuted, 'muteAudio', 'unmuteAudio');
    toggle('mute-video', videoMuted, 'muteVideo', 'unmuteVideo');
    toggle('share', !!screenStream, 'share', 'stopShare');
    toggle('audio-only', audioOnly, 'audioOnly', 'audioOnly');
    $('share').hidden = !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia) || !mayShare();
    $('share').disabled = !!finished || statusKey === 'waiting' || !screenSender;
    $('audio-only').disabled = !!finished || statusKey === 'waiting' || !pc;
    $('leave').textContent = t('leave');
    const netEl = $('net');
    netEl.dataset.state = net;
    netEl.textContent = net === 'good' ? t('connected') : net === 'poor' ? t('poor')
      : net === 'reconnecting' ? t('reconnecting') : net === 'lost' ? t('closed')
        : statusKey === 'connecting' ? t('connecting') : '';
    renderBanner();
    renderPeople();
    renderTiles();
    renderChat();
  }

  function setStatus(key) {
    statusKey = key;
    if (key === 'connected') net = net === 'poor' ? 'poor' : 'good';
    if (key === 'reconnecting') net = 'reconnecting';
    if (key === 'closed') net = 'lost';
    if (['ended', 'removedMe', 'left', 'noToken'].includes(key)) net = '';
    render();
  }

  function admit(participantId) {
    if (admitting.has(participantId)) return;
    admitting.add(participantId);
    send({ type: 'admit', participant_id: participantId });
    render();
  }

  // Two clicks: the first asks for confirmation for a few seconds.
  function remove(participantId) {
    if (confirmRemove !== participantId) {
      confirmRemove = participantId;
      setTimeout(() => { if (confirmRemove === participantId) { confirmRemove = null; render(); } }, 4000);
      render();
      return;
    }
    confirmRemove = null;
    send({ type: 'remove', participant_id: participantId });
    render();
  }

  const url = wsUrl();
  if (!url) { setStatus('noToken'); return; }

  // ---- the session (rebuilt on reconnect) ---------------------------------

  const send = (msg) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
  // Signalling steps run one after another: an offer never overtakes an answer.
  const serial = (step) => { chain = chain.then(step).catch(fail); };

  // The server's and the browser's own messages are English and may name
  // ids: they go to the console and the test state; the page says in words
  // what happened, from the error code.
  function fail(err, code = 'media') {
    const message = String((err && err.message) || err);
    metrics.errors.push(message);
    console.warn('room:', code, message);
    setStatus(`!${t(`err-${code}`) === `err-${code}` ? t('err-media') : t(`err-${code}`)}`);
  }

  function sendState() {
    send({ type: 'media-state', audio_muted: audioMuted, video_muted: videoMuted || audioOnly,
      sharing_screen: !!screenStream, receive_video: !audioOnly });
  }

  async function preview() {
    if (localStream || !mayPublishGuess()) return;
    try {
      localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      localStream.getAudioTracks().forEach((tr) => { tr.enabled = !audioMuted; });
      localStream.getVideoTracks().forEach((tr) => { tr.enabled = !videoMuted; });
    } catch (err) {
      const why = { NotAllowedError: 'denied', NotFoundError: 'noDevice', NotReadableError: 'busy' }[err && err.name];
      notice = why ? `${t('camera')}: ${t(why)}` : t('camera');
      console.warn('room: getUserMedia', err);
    }
    $('mute-audio').disabled = !localStream || localStream.getAudioTracks().length === 0;
    $('mute-video').disabled = !localStream || localStream.getVideoTracks().length === 0;
    render();
  }

  function connect() {
    offered = false;
    screenSender = null;
    chain = Promise.resolve();
    for (const id of [...remote.keys()]) remote.delete(id);
    const peer = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    pc = peer;
    window.vthPc = peer;
    const socket = new WebSocket(url);
    ws = socket;
    peer.onicecandidate = (e) => {
      if (pc !== peer) return;
      send({ type: 'candidate', candidate: e.candidate ? e.candidate.candidate : null,
        sdpMid: e.candidate ? e.candidate.sdpMid : null });
    };
    peer.onconnectionstatechange = () => {
      if (pc !== peer || leaving) return;
      const s = peer.connectionState;
      if (s === 'connected') { attempts = 0; setStatus('connected'); }
      // Chromium says `disconnected` after a few seconds without packets; it
      // may recover by itself, else the relay drops us and we rejoin.
      if (s === 'disconnected') setStatus('reconnecting');
      if (s === 'failed') lost();
    };
    peer.ontrack = (e) => {
      if (pc !== peer) return;
      const stream = e.streams[0];
      if (!stream) return;
      remote.set(stream.id, stream);
      stream.onremovetrack = () => { if (stream.getTracks().length === 0) { remote.delete(stream.id); render(); } };
      render();
    };
    socket.onmessage = (event) => { if (ws === socket) onMessage(event); };
    socket.onclose = () => { if (ws === socket && !leaving && !finished) lost(); };
  }

  // The connection is gone: rejoin after a pause (admission is kept per
  // invitation, so a chair need not admit again), a few times, then give up.
  function lost() {
    if (leaving || finished || retryTimer) return;
    teardown();
    if (attempts >= 5) { setStatus('closed'); return; }
    setStatus('reconnecting');
    const delay = Math.min(1000 * 2 ** attempts, 8000);
    attempts += 1;
    retryTimer = setTimeout(() => { retryTimer = null; rejoin(); }, delay);
  }

  function rejoin() {
    metrics.reconnects += 1;
    teardown();
    setStatus('reconnecting');
    connect();
  }

  function teardown() {
    const oldWs = ws; const oldPc = pc;
    ws = null; pc = null; screenSender = null;
    if (oldWs) { try { oldWs.close(); } catch { /* already closed */ } }
    if (oldPc) oldPc.close();
    remote.clear();
  }

  async function startMedia(canPublish) {
    const peer = pc;
    if (canPublish) await preview();
    else if (localStream) {
      // The waiting-room preview guessed wrong: the server says no publishing.
      localStream.getTracks().forEach((tr) => tr.stop());
      localStream = null;
    }
    if (localStream) {
      for (const track of localStream.getTracks()) {
        peer.addTransceiver(track, { direction: 'sendonly', streams: [localStream] });
      }
      // A second video m-line, empty until a screen is shared: sharing then
      // needs no renegotiation (the relay re-offers, clients offer once).
      if (mayShare()) {
        screenSender = peer.addTransceiver('video', { direction: 'sendonly', streams: [new MediaStream()] }).sender;
        if (screenStream) await screenSender.replaceTrack(screenStream.getVideoTracks()[0] || null);
      }
      $('mute-audio').disabled = localStream.getAudioTracks().length === 0;
      $('mute-video').disabled = localStream.getVideoTracks().length === 0;
    } else {
      // Receive-only: a data channel gives the offer an m-line to connect on;
      // the relay re-offers the other participants' media.
      peer.createDataChannel('vth');
    }
    const offer = await peer.createOffer();
    await peer.setLocalDescription(offer);
    send({ type: 'offer', sdp: peer.localDescription.sdp });
    if (localStream && (audioMuted || videoMuted || audioOnly || screenStream)) sendState();
    else if (audioOnly) sendState();
    render();
  }

  function onMessage(event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    switch (msg.type) {
      case 'tracks': {
        me = msg.you;
        participants = msg.participants || [];
        const live = new Set(participants.flatMap((p) => [p.stream_id, p.screen_stream_id]).filter(Boolean));
        for (const id of [...remote.keys()]) {
          // Screen streams stay negotiated between shares; camera streams go with their owner.
          if (!live.has(id) && !id.endsWith('s')) remote.delete(id);
        }
        const self = participants.find((p) => p.participant_id === me);
        if (!offered && self) {
          offered = true;
          if (dev) myRole = self.role;
          const peer = pc;
          serial(() => (pc === peer ? startMedia(self.can_publish) : null));
        }
        render();
        break;
      }
      case 'participants':
        // The room service's list (control plane), when it sends one.
        if (Array.isArray(msg.participants)) {
          roster = msg.participants;
          for (const p of roster) if (p.state !== 'waiting') admitting.delete(p.participant_id);
          render();
        }
        break;
      case 'answer': {
        const peer = pc;
        serial(() => peer.setRemoteDescription({ type: 'answer', sdp: msg.sdp }));
        break;
      }
      case 'offer': {
        const peer = pc;
        serial(async () => {
          await peer.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
          await peer.setLocalDescription(await peer.createAnswer());
          if (pc === peer) send({ type: 'answer', sdp: peer.localDescription.sdp });
        });
        break;
      }
      case 'chat':
        chatLines.push(msg);
        if (chatLines.length > 500) chatLines.shift();
        renderChat();
        break;
      case 'mute-requested':
        setAudioMuted(true);
        notice = t('mutedBy', { name: msg.by || '' });
        render();
        break;
      case 'waiting':
        me = msg.participant_id;
        setStatus('waiting');
        preview();
        break;
      case 'admitted':
        me = msg.participant_id; myRole = msg.role;
        setStatus(pc && pc.connectionState === 'connected' ? 'connected' : 'connecting');
        break;
      case 'room-ended': finish('ended'); break;
      case 'error':
        if (msg.code === 'room-ended') { finish('ended'); break; }
        if (msg.code === 'removed') { finish('removedMe'); break; }
        // The relay lost our media connection: rejoin, do not show an error.
        if (msg.code === 'unavailable' && msg.fatal) { lost(); break; }
        // A refused admission frees its button for another try.
        if (msg.code === 'forbidden' || msg.code === 'bad-message') admitting.clear();
        fail(msg.message || msg.code, msg.code);
        break;
      default: break;
    }
  }

  function finish(key) {
    finished = key;
    setStatus(key);
    leave(false);
  }

  function leave(notify = true) {
    if (leaving) return;
    leaving = true;
    if (notify) { send({ type: 'leave' }); finished = 'left'; }
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    teardown();
    if (localStream) localStream.getTracks().forEach((track) => track.stop());
    if (screenStream) screenStream.getTracks().forEach((track) => track.stop());
    localStream = null; screenStream = null;
    for (const b of ['leave', 'mute-audio', 'mute-video', 'share', 'audio-only']) $(b).disabled = true;
    if (notify) setStatus('left'); else render();
  }

  function setAudioMuted(on) {
    audioMuted = on;
    localStream?.getAudioTracks().forEach((track) => { track.enabled = !audioMuted; });
    sendState();
    render();
  }

  function setAudioOnly(on, auto = false) {
    audioOnly = on;
    audioOnlyAuto = on && auto;
    localStream?.getVideoTracks().forEach((track) => { track.enabled = !videoMuted && !audioOnly; });
    sendState();
    render();
  }

  async function toggleShare() {
    if (screenStream) { stopShare(); return; }
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
      const track = stream.getVideoTracks()[0];
      if (!track || !screenSender) { stream.getTracks().forEach((tr) => tr.stop()); return; }
      // Text and images: keep detail rather than motion.
      track.contentHint = 'detail';
      await screenSender.replaceTrack(track);
      screenStream = stream;
      track.onended = () => stopShare();
      sendState();
      render();
    } catch (err) {
      if (err && err.name === 'NotAllowedError') return; // the person cancelled
      notice = t('screenFailed');
      console.warn('room: getDisplayMedia', err);
      render();
    }
  }

  function stopShare() {
    if (!screenStream) return;
    screenStream.getTracks().forEach((tr) => tr.stop());
    screenStream = null;
    if (screenSender) screenSender.replaceTrack(null).catch(() => {});
    sendState();
    render();
  }

  // ---- network quality ----------------------------------------------------

  // Every 2 s: who is speaking (audio levels), whether remote video stalls,
  // and whether our own path is too poor for video (then audio only).
  let lastFrames = new Map();
  let lastLoss = { lost: 0, got: 0 };
  let poorSamples = 0;
  setInterval(async () => {
    const peer = pc;
    if (!peer || leaving || peer.connectionState !== 'connected') return;
    speaking.clear();
    for (const r of peer.getReceivers()) {
      if (r.track?.kind !== 'audio') continue;
      const level = r.getSynchronizationSources?.()[0]?.audioLevel || 0;
      if (level > 0.03) {
        for (const [id, s] of remote) if (s.getTracks().includes(r.track)) speaking.add(id);
      }
    }
    let stats;
    try { stats = await peer.getStats(); } catch { return; }
    let outBitrate = null;
    let limited = false;
    const frames = new Map();
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) outBitrate = s.availableOutgoingBitrate;
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.qualityLimitationReason === 'bandwidth') limited = true;
      if (s.type === 'inbound-rtp' && s.kind === 'video') frames.set(s.trackIdentifier, s.framesDecoded || 0);
    });
    for (const p of participants) {
      const entry = tiles.get(`cam:${p.participant_id}`);
      const stream = p.stream_id && remote.get(p.stream_id);
      const track = stream && stream.getVideoTracks()[0];
      if (!entry || !track) continue;
      const now = frames.get(track.id) || 0;
      const before = lastFrames.get(track.id);
      entry.stalled = !p.video_muted && !audioOnly && before !== undefined && now === before;
    }
    lastFrames = new Map(frames);
    // Received packets lost since the last sample.
    let lostNow = 0; let gotNow = 0;
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp') { lostNow += s.packetsLost || 0; gotNow += s.packetsReceived || 0; }
    });
    const dLost = lostNow - lastLoss.lost; const dGot = gotNow - lastLoss.got;
    lastLoss = { lost: lostNow, got: gotNow };
    const lossy = dGot + dLost > 50 && dLost / (dGot + dLost) > 0.1;
    const starved = outBitrate !== null && outBitrate < 100000;
    const poor = starved || lossy || (limited && outBitrate !== null && outBitrate < 150000);
    poorSamples = poor ? poorSamples + 1 : 0;
    if (statusKey === 'connected') net = poorSamples > 1 ? 'poor' : 'good';
    // Ten seconds of a starved or lossy path: keep the voice, drop the video
    // (unless the person turned video back on themselves).
    if (poorSamples >= 5 && (starved || lossy) && !audioOnly && !autoDeclined) setAudioOnly(true, true);
    render();
  }, 2000);

  // ---- controls -----------------------------------------------------------

  $('mute-audio').addEventListener('click', () => setAudioMuted(!audioMuted));
  $('mute-video').addEventListener('click', () => {
    videoMuted = !videoMuted;
    localStream?.getVideoTracks().forEach((track) => { track.enabled = !videoMuted && !audioOnly; });
    sendState();
    render();
  });
  $('share').addEventListener('click', toggleShare);
  $('audio-only').addEventListener('click', () => setAudioOnly(!audioOnly));
  $('leave').addEventListener('click', () => leave(true));
  $('lang').addEventListener('click', () => { lang = lang === 'vi' ? 'en' : 'vi'; render(); });
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('chat-input');
    const text = input.value.trim();
    if (!text) return;
    send({ type: 'chat', text });
    input.value = '';
  });
  window.addEventListener('resize', () => renderTiles());
  window.addEventListener('pagehide', () => leave(true));
  // For the tests: drop the connection as a network loss would.
  window.vthTest = { dropConnection: () => { if (ws) ws.close(); } };

  connect();
  render();
})();
