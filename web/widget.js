/*! Kefu chat widget. One <script> tag; no build step. Protocol: docs/protocol.md */
(function () {
  'use strict';
  if (window.Kefu && window.Kefu.loaded) return;

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var scriptOrigin = script ? new URL(script.src, location.href).origin : location.origin;
  var pending = (window.Kefu && window.Kefu.q) || [];

  var STRINGS = {
    en: {
      title: 'Chat with us', placeholder: 'Type a message…', send: 'Send', attach: 'Attach a file',
      open: 'Open chat', close: 'Close chat', online: 'We are online', away: 'No agent is online: leave a message and we will reply as soon as we can.',
      offline: 'You are offline. Messages will be sent when the connection is back.', connecting: 'Connecting…',
      sending: 'Sending', sent: 'Sent', read: 'Read', failed: 'Not sent', typing: 'Agent is typing…',
      syncFailed: 'Could not load new messages; retrying…', tooLarge: 'This file is too large.',
      badType: 'This type of file cannot be sent.', uploadFailed: 'The upload failed.', you: 'You', agent: 'Agent'
    },
    zh: {
      title: '在线客服', placeholder: '输入消息…', send: '发送', attach: '发送文件',
      open: '打开聊天', close: '关闭聊天', online: '客服在线', away: '当前没有客服在线，请留言，我们会尽快回复。',
      offline: '网络已断开，恢复后会自动发送消息。', connecting: '正在连接…',
      sending: '发送中', sent: '已发送', read: '已读', failed: '发送失败', typing: '客服正在输入…',
      syncFailed: '新消息加载失败，正在重试…', tooLarge: '文件太大。',
      badType: '不支持发送此类文件。', uploadFailed: '上传失败。', you: '我', agent: '客服'
    }
  };

  var CSS = [
    ':host{all:initial}',
    '*{box-sizing:border-box;font-family:-apple-system,BlinkMacSystemFont,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif}',
    '.launcher{position:fixed;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;cursor:pointer;color:#fff;',
    'box-shadow:0 4px 16px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;z-index:2147483000}',
    '.launcher svg{width:28px;height:28px;fill:#fff}',
    '.badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;border-radius:10px;background:#e5484d;',
    'color:#fff;font-size:12px;line-height:20px;text-align:center;padding:0 5px;font-weight:600}',
    '.badge[hidden]{display:none}',
    '.panel{position:fixed;bottom:88px;width:360px;height:540px;max-height:calc(100vh - 108px);background:#fff;',
    'border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.22);display:flex;flex-direction:column;overflow:hidden;',
    'z-index:2147483000;color:#1c2024;font-size:14px}',
    '.panel[hidden]{display:none}',
    '.right{right:20px}.left{left:20px}',
    'header{padding:14px 16px;color:#fff;display:flex;align-items:center;gap:10px}',
    'header h2{margin:0;font-size:16px;font-weight:600;flex:1}',
    'header .status{font-size:12px;opacity:.9}',
    'header button{background:transparent;border:0;color:#fff;font-size:22px;cursor:pointer;line-height:1}',
    '.notice{padding:8px 14px;font-size:12.5px;background:#fff8e6;color:#6b4e00;border-bottom:1px solid #f1e2b8}',
    '.notice[hidden]{display:none}',
    '.notice.offline{background:#fdecec;color:#8a1c1c;border-color:#f3c7c7}',
    '.log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:8px;background:#f7f8fa}',
    '.msg{max-width:80%;display:flex;flex-direction:column}',
    '.msg.mine{align-self:flex-end;align-items:flex-end}',
    '.bubble{padding:8px 12px;border-radius:14px;white-space:pre-wrap;word-break:break-word;line-height:1.4}',
    '.msg.theirs .bubble{background:#fff;border:1px solid #e6e8eb}',
    '.msg.mine .bubble{color:#fff}',
    '.meta{font-size:11px;color:#80868b;margin-top:2px}',
    '.msg.failed .meta{color:#e5484d}',
    '.bubble img{display:block;max-width:220px;max-height:220px;border-radius:8px}',
    '.bubble a{color:inherit}',
    '.typing{font-size:12px;color:#80868b;padding:0 14px 6px;min-height:18px;background:#f7f8fa}',
    'form{display:flex;gap:6px;padding:10px;border-top:1px solid #e6e8eb;align-items:flex-end}',
    'textarea{flex:1;resize:none;border:1px solid #d7dade;border-radius:10px;padding:8px 10px;font-size:14px;',
    'max-height:96px;min-height:38px;outline:none}',
    'textarea:focus{border-color:var(--kefu-color)}',
    '.icon{border:0;background:transparent;cursor:pointer;font-size:20px;padding:6px;color:#60646c}',
    '.send{border:0;color:#fff;border-radius:10px;padding:9px 14px;cursor:pointer;font-weight:600}',
    'input[type=file]{display:none}',
    '@media (max-width:480px){.panel{left:0!important;right:0!important;bottom:0;width:100vw;height:100vh;',
    'max-height:none;border-radius:0}}'
  ].join('');

  function $(tag, attrs, children) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') el.textContent = attrs[k];
      else if (k.slice(0, 2) === 'on') el.addEventListener(k.slice(2), attrs[k]);
      else el.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { el.appendChild(c); });
    return el;
  }

  function humanSize(bytes) {
    if (bytes < 1024) return bytes + ' B';
    if (bytes < 1048576) return (bytes / 1024).toFixed(1) + ' KB';
    return (bytes / 1048576).toFixed(1) + ' MB';
  }

  function newId(prefix) {
    var rand = (crypto.getRandomValues ? Array.prototype.map.call(crypto.getRandomValues(new Uint8Array(8)),
      function (b) { return ('0' + b.toString(16)).slice(-2); }).join('') : String(Math.random()).slice(2));
    return prefix + Date.now().toString(36) + rand;
  }

  function typeAllowed(type, allowed) {
    return (allowed || []).some(function (p) {
      return p === type || (p.slice(-2) === '/*' && type.indexOf(p.slice(0, -1)) === 0);
    });
  }

  // ---- persistent state: the outbox survives reloads ---------------------------------------

  function Store(siteId) { this.key = 'kefu:' + siteId; this.data = this.load(); }
  Store.prototype.load = function () {
    try { return JSON.parse(localStorage.getItem(this.key)) || {}; } catch (e) { return {}; }
  };
  Store.prototype.save = function () {
    try { localStorage.setItem(this.key, JSON.stringify(this.data)); } catch (e) { /* private mode: memory only */ }
  };
  Store.prototype.clear = function () { this.data = {}; try { localStorage.removeItem(this.key); } catch (e) {} };

  // ---- the widget ---------------------------------------------------------------------------

  function Widget(options) {
    this.opts = options;
    this.t = STRINGS[(options.locale || navigator.language || 'en').toLowerCase().indexOf('zh') === 0 ? 'zh' : 'en'];
    this.store = new Store(options.siteId);
    this.apiUrl = (options.apiUrl || scriptOrigin + '/api').replace(/\/$/, '');
    this.listeners = {};
    this.messages = {};          // seq -> message
    this.pendingReplies = {};    // req -> {resolve, reject, timer}
    this.ws = null;
    this.attempt = 0;
    this.agentsOnline = 0;
    this.agentReadSeq = 0;
    this.unread = 0;
    this.isOpen = false;
    this.caughtUp = false;
    this.build();
    var history = this.store.data.history || [];
    for (var i = 0; i < history.length; i++) this.messages[history[i].seq] = history[i];
    this.agentReadSeq = this.store.data.agentReadSeq || 0;
    this.render();
    this.watchNetwork();
    this.trackPages();
    this.start();
  }

  Widget.prototype.on = function (name, fn) { (this.listeners[name] = this.listeners[name] || []).push(fn); };
  Widget.prototype.emit = function (name, value) {
    (this.listeners[name] || []).forEach(function (fn) { try { fn(value); } catch (e) { console.error(e); } });
  };

  Widget.prototype.build = function () {
    var color = this.opts.color || '#2563eb';
    var side = this.opts.position === 'left' ? 'left' : 'right';
    this.host = $('div', { id: 'kefu-widget' });
    this.host.style.cssText = 'all:initial;position:fixed;z-index:2147483000;';
    var root = this.host.attachShadow({ mode: 'open' });
    root.appendChild($('style', { text: CSS + ':host{--kefu-color:' + color + '}' }));
    this.badge = $('span', { class: 'badge', hidden: '' });
    this.launcher = $('button', { class: 'launcher ' + side, 'aria-label': this.t.open, part: 'launcher', onclick: this.toggle.bind(this) });
    this.launcher.style.background = color;
    this.launcher.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
    this.launcher.appendChild(this.badge);
    this.status = $('span', { class: 'status', text: this.t.connecting });
    var header = $('header', {}, [
      $('div', {}, [$('h2', { text: this.opts.title || this.t.title }), this.status]),
      $('button', { 'aria-label': this.t.close, text: '×', onclick: this.close.bind(this) })
    ]);
    header.style.background = color;
    header.firstChild.style.flex = '1';
    this.notice = $('div', { class: 'notice', role: 'status', hidden: '' });
    this.log = $('div', { class: 'log', role: 'log', 'aria-live': 'polite' });
    this.typingLine = $('div', { class: 'typing' });
    this.input = $('textarea', { rows: '1', placeholder: this.t.placeholder, 'aria-label': this.t.placeholder });
    this.input.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.submit(); }
    }.bind(this));
    this.input.addEventListener('input', this.noteTyping.bind(this));
    this.fileInput = $('input', { type: 'file', 'aria-label': this.t.attach });
    this.fileInput.addEventListener('change', function () {
      var file = this.fileInput.files[0];
      this.fileInput.value = '';
      if (file) this.sendFile(file);
    }.bind(this));
    var sendButton = $('button', { class: 'send', type: 'submit', text: this.t.send });
    sendButton.style.background = color;
    var form = $('form', { onsubmit: function (e) { e.preventDefault(); this.submit(); }.bind(this) }, [
      this.attachButton(),
      this.fileInput, this.input, sendButton
    ]);
    this.panel = $('section', { class: 'panel ' + side, role: 'dialog', 'aria-label': this.t.title, hidden: '' },
      [header, this.notice, this.log, this.typingLine, form]);
    root.appendChild(this.launcher);
    root.appendChild(this.panel);
    (document.body || document.documentElement).appendChild(this.host);
  };

  Widget.prototype.attachButton = function () {
    var button = $('button', { class: 'icon', type: 'button', 'aria-label': this.t.attach,
      onclick: function () { this.fileInput.click(); }.bind(this) });
    button.innerHTML = '<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true"><path fill="none" stroke="currentColor" ' +
      'stroke-width="2" stroke-linecap="round" d="M21 11.5l-8.5 8.5a5 5 0 0 1-7-7L14 4.5a3.5 3.5 0 0 1 5 5L10.5 18a2 2 0 0 1-3-3L15 7.5"/></svg>';
    return button;
  };

  // ---- opening and closing ------------------------------------------------------------------

  Widget.prototype.open = function () {
    this.isOpen = true;
    this.panel.hidden = false;
    this.launcher.setAttribute('aria-label', this.t.close);
    this.setUnread(0);
    this.markRead();
    this.scrollDown();
    this.input.focus();
    this.emit('open');
  };
  Widget.prototype.close = function () {
    this.isOpen = false;
    this.panel.hidden = true;
    this.launcher.setAttribute('aria-label', this.t.open);
    this.emit('close');
  };
  Widget.prototype.toggle = function () { if (this.isOpen) this.close(); else this.open(); };

  Widget.prototype.setUnread = function (count) {
    this.unread = count;
    this.badge.hidden = count === 0;
    this.badge.textContent = count > 99 ? '99+' : String(count);
    this.emit('unread', count);
  };

  // ---- session and socket -------------------------------------------------------------------

  Widget.prototype.start = function () {
    var self = this;
    this.session().then(function () { self.connect(); }, function (err) {
      self.showNotice(err.message, true);
      self.scheduleReconnect();
    });
  };

  Widget.prototype.session = function (force) {
    var data = this.store.data;
    if (!force && data.token && data.expiresAt * 1000 > Date.now() + 60000 && data.userId === (this.opts.userId || null)) {
      return Promise.resolve(data);
    }
    var body = { site_id: this.opts.siteId };
    if (data.visitorId && data.userId === (this.opts.userId || null) && !this.opts.userId) body.visitor_id = data.visitorId;
    if (this.opts.userId) { body.user_id = String(this.opts.userId); body.user_hash = this.opts.userHash; }
    if (this.opts.name) body.name = this.opts.name;
    if (this.opts.attributes) body.attributes = this.opts.attributes;
    var self = this;
    return fetch(this.apiUrl + '/v1/visitor/session', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (json) {
        if (!r.ok) throw new Error(json.message || ('HTTP ' + r.status));
        return json;
      });
    }).then(function (s) {
      if (data.conversationId && data.conversationId !== s.conversation_id) {
        // a new conversation (the old one was closed): start its history afresh
        self.messages = {}; data.history = []; data.lastSeq = 0; data.outbox = []; self.agentReadSeq = 0;
      }
      data.token = s.token; data.expiresAt = s.expires_at; data.visitorId = s.visitor_id;
      data.conversationId = s.conversation_id; data.userId = self.opts.userId || null;
      data.websocketUrl = self.opts.websocketUrl || s.websocket_url;
      data.upload = s.upload;
      self.agentsOnline = s.agents_online;
      self.store.save();
      self.render();
      return data;
    });
  };

  Widget.prototype.connect = function () {
    if (this.ws || !navigator.onLine) return;
    var self = this, data = this.store.data, opened = false;
    this.setStatus(this.t.connecting);
    var ws = new WebSocket(data.websocketUrl + '?token=' + encodeURIComponent(data.token));
    this.ws = ws;
    ws.onopen = function () {
      opened = true;
      self.attempt = 0;
      self.onConnected();
    };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      self.lastHeard = Date.now();
      self.handle(frame);
    };
    ws.onclose = function () {
      if (self.ws !== ws) return;
      self.ws = null;
      self.caughtUp = false;
      clearInterval(self.heartbeat);
      self.failPendingReplies();
      if (!opened) self.refusals = (self.refusals || 0) + 1;  // refused at the handshake: maybe the token
      self.render();
      self.scheduleReconnect();
    };
  };

  Widget.prototype.scheduleReconnect = function () {
    clearTimeout(this.reconnectTimer);
    if (!navigator.onLine) return;  // the 'online' event reconnects
    var self = this;
    var delay = Math.min(30000, 500 * Math.pow(2, this.attempt++)) * (0.5 + Math.random() / 2);
    this.reconnectTimer = setTimeout(function () {
      var renew = self.refusals >= 2 || (self.store.data.expiresAt * 1000 < Date.now() + 60000);
      self.session(renew).then(function () { self.refusals = 0; self.connect(); },
        function () { self.scheduleReconnect(); });
    }, delay);
  };

  Widget.prototype.reconnectNow = function () {
    this.attempt = 0;
    clearTimeout(this.reconnectTimer);
    if (!this.ws) this.start();
  };

  Widget.prototype.watchNetwork = function () {
    var self = this;
    window.addEventListener('offline', function () {
      if (self.ws) { var ws = self.ws; ws.onclose(); try { ws.close(); } catch (e) {} }
      self.render();
    });
    window.addEventListener('online', function () { self.reconnectNow(); });
    document.addEventListener('visibilitychange', function () {
      if (document.visibilityState === 'visible') {
        if (!self.ws) self.reconnectNow();
        if (self.isOpen) self.markRead();
      }
    });
  };

  Widget.prototype.onConnected = function () {
    var self = this;
    this.lastHeard = Date.now();
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(function () {
      if (Date.now() - self.lastHeard > 40000 && self.ws) { self.ws.close(); return; }  // a dead link
      self.request({ action: 'ping' }).catch(function () {});
    }, 25000);
    this.render();
    this.reportPage();
    this.request({ action: 'state' }).then(function (state) {
      self.agentsOnline = state.agents_online.length;
      self.render();
    }).catch(function () {});
    this.catchUp(0);
  };

  // Keep paging through sync until caught up; then send what the outbox holds, in order.
  Widget.prototype.catchUp = function (failures) {
    var self = this, data = this.store.data;
    this.request({ action: 'sync', conversation_id: data.conversationId, after_seq: data.lastSeq || 0 }, 15000)
      .then(function (page) {
        page.messages.forEach(function (m) { self.receive(m, true); });
        if (page.has_more) return self.catchUp(0);
        self.caughtUp = true;
        self.showNotice(null);
        self.render();
        self.flushOutbox();
        self.emit('ready');
      }, function (err) {
        if (!self.ws) return;  // the socket went; reconnecting catches up again
        if (err && err.code === 'seq_out_of_range') { data.lastSeq = 0; self.store.save(); }
        self.showNotice(self.t.syncFailed, true);
        setTimeout(function () { if (self.ws) self.catchUp(failures + 1); }, Math.min(10000, 1000 * Math.pow(2, failures)));
      });
  };

  Widget.prototype.request = function (frame, timeout) {
    var self = this;
    return new Promise(function (resolve, reject) {
      if (!self.ws || self.ws.readyState !== 1) { reject(new Error('offline')); return; }
      var req = newId('r');
      frame.req = req;
      self.pendingReplies[req] = {
        resolve: resolve, reject: reject,
        timer: setTimeout(function () { delete self.pendingReplies[req]; reject(new Error('timeout')); }, timeout || 10000)
      };
      self.ws.send(JSON.stringify(frame));
    });
  };

  Widget.prototype.failPendingReplies = function () {
    var pending = this.pendingReplies;
    this.pendingReplies = {};
    Object.keys(pending).forEach(function (req) { clearTimeout(pending[req].timer); pending[req].reject(new Error('offline')); });
  };

  Widget.prototype.handle = function (frame) {
    var waiting = frame.req && this.pendingReplies[frame.req];
    if (waiting) {
      delete this.pendingReplies[frame.req];
      clearTimeout(waiting.timer);
      if (frame.type === 'error') waiting.reject(frame); else waiting.resolve(frame);
      if (frame.type !== 'ack') return;
    }
    switch (frame.type) {
      case 'ack': this.acked(frame); break;
      case 'message': this.receive(frame, false); break;
      case 'read':
        if (frame.by && frame.by.role === 'agent' && frame.seq > this.agentReadSeq) {
          this.agentReadSeq = frame.seq; this.store.data.agentReadSeq = frame.seq; this.store.save(); this.render();
        }
        break;
      case 'typing':
        if (frame.from && frame.from.role === 'agent') this.showTyping(frame.is_typing);
        break;
      case 'presence':
        if (frame.role === 'agent') {
          this.request({ action: 'state' }).then(function (state) {
            this.agentsOnline = state.agents_online.length; this.render();
          }.bind(this)).catch(function () {});
        }
        break;
      case 'conversation':
        if (frame.event === 'closed') this.store.data.expiresAt = 0;  // the next session opens a new one
        break;
    }
  };

  // ---- messages -----------------------------------------------------------------------------

  Widget.prototype.receive = function (m, fromSync) {
    var data = this.store.data;
    if (m.conversation_id !== data.conversationId || this.messages[m.seq]) return;
    this.messages[m.seq] = m;
    data.lastSeq = this.contiguousSeq();
    data.outbox = (data.outbox || []).filter(function (o) { return o.client_msg_id !== m.client_msg_id; });
    this.persistHistory();
    this.render();
    if (m.sender.role !== 'visitor') {
      this.showTyping(false);
      if (this.isOpen && document.visibilityState === 'visible') this.markRead();
      else if (!fromSync || m.seq > (data.readSeq || 0)) this.setUnread(this.unread + 1);
      this.emit('message', { text: m.text, attachment: m.attachment, seq: m.seq, from: m.sender.role });
    }
  };

  Widget.prototype.acked = function (ack) {
    var data = this.store.data;
    var item = (data.outbox || []).filter(function (o) { return o.client_msg_id === ack.client_msg_id; })[0];
    if (item && !this.messages[ack.seq]) {
      this.messages[ack.seq] = {
        conversation_id: ack.conversation_id, seq: ack.seq, id: ack.id, client_msg_id: ack.client_msg_id,
        sender: { role: 'visitor', id: data.visitorId }, text: item.text || null,
        attachment: item.attachment || null, created_at: ack.created_at
      };
    }
    data.outbox = (data.outbox || []).filter(function (o) { return o.client_msg_id !== ack.client_msg_id; });
    data.lastSeq = Math.max(data.lastSeq || 0, this.contiguousSeq());
    this.persistHistory();
    this.render();
  };

  // The highest seq up to which we hold every message: sync resumes from there.
  Widget.prototype.contiguousSeq = function () {
    var seq = this.store.data.lastSeq || 0;
    while (this.messages[seq + 1]) seq++;
    return seq;
  };

  Widget.prototype.persistHistory = function () {
    var all = Object.keys(this.messages).map(Number).sort(function (a, b) { return a - b; });
    var self = this;
    this.store.data.history = all.slice(-200).map(function (s) { return self.messages[s]; });
    this.store.save();
  };

  Widget.prototype.submit = function () {
    var text = this.input.value.trim();
    if (!text) return;
    this.input.value = '';
    this.enqueue({ text: text });
  };

  Widget.prototype.enqueue = function (content) {
    var data = this.store.data;
    var item = { client_msg_id: newId('w'), text: content.text || null, attachment: content.attachment || null,
      created: Date.now() };
    data.outbox = (data.outbox || []).concat([item]);
    this.store.save();
    this.render();
    this.flushOutbox();
  };

  // One send in flight at a time, oldest first: API Gateway runs frames concurrently, so sending
  // the outbox all at once could store it out of order. Retries reuse the client_msg_id.
  Widget.prototype.flushOutbox = function () {
    if (this.sending || !this.caughtUp) return;
    var item = (this.store.data.outbox || [])[0];
    if (!item) return;
    this.sending = true;
    var self = this;
    var frame = { action: 'send', conversation_id: this.store.data.conversationId, client_msg_id: item.client_msg_id };
    if (item.text) frame.text = item.text;
    if (item.attachment) frame.attachment = item.attachment;
    this.request(frame, 15000).then(function () {
      self.sending = false;
      self.flushOutbox();
    }, function (err) {
      self.sending = false;
      var retryable = !err.code || ['send_in_progress', 'rate_limited', 'internal_error'].indexOf(err.code) >= 0;
      if (!retryable) {
        item.failed = err.message || err.code;
        self.store.data.outbox = self.store.data.outbox.filter(function (o) { return o.client_msg_id !== item.client_msg_id; });
        self.failed = (self.failed || []).concat([item]);
        self.store.save();
        self.render();
        self.flushOutbox();
      } else if (err.code || err.message === 'timeout') {
        setTimeout(self.flushOutbox.bind(self), 2000);  // still connected: try again
      }  // offline: the next catch-up flushes
    });
  };

  Widget.prototype.markRead = function () {
    var data = this.store.data;
    var seq = data.lastSeq || 0;
    if (!seq || seq <= (data.readSeq || 0) || !this.ws) return;
    data.readSeq = seq;
    this.store.save();
    this.request({ action: 'read', conversation_id: data.conversationId, seq: seq }).catch(function () {});
  };

  Widget.prototype.noteTyping = function () {
    var now = Date.now();
    if (!this.ws || now - (this.typingSent || 0) < 3000) return;
    this.typingSent = now;
    try {
      this.ws.send(JSON.stringify({ action: 'typing', conversation_id: this.store.data.conversationId, is_typing: true }));
    } catch (e) { /* offline: typing is never queued */ }
  };

  Widget.prototype.showTyping = function (on) {
    clearTimeout(this.typingTimer);
    this.typingLine.textContent = on ? this.t.typing : '';
    if (on) this.typingTimer = setTimeout(this.showTyping.bind(this, false), 6000);
  };

  // ---- uploads ------------------------------------------------------------------------------

  Widget.prototype.sendFile = function (file) {
    var policy = this.store.data.upload || { max_bytes: 10485760, allowed_types: ['image/*', 'application/pdf', 'text/plain'] };
    if (file.size > policy.max_bytes) { this.showNotice(this.t.tooLarge, true); return; }
    if (!typeAllowed(file.type, policy.allowed_types)) { this.showNotice(this.t.badType, true); return; }
    var self = this, data = this.store.data;
    fetch(this.apiUrl + '/v1/uploads', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + data.token },
      body: JSON.stringify({ conversation_id: data.conversationId, file_name: file.name, content_type: file.type, size: file.size })
    }).then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(j.message); return j; }); })
      .then(function (grant) {
        var init;
        if (grant.method === 'POST') {
          var form = new FormData();
          Object.keys(grant.fields).forEach(function (k) { form.append(k, grant.fields[k]); });
          form.append('file', file);
          init = { method: 'POST', body: form };
        } else {
          init = { method: 'PUT', body: file, headers: grant.headers };
        }
        return fetch(grant.url, init).then(function (r) {
          if (!r.ok) throw new Error(self.t.uploadFailed);
          self.enqueue({ attachment: { key: grant.key, name: file.name, size: file.size, content_type: file.type } });
        });
      })
      .catch(function (err) { self.showNotice((err && err.message) || self.t.uploadFailed, true); });
  };

  // ---- page views -----------------------------------------------------------------------------

  Widget.prototype.trackPages = function () {
    var self = this;
    ['pushState', 'replaceState'].forEach(function (name) {
      var original = history[name];
      history[name] = function () {
        var result = original.apply(this, arguments);
        setTimeout(self.reportPage.bind(self), 0);
        return result;
      };
    });
    window.addEventListener('popstate', function () { self.reportPage(); });
    window.addEventListener('hashchange', function () { self.reportPage(); });
  };

  Widget.prototype.reportPage = function () {
    if (!this.ws || this.ws.readyState !== 1 || this.lastPage === location.href) return;
    this.lastPage = location.href;
    var frame = { action: 'page_view', url: location.href.slice(0, 2048) };
    if (document.title) frame.title = document.title.slice(0, 300);
    if (document.referrer) frame.referrer = document.referrer.slice(0, 2048);
    this.request(frame).catch(function () {});
  };

  // ---- rendering ------------------------------------------------------------------------------

  Widget.prototype.setStatus = function (text) { this.status.textContent = text; };

  Widget.prototype.showNotice = function (text, warn) {
    this.noticeText = text;
    this.noticeWarn = warn;
    this.renderNotice();
  };

  Widget.prototype.renderNotice = function () {
    var text = this.noticeText, offline = false;
    if (!navigator.onLine || (!this.ws && this.store.data.token)) { text = this.t.offline; offline = true; }
    else if (!text && this.agentsOnline === 0) text = this.t.away;
    this.notice.hidden = !text;
    this.notice.textContent = text || '';
    this.notice.className = 'notice' + (offline || this.noticeWarn ? ' offline' : '');
  };

  Widget.prototype.render = function () {
    var t = this.t, data = this.store.data, self = this;
    this.setStatus(!this.ws ? t.connecting : (this.agentsOnline > 0 ? t.online : ''));
    // for the page and for tests: connecting | online (caught up) | offline
    this.host.setAttribute('data-connection', !navigator.onLine ? 'offline' : (this.ws && this.caughtUp ? 'online' : 'connecting'));
    this.renderNotice();
    var seqs = Object.keys(this.messages).map(Number).sort(function (a, b) { return a - b; });
    var rows = seqs.map(function (seq) { return self.row(self.messages[seq], null); });
    (data.outbox || []).forEach(function (item) { rows.push(self.row(item, 'sending')); });
    (this.failed || []).forEach(function (item) { rows.push(self.row(item, 'failed')); });
    var atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.replaceChildren.apply(this.log, rows);
    if (atBottom) this.scrollDown();
  };

  Widget.prototype.row = function (m, state) {
    var t = this.t;
    var mine = !m.sender || m.sender.role === 'visitor';
    var bubble = $('div', { class: 'bubble' });
    if (mine) bubble.style.background = this.opts.color || '#2563eb';
    if (m.text) bubble.appendChild(document.createTextNode(m.text));
    var a = m.attachment;
    if (a) {
      if (a.url && /^image\//.test(a.content_type)) {
        bubble.appendChild($('img', { src: a.url, alt: a.name }));
      } else if (a.url) {
        bubble.appendChild($('a', { href: a.url, target: '_blank', rel: 'noopener', text: '📄 ' + a.name + ' (' + humanSize(a.size) + ')' }));
      } else {
        bubble.appendChild(document.createTextNode('📄 ' + a.name + ' (' + humanSize(a.size) + ')'));
      }
    }
    var status = '';
    if (mine) {
      if (state === 'sending') status = t.sending;
      else if (state === 'failed') status = t.failed + (m.failed ? ': ' + m.failed : '');
      else status = m.seq <= this.agentReadSeq ? t.read : t.sent;
    }
    var when = new Date(m.created_at || m.created || Date.now());
    var meta = $('div', { class: 'meta', text: (mine ? '' : t.agent + ' · ') + when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) + (status ? ' · ' + status : '') });
    return $('div', { class: 'msg ' + (mine ? 'mine' : 'theirs') + (state ? ' ' + state : ''), 'data-seq': m.seq || '',
      'data-state': state || (mine ? (m.seq <= this.agentReadSeq ? 'read' : 'sent') : 'received') }, [bubble, meta]);
  };

  Widget.prototype.scrollDown = function () { this.log.scrollTop = this.log.scrollHeight; };

  Widget.prototype.reset = function () {
    this.store.clear();
    this.messages = {};
    this.failed = [];
    this.agentReadSeq = 0;
    this.setUnread(0);
    if (this.ws) { var ws = this.ws; this.ws = null; ws.close(); }
    this.render();
    this.start();
  };

  // ---- the public API: window.Kefu(command, ...) --------------------------------------------

  var widget = null;
  var early = [];  // listeners and calls made before boot

  function Kefu(command, arg) {
    if (command === 'boot') {
      if (widget) return;
      var opts = Object.assign({}, arg || {});
      opts.siteId = opts.siteId || (script && script.getAttribute('data-site-id'));
      if (!opts.siteId) { console.error('Kefu: boot needs a siteId'); return; }
      widget = new Widget(opts);
      early.splice(0).forEach(function (args) { Kefu.apply(null, args); });
      if (opts.open) widget.open();
      return;
    }
    if (!widget) { early.push(arguments); return; }
    switch (command) {
      case 'open': widget.open(); break;
      case 'close': widget.close(); break;
      case 'toggle': widget.toggle(); break;
      case 'on': widget.on(arg, arguments[2]); break;
      case 'send': widget.enqueue({ text: String(arg) }); break;
      case 'reset': widget.reset(); break;
      case 'identify':
        Object.assign(widget.opts, arg || {});
        widget.store.data.expiresAt = 0;  // a new session carries the identity
        if (widget.ws) widget.ws.close(); else widget.start();
        break;
      default: console.warn('Kefu: unknown command', command);
    }
  }
  Kefu.loaded = true;
  window.Kefu = Kefu;
  pending.forEach(function (args) { Kefu.apply(null, args); });
  if (!widget && script && script.getAttribute('data-site-id') && !pending.some(function (a) { return a[0] === 'boot'; })) {
    Kefu('boot', {});
  }
})();
