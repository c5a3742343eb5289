/* Kefu agent console. Static files; talks to the REST API and the WebSocket (docs/protocol.md). */
(function () {
  'use strict';

  var config = window.KEFU_CONSOLE_CONFIG || {};
  var apiUrl = (config.apiUrl || location.origin + '/api').replace(/\/$/, '');
  var PAGE = 30;
  var OUTBOX_KEY = 'kefu-console:outbox';
  var RETRY = ['send_in_progress', 'rate_limited', 'internal_error', 'connection_unknown'];

  var state = {
    session: null,          // agent session (token, agent_id, websocket_url, upload)
    ws: null, attempt: 0, refusals: 0, pending: {}, ready: false,
    conversations: {},      // id -> conversation
    views: {},              // id -> the messages loaded: {msgs, held, lo, synced}
    pages: {},              // id -> the visitor's recent pages (the `pages` action)
    outbox: load(OUTBOX_KEY) || [],  // {client_msg_id, conversation_id, text, attachment, failed}
    urls: {}, previews: {},
    selected: null, tab: 'mine', agentsOnline: [], missed: 0,
    history: null,          // closed conversations, most recently closed first: {ids, next_cursor, loading}
    search: null,           // {query, results, next_cursor, loading}
    visitors: null,         // live visitors: {byId, next_cursor, loading} (the `visitors` action and pushes)
    hit: null,              // {id, seq}: the message a search result opened, highlighted
    agents: {},             // agent id -> {agent_id, name, online, availability} (from `state`)
    myStatus: 'online',     // online | away (the `status` action)
    canned: [],             // the site's canned responses
    labelFilter: '',        // show only conversations with this label
    view: null              // null (conversations), 'reports' or 'canned': what the main area shows
  };
  // Kept in memory only (never stored), to renew the session before it expires; after a reload the
  // console asks for the password again when the token runs out.
  var credentials = null;

  var $ = function (id) { return document.getElementById(id); };

  function load(key) { try { return JSON.parse(sessionStorage.getItem(key)); } catch (e) { return null; } }
  function saveOutbox() { try { sessionStorage.setItem(OUTBOX_KEY, JSON.stringify(state.outbox)); } catch (e) {} }

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

  // http(s) links in message text become links; the rest stays text (never parsed as HTML).
  function linkify(parent, text) {
    var re = /\bhttps?:\/\/[!#-&(-;=?-~]+/gi, last = 0, m;
    while ((m = re.exec(text))) {
      var url = m[0].replace(/[.,;:!?)\]}]+$/, '');
      parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      parent.appendChild(el('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: url }));
      re.lastIndex = last = m.index + url.length;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function api(method, path, body, retried) {
    var headers = { 'Content-Type': 'application/json' };
    if (state.session) headers.Authorization = 'Bearer ' + state.session.token;
    return fetch(apiUrl + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) {
          if (r.ok) return j;
          if (!retried && state.session && (j.code === 'token_expired' || j.code === 'token_invalid')) {
            return renew().then(function () { return api(method, path, body, true); });
          }
          var e = new Error(j.message || ('HTTP ' + r.status)); e.code = j.code; throw e;
        });
      });
  }

  // ---- login and session renewal -------------------------------------------------------------

  function showLogin(message) {
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    var form = $('login-form');
    var params = new URLSearchParams(location.search);
    form.site_id.value = params.get('site') || localStorage.getItem('kefu-console:site') || '';
    if (!form.site_id.value) {
      fetch(location.origin + '/local/info').then(function (r) { return r.ok ? r.json() : null; })
        .then(function (info) { if (info && !form.site_id.value) form.site_id.value = info.site_id; }).catch(function () {});
    }
  }

  function login(fields) {
    return api('POST', '/v1/agent/session', fields).then(function (session) {
      credentials = fields;
      return session;
    });
  }

  $('login-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var form = e.target;
    $('login-error').textContent = '';
    login({ site_id: form.site_id.value.trim(), email: form.email.value.trim(), password: form.password.value })
      .then(function (session) {
        var previous = state.session;
        localStorage.setItem('kefu-console:site', session.site_id);
        sessionStorage.setItem('kefu-console:session', JSON.stringify(session));
        // logging in again as someone else: nothing of the previous agent's view may stay
        if (previous && (previous.agent_id !== session.agent_id || previous.site_id !== session.site_id)) {
          sessionStorage.removeItem(OUTBOX_KEY);
          location.reload();
          return;
        }
        start(session);
      }, function (err) { $('login-error').textContent = err.message || 'Login failed'; });
  });

  $('logout').addEventListener('click', function () {
    sessionStorage.removeItem('kefu-console:session');
    sessionStorage.removeItem(OUTBOX_KEY);
    credentials = null;
    location.reload();
  });

  function start(session) {
    state.session = session;
    config.websocketUrl = config.websocketUrl || session.websocket_url;
    $('login').hidden = true;
    $('app').hidden = false;
    $('me-name').textContent = session.name;
    $('admin-link').hidden = session.role !== 'owner';  // owners manage the site on the admin page
    scheduleRenewal();
    connect();
  }

  function lifetime(token) {
    try {
      var claims = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
      return (claims.exp - claims.iat) * 1000;
    } catch (e) { return 0; }
  }

  // At 80% of the token's life (measured on this clock), a new one.
  function scheduleRenewal() {
    var s = state.session;
    if (!s.renewAt) {
      s.renewAt = Date.now() + Math.max(1000, 0.8 * (lifetime(s.token) || (s.expires_at * 1000 - Date.now())));
      sessionStorage.setItem('kefu-console:session', JSON.stringify(s));
    }
    clearTimeout(state.renewTimer);
    state.renewTimer = setTimeout(function () { renew().catch(function () {}); }, Math.max(0, s.renewAt - Date.now()));
  }

  function renew() {
    if (state.renewing) return state.renewing;
    if (!credentials) {
      // (the page was reloaded): the token serves until it expires, then the agent logs in again
      var left = state.session.expires_at * 1000 - Date.now();
      clearTimeout(state.renewTimer);
      if (left > 5000) {
        state.renewTimer = setTimeout(function () { renew().catch(function () {}); }, left - 5000);
        return Promise.resolve(state.session);
      }
      showLogin('Your session has expired: log in again to continue.');
      return Promise.reject(new Error('session expired'));
    }
    state.renewing = login(credentials).then(function (session) {
      state.renewing = null;
      state.session = session;
      sessionStorage.setItem('kefu-console:session', JSON.stringify(session));
      scheduleRenewal();
      return session;
    }, function (err) {
      state.renewing = null;
      if (err.code === 'invalid_credentials') { credentials = null; showLogin('Your password has changed: log in again.'); }
      else setTimeout(function () { renew().catch(function () {}); }, 15000);
      throw err;
    });
    return state.renewing;
  }

  // ---- socket -------------------------------------------------------------------------------

  function connect() {
    if (state.ws || !state.session || !navigator.onLine) return;
    var s = state.session, now = Date.now();
    if (s.renewAt < now && (credentials || s.expires_at * 1000 < now)) {
      renew().then(connect, function () {});
      return;
    }
    var ws = new WebSocket(config.websocketUrl + '?token=' + encodeURIComponent(state.session.token));
    var opened = false;
    state.ws = ws;
    setConnection('connecting');
    ws.onopen = function () {
      opened = true;
      state.lastHeard = Date.now();
      clearInterval(state.heartbeat);
      state.heartbeat = setInterval(function () {
        if (Date.now() - state.lastHeard > 40000) { drop(); connect(); return; }  // a dead link
        request({ action: 'ping' }).catch(function () {});
      }, 25000);
      refresh().then(function () {
        return Promise.all(Object.keys(state.views).map(catchUp));
      }).then(function () {
        state.attempt = 0;
        state.ready = true;
        setConnection('online');
        flushOutbox();
      }, function () { if (state.ws === ws) { drop(); retryLater(); } });
    };
    ws.onmessage = function (event) {
      state.lastHeard = Date.now();
      if (state.ws === ws) handle(JSON.parse(event.data));
    };
    ws.onclose = function () {
      if (state.ws !== ws) return;
      drop();
      if (!opened && ++state.refusals >= 2) { state.refusals = 0; checkToken(); } else retryLater();
    };
  }

  // Refused at the handshake twice (a browser does not say why): is it the token?
  function checkToken() {
    api('GET', '/v1/conversations?limit=1').then(retryLater, function (err) {
      if (['token_expired', 'token_invalid', 'token_revoked', 'agent_disabled'].indexOf(err.code) < 0) retryLater();
      else if (credentials) renew().then(connect, function () {});
      else showLogin('Your session has ended: log in again to continue.');
    });
  }

  function drop() {
    var ws = state.ws, pending = state.pending;
    state.ws = null;
    state.ready = false;
    state.pending = {};
    clearInterval(state.heartbeat);
    Object.keys(pending).forEach(function (req) { pending[req].reject(new Error('offline')); });
    if (ws) { ws.onclose = null; try { ws.close(); } catch (e) {} }
    setConnection(navigator.onLine ? 'connecting' : 'offline');
  }

  function retryLater() {
    clearTimeout(state.retryTimer);
    var delay = Math.min(30000, 500 * Math.pow(2, state.attempt++)) * (0.5 + Math.random() / 2);
    state.retryTimer = setTimeout(connect, delay);
  }

  window.addEventListener('online', function () { state.attempt = 0; connect(); });
  window.addEventListener('offline', drop);

  function setConnection(status) {
    $('connection').textContent = status === 'connecting' ? 'connecting…' : status;
    $('connection').className = 'pill' + (status === 'online' ? ' online' : '');
  }

  function request(frame, timeout) {
    var ws = state.ws;
    return new Promise(function (resolve, reject) {
      if (!ws || ws.readyState !== 1) { reject(new Error('offline')); return; }
      frame.req = newId('r');
      var timer = setTimeout(function () {
        delete state.pending[frame.req];
        reject(new Error('timeout'));
        if (state.ws === ws) { drop(); retryLater(); }  // no answer in this long: the link is dead
      }, timeout || 15000);
      state.pending[frame.req] = {
        resolve: function (v) { clearTimeout(timer); resolve(v); },
        reject: function (e) { clearTimeout(timer); reject(e); }
      };
      ws.send(JSON.stringify(frame));
    });
  }

  // Every open conversation, page by page. One we had as open that no page lists any more was
  // closed while we were away (its `closed` event went to a socket that was gone).
  function refresh() {
    var generation = state.generation = (state.generation || 0) + 1;
    function take(list) {
      list.forEach(function (c) { c.seen = generation; state.conversations[c.conversation_id] = c; });
    }
    function more(cursor) {
      if (!cursor) return null;
      return request({ action: 'list', cursor: cursor }).then(function (page) {
        take(page.conversations);
        return more(page.next_cursor);
      });
    }
    loadVisitors(true);
    return request({ action: 'state' }).then(function (s) {
      state.agentsOnline = s.agents_online;
      takeAgents(s);
      request({ action: 'canned_list' }).then(function (r) { state.canned = r.responses; renderCannedList(); }, function () {});
      take(s.conversations);
      return more(s.next_cursor);
    }).then(function () {
      Object.keys(state.conversations).forEach(function (id) {
        var c = state.conversations[id];
        if (c.seen !== generation && c.status !== 'closed') c.status = 'closed';
        if (c.status === 'closed' && id !== state.selected) delete state.views[id];
      });
      renderList();
      renderConversation();
    });
  }

  function handle(frame) {
    var waiting = frame.req && state.pending[frame.req];
    if (frame.code === 'connection_unknown') { drop(); retryLater(); }
    if (waiting) {
      delete state.pending[frame.req];
      if (frame.type === 'error') waiting.reject(frame); else waiting.resolve(frame);
      if (frame.type !== 'conversation') return;
    }
    switch (frame.type) {
      case 'message': received(frame, true); break;
      case 'conversation': upsert(frame.conversation); break;
      case 'visitor': visitorChanged(frame); break;
      case 'presence':
        if (frame.role === 'visitor' && state.conversations[frame.conversation_id]) {
          state.conversations[frame.conversation_id].visitor_online = frame.status === 'online';
          renderList(); renderConversation();
        } else if (frame.role === 'agent') {
          request({ action: 'state' }).then(function (s) { state.agentsOnline = s.agents_online; takeAgents(s); renderConversation(); }, function () {});
        }
        break;
      case 'canned':
        state.canned = frame.responses; renderCannedList();
        break;
      case 'page_view':
        var c = state.conversations[frame.conversation_id];
        if (c) {
          c.current_page = frame.page;
          c.page_count = (c.page_count || 0) + 1;
          if (state.pages[frame.conversation_id]) state.pages[frame.conversation_id].push(frame.page);
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
    var h = state.history, id = conversation.conversation_id;
    if (h) {
      h.ids = h.ids.filter(function (x) { return x !== id; });
      if (conversation.status === 'closed') h.ids.unshift(id);
    }
    conversation.seen = state.generation;
    state.conversations[conversation.conversation_id] = Object.assign({}, known || {}, conversation);
    renderList();
    if (conversation.conversation_id === state.selected) renderConversation();
  }

  // ---- messages: the catch-up rule per conversation (docs/protocol.md) ------------------------

  // A view holds every seq from `lo` up to `synced` (messages, or gaps the server listed), and
  // whatever arrived beyond; below `lo` the agent can load earlier messages.
  function view(id) {
    return state.views[id] || (state.views[id] = { msgs: {}, held: {}, lo: 0, synced: 0, holeDelay: 0 });
  }

  function maxSeq(v) { return Math.max.apply(null, [v.synced].concat(Object.keys(v.held).map(Number))); }

  function ingest(id, page) {
    var v = state.views[id];
    if (!v) return;
    page.messages.forEach(function (m) { if (!v.msgs[m.seq]) v.msgs[m.seq] = v.held[m.seq] = m; forget(m); });
    (page.gaps || []).forEach(function (seq) { v.held[seq] = true; });
    advance(id);
  }

  function advance(id) {
    var v = state.views[id];
    while (v.held[v.synced + 1]) v.synced++;
    if (id === state.selected) renderMessages();
  }

  function catchUp(id) {
    var v = state.views[id];
    if (!v) return Promise.resolve();
    if (v.syncing) { v.again = true; return v.syncing; }
    function step(after) {
      return request({ action: 'sync', conversation_id: id, after_seq: after }).then(function (page) {
        ingest(id, page);
        if (page.has_more && page.next_after_seq > after) return step(page.next_after_seq);
      });
    }
    v.syncing = step(v.synced).then(function () {
      v.syncing = null;
      checkHoles(id);
      if (v.again) { v.again = false; return catchUp(id); }
    }, function (err) { v.syncing = null; v.again = false; throw err; });
    return v.syncing;
  }

  // A seq below the newest held that is still missing is in flight or about to be listed as a
  // gap: ask again later (less and less often); it is shown as missing meanwhile, never skipped.
  function checkHoles(id) {
    var v = state.views[id];
    if (!v || v.synced >= maxSeq(v)) { if (v) v.holeDelay = 0; return; }
    if (v.holeTimer) return;
    v.holeDelay = Math.min(60000, (v.holeDelay || 1000) * 2);
    v.holeTimer = setTimeout(function () {
      v.holeTimer = null;
      if (state.ready && state.views[id] === v) catchUp(id).catch(function () {});
    }, v.holeDelay);
  }

  // The first time a conversation is shown: its newest page (then "load earlier" for the rest).
  // With `atSeq` (a search hit), from a few messages before that one (and on to the newest).
  function openView(id, atSeq) {
    var c = state.conversations[id] || {};
    var v = state.views[id];
    if (v && atSeq && atSeq < v.lo) { delete state.views[id]; v = null; }  // a cache: read it again from there
    if (!v) {
      v = view(id);
      v.synced = Math.max(0, (c.last_seq || 0) - PAGE);
      if (atSeq) v.synced = Math.min(v.synced, Math.max(0, atSeq - 5));
      v.lo = v.synced + 1;
    }
    return catchUp(id);
  }

  function loadEarlier(id) {
    var v = state.views[id];
    if (!v || v.lo <= 1 || v.loadingEarlier) return;
    var end = v.lo - 1, from = Math.max(0, end - PAGE);
    var box = $('messages'), before = box.scrollHeight;
    function step(after) {
      return request({ action: 'sync', conversation_id: id, after_seq: after, limit: Math.min(50, end - after) }).then(function (page) {
        page.messages.forEach(function (m) { if (!v.msgs[m.seq]) v.msgs[m.seq] = v.held[m.seq] = m; });
        (page.gaps || []).forEach(function (seq) { v.held[seq] = true; });
        if (page.next_after_seq > after && page.next_after_seq < end) return step(page.next_after_seq);
      });
    }
    v.loadingEarlier = true;
    step(from).then(function () {
      v.lo = from + 1;
      renderMessages(true);
      box.scrollTop = box.scrollHeight - before;
    }).catch(function () {}).then(function () { v.loadingEarlier = false; renderMessages(true); });
  }

  function received(m, live) {
    var c = state.conversations[m.conversation_id];
    var v = state.views[m.conversation_id];
    var alert = live && m.sender.role === 'visitor' && (document.hidden || m.conversation_id !== state.selected);
    if (v) {
      if (v.msgs[m.seq]) {  // a catch-up got it first: its push is still the news (a sync never alerts)
        if (alert) notify(m);
        return;
      }
      v.msgs[m.seq] = v.held[m.seq] = m;
      advance(m.conversation_id);
      checkHoles(m.conversation_id);
    }
    forget(m);
    if (c) {
      c.last_seq = Math.max(c.last_seq || 0, m.seq);
      c.last_text = m.text || (m.attachment && m.attachment.name) || c.last_text;
      c.updated_at = Math.max(c.updated_at || 0, m.created_at || 0);
    }
    if (m.conversation_id === state.selected) {
      if (m.sender.role === 'visitor') showTyping(false);
      markRead();
    }
    if (alert) notify(m);
    renderList();
  }

  // Our own message came back (in a sync, or from another tab of ours): it is no longer unsent.
  function forget(m) {
    var before = state.outbox.length;
    state.outbox = state.outbox.filter(function (o) { return o.client_msg_id !== m.client_msg_id; });
    if (state.outbox.length !== before) saveOutbox();
  }

  function acked(ack, item) {
    var v = state.views[ack.conversation_id];
    if (v && !v.msgs[ack.seq]) {
      v.msgs[ack.seq] = v.held[ack.seq] = { conversation_id: ack.conversation_id, seq: ack.seq, id: ack.id,
        client_msg_id: ack.client_msg_id, sender: { role: 'agent', id: state.session.agent_id },
        text: item.text, attachment: item.attachment, note: item.note || undefined, created_at: ack.created_at };
      advance(ack.conversation_id);
    }
    state.outbox = state.outbox.filter(function (o) { return o !== item; });
    saveOutbox();
    var c = state.conversations[ack.conversation_id];
    if (c) { c.last_seq = Math.max(c.last_seq || 0, ack.seq); c.agent_read_seq = Math.max(c.agent_read_seq || 0, ack.seq); }
    renderMessages(); renderList();
  }

  function markRead() {
    var c = state.conversations[state.selected];
    if (!c || document.hidden || !state.ready || !c.last_seq || c.last_seq <= (c.agent_read_seq || 0)) return;
    c.agent_read_seq = c.last_seq;
    request({ action: 'read', conversation_id: c.conversation_id, seq: c.last_seq }).catch(function () {});
    renderList();
  }

  function sendText() {
    var text = $('text').value.trim();
    if (!text || !state.selected) return;
    $('text').value = '';
    hideCannedMenu();
    enqueue(state.selected, { text: text, note: $('note').checked });
  }

  function enqueue(conversationId, content) {
    state.outbox.push({ client_msg_id: newId('a'), conversation_id: conversationId, text: content.text || null,
      attachment: content.attachment || null, note: content.note || undefined });
    saveOutbox();
    renderMessages();
    flushOutbox();
  }

  // One send in flight at a time, oldest first, so replies are stored in the order typed.
  function flushOutbox() {
    var item = state.outbox.filter(function (o) { return !o.failed; })[0];
    if (state.sending || !item || !state.ready) return;
    state.sending = true;
    var frame = { action: 'send', conversation_id: item.conversation_id, client_msg_id: item.client_msg_id };
    if (item.text) frame.text = item.text;
    if (item.note) frame.note = true;
    // A message with an attachment goes over REST: only the REST function attaches uploads.
    var sent = item.attachment ? api('POST', '/v1/conversations/' + encodeURIComponent(item.conversation_id) +
      '/messages', { client_msg_id: item.client_msg_id, text: item.text || undefined, attachment: item.attachment })
      : request(frame);
    sent.then(function (ack) {
      state.sending = false;
      acked(ack, item);
      flushOutbox();
    }, function (err) {
      state.sending = false;
      if (err.code && RETRY.indexOf(err.code) < 0) {
        item.failed = err.code === 'conversation_closed' ? 'the conversation is closed' : (err.message || err.code);
        saveOutbox(); renderMessages(); flushOutbox();
      } else if (err.code || item.attachment) {
        setTimeout(flushOutbox, 2000);
      }  // no socket: flushed after the reconnect's catch-up
    });
  }

  // ---- attachments: signed URLs expire, so a fresh one when ours has --------------------------

  function signedUrl(id, a) {
    var u = state.urls[a.key];
    if (!u && a.url) u = state.urls[a.key] = { u: a.url, e: a.url_expires_at };
    // (a URL fetched just now is used even if this clock thinks it has expired already)
    if (u && (u.e * 1000 > Date.now() + 2000 || Date.now() - u.f < 10000)) return u.u;
    freshUrl(id, a.key);
    return null;
  }

  function freshUrl(id, key) {
    var u = state.urls[key] || {};
    if (u.busy || Date.now() - (u.f || 0) < 10000) return;
    u.busy = true;
    state.urls[key] = u;
    api('GET', '/v1/conversations/' + encodeURIComponent(id) + '/attachments/url?key=' + encodeURIComponent(key)).then(function (r) {
      state.urls[key] = { u: r.url, e: r.expires_at, f: Date.now() };
      renderMessages(true);
    }, function () { u.busy = false; u.f = Date.now(); });
  }

  // ---- notifications ------------------------------------------------------------------------

  // A visitor wrote where the agent is not looking: a sound, and a desktop notification when the
  // tab is hidden (permission is asked from a click: browsers refuse it otherwise). The unread
  // counts (per conversation, and their total in the title) follow from the read marks.
  function notify(m) {
    try {
      var audio = state.audio = state.audio || new (window.AudioContext || window.webkitAudioContext)();
      var osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.value = 880; gain.gain.value = 0.08;
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(); osc.stop(audio.currentTime + 0.15);
    } catch (e) { /* no audio: the badges and the title still say it */ }
    state.beeps = (state.beeps || 0) + 1;
    document.body.setAttribute('data-beeps', String(state.beeps));  // for tests: sound is not observable
    if (!document.hidden || !window.Notification || Notification.permission !== 'granted') return;
    var c = state.conversations[m.conversation_id] || {};
    try {
      var shown = new Notification(c.visitor_id ? visitorLabel(c) : 'New message', { body: m.text || (m.attachment && m.attachment.name) || '', tag: m.conversation_id });
      shown.onclick = function () { window.focus(); select(m.conversation_id); shown.close(); };
    } catch (e) { /* some browsers only notify from a service worker */ }
  }

  function unreadOf(c) {
    return c.status === 'closed' ? 0 : Math.max(0, (c.last_seq || 0) - (c.agent_read_seq || 0));
  }

  function updateTitle() {
    var total = 0;
    Object.keys(state.conversations).forEach(function (id) {
      var c = state.conversations[id];
      if (inTab(c, 'mine') || inTab(c, 'queue')) total += unreadOf(c);
    });
    document.title = (total ? '(' + total + ') ' : '') + 'Kefu — agent console';
  }

  function showNotificationOffer() {
    $('enable-notifications').hidden = !window.Notification || Notification.permission !== 'default';
  }

  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) { markRead(); connect(); }
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
    updateTitle();
    renderLabelFilter(all);
    var live = state.visitors ? Object.keys(state.visitors.byId).length : 0;
    $('count-visitors').textContent = live ? live : '';
    if (state.tab === 'visitors') return renderVisitors();
    if (state.tab === 'history') return renderHistory();
    if (state.tab === 'search') return renderSearch();
    $('list-note').hidden = $('list-more').hidden = true;
    var shown = all.filter(function (c) { return inTab(c, state.tab) && hasFilterLabel(c); })
      .sort(function (a, b) { return (b.updated_at || 0) - (a.updated_at || 0); });
    if (!shown.length) listNote(emptyHint(), false);
    var items = shown.map(function (c) {
      var unread = unreadOf(c);
      return el('li', { class: c.conversation_id === state.selected ? 'selected' : '', 'data-id': c.conversation_id,
        onclick: function () { select(c.conversation_id); } }, [
        el('span', { class: 'who' }, [el('span', { class: 'dot' + (c.visitor_online ? ' on' : '') }), visitorLabel(c),
          c.visitor_verified ? el('span', { class: 'verified', text: 'verified' }) : null,
          c.status === 'queued' ? el('span', { class: 'tag', text: 'queued' }) : null]),
        unread ? el('span', { class: 'unread', text: String(unread) }) : el('span'),
        el('span', { class: 'last', text: c.last_text || '—' }),
        c.current_page ? el('span', { class: 'page', text: '↳ ' + (c.current_page.title || c.current_page.url) }) : null,
        labelChips(c)
      ]);
    });
    $('conversations').replaceChildren.apply($('conversations'), items);
  }

  function emptyHint() {
    if (state.labelFilter) return 'No conversation here has the label “' + state.labelFilter + '”. Choose “All labels” to see every one.';
    if (state.tab === 'mine') return state.myStatus === 'away' ? 'You are away: new chats go to colleagues who are online. Set yourself Online to get them.'
      : 'No conversations assigned to you. When a visitor writes, the chat lands here (or in Queue when every agent is busy).';
    if (state.tab === 'queue') return 'Nobody is waiting. Chats wait here when no agent is online to take them; Claim one to answer it.';
    return 'No open conversations. They appear here as soon as a visitor writes in the chat on your site.';
  }

  function labelChips(c) {
    if (!c.labels || !c.labels.length) return null;
    return el('span', { class: 'labels' }, c.labels.map(function (l) { return el('span', { class: 'label', text: l }); }));
  }

  function hasFilterLabel(c) { return !state.labelFilter || (c.labels || []).indexOf(state.labelFilter) >= 0; }

  function renderLabelFilter(all) {
    var seen = {};
    all.forEach(function (c) { if (c.status !== 'closed') (c.labels || []).forEach(function (l) { seen[l] = true; }); });
    var labels = Object.keys(seen).sort();
    if (state.labelFilter && !seen[state.labelFilter]) labels.push(state.labelFilter);
    var box = $('label-filter');
    box.replaceChildren.apply(box, [el('option', { value: '', text: 'All labels' })].concat(labels.map(function (l) {
      return el('option', { value: l, text: 'Label: ' + l });
    })));
    box.value = state.labelFilter;
    $('label-filter-box').hidden = !labels.length || state.tab === 'history' || state.tab === 'search';
  }

  // ---- History (closed conversations, read-only) and search ------------------------------------

  function when(ms) {
    if (!ms) return '';
    var d = new Date(ms);
    return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleDateString([], { month: 'short', day: 'numeric' });
  }

  function listNote(text, more) {
    $('list-note').textContent = text || '';
    $('list-note').hidden = !text;
    $('list-more').hidden = !more;
  }

  function loadHistory(fresh) {
    var h = state.history;
    if (!fresh && (!h || !h.next_cursor || h.loading)) return;
    if (fresh) h = state.history = { ids: [], next_cursor: null };
    h.loading = true;
    renderList();
    var frame = { action: 'list', closed: true };
    if (h.next_cursor) frame.cursor = h.next_cursor;
    request(frame).then(function (page) {
      if (state.history !== h) return;
      page.conversations.forEach(function (c) {
        state.conversations[c.conversation_id] = Object.assign({}, state.conversations[c.conversation_id] || {}, c);
        if (h.ids.indexOf(c.conversation_id) < 0) h.ids.push(c.conversation_id);
      });
      h.next_cursor = page.next_cursor;
      h.loading = false;
      renderList();
    }, function () { h.loading = false; h.failed = true; renderList(); });
  }

  function renderHistory() {
    var h = state.history || { ids: [] };
    var items = h.ids.map(function (id) { return state.conversations[id]; })
      .filter(function (c) { return c && c.status === 'closed'; }).map(function (c) {
        return el('li', { class: c.conversation_id === state.selected ? 'selected' : '', 'data-id': c.conversation_id,
          onclick: function () { select(c.conversation_id); } }, [
          el('span', { class: 'who' }, [visitorLabel(c), el('span', { class: 'tag closed', text: 'closed' })]),
          el('span', { class: 'when', text: when(c.closed_at) }),
          el('span', { class: 'last', text: c.last_text || '—' }),
          c.rating ? el('span', { class: 'rating last', text: stars(c.rating.score) + (c.rating.comment ? ' “' + c.rating.comment + '”' : '') }) : null
        ]);
      });
    $('conversations').replaceChildren.apply($('conversations'), items);
    listNote(h.loading ? 'Loading…' : h.failed ? 'Could not load the history; reconnecting.' :
      items.length ? '' : 'No closed conversations yet. Close a chat when it is done (or it closes itself when idle) and it is kept here.', !!h.next_cursor && !h.loading);
  }

  function runSearch(query, more) {
    var s = state.search;
    if (more) {
      if (!s || !s.next_cursor || s.loading) return;
    } else {
      s = state.search = { query: query, results: [], next_cursor: null };
    }
    s.loading = true;
    renderList();
    var frame = { action: 'search', query: s.query };
    if (more) frame.cursor = s.next_cursor;
    request(frame).then(function (page) {
      if (state.search !== s) return;
      Object.keys(page.conversations || {}).forEach(function (id) {
        state.conversations[id] = Object.assign({}, state.conversations[id] || {}, page.conversations[id]);
      });
      s.results = s.results.concat(page.results);
      s.next_cursor = page.next_cursor;
      s.loading = false;
      renderList();
    }, function (err) {
      if (state.search !== s) return;
      s.loading = false;
      s.error = err.code === 'invalid_query' ? 'Type a word to search for.' : (err.message || 'The search failed.');
      renderList();
    });
  }

  function renderSearch() {
    var s = state.search || { results: [] };
    var items = s.results.map(function (r) {
      var c = state.conversations[r.conversation_id] || r;
      var selected = r.conversation_id === state.selected && (!state.hit || state.hit.seq === r.seq);
      return el('li', { class: 'result' + (selected ? ' selected' : ''), 'data-id': r.conversation_id, 'data-seq': r.seq || '',
        onclick: function () { select(r.conversation_id, r.seq || null); } }, [
        el('span', { class: 'who' }, [visitorLabel(c), c.status === 'closed' ? el('span', { class: 'tag closed', text: 'closed' }) : null,
          r.matched === 'visitor' ? el('span', { class: 'tag', text: 'visitor' }) : null]),
        el('span', { class: 'when', text: when(r.created_at) }),
        el('span', { class: 'snippet', text: r.snippet || '' })
      ]);
    });
    $('conversations').replaceChildren.apply($('conversations'), items);
    listNote(s.loading ? 'Searching…' : s.error ? s.error :
      items.length ? '' : 'Nothing found for “' + s.query + '”. Search finds whole words, and Chinese from two characters.',
      !!s.next_cursor && !s.loading);
  }

  // ---- Live visitors: everyone on the site now, kept current by `visitor` pushes; Invite starts a chat ----

  function loadVisitors(fresh) {
    var v = state.visitors;
    if (!fresh && (!v || !v.next_cursor || v.loading)) return;
    if (fresh) v = state.visitors = { byId: {}, next_cursor: null };
    v.loading = true;
    var frame = { action: 'visitors' };
    if (v.next_cursor) frame.cursor = v.next_cursor;
    request(frame).then(function (page) {
      if (state.visitors !== v) return;
      page.visitors.forEach(function (x) { v.byId[x.visitor_id] = x; });
      v.next_cursor = page.next_cursor;
      v.loading = false;
      renderList();
    }, function () { v.loading = false; v.failed = true; renderList(); });
  }

  function visitorChanged(frame) {
    var v = state.visitors;
    if (!v) return;
    if (frame.event === 'left') delete v.byId[frame.visitor_id];
    else v.byId[frame.visitor_id] = frame.visitor;
    renderList();
  }

  function duration(seconds) {
    if (seconds < 60) return seconds + ' s';
    if (seconds < 3600) return Math.floor(seconds / 60) + ' min';
    return Math.floor(seconds / 3600) + ' h ' + Math.floor(seconds % 3600 / 60) + ' min';
  }

  function invite(visitor, input, button) {
    var text = input.value.trim();
    if (!text) { input.focus(); return; }
    button.disabled = true;
    request({ action: 'invite', visitor_id: visitor.visitor_id, text: text, client_msg_id: newId('inv') }).then(function (reply) {
      upsert(reply.conversation);
      showTab('mine');
      select(reply.conversation.conversation_id);
    }, function (err) {
      button.disabled = false;
      input.setCustomValidity(err.message || 'The invitation failed.');
      input.reportValidity();
    });
  }

  function renderVisitors() {
    var v = state.visitors || { byId: {} };
    var all = Object.keys(v.byId).map(function (id) { return v.byId[id]; })
      .sort(function (a, b) { return (a.visit_started_at || 0) - (b.visit_started_at || 0); });
    var items = all.map(function (x) {
      var since = x.visit_started_at ? Math.max(0, Math.round((Date.now() - x.visit_started_at) / 1000)) : x.time_on_site || 0;
      var input = el('input', { type: 'text', maxlength: '2000', placeholder: 'Say hello…', 'aria-label': 'Invitation message' });
      input.addEventListener('input', function () { input.setCustomValidity(''); });
      var button = el('button', { type: 'submit', class: 'invite', text: 'Invite' });
      var form = el('form', { class: 'invite-form', onsubmit: function (e) { e.preventDefault(); invite(x, input, button); } },
        [input, button]);
      return el('li', { class: 'visitor', 'data-visitor': x.visitor_id }, [
        el('span', { class: 'who' }, [el('span', { class: 'dot on' }), x.name || ('Visitor ' + x.visitor_id.slice(-6)),
          x.verified ? el('span', { class: 'verified', text: 'verified' }) : null,
          el('span', { class: 'tag', text: x.returning ? 'returning' : 'new' })]),
        el('span', { class: 'when', text: duration(since) }),
        el('span', { class: 'page', text: '↳ ' + (x.title || x.url || '…'), title: x.url || '' }),
        el('span', { class: 'last', text: x.pages_this_visit + (x.pages_this_visit === 1 ? ' page' : ' pages') +
          (x.referrer ? ' · from ' + x.referrer : '') + (x.email ? ' · ' + x.email : '') }),
        form
      ]);
    });
    $('conversations').replaceChildren.apply($('conversations'), items);
    listNote(v.loading ? 'Loading…' : v.failed ? 'Could not load the visitors; reconnecting.' :
      items.length ? '' : 'Nobody is on the site right now. Visitors appear here as they browse, before they write.',
      !!v.next_cursor && !v.loading);
  }

  function showTab(tab) {
    state.tab = tab;
    Array.prototype.forEach.call(document.querySelectorAll('.tabs button'), function (b) {
      b.classList.toggle('active', b.getAttribute('data-tab') === tab);
    });
    if (tab !== 'search') $('search').value = '';
    if (tab === 'history') loadHistory(true);
    if (tab === 'visitors') loadVisitors(true);
    renderList();
  }

  function select(id, atSeq) {
    state.selected = id;
    state.hit = atSeq ? { id: id, seq: atSeq } : null;
    showView(null);
    $('app').classList.add('show-chat');
    $('empty').hidden = true;
    $('conversation').hidden = false;
    renderList();
    renderConversation();
    openView(id, atSeq).then(function () {
      renderMessages(); markRead();
      var hit = atSeq && $('messages').querySelector('.msg[data-seq="' + atSeq + '"]');
      if (hit) hit.scrollIntoView({ block: 'center' });
    }).catch(function () {});
    request({ action: 'pages', conversation_id: id }).then(function (r) {
      state.pages[id] = r.pages;
      renderDetails();
    }).catch(function () {});
  }

  function renderConversation() {
    var c = state.conversations[state.selected];
    if (!c) return;
    var closed = c.status === 'closed', mine = c.agent_id === state.session.agent_id;
    $('conversation').setAttribute('data-status', c.status);
    $('visitor-name').textContent = visitorLabel(c);
    $('visitor-status').textContent = (c.visitor_online ? 'online' : 'offline') + ' · ' + (closed ? closedBy(c) :
      c.status === 'assigned' ? 'assigned to ' + (mine ? 'me' : agentName(c.agent_id)) : c.status) +
      (c.rating ? ' · rated ' + stars(c.rating.score) : '');
    renderLabels(c);
    $('claim').hidden = mine || closed;
    $('close-conversation').hidden = closed;
    $('closed-note').hidden = !closed;
    $('text').disabled = closed;
    $('composer').hidden = closed;  // read-only: the visitor's next message reopens it
    var select = $('transfer-to');
    var others = state.agentsOnline.filter(function (a) { return a !== state.session.agent_id; });
    select.replaceChildren.apply(select, others.map(function (a) {
      var who = state.agents[a];
      return el('option', { value: a, text: agentName(a) + (who && who.availability === 'away' ? ' (away)' : '') });
    }));
    select.hidden = $('transfer').hidden = others.length === 0 || closed;
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
    // what the visitor gave in the widget's pre-chat or leave-a-message form
    if (c.visitor_email) rows.push(el('dt', { text: 'Email' }), el('dd', { text: c.visitor_email }));
    if (c.visitor_phone) rows.push(el('dt', { text: 'Phone' }), el('dd', { text: c.visitor_phone }));
    Object.keys(attrs).forEach(function (k) {
      rows.push(el('dt', { text: k }), el('dd', { text: typeof attrs[k] === 'string' ? attrs[k] : JSON.stringify(attrs[k]) }));
    });
    var seen = state.pages[c.conversation_id] || c.pages || [];
    var pages = seen.slice().reverse().map(function (p) { return el('li', { text: (p.title ? p.title + ' — ' : '') + p.url }); });
    var rated = c.rating ? [el('h3', { text: 'Rating' }), el('p', { class: 'rating', text: stars(c.rating.score) + ' ' + c.rating.score + '/5' +
      (c.rating.comment ? ' — “' + c.rating.comment + '”' : '') })] : [];
    var hide = el('button', { type: 'button', id: 'hide-details', class: 'details-toggle link', text: '‹ Back to the chat',
      onclick: function () { $('app').classList.remove('show-details'); } });
    box.replaceChildren.apply(box, [hide].concat(rated, [
      el('h3', { text: 'Visitor' }), el('dl', {}, rows),
      el('h3', { text: 'Current page' }), el('p', { text: c.current_page ? c.current_page.url : '—' }),
      el('h3', { text: 'Pages seen (' + Math.max(c.page_count || 0, seen.length) + ')' }), el('ol', { id: 'pages' }, pages)
    ]));
  }

  function renderMessages(keepScroll) {
    var id = state.selected;
    if (!id) return;
    var c = state.conversations[id] || {};
    var v = state.views[id];
    var box = $('messages');
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    var rows = [];
    if (v && v.lo > 1) {
      rows.push(el('button', { class: 'load-earlier', type: 'button', onclick: function () { loadEarlier(id); },
        text: v.loadingEarlier ? 'Loading…' : 'Load earlier messages (' + (v.lo - 1) + ')' }));
    }
    if (v) {
      var top = maxSeq(v), missing = 0;
      for (var seq = v.lo || 1; seq <= top; seq++) {
        if (v.msgs[seq]) {
          if (missing) rows.push(el('div', { class: 'missing', text: missing + ' message' + (missing > 1 ? 's' : '') + ' still loading…' }));
          missing = 0;
          rows.push(row(id, v.msgs[seq], c));
        } else if (!v.held[seq]) missing++;
      }
    }
    state.outbox.filter(function (o) { return o.conversation_id === id; }).forEach(function (o) {
      rows.push(row(id, Object.assign({ sender: { role: 'agent' } }, o), c, o));
    });
    box.replaceChildren.apply(box, rows);
    if (!keepScroll && atBottom) box.scrollTop = box.scrollHeight;
  }

  function row(id, m, c, unsent) {
    var mine = m.sender.role === 'agent';
    var bubble = el('div', { class: 'bubble' });
    if (m.text) linkify(bubble, m.text);
    var a = m.attachment;
    if (a) {
      var label = '📄 ' + a.name + ' (' + humanSize(a.size) + ')';
      var url = state.previews[a.key] || signedUrl(id, a);
      if (url && /^image\//.test(a.content_type)) {
        bubble.appendChild(el('img', { src: url, alt: a.name, onerror: function () {
          if (!state.previews[a.key] && state.urls[a.key]) { delete state.urls[a.key].e; freshUrl(id, a.key); }
        } }));
      } else if (url) bubble.appendChild(el('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: label }));
      else bubble.appendChild(document.createTextNode(label));
    }
    var status = unsent ? (unsent.failed ? 'not sent: ' + unsent.failed : 'sending') :
      mine ? ((c.visitor_read_seq || 0) >= m.seq ? 'read' : 'sent') : '';
    var when = m.created_at ? new Date(m.created_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
    var who = mine ? (m.sender.id && m.sender.id !== state.session.agent_id ? agentName(m.sender.id) : 'You') : '';
    var meta = el('div', { class: 'meta', text: [m.note ? 'Internal note' : '', who, when, status].filter(Boolean).join(' · ') });
    if (unsent && unsent.failed) {
      meta.appendChild(el('button', { class: 'link', type: 'button', text: ' Retry', onclick: function () {
        delete unsent.failed; saveOutbox(); renderMessages(); flushOutbox();
      } }));
    }
    var hit = state.hit && state.hit.id === id && state.hit.seq === m.seq;
    return el('div', { class: 'msg ' + (mine ? 'agent' : 'visitor') + (m.note ? ' note' : '') + (unsent ? ' unsent' : '') + (unsent && unsent.failed ? ' failed' : '') + (hit ? ' hit' : ''),
      'data-seq': m.seq || '' }, [bubble, meta]);
  }

  // ---- agents: names, status (online / away) -----------------------------------------------

  function takeAgents(s) {
    if (!s.agents) return;
    state.agents = {};
    s.agents.forEach(function (a) { state.agents[a.agent_id] = a; });
    if (s.status) { state.myStatus = s.status; $('my-status').value = s.status; }
  }

  function agentName(id) { return (state.agents[id] && state.agents[id].name) || id || ''; }

  function closedBy(c) {
    if (c.closed_by === 'auto') return 'closed automatically (idle)';
    if (!c.closed_by) return 'closed';
    return 'closed by ' + (c.closed_by === state.session.agent_id ? 'me' : agentName(c.closed_by));
  }

  function stars(score) { return '★★★★★'.slice(0, score) + '☆☆☆☆☆'.slice(0, 5 - score); }

  // ---- labels -------------------------------------------------------------------------------

  function renderLabels(c) {
    var box = $('labels');
    var chips = (c.labels || []).map(function (l) {
      return el('span', { class: 'label' }, [l, el('button', { type: 'button', 'aria-label': 'Remove label ' + l, text: '×',
        onclick: function () { act({ action: 'label', conversation_id: c.conversation_id, remove: [l] }); } })]);
    });
    var input = el('input', { id: 'label-input', placeholder: '+ label', maxlength: '30', 'aria-label': 'Add a label' });
    input.addEventListener('keydown', function (e) {
      if (e.key !== 'Enter' || e.isComposing) return;
      e.preventDefault();
      var value = input.value.trim();
      if (value) act({ action: 'label', conversation_id: c.conversation_id, add: [value] });
    });
    box.replaceChildren.apply(box, chips.concat([input]));
  }

  // ---- canned responses: "/" in the reply box ----------------------------------------------

  function cannedMatches(query) {
    var q = query.toLowerCase();
    return state.canned.filter(function (r) {
      return r.shortcut.indexOf(q) === 0 || (q && r.text.toLowerCase().indexOf(q) >= 0);
    }).slice(0, 8);
  }

  function updateCannedMenu() {
    var value = $('text').value, menu = $('canned-menu');
    var m = /^\/(\S*)$/.exec(value);
    if (!m) { hideCannedMenu(); return; }
    var found = cannedMatches(m[1]);
    state.cannedActive = Math.min(state.cannedActive || 0, Math.max(0, found.length - 1));
    var items = found.map(function (r, i) {
      return el('li', { role: 'option', class: i === state.cannedActive ? 'active' : '', 'data-shortcut': r.shortcut,
        onmousedown: function (e) { e.preventDefault(); insertCanned(r); } }, [el('b', { text: '/' + r.shortcut }), el('span', { text: r.text })]);
    });
    if (!items.length) {
      items = [el('li', { class: 'none', text: state.canned.length ? 'No canned response starts with “' + m[1] + '”.'
        : 'No canned responses yet: add them under “Canned responses”.' })];
    }
    menu.replaceChildren.apply(menu, items);
    menu.hidden = false;
    state.cannedFound = found;
  }

  function hideCannedMenu() { $('canned-menu').hidden = true; state.cannedFound = null; state.cannedActive = 0; }

  function insertCanned(r) {
    $('text').value = r.text;
    hideCannedMenu();
    $('text').focus();
  }

  function renderCannedList() {
    var list = $('canned-list');
    var items = state.canned.map(function (r) {
      return el('li', { 'data-shortcut': r.shortcut }, [el('b', { text: '/' + r.shortcut }), el('span', { text: r.text }),
        el('button', { type: 'button', class: 'link', text: 'Delete', onclick: function () {
          request({ action: 'canned_delete', shortcut: r.shortcut }).then(function (f) { state.canned = f.responses; renderCannedList(); },
            function (err) { $('canned-error').textContent = err.message || 'Not connected'; });
        } })]);
    });
    if (!items.length) items = [el('li', { class: 'empty-hint', text: 'No canned responses yet. Save the answers you give often: a shortcut and its text.' })];
    list.replaceChildren.apply(list, items);
  }

  // ---- reports: aggregates by day, drawn as plain SVG bars -----------------------------------

  function svg(tag, attrs) {
    var node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function barChart(values, labels, format) {
    var width = 300, height = 120, top = Math.max.apply(null, values.map(function (v) { return v || 0; }).concat([1]));
    var chart = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, role: 'img', preserveAspectRatio: 'none' });
    var step = width / Math.max(1, values.length), bar = Math.max(1, step * 0.7);
    values.forEach(function (v, i) {
      var h = Math.round((v || 0) / top * (height - 22));
      var rect = svg('rect', { x: (i * step + (step - bar) / 2).toFixed(1), y: height - 12 - h, width: bar.toFixed(1), height: h });
      var tip = svg('title', {}); tip.textContent = labels[i] + ': ' + (v == null ? '—' : format(v));
      rect.appendChild(tip);
      chart.appendChild(rect);
    });
    [0, values.length - 1].forEach(function (i) {
      if (i < 0 || !labels[i]) return;
      var t = svg('text', { x: i ? width : 0, y: height - 1, 'text-anchor': i ? 'end' : 'start' });
      t.textContent = labels[i].slice(5);
      chart.appendChild(t);
    });
    return chart;
  }

  function duration(ms) {
    if (ms == null) return '—';
    var s = Math.round(ms / 1000);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }

  function chartCard(title, big, chart) {
    return el('div', { class: 'chart' }, [el('h3', { text: title }), el('div', { class: 'big', text: big }), chart]);
  }

  function loadReports() {
    var days = Number($('report-range').value), to = new Date(), from = new Date(to.getTime() - (days - 1) * 86400000);
    var iso = function (d) { return d.toISOString().slice(0, 10); };
    var who = $('report-agent'), chosen = who.value;
    who.replaceChildren.apply(who, [el('option', { value: '', text: 'Whole site' })].concat(Object.keys(state.agents).map(function (id) {
      return el('option', { value: id, text: agentName(id) });
    })));
    who.value = chosen;
    var frame = { action: 'reports', from: iso(from), to: iso(to) };
    if (who.value) frame.agent_id = who.value;
    $('report-body').replaceChildren(el('p', { class: 'hint', text: 'Loading…' }));
    request(frame).then(renderReports, function (err) {
      $('report-body').replaceChildren(el('p', { class: 'error', text: err.message || 'Not connected' }));
    });
  }

  function renderReports(r) {
    var labels = r.days.map(function (d) { return d.day; });
    var pick = function (k) { return r.days.map(function (d) { return d[k]; }); };
    var t = r.totals, byScore = [1, 2, 3, 4, 5].map(function (n) { return t.ratings_by_score[String(n)]; });
    var rows = Object.keys(r.agents).map(function (id) {
      var a = r.agents[id];
      return el('tr', { 'data-agent': id }, [el('td', { text: agentName(id) }), el('td', { text: String(a.resolved) }),
        el('td', { text: duration(a.first_response_ms_avg) }), el('td', { text: duration(a.resolution_ms_avg) }),
        el('td', { text: a.ratings ? a.rating_avg + ' (' + a.ratings + ')' : '—' })]);
    });
    var table = el('table', { class: 'agents-table' }, [el('thead', {}, [el('tr', {}, ['Agent', 'Closed', 'First response', 'Resolution', 'Rating']
      .map(function (h) { return el('th', { text: h }); }))]), el('tbody', {}, rows.length ? rows :
      [el('tr', {}, [el('td', { colspan: '5', text: 'No agent has replied or closed a chat in this period yet.' })])])]);
    $('report-body').replaceChildren(
      chartCard(r.agent_id ? 'Conversations handed to ' + agentName(r.agent_id) + ' per day' : 'Conversations per day', String(t.conversations), barChart(pick('conversations'), labels, String)),
      chartCard('First response time (average)', duration(t.first_response_ms_avg), barChart(pick('first_response_ms_avg'), labels, duration)),
      chartCard('Resolution time (average)', duration(t.resolution_ms_avg), barChart(pick('resolution_ms_avg'), labels, duration)),
      el('div', { class: 'chart', id: 'ratings-chart' }, [el('h3', { text: 'Ratings' }),
        el('div', { class: 'big', text: t.ratings ? t.rating_avg + ' / 5 · ' + t.ratings + ' rating' + (t.ratings > 1 ? 's' : '') : 'No ratings yet' }),
        barChart(byScore, ['1 ★', '2 ★', '3 ★', '4 ★', '5 ★'].map(function (x) { return '     ' + x; }), String)]),
      table);
  }

  // ---- the main area: a conversation, the reports or the canned responses ----------------------

  function showView(name) {
    state.view = name;
    $('reports').hidden = name !== 'reports';
    $('canned').hidden = name !== 'canned';
    if (name) {
      $('empty').hidden = true;
      $('conversation').hidden = true;
      $('app').classList.add('show-chat');
    } else {
      $('empty').hidden = !!state.selected;
      $('conversation').hidden = !state.selected;
    }
    if (name === 'reports') loadReports();
    if (name === 'canned') renderCannedList();
  }

  function backToList() {
    $('app').classList.remove('show-chat', 'show-details');
    if (state.view) showView(null);
  }

  // ---- wiring -------------------------------------------------------------------------------

  Array.prototype.forEach.call(document.querySelectorAll('.tabs button'), function (button) {
    button.addEventListener('click', function () { showTab(button.getAttribute('data-tab')); });
  });
  $('search-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var query = $('search').value.trim();
    if (!query) { showTab('mine'); return; }
    showTab('search');
    $('search').value = query;
    runSearch(query);
  });
  $('search').addEventListener('search', function () { if (!$('search').value && state.tab === 'search') showTab('mine'); });
  $('list-more').addEventListener('click', function () {
    if (state.tab === 'visitors') loadVisitors(false);
    else if (state.tab === 'history') loadHistory(false); else if (state.tab === 'search') runSearch(null, true);
  });
  $('my-status').addEventListener('change', function () {
    var wanted = $('my-status').value;
    request({ action: 'status', status: wanted }).then(function (r) { state.myStatus = r.status; renderList(); },
      function (err) { $('my-status').value = state.myStatus; alert(err.message || 'Not connected'); });
  });
  $('label-filter').addEventListener('change', function () { state.labelFilter = $('label-filter').value; renderList(); });
  $('open-reports').addEventListener('click', function () { showView('reports'); });
  $('open-canned').addEventListener('click', function () { showView('canned'); });
  $('report-range').addEventListener('change', loadReports);
  $('report-agent').addEventListener('change', loadReports);
  Array.prototype.forEach.call(document.querySelectorAll('[data-back]'), function (b) { b.addEventListener('click', backToList); });
  $('back').addEventListener('click', backToList);
  $('show-details').addEventListener('click', function () { $('app').classList.toggle('show-details'); });
  $('details').addEventListener('click', function (e) { if (e.target === $('details')) $('app').classList.remove('show-details'); });
  $('canned-form').addEventListener('submit', function (e) {
    e.preventDefault();
    $('canned-error').textContent = '';
    request({ action: 'canned_save', shortcut: $('canned-shortcut').value, text: $('canned-text').value }).then(function (r) {
      state.canned = r.responses; renderCannedList();
      $('canned-shortcut').value = $('canned-text').value = '';
    }, function (err) { $('canned-error').textContent = err.message || 'Not connected'; });
  });
  $('note').addEventListener('change', function () {
    $('composer').classList.toggle('noting', $('note').checked);
    $('text').placeholder = $('note').checked ? 'Internal note: only agents see it' : 'Reply… (/ for canned responses)';
  });
  $('enable-notifications').addEventListener('click', function () {
    Notification.requestPermission().then(showNotificationOffer, showNotificationOffer);
  });
  showNotificationOffer();
  $('composer').addEventListener('submit', function (e) { e.preventDefault(); sendText(); });
  $('text').addEventListener('keydown', function (e) {
    var found = state.cannedFound;
    if (found && found.length && !$('canned-menu').hidden) {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        state.cannedActive = (state.cannedActive + (e.key === 'ArrowDown' ? 1 : found.length - 1)) % found.length;
        updateCannedMenu();
        return;
      }
      if ((e.key === 'Enter' || e.key === 'Tab') && !e.isComposing) { e.preventDefault(); insertCanned(found[state.cannedActive || 0]); return; }
    }
    if (e.key === 'Escape') { hideCannedMenu(); return; }
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendText(); }
  });
  $('text').addEventListener('input', updateCannedMenu);
  $('text').addEventListener('blur', function () { setTimeout(hideCannedMenu, 150); });
  $('text').addEventListener('input', function () {
    var now = Date.now();
    if (!state.selected || !state.ready || now - (state.typingSent || 0) < 3000) return;
    state.typingSent = now;
    state.ws.send(JSON.stringify({ action: 'typing', conversation_id: state.selected, is_typing: true }));
  });
  $('messages').addEventListener('scroll', function () { if ($('messages').scrollTop < 40) loadEarlier(state.selected); });
  function act(frame) {
    request(frame).then(function (r) { upsert(r.conversation); }, function (err) { alert(err.message || 'Not connected'); });
  }
  $('claim').addEventListener('click', function () { act({ action: 'claim', conversation_id: state.selected }); });
  $('transfer').addEventListener('click', function () {
    act({ action: 'transfer', conversation_id: state.selected, agent_id: $('transfer-to').value });
  });
  $('close-conversation').addEventListener('click', function () { act({ action: 'close', conversation_id: state.selected }); });
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
          if (/^image\//.test(file.type)) state.previews[grant.key] = URL.createObjectURL(file);
          enqueue(conversation, { attachment: { key: grant.key, name: file.name, size: file.size, content_type: file.type } });
        });
      }).catch(function (err) { alert(err.message); });
  });

  var saved = load('kefu-console:session');
  if (saved) start(saved); else showLogin();
})();
