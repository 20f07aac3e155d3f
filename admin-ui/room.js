// Consultation room page: joins the media relay over the signalling
// WebSocket (docs/video-media.md), shows local and remote video.
// Page URL: /rooms/{room}?token=... (or #token=...). For development,
// ?dev=1&name=...&role=... uses the dev join route. ?ws=/path overrides the
// WebSocket path (same origin only, so a token never leaves this server).
'use strict';

(() => {
  const TEXT = {
    vi: {
      title: 'Phòng hội chẩn', you: 'Bạn', controls: 'Điều khiển', participants: 'Người tham gia',
      muteAudio: 'Tắt micro', unmuteAudio: 'Bật micro', muteVideo: 'Tắt camera', unmuteVideo: 'Bật camera',
      leave: 'Rời phòng', lang: 'English', langLabel: 'Switch to English',
      connecting: 'Đang kết nối…', connected: 'Đã kết nối', left: 'Bạn đã rời phòng', closed: 'Mất kết nối',
      waiting: 'Đang chờ chủ tọa cho vào phòng…', ended: 'Phòng đã kết thúc', noToken: 'Thiếu mã tham gia (token)',
      camera: 'Không mở được camera/micro', error: 'Lỗi',
      chair: 'chủ tọa', presenter: 'trình bày', participant: 'tham gia', observer: 'quan sát', me: '(bạn)',
      inWaiting: 'đang chờ', admit: 'Cho vào', admitLabel: 'Cho vào phòng: ',
    },
    en: {
      title: 'Consultation room', you: 'You', controls: 'Controls', participants: 'Participants',
      muteAudio: 'Mute microphone', unmuteAudio: 'Unmute microphone', muteVideo: 'Turn camera off',
      unmuteVideo: 'Turn camera on', leave: 'Leave', lang: 'Tiếng Việt', langLabel: 'Chuyển sang tiếng Việt',
      connecting: 'Connecting…', connected: 'Connected', left: 'You left the room', closed: 'Connection lost',
      waiting: 'Waiting for the chair to admit you…', ended: 'The room has ended', noToken: 'Missing join token',
      camera: 'Could not open camera/microphone', error: 'Error',
      chair: 'chair', presenter: 'presenter', participant: 'participant', observer: 'observer', me: '(you)',
      inWaiting: 'waiting', admit: 'Admit', admitLabel: 'Admit to the room: ',
    },
  };

  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const room = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
  let lang = query.get('lang') === 'en' ? 'en' : 'vi';
  let statusKey = 'connecting';
  // The media session's list (with stream ids) and, when the room service
  // sends one, its own roster (which also shows people not yet connected).
  let participants = [];
  let roster = null;
  let me = null;
  // Set from the control plane's `admitted`; only a chair sees admit buttons
  // (the server refuses anyone else's `admit` anyway).
  let myRole = null;
  // Admissions sent and not yet reflected in the roster: a second click on
  // the same button sends nothing.
  const admitting = new Set();
  let localStream = null;
  let audioMuted = false;
  let videoMuted = false;
  let leaving = false;
  let offered = false;
  // Remote streams by stream id, with their tiles.
  const remote = new Map();

  // Exposed for the browser tests and the benchmark.
  const metrics = { joinRequestedAt: performance.now(), firstFrameAt: {}, errors: [] };
  window.vthState = () => ({
    me, participants, roster, status: statusKey, errors: metrics.errors, joinRequestedAt: metrics.joinRequestedAt,
    firstFrameAt: metrics.firstFrameAt,
    remoteVideoTracks: Object.fromEntries([...remote].map(([id, e]) => [id, e.stream.getVideoTracks()[0]?.id])),
  });

  const t = (key) => TEXT[lang][key] || key;

  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const override = query.get('ws');
    if (override && override.startsWith('/') && !override.startsWith('//')) {
      return `${scheme}//${location.host}${override}`;
    }
    const r = encodeURIComponent(room);
    if (query.get('dev') === '1') {
      const p = new URLSearchParams({ name: query.get('name') || 'dev', role: query.get('role') || 'participant' });
      return `${scheme}//${location.host}/video/dev/${r}/ws?${p}`;
    }
    const token = query.get('token') || fragment.get('token');
    if (!token) return null;
    return `${scheme}//${location.host}/video/rooms/${r}/ws?token=${encodeURIComponent(token)}`;
  }

  function render() {
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll('[data-i18n-label]').forEach((el) => { el.setAttribute('aria-label', t(el.dataset.i18nLabel)); });
    $('title').textContent = `${t('title')} · ${room}`;
    document.title = `${t('title')} · VTelehealth`;
    const langBtn = $('lang');
    langBtn.textContent = t('lang');
    langBtn.lang = lang === 'vi' ? 'en' : 'vi';
    langBtn.setAttribute('aria-label', t('langLabel'));
    $('mute-audio').textContent = audioMuted ? t('unmuteAudio') : t('muteAudio');
    $('mute-audio').setAttribute('aria-pressed', String(audioMuted));
    $('mute-video').textContent = videoMuted ? t('unmuteVideo') : t('muteVideo');
    $('mute-video').setAttribute('aria-pressed', String(videoMuted));
    const status = $('status');
    status.textContent = statusKey.startsWith('!') ? `${t('error')}: ${statusKey.slice(1)}` : t(statusKey);
    status.className = statusKey.startsWith('!') ? 'error' : '';
    const list = $('participants');
    list.replaceChildren(...(roster || participants).map((p) => {
      const li = document.createElement('li');
      const name = p.display_name || p.name || p.participant_id;
      li.textContent = name + (me && p.participant_id === me ? ` ${t('me')}` : '');
      const role = document.createElement('span');
      role.className = 'role';
      role.textContent = t(p.role) + (p.state === 'waiting' ? ` · ${t('inWaiting')}` : '');
      li.append(role);
      li.dataset.role = p.role;
      li.dataset.state = p.state || 'in-room';
      if (p.state === 'waiting' && myRole === 'chair' && p.participant_id !== me) {
        const btn = document.createElement('button');
        btn.type = 'button';
        btn.className = 'admit';
        btn.dataset.admit = p.participant_id;
        btn.textContent = t('admit');
        btn.setAttribute('aria-label', t('admitLabel') + name);
        btn.disabled = admitting.has(p.participant_id);
        btn.addEventListener('click', () => admit(p.participant_id));
        li.append(' ', btn);
      }
      return li;
    }));
    for (const [streamId, entry] of remote) {
      const who = participants.find((p) => p.stream_id === streamId);
      entry.caption.textContent = who ? `${who.display_name} · ${t(who.role)}` : '…';
    }
  }

  function setStatus(key) { statusKey = key; render(); }

  function admit(participantId) {
    if (admitting.has(participantId)) return;
    admitting.add(participantId);
    send({ type: 'admit', participant_id: participantId });
    render();
  }

  const url = wsUrl();
  if (!url) { setStatus('noToken'); return; }

  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  window.vthPc = pc;
  const ws = new WebSocket(url);
  const send = (msg) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
  // Signalling steps run one after another: an offer never overtakes an answer.
  let chain = Promise.resolve();
  const serial = (step) => { chain = chain.then(step).catch(fail); };

  function fail(err) {
    const message = String((err && err.message) || err);
    metrics.errors.push(message);
    setStatus(`!${message}`);
  }

  pc.onicecandidate = (e) => {
    send({ type: 'candidate', candidate: e.candidate ? e.candidate.candidate : null,
      sdpMid: e.candidate ? e.candidate.sdpMid : null });
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'connected') setStatus('connected');
    if (pc.connectionState === 'failed' && !leaving) setStatus('closed');
  };
  pc.ontrack = (e) => {
    const stream = e.streams[0];
    if (!stream) return;
    let entry = remote.get(stream.id);
    if (!entry) {
      const fig = document.createElement('figure');
      const video = document.createElement('video');
      video.autoplay = true; video.muted = false; video.playsInline = true;
      const caption = document.createElement('figcaption');
      fig.append(video, caption);
      $('videos').append(fig);
      video.srcObject = stream;
      entry = { fig, video, caption, stream };
      remote.set(stream.id, entry);
      const id = stream.id;
      if ('requestVideoFrameCallback' in video) {
        video.requestVideoFrameCallback(() => { metrics.firstFrameAt[id] ??= performance.now(); });
      }
      // Autoplay with sound may be refused; retry muted so video still shows.
      video.play().catch(() => { video.muted = true; video.play().catch(() => {}); });
      stream.onremovetrack = () => { if (stream.getTracks().length === 0) dropRemote(id); };
    }
    render();
  };

  function dropRemote(streamId) {
    const entry = remote.get(streamId);
    if (!entry) return;
    entry.fig.remove();
    remote.delete(streamId);
  }

  async function startMedia(canPublish) {
    if (canPublish) {
      try {
        localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      } catch (err) {
        fail(`${t('camera')}: ${err.message}`);
      }
    }
    if (localStream) {
      for (const track of localStream.getTracks()) {
        pc.addTransceiver(track, { direction: 'sendonly', streams: [localStream] });
      }
      $('local-video').srcObject = localStream;
      $('local-tile').hidden = false;
      $('mute-audio').disabled = localStream.getAudioTracks().length === 0;
      $('mute-video').disabled = localStream.getVideoTracks().length === 0;
    } else {
      // Receive-only: a data channel gives the offer an m-line to connect on;
      // the relay re-offers the other participants' media.
      pc.createDataChannel('vth');
    }
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    send({ type: 'offer', sdp: pc.localDescription.sdp });
  }

  ws.onmessage = (event) => {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    switch (msg.type) {
      case 'tracks': {
        me = msg.you;
        participants = msg.participants || [];
        const live = new Set(participants.map((p) => p.stream_id).filter(Boolean));
        for (const id of [...remote.keys()]) if (!live.has(id)) dropRemote(id);
        const self = participants.find((p) => p.participant_id === me);
        if (!offered && self) {
          offered = true;
          serial(() => startMedia(self.can_publish));
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
      case 'answer':
        serial(() => pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp }));
        break;
      case 'offer':
        serial(async () => {
          await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
          await pc.setLocalDescription(await pc.createAnswer());
          send({ type: 'answer', sdp: pc.localDescription.sdp });
        });
        break;
      case 'waiting': me = msg.participant_id; setStatus('waiting'); break;
      case 'admitted': me = msg.participant_id; myRole = msg.role; setStatus('connecting'); break;
      case 'room-ended': setStatus('ended'); leave(false); break;
      case 'error':
        if (msg.code === 'room-ended') { setStatus('ended'); leave(false); break; }
        // A refused admission frees its button for another try.
        if (msg.code === 'forbidden' || msg.code === 'bad-message') admitting.clear();
        fail(msg.message || msg.code);
        break;
      default: break;
    }
  };
  ws.onclose = () => { if (!leaving) setStatus('closed'); };

  function leave(notify = true) {
    if (leaving) return;
    leaving = true;
    if (notify) send({ type: 'leave' });
    ws.close();
    pc.close();
    if (localStream) localStream.getTracks().forEach((track) => track.stop());
    for (const id of [...remote.keys()]) dropRemote(id);
    $('leave').disabled = true;
    $('mute-audio').disabled = true;
    $('mute-video').disabled = true;
    if (notify) setStatus('left');
  }

  $('mute-audio').addEventListener('click', () => {
    audioMuted = !audioMuted;
    localStream?.getAudioTracks().forEach((track) => { track.enabled = !audioMuted; });
    render();
  });
  $('mute-video').addEventListener('click', () => {
    videoMuted = !videoMuted;
    localStream?.getVideoTracks().forEach((track) => { track.enabled = !videoMuted; });
    render();
  });
  $('leave').addEventListener('click', () => leave(true));
  $('lang').addEventListener('click', () => { lang = lang === 'vi' ? 'en' : 'vi'; render(); });
  window.addEventListener('pagehide', () => leave(true));
  render();
})();
