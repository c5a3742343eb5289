/* Kefu agent console. Static files; talks to the REST API and the WebSocket (docs/protocol.md). */
(function () {
  'use strict';

  var config = window.KEFU_CONSOLE_CONFIG || {};
  var apiUrl = (config.apiUrl || location.origin + '/api').replace(/\/$/, '');
  var PAGE = 30;

  var state = {
    session: null,          // agent session (token, agent_id, websocket_url, upload)
    ws: null, attempt: 0, pending: {},
    conversations: {},      // id -> conversation view
    messages: {},           // id -> {seq -> message}
    oldestLoaded: {},       // id -> lowest seq loaded
    outbox: [],             // {client_msg_id, conversation_id, text, attachment}
    selected: null, tab: 'mine', agentsOnline: [], missed: 0
  };

  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k === 'class') node.className = attrs[k];
      else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), attrs[k]);
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }

  function newId(prefix) {
    var bytes = crypto.getRandomValues(new Uint8Array(8));
    return prefix + Date.now().toString(36) + Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function humanSize(bytes) {
    if (bytes < 1024) return bytes + ' B';
    if (bytes < 1048576) return (bytes / 1024).toFixed(1) + ' KB';
    return (bytes / 1048576).toFixed(1) + ' MB';
  }

  function api(method, path, body) {
    var headers = { 'Content-Type': 'application/json' };
    if (state.session) headers.Authorization = 'Bearer ' + state.session.token;
    return fetch(apiUrl + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) { var e = new Error(j.message); e.code = j.code; throw e; } return j; }); });
  }

  // ---- login --------------------------------------------------------------------------------

  function showLogin() {
    $('app').hidden = true;
    $('login').hidden = false;
    var form = $('login-form');
    var params = new URLSearchParams(location.search);
    form.site_id.value = params.get('site') || localStorage.getItem('kefu-console:site') || '';
    if (!form.site_id.value) {
      fetch(location.origin + '/local/info').then(function (r) { return r.ok ? r.json() : null; })
        .then(function (info) { if (info && !form.site_id.value) form.site_id.value = info.site_id; }).catch(function () {});
    }
  }

  $('login-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var form = e.target;
    $('login-error').textContent = '';
    api('POST', '/v1/agent/session', { site_id: form.site_id.value.trim(), email: form.email.value.trim(), password: form.password.value })
      .then(function (session) {
        localStorage.setItem('kefu-console:site', session.site_id);
        sessionStorage.setItem('kefu-console:session', JSON.stringify(session));
        start(session);
      }, function (err) { $('login-error').textContent = err.message || 'Login failed'; });
  });

  $('logout').addEventListener('click', function () {
    sessionStorage.removeItem('kefu-console:session');
    state.session = null;
    if (state.ws) state.ws.close();
    showLogin();
  });

  function start(session) {
    state.session = session;
    config.websocketUrl = config.websocketUrl || session.websocket_url;
    $('login').hidden = true;
    $('app').hidden = false;
    $('me-name').textContent = session.name;
    connect();
  }

  // ---- socket -------------------------------------------------------------------------------

  function connect() {
    if (state.ws || !state.session) return;
    if (state.session.expires_at * 1000 < Date.now()) { showLogin(); return; }
    var ws = new WebSocket(config.websocketUrl + '?token=' + encodeURIComponent(state.session.token));
    state.ws = ws;
    setConnection(false);
    ws.onopen = function () {
      state.attempt = 0;
      setConnection(true);
      refreshState().then(function () {
        if (state.selected) catchUp(state.selected);
        flushOutbox();
      });
      clearInterval(state.heartbeat);
      state.heartbeat = setInterval(function () { request({ action: 'ping' }).catch(function () {}); }, 25000);
    };
    ws.onmessage = function (event) { handle(JSON.parse(event.data)); };
    ws.onclose = function () {
      if (state.ws !== ws) return;
      state.ws = null;
      clearInterval(state.heartbeat);
      Object.keys(state.pending).forEach(function (req) { state.pending[req].reject(new Error('offline')); });
      state.pending = {};
      setConnection(false);
      var delay = Math.min(30000, 500 * Math.pow(2, state.attempt++)) * (0.5 + Math.random() / 2);
      setTimeout(connect, delay);
    };
  }

  window.addEventListener('online', function () { state.attempt = 0; connect(); });

  function setConnection(online) {
    $('connection').textContent = online ? 'online' : 'offline';
    $('connection').className = 'pill' + (online ? ' online' : '');
  }

  function request(frame, timeout) {
    return new Promise(function (resolve, reject) {
      if (!state.ws || state.ws.readyState !== 1) { reject(new Error('offline')); return; }
      frame.req = newId('r');
      var timer = setTimeout(function () { delete state.pending[frame.req]; reject(new Error('timeout')); }, timeout || 10000);
      state.pending[frame.req] = {
        resolve: function (v) { clearTimeout(timer); resolve(v); },
        reject: function (e) { clearTimeout(timer); reject(e); }
      };
      state.ws.send(JSON.stringify(frame));
    });
  }

  function refreshState() {
    return request({ action: 'state' }).then(function (s) {
      state.agentsOnline = s.agents_online;
      s.conversations.forEach(function (c) { state.conversations[c.conversation_id] = c; });
      renderList();
      renderConversation();
    });
  }

  function handle(frame) {
    var waiting = frame.req && state.pending[frame.req];
    if (waiting) {
      delete state.pending[frame.req];
      if (frame.type === 'error') waiting.reject(frame); else waiting.resolve(frame);
    }
    switch (frame.type) {
      case 'ack': acked(frame); break;
      case 'message': received(frame, true); break;
      case 'conversation': upsert(frame.conversation); break;
      case 'presence':
        if (frame.role === 'visitor' && state.conversations[frame.conversation_id]) {
          state.conversations[frame.conversation_id].visitor_online = frame.status === 'online';
          renderList(); renderConversation();
        } else if (frame.role === 'agent' && !waiting) {
          refreshState().catch(function () {});
        }
        break;
      case 'page_view':
        var c = state.conversations[frame.conversation_id];
        if (c) {
          c.current_page = frame.page;
          c.pages = (c.pages || []).concat([frame.page]).slice(-20);
          c.page_count = (c.page_count || 0) + 1;
          renderList(); renderDetails();
        }
        break;
      case 'typing':
        if (frame.conversation_id === state.selected && frame.from.role === 'visitor') showTyping(frame.is_typing);
        break;
      case 'read':
        var conv = state.conversations[frame.conversation_id];
        if (conv && frame.by.role === 'visitor') { conv.visitor_read_seq = Math.max(conv.visitor_read_seq || 0, frame.seq); renderMessages(); }
        if (conv && frame.by.role === 'agent') { conv.agent_read_seq = Math.max(conv.agent_read_seq || 0, frame.seq); renderList(); }
        break;
    }
  }

  function upsert(conversation) {
    var known = state.conversations[conversation.conversation_id];
    state.conversations[conversation.conversation_id] = Object.assign({}, known || {}, conversation);
    renderList();
    if (conversation.conversation_id === state.selected) renderConversation();
  }

  // ---- messages -----------------------------------------------------------------------------

  function store(m) {
    var list = state.messages[m.conversation_id] = state.messages[m.conversation_id] || {};
    if (list[m.seq]) return false;
    list[m.seq] = m;
    var lowest = state.oldestLoaded[m.conversation_id];
    if (lowest === undefined || m.seq < lowest) state.oldestLoaded[m.conversation_id] = m.seq;
    return true;
  }

  function received(m, live) {
    var c = state.conversations[m.conversation_id];
    if (!store(m) && !live) return;
    state.outbox = state.outbox.filter(function (o) { return o.client_msg_id !== m.client_msg_id; });
    if (c) {
      c.last_seq = Math.max(c.last_seq || 0, m.seq);
      c.last_text = m.text || (m.attachment && m.attachment.name) || c.last_text;
    }
    if (m.conversation_id === state.selected) {
      renderMessages();
      if (m.sender.role === 'visitor') showTyping(false);
      markRead();
    }
    if (live && m.sender.role === 'visitor' && (document.hidden || m.conversation_id !== state.selected)) notify();
    renderList();
  }

  function acked(ack) {
    var item = state.outbox.filter(function (o) { return o.client_msg_id === ack.client_msg_id; })[0];
    if (item) {
      store({ conversation_id: ack.conversation_id, seq: ack.seq, id: ack.id, client_msg_id: ack.client_msg_id,
        sender: { role: 'agent', id: state.session.agent_id }, text: item.text, attachment: item.attachment, created_at: ack.created_at });
      state.outbox = state.outbox.filter(function (o) { return o !== item; });
      var c = state.conversations[ack.conversation_id];
      if (c) { c.last_seq = Math.max(c.last_seq || 0, ack.seq); c.agent_read_seq = Math.max(c.agent_read_seq || 0, ack.seq); }
      renderMessages(); renderList();
    }
  }

  // Newest page first; older pages as the agent scrolls up (sync reads forward from a seq).
  function loadLatest(id) {
    var c = state.conversations[id];
    var after = Math.max(0, (c.last_seq || 0) - PAGE);
    return syncFrom(id, after, PAGE);
  }

  function loadOlder(id) {
    var oldest = state.oldestLoaded[id];
    if (!oldest || oldest <= 1 || state.loadingOlder) return;
    state.loadingOlder = true;
    var after = Math.max(0, oldest - 1 - PAGE);
    var box = $('messages'), before = box.scrollHeight;
    request({ action: 'sync', conversation_id: id, after_seq: after, limit: oldest - 1 - after }).then(function (page) {
      page.messages.forEach(store);
      renderMessages(true);
      box.scrollTop = box.scrollHeight - before;
    }).catch(function () {}).then(function () { state.loadingOlder = false; });
  }

  function syncFrom(id, after, limit) {
    return request({ action: 'sync', conversation_id: id, after_seq: after, limit: limit || PAGE }).then(function (page) {
      page.messages.forEach(store);
      if (id === state.selected) renderMessages();
      if (page.has_more) return syncFrom(id, page.messages[page.messages.length - 1].seq);
    });
  }

  // After a reconnect: everything after the newest message we hold.
  function catchUp(id) {
    var seqs = Object.keys(state.messages[id] || {}).map(Number);
    return seqs.length ? syncFrom(id, Math.max.apply(null, seqs)) : loadLatest(id);
  }

  function markRead() {
    var c = state.conversations[state.selected];
    if (!c || document.hidden || !c.last_seq || c.last_seq <= (c.agent_read_seq || 0)) return;
    c.agent_read_seq = c.last_seq;
    request({ action: 'read', conversation_id: c.conversation_id, seq: c.last_seq }).catch(function () {});
    renderList();
  }

  function sendText() {
    var text = $('text').value.trim();
    if (!text || !state.selected) return;
    $('text').value = '';
    enqueue({ text: text });
  }

  function enqueue(content) {
    state.outbox.push({ client_msg_id: newId('a'), conversation_id: state.selected, text: content.text || null,
      attachment: content.attachment || null });
    renderMessages();
    flushOutbox();
  }

  // One send in flight at a time, oldest first, so replies are stored in the order typed.
  function flushOutbox() {
    var item = state.outbox.filter(function (o) { return !o.failed; })[0];
    if (state.sending || !item) return;
    state.sending = true;
    var frame = { action: 'send', conversation_id: item.conversation_id, client_msg_id: item.client_msg_id };
    if (item.text) frame.text = item.text;
    if (item.attachment) frame.attachment = item.attachment;
    request(frame, 15000).then(function () {
      state.sending = false;
      flushOutbox();
    }, function (err) {
      state.sending = false;
      if (err.code && ['send_in_progress', 'rate_limited', 'internal_error'].indexOf(err.code) < 0) {
        item.failed = err.message; renderMessages(); flushOutbox();
      } else if (err.code || err.message === 'timeout') {
        setTimeout(flushOutbox, 2000);
      }  // offline: flushed after reconnect
    });
  }

  // ---- notifications ------------------------------------------------------------------------

  function notify() {
    if (!document.hidden) return;
    state.missed++;
    document.title = '(' + state.missed + ') New message — Kefu';
    try {
      var audio = state.audio = state.audio || new (window.AudioContext || window.webkitAudioContext)();
      var osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.value = 880; gain.gain.value = 0.08;
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(); osc.stop(audio.currentTime + 0.15);
    } catch (e) { /* no audio: the title still says it */ }
  }

  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) { state.missed = 0; document.title = 'Kefu — agent console'; markRead(); }
  });

  function showTyping(on) {
    clearTimeout(state.typingTimer);
    $('typing').textContent = on ? 'Visitor is typing…' : '';
    if (on) state.typingTimer = setTimeout(function () { showTyping(false); }, 6000);
  }

  // ---- rendering ----------------------------------------------------------------------------

  function visitorLabel(c) { return c.visitor_name || ('Visitor ' + c.visitor_id.slice(-6)); }

  function inTab(c, tab) {
    if (tab === 'mine') return c.status === 'assigned' && c.agent_id === state.session.agent_id;
    if (tab === 'queue') return c.status === 'queued';
    return c.status !== 'closed';
  }

  function renderList() {
    var all = Object.keys(state.conversations).map(function (k) { return state.conversations[k]; });
    ['mine', 'queue', 'all'].forEach(function (tab) {
      var n = all.filter(function (c) { return inTab(c, tab); }).length;
      $('count-' + tab).textContent = n ? n : '';
    });
    var shown = all.filter(function (c) { return inTab(c, state.tab); })
      .sort(function (a, b) { return (b.updated_at || 0) - (a.updated_at || 0); });
    var items = shown.map(function (c) {
      var unread = Math.max(0, (c.last_seq || 0) - (c.agent_read_seq || 0));
      return el('li', { class: c.conversation_id === state.selected ? 'selected' : '', 'data-id': c.conversation_id,
        onclick: function () { select(c.conversation_id); } }, [
        el('span', { class: 'who' }, [el('span', { class: 'dot' + (c.visitor_online ? ' on' : '') }), visitorLabel(c),
          c.visitor_verified ? el('span', { class: 'verified', text: 'verified' }) : null,
          c.status === 'queued' ? el('span', { class: 'tag', text: 'queued' }) : null]),
        unread ? el('span', { class: 'unread', text: String(unread) }) : el('span'),
        el('span', { class: 'last', text: c.last_text || '—' }),
        c.current_page ? el('span', { class: 'page', text: '↳ ' + (c.current_page.title || c.current_page.url) }) : null
      ]);
    });
    $('conversations').replaceChildren.apply($('conversations'), items);
  }

  function select(id) {
    state.selected = id;
    $('empty').hidden = true;
    $('conversation').hidden = false;
    renderList();
    renderConversation();
    loadLatest(id).then(function () { renderMessages(); markRead(); }).catch(function () {});
  }

  function renderConversation() {
    var c = state.conversations[state.selected];
    if (!c) return;
    $('visitor-name').textContent = visitorLabel(c);
    $('visitor-status').textContent = (c.visitor_online ? 'online' : 'offline') + ' · ' + c.status +
      (c.agent_id ? (c.agent_id === state.session.agent_id ? ' to me' : ' to ' + c.agent_id) : '');
    $('claim').hidden = c.agent_id === state.session.agent_id || c.status === 'closed';
    $('close-conversation').hidden = c.status === 'closed';
    var select = $('transfer-to');
    var others = state.agentsOnline.filter(function (a) { return a !== state.session.agent_id; });
    select.replaceChildren.apply(select, others.map(function (a) { return el('option', { value: a, text: a }); }));
    select.hidden = $('transfer').hidden = others.length === 0 || c.status === 'closed';
    renderDetails();
    renderMessages();
  }

  function renderDetails() {
    var c = state.conversations[state.selected];
    var box = $('details');
    if (!c) { box.replaceChildren(); return; }
    var attrs = c.visitor_attributes || {};
    var rows = [el('dt', { text: 'Visitor' }), el('dd', { text: c.visitor_id }),
      el('dt', { text: 'Identity' }), el('dd', { text: c.visitor_verified ? 'verified by the site' : 'anonymous' })];
    Object.keys(attrs).forEach(function (k) {
      rows.push(el('dt', { text: k }), el('dd', { text: typeof attrs[k] === 'string' ? attrs[k] : JSON.stringify(attrs[k]) }));
    });
    var pages = (c.pages || []).slice().reverse().map(function (p) { return el('li', { text: (p.title ? p.title + ' — ' : '') + p.url }); });
    box.replaceChildren(
      el('h3', { text: 'Visitor' }), el('dl', {}, rows),
      el('h3', { text: 'Current page' }), el('p', { text: c.current_page ? c.current_page.url : '—' }),
      el('h3', { text: 'Pages seen (' + (c.page_count || 0) + ')' }), el('ol', {}, pages)
    );
  }

  function renderMessages(keepScroll) {
    var id = state.selected;
    if (!id) return;
    var c = state.conversations[id] || {};
    var list = state.messages[id] || {};
    var box = $('messages');
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    var rows = [];
    if ((state.oldestLoaded[id] || 1) > 1) rows.push(el('div', { class: 'loading-older', text: 'Scroll up for older messages' }));
    Object.keys(list).map(Number).sort(function (a, b) { return a - b; }).forEach(function (seq) {
      rows.push(row(list[seq], c));
    });
    state.outbox.filter(function (o) { return o.conversation_id === id; }).forEach(function (o) {
      rows.push(row(Object.assign({ sender: { role: 'agent' } }, o), c, o.failed ? 'not sent: ' + o.failed : 'sending'));
    });
    box.replaceChildren.apply(box, rows);
    if (!keepScroll && atBottom) box.scrollTop = box.scrollHeight;
  }

  function row(m, c, pendingState) {
    var mine = m.sender.role === 'agent';
    var bubble = el('div', { class: 'bubble' });
    if (m.text) bubble.appendChild(document.createTextNode(m.text));
    var a = m.attachment;
    if (a) {
      if (a.url && /^image\//.test(a.content_type)) bubble.appendChild(el('img', { src: a.url, alt: a.name }));
      else if (a.url) bubble.appendChild(el('a', { href: a.url, target: '_blank', rel: 'noopener', text: '📄 ' + a.name + ' (' + humanSize(a.size) + ')' }));
      else bubble.appendChild(document.createTextNode('📄 ' + a.name + ' (' + humanSize(a.size) + ')'));
    }
    var status = pendingState || (mine ? ((c.visitor_read_seq || 0) >= m.seq ? 'read' : 'sent') : '');
    var when = m.created_at ? new Date(m.created_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
    return el('div', { class: 'msg ' + (mine ? 'agent' : 'visitor'), 'data-seq': m.seq || '' }, [
      bubble, el('div', { class: 'meta', text: [when, status].filter(Boolean).join(' · ') })
    ]);
  }

  // ---- wiring -------------------------------------------------------------------------------

  Array.prototype.forEach.call(document.querySelectorAll('.tabs button'), function (button) {
    button.addEventListener('click', function () {
      state.tab = button.getAttribute('data-tab');
      Array.prototype.forEach.call(document.querySelectorAll('.tabs button'), function (b) { b.classList.toggle('active', b === button); });
      renderList();
    });
  });
  $('composer').addEventListener('submit', function (e) { e.preventDefault(); sendText(); });
  $('text').addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendText(); }
  });
  $('text').addEventListener('input', function () {
    var now = Date.now();
    if (!state.selected || !state.ws || now - (state.typingSent || 0) < 3000) return;
    state.typingSent = now;
    state.ws.send(JSON.stringify({ action: 'typing', conversation_id: state.selected, is_typing: true }));
  });
  $('messages').addEventListener('scroll', function () { if ($('messages').scrollTop < 40) loadOlder(state.selected); });
  $('claim').addEventListener('click', function () {
    request({ action: 'claim', conversation_id: state.selected }).then(function (r) { upsert(r.conversation); });
  });
  $('transfer').addEventListener('click', function () {
    request({ action: 'transfer', conversation_id: state.selected, agent_id: $('transfer-to').value })
      .then(function (r) { upsert(r.conversation); }, function (err) { alert(err.message); });
  });
  $('close-conversation').addEventListener('click', function () {
    request({ action: 'close', conversation_id: state.selected }).then(function (r) { upsert(r.conversation); });
  });
  $('attach').addEventListener('click', function () { $('file').click(); });
  $('file').addEventListener('change', function () {
    var file = $('file').files[0];
    $('file').value = '';
    if (!file || !state.selected) return;
    var policy = state.session.upload || {};
    if (policy.max_bytes && file.size > policy.max_bytes) { alert('This file is too large.'); return; }
    var conversation = state.selected;
    api('POST', '/v1/uploads', { conversation_id: conversation, file_name: file.name, content_type: file.type, size: file.size })
      .then(function (grant) {
        var form = new FormData();
        Object.keys(grant.fields).forEach(function (k) { form.append(k, grant.fields[k]); });
        form.append('file', file);
        return fetch(grant.url, { method: 'POST', body: form }).then(function (r) {
          if (!r.ok) throw new Error('The upload failed.');
          state.selected = conversation;
          enqueue({ attachment: { key: grant.key, name: file.name, size: file.size, content_type: file.type } });
        });
      }).catch(function (err) { alert(err.message); });
  });

  var saved = sessionStorage.getItem('kefu-console:session');
  if (saved) start(JSON.parse(saved)); else showLogin();
})();
