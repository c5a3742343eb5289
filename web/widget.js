/*! Kefu chat widget. One <script> tag; no build step. Protocol: docs/protocol.md */
(function () {
  'use strict';
  if (window.Kefu && window.Kefu.loaded) return;

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var scriptOrigin = script ? new URL(script.src, location.href).origin : location.origin;
  var pending = (window.Kefu && window.Kefu.q) || [];
  var REPLY_TIMEOUT = 15000;
  // Errors after which the same send is simply tried again (same client_msg_id: never stored twice).
  var RETRY = ['send_in_progress', 'rate_limited', 'internal_error', 'connection_unknown'];

  var STRINGS = {
    en: {
      title: 'Chat with us', placeholder: 'Type a message…', send: 'Send', attach: 'Attach a file',
      open: 'Open chat', close: 'Close chat', online: 'We are online', away: 'No agent is online: leave a message and we will reply as soon as we can.',
      offline: 'You are offline. Messages will be sent when the connection is back.', connecting: 'Connecting…',
      sending: 'Sending', uploading: 'Uploading…', sent: 'Sent', read: 'Read', failed: 'Not sent', colon: ': ', retry: 'Retry',
      typing: 'Agent is typing…', agent: 'Agent', syncFailed: 'Could not load new messages; retrying…',
      closed: 'This chat has ended. Write a message to continue it.',
      tooLarge: 'This file is too large.', badType: 'This type of file cannot be sent.', uploadFailed: 'The upload failed. Please try again.',
      noFiles: 'Files cannot be sent in this chat.', slowDown: 'Too many files at once: please wait a little.', unavailable: 'Chat is not available on this website.',
      identity: 'Chat could not confirm who you are. Please reload the page.', tooLong: 'the message is too long',
      ended: 'the chat has ended', error: 'something went wrong',
      replyIn: 'Usually replies in {n}', minutes: '{n} minutes', hours: '{n} hours', oneHour: 'an hour', day: 'a day',
      outside: 'We are away right now: leave a message and we will reply by email.',
      leave: 'Leave us a message', yourName: 'Your name', yourEmail: 'Your email', yourPhone: 'Your phone',
      yourMessage: 'How can we help?', start: 'Start chat', leaveSend: 'Send message', optional: 'optional',
      left: 'Thanks! We got your message and will reply to {email}.', invalidEmail: 'Please give a valid email address.',
      needed: 'Please fill in the required fields.', invalidPhone: 'Please give a valid phone number.',
      transcript: 'Email me this conversation', transcriptSend: 'Send it when the chat ends',
      transcriptOk: 'We will email this conversation to {email} when it ends.',
      rateAsk: 'How was this chat?', rateComment: 'Anything to add? (optional)', rateSend: 'Send rating',
      rateThanks: 'Thank you for your feedback!', star: ' out of 5'
    },
    zh: {
      title: '在线客服', placeholder: '输入消息…', send: '发送', attach: '发送文件',
      open: '打开聊天', close: '关闭聊天', online: '客服在线', away: '当前没有客服在线，请留言，我们会尽快回复。',
      offline: '网络已断开，恢复后会自动发送消息。', connecting: '正在连接…',
      sending: '发送中', uploading: '上传中…', sent: '已发送', read: '已读', failed: '发送失败', colon: '：', retry: '重试',
      typing: '客服正在输入…', agent: '客服', syncFailed: '新消息加载失败，正在重试…',
      closed: '本次会话已结束，发送消息即可继续咨询。',
      tooLarge: '文件太大。', badType: '不支持发送此类文件。', uploadFailed: '上传失败，请重试。',
      noFiles: '此会话不支持发送文件。', slowDown: '发送文件过于频繁，请稍后再试。', unavailable: '此网站暂未开通在线客服。',
      identity: '无法确认您的身份，请刷新页面后重试。', tooLong: '消息太长',
      ended: '会话已结束', error: '出现错误',
      replyIn: '通常在 {n} 内回复', minutes: '{n} 分钟', hours: '{n} 小时', oneHour: '1 小时', day: '1 天',
      outside: '客服暂时不在，请留言，我们会通过邮件回复您。',
      leave: '给我们留言', yourName: '您的称呼', yourEmail: '您的邮箱', yourPhone: '您的电话',
      yourMessage: '请问有什么可以帮您？', start: '开始咨询', leaveSend: '提交留言', optional: '选填',
      left: '谢谢！我们已收到您的留言，会回复到 {email}。', invalidEmail: '请填写有效的邮箱地址。',
      needed: '请填写必填项。', invalidPhone: '请填写有效的电话号码。',
      transcript: '通过邮件发送对话记录', transcriptSend: '会话结束后发送',
      transcriptOk: '会话结束后，我们会把对话记录发送到 {email}。',
      rateAsk: '请为本次服务评分', rateComment: '还有什么想说的？（选填）', rateSend: '提交评价',
      rateThanks: '感谢您的评价！', star: ' 分（满分 5 分）'
    }
  };
  // Error code -> the string shown for it; any other code shows `error`.
  var REASONS = {
    origin_not_allowed: 'unavailable', site_not_found: 'unavailable', invalid_site_id: 'unavailable',
    identity_hash_required: 'identity', identity_hash_invalid: 'identity', invalid_user_id: 'identity',
    identity_token_invalid: 'identity', identity_token_expired: 'identity',
    text_too_long: 'tooLong', conversation_closed: 'ended', upload_too_large: 'tooLarge', attachment_too_large: 'tooLarge',
    upload_type_not_allowed: 'badType', attachment_type_not_allowed: 'badType', invalid_attachment_type: 'badType',
    uploads_not_configured: 'noFiles', rate_limited: 'slowDown', invalid_email: 'invalidEmail', invalid_phone: 'invalidPhone', email_required: 'invalidEmail'
  };

  var CSS = [
    ':host{all:initial}',
    '*{box-sizing:border-box;font-family:-apple-system,BlinkMacSystemFont,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif}',
    '.launcher{position:fixed;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;cursor:pointer;color:#fff;',
    'box-shadow:0 4px 16px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;z-index:2147483000;',
    'background:var(--kefu-color)}',
    '.launcher.labelled{width:auto;border-radius:28px;padding:0 20px 0 16px;gap:8px;font-size:15px;font-weight:600}',
    '.launcher[hidden]{display:none}',
    '.launcher svg{width:28px;height:28px;fill:#fff}',
    '.badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;border-radius:10px;background:#e5484d;',
    'color:#fff;font-size:12px;line-height:20px;text-align:center;padding:0 5px;font-weight:600}',
    '.badge[hidden]{display:none}',
    '.panel{position:fixed;bottom:88px;width:360px;height:540px;max-height:calc(100vh - 108px);background:#fff;',
    'border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.22);display:flex;flex-direction:column;overflow:hidden;',
    'z-index:2147483000;color:#1c2024;font-size:14px}',
    '.panel[hidden]{display:none}',
    '.right{right:20px}.left{left:20px}',
    'header{padding:14px 16px;color:#fff;display:flex;align-items:center;gap:10px;background:var(--kefu-color)}',
    'header img{width:36px;height:36px;border-radius:50%;object-fit:cover;background:#fff}',
    'header img[hidden]{display:none}',
    'header .reply{display:block;font-size:12px;opacity:.85}',
    '.mail{border:0;background:#fff;color:#60646c;font-size:12px;cursor:pointer;padding:0 14px 8px;text-align:left}',
    '.mail[hidden]{display:none}',
    '.avatar{width:24px;height:24px;border-radius:50%;object-fit:cover;margin-right:6px;vertical-align:middle}',
    '.ask{padding:14px;display:flex;flex-direction:column;gap:8px;border-top:1px solid #e6e8eb;background:#fff}',
    '.ask[hidden]{display:none}',
    '.ask h3{margin:0;font-size:14px;font-weight:600}',
    '.ask input,.ask textarea{border:1px solid #d7dade;border-radius:8px;padding:8px 10px;font-size:14px;outline:none;width:100%}',
    '.ask textarea{min-height:70px;max-height:none;flex:none}',
    '.ask .error{color:#b42318;font-size:12.5px;min-height:0}',
    '.ask .done{color:#1b6b3a;font-size:13.5px}',
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
    '.msg.mine .bubble{color:#fff;background:var(--kefu-color)}',
    '.meta{font-size:11px;color:#80868b;margin-top:2px}',
    '.msg.failed .meta{color:#e5484d}',
    '.meta button{border:0;background:none;color:inherit;text-decoration:underline;cursor:pointer;font-size:11px;padding:0 0 0 4px}',
    '.bubble img{display:block;max-width:220px;max-height:220px;border-radius:8px}',
    '.bubble a{color:inherit}',
    '.typing{font-size:12px;color:#80868b;padding:0 14px 6px;min-height:18px;background:#f7f8fa}',
    'form{display:flex;gap:6px;padding:10px;border-top:1px solid #e6e8eb;align-items:flex-end}',
    'textarea{flex:1;resize:none;border:1px solid #d7dade;border-radius:10px;padding:8px 10px;font-size:14px;',
    'max-height:96px;min-height:38px;outline:none}',
    'textarea:focus{border-color:var(--kefu-color)}',
    '.icon{border:0;background:transparent;cursor:pointer;font-size:20px;padding:6px;color:#60646c}',
    '.send{border:0;color:#fff;border-radius:10px;padding:9px 14px;cursor:pointer;font-weight:600;background:var(--kefu-color)}',
    'form[hidden]{display:none}',
    'input[type=file]{display:none}',
    '.rate{padding:10px 14px;border-top:1px solid #e6e8eb;font-size:13px;display:flex;flex-direction:column;gap:6px}',
    '.rate[hidden],.rate-form[hidden],.thanks[hidden]{display:none}',
    '.rate-form{display:flex;flex-direction:column;gap:6px}',
    '.stars button{border:0;background:none;font-size:24px;cursor:pointer;color:#c8ccd1;padding:0 2px}',
    '.stars button.on{color:#f5a524}',
    '.rate input{border:1px solid #d7dade;border-radius:8px;padding:6px 8px;font-size:13px}',
    '.rate .go{align-self:flex-start;border:0;color:#fff;border-radius:8px;padding:6px 12px;cursor:pointer}',
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

  // http(s) links in message text become links; everything else stays text (never parsed as HTML).
  function linkify(parent, text) {
    var re = /\bhttps?:\/\/[!#-&(-;=?-~]+/gi, last = 0, m;
    while ((m = re.exec(text))) {
      var url = m[0].replace(/[.,;:!?)\]}]+$/, '');
      parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      parent.appendChild($('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: url }));
      re.lastIndex = last = m.index + url.length;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  // One tab at a time holds a named lock (Web Locks); without them, the server's de-duplication still holds.
  function locked(name, fn) {
    return navigator.locks ? navigator.locks.request(name, fn) : Promise.resolve().then(fn);
  }

  // ---- storage: shared by every tab of the site ---------------------------------------------
  // kefu:<site>          the session (token, visitor, conversation)
  // kefu:<site>:h        this conversation's history and catch-up point
  // kefu:<site>:o:<id>   one key per unsent message, so tabs never overwrite each other's

  var memory = {};
  var store = {
    get: function (k) {
      var v = null;
      try { v = localStorage.getItem(k); } catch (e) { /* storage disabled: memory only */ }
      try { return v ? JSON.parse(v) : (memory[k] || null); } catch (e) { return null; }
    },
    set: function (k, v) {
      try { localStorage.setItem(k, JSON.stringify(v)); } catch (e) { memory[k] = v; }
    },
    del: function (k) {
      delete memory[k];
      try { localStorage.removeItem(k); } catch (e) {}
    },
    keys: function (prefix) {
      var out = Object.keys(memory);
      try { for (var i = 0; i < localStorage.length; i++) out.push(localStorage.key(i)); } catch (e) {}
      return out.filter(function (k) { return k.indexOf(prefix) === 0; });
    }
  };

  // ---- the widget ---------------------------------------------------------------------------

  function Widget(options) {
    this.opts = options;
    this.t = STRINGS[(options.locale || navigator.language || 'en').toLowerCase().indexOf('zh') === 0 ? 'zh' : 'en'];
    this.key = 'kefu:' + options.siteId;
    this.apiUrl = (options.apiUrl || scriptOrigin + '/api').replace(/\/$/, '');
    this.listeners = {};
    this.replies = {};        // req -> pending reply
    this.urls = {};           // attachment key -> {u: signed url, e: expires (s), f: fetched at}
    this.previews = {};       // attachment key -> local object URL of an image this tab sent
    this.uploading = [];
    this.ws = null;
    this.mode = 'ws';         // 'rest' after sockets failed or without WebSocket: polling
    this.attempt = 0;
    this.wsFailures = 0;
    this.agentsOnline = 0;
    this.unread = 0;
    // The link in an email that brings a visitor back into their chat: #kefu-resume=<token>.
    var resume = /[#&]kefu-resume=([^&]+)/.exec(location.hash);
    if (resume) {
      this.resume = decodeURIComponent(resume[1]);
      history.replaceState(null, '', location.href.split('#')[0]);
      store.del(this.key);
      options.open = true;
    }
    var s = this.sess();
    if (s.outbox) {  // the single-key outbox of earlier versions
      s.outbox.forEach(function (o) { store.set(this.key + ':o:' + o.client_msg_id, { id: o.client_msg_id, text: o.text, attachment: o.attachment, at: o.created }); }, this);
      delete s.outbox; delete s.history;
      store.set(this.key, s);
    }
    if (options.preview) { this.startPreview(options.preview); return; }
    this.build();
    this.load(s.conversationId);
    this.watch();
    this.trackPages();
    this.connect();
  }

  // The admin page's live preview: the real widget, open, with the settings being edited; no session,
  // no socket, nothing sent. Kefu('preview', settings) shows new ones.
  Widget.prototype.startPreview = function (settings) {
    this.sess = function () { return { widget: this.settings || {}, contact: {}, agents: {} }; };
    this.build();
    this.load(null);
    this.ready = this.readyOnce = true;
    this.preview(settings);
    this.open();
  };
  Widget.prototype.preview = function (settings) {
    this.agentsOnline = settings.away ? 0 : 1;
    this.asking = undefined;
    this.applySettings(Object.assign({}, settings, { within_hours: true }));
  };

  Widget.prototype.on = function (name, fn) { (this.listeners[name] = this.listeners[name] || []).push(fn); };
  Widget.prototype.emit = function (name, value) {
    (this.listeners[name] || []).forEach(function (fn) { try { fn(value); } catch (e) { console.error(e); } });
  };

  Widget.prototype.build = function () {
    this.host = $('div', { id: 'kefu-widget' });
    this.host.style.cssText = 'all:initial;position:fixed;z-index:2147483000;';
    var root = this.host.attachShadow({ mode: 'open' });
    root.appendChild($('style', { text: CSS }));
    this.badge = $('span', { class: 'badge', hidden: '' });
    this.launcher = $('button', { class: 'launcher', 'aria-label': this.t.open, part: 'launcher', onclick: this.toggle.bind(this) });
    this.launcher.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
    this.launcherText = $('span', { class: 'label' });
    this.launcher.appendChild(this.launcherText);
    this.launcher.appendChild(this.badge);
    this.status = $('span', { class: 'status', text: this.t.connecting });
    this.replyLine = $('span', { class: 'reply' });
    this.title = $('h2', { text: this.opts.title || this.t.title });
    this.teamAvatar = $('img', { alt: '', hidden: '' });
    var header = $('header', {}, [
      this.teamAvatar,
      $('div', {}, [this.title, this.status, this.replyLine]),
      $('button', { 'aria-label': this.t.close, text: '×', onclick: this.close.bind(this) })
    ]);
    this.transcriptButton = $('button', { class: 'mail', type: 'button', text: '✉ ' + this.t.transcript,
      onclick: this.askTranscript.bind(this), hidden: '' });
    header.children[1].style.flex = '1';
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
    var attach = $('button', { class: 'icon', type: 'button', 'aria-label': this.t.attach,
      onclick: function () { this.fileInput.click(); }.bind(this) });
    attach.innerHTML = '<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true"><path fill="none" stroke="currentColor" ' +
      'stroke-width="2" stroke-linecap="round" d="M21 11.5l-8.5 8.5a5 5 0 0 1-7-7L14 4.5a3.5 3.5 0 0 1 5 5L10.5 18a2 2 0 0 1-3-3L15 7.5"/></svg>';
    this.asking = undefined;
    this.form = $('form', { onsubmit: function (e) { e.preventDefault(); this.submit(); }.bind(this) },
      [attach, this.fileInput, this.input, sendButton]);
    this.ask = $('div', { class: 'ask', hidden: '' });
    this.rateBox = this.buildRating('var(--kefu-color)');
    this.panel = $('section', { class: 'panel', role: 'dialog', 'aria-label': this.t.title, hidden: '' },
      [header, this.notice, this.log, this.typingLine, this.ask, this.rateBox, this.form, this.transcriptButton]);
    root.appendChild(this.launcher);
    root.appendChild(this.panel);
    (document.body || document.documentElement).appendChild(this.host);
    this.applySettings(this.sess().widget || {});
  };

  // ---- the owner's settings (they come with the session; the last ones seen are kept) ----------

  // The embed code's color, position and title win over the admin page's, as before settings existed.
  Widget.prototype.applySettings = function (w) {
    var o = this.opts, t = this.t;
    this.settings = w;
    if (!this.msgs) this.asking = undefined;
    if (!o.locale && (w.default_language === 'zh' || w.default_language === 'en') && this.t !== STRINGS[w.default_language]) {
      this.t = STRINGS[w.default_language];
      this.host.remove();
      this.build();
      if (this.isOpen) this.panel.hidden = false;
      this.badge.hidden = !this.unread;
      this.badge.textContent = this.unread > 99 ? '99+' : String(this.unread);
      return;
    }
    var side = (o.position || w.position) === 'left' ? 'left' : 'right';
    this.host.style.setProperty('--kefu-color', o.color || w.color || '#2563eb');
    this.launcher.className = 'launcher ' + side + (w.launcher_text ? ' labelled' : '');
    this.launcherText.textContent = w.launcher_text || '';
    this.panel.className = 'panel ' + side;
    this.title.textContent = o.title || w.team_name || t.title;
    this.panel.setAttribute('aria-label', this.title.textContent);
    this.teamAvatar.hidden = !w.team_avatar_url;
    if (w.team_avatar_url) this.teamAvatar.src = w.team_avatar_url;
    var n = w.expected_reply_minutes;
    this.replyLine.textContent = !n ? '' : t.replyIn.replace('{n}', n < 60 ? t.minutes.replace('{n}', n)
      : n === 60 ? t.oneHour : n < 1440 ? t.hours.replace('{n}', Math.round(n / 60)) : t.day);
    this.host.setAttribute('data-position', side);
    if (this.msgs) this.render();
  };

  // Nobody to answer now: no agent online, or outside the site's business hours.
  Widget.prototype.away = function () {
    var w = this.settings || {};
    return this.ready && (!this.agentsOnline || w.within_hours === false);
  };

  // A chat not yet started: nothing written, nothing waiting to be sent.
  Widget.prototype.fresh = function () {
    return !Object.keys(this.msgs || {}).length && !this.outbox().length && !this.uploading.length;
  };

  // Which form stands in for the message box: 'offline' (leave a message), 'prechat', or none.
  Widget.prototype.askWhich = function () {
    var w = this.settings || {}, c = this.sess().contact || {}, form = w.pre_chat_form || {};
    if (!this.fresh() || this.leftMessage) return null;
    if (this.away() && (w.offline || 'form') === 'form') return 'offline';
    if (!this.ready) return null;
    var asked = ['name', 'email', 'phone'].some(function (f) { return form[f] && form[f] !== 'off' && !c[f]; });
    return asked ? 'prechat' : null;
  };

  // The fields asked above the message box (pre-chat, or the leave-a-message form); the message box
  // itself carries the message, so the same Send sends both.
  Widget.prototype.renderAsk = function () {
    var which = this.askWhich(), t = this.t, self = this;
    if (which === this.asking || (this.asking === 'transcript' && !which)) return;
    this.asking = which;
    this.askFields = {};
    this.ask.hidden = !which;
    this.ask.setAttribute('data-form', which || '');
    if (!which) { this.ask.replaceChildren(); return; }
    var form = (this.settings || {}).pre_chat_form || {};
    // Away, the form asks what the pre-chat form asks, and the email at least as an option (for our reply).
    var wanted = which === 'offline' ? Object.assign({}, form, { email: form.email === 'required' ? 'required' : 'optional' }) : form;
    var rows = [$('h3', { text: which === 'offline' ? t.leave : t.title })];
    ['name', 'email', 'phone'].forEach(function (f) {
      if (!wanted[f] || wanted[f] === 'off') return;
      var label = t['your' + f.charAt(0).toUpperCase() + f.slice(1)] + (wanted[f] === 'required' ? ' *' : ' (' + t.optional + ')');
      var input = $('input', { name: f, type: f === 'email' ? 'email' : f === 'phone' ? 'tel' : 'text', placeholder: label, 'aria-label': label });
      if (wanted[f] === 'required') input.setAttribute('aria-required', 'true');
      input.addEventListener('keydown', function (e) { if (e.key === 'Enter') { e.preventDefault(); self.input.focus(); } });
      self.askFields[f] = input;
      rows.push(input);
    });
    this.askError = $('div', { class: 'error', role: 'alert' });
    rows.push(this.askError);
    this.ask.replaceChildren.apply(this.ask, rows);
  };

  // A transcript by email when the chat ends: the email the visitor gave, or one they give now.
  Widget.prototype.askTranscript = function () {
    var self = this, t = this.t, known = (this.sess().contact || {}).email || '';
    if (this.opts.preview) return;
    if (this.asking === 'transcript') { this.asking = undefined; this.render(); return; }
    var email = $('input', { name: 'email', type: 'email', value: known, placeholder: t.yourEmail, 'aria-label': t.yourEmail });
    var error = $('div', { class: 'error', role: 'alert' });
    var form = $('form', { class: 'transcript', onsubmit: function (e) {
      e.preventDefault();
      var body = { transcript: true };
      if (email.value.trim() && email.value.trim() !== known) body.email = email.value.trim();
      self.api('POST', '/v1/visitor/contact', body).then(function (r) {
        var s = self.sess();
        s.contact = Object.assign({}, s.contact || {}, r.contact);
        store.set(self.key, s);
        self.asking = undefined;
        self.render();
        self.showNotice(t.transcriptOk.replace('{email}', s.contact.email));
      }, function (err) { error.textContent = t[REASONS[err.code]] || t.error; });
    } }, [$('h3', { text: t.transcript }), email, error, $('button', { class: 'send', type: 'submit', text: t.transcriptSend })]);
    form.style.cssText = 'display:flex;flex-direction:column;gap:8px';
    this.asking = 'transcript';
    this.askFields = {};
    this.ask.hidden = false;
    this.ask.setAttribute('data-form', 'transcript');
    this.ask.replaceChildren(form);
    email.focus();
  };

  // The asked fields, checked: null if a required one is empty (and says so), else what was given.
  Widget.prototype.contactGiven = function () {
    var fields = this.askFields || {}, given = {}, missing = false;
    Object.keys(fields).forEach(function (f) {
      var v = fields[f].value.trim();
      if (v) given[f] = v; else if (fields[f].getAttribute('aria-required')) missing = true;
    });
    if (missing) { this.askError.textContent = this.t.needed; return null; }
    return given;
  };

  // Send the asked fields first (a 4xx says which one is wrong), then the message.
  Widget.prototype.submitWithContact = function (text) {
    var self = this, which = this.asking, given = this.contactGiven();
    if (!given) return;
    if (!Object.keys(given).length) { this.input.value = ''; this.enqueue({ text: text }); return; }
    this.api('POST', '/v1/visitor/contact', given).then(function (r) {
      var s = self.sess();
      s.contact = Object.assign({}, s.contact || {}, r.contact);
      store.set(self.key, s);
      if (which === 'offline' && s.contact.email) self.leftMessage = s.contact.email;
      self.input.value = '';
      self.enqueue({ text: text });
    }, function (err) {
      self.askError.textContent = self.t[REASONS[err.code]] || self.t.error;
    });
  };

  // The welcome greeting: the first thing a visitor reads, from the team (never stored as a message).
  Widget.prototype.greetingRow = function () {
    var w = this.settings || {};
    if (!w.greeting) return null;
    var bubble = $('div', { class: 'bubble' });
    linkify(bubble, w.greeting);
    return $('div', { class: 'msg theirs greeting', 'data-state': 'greeting' },
      [bubble, $('div', { class: 'meta', text: w.team_name || this.t.title })]);
  };

  Widget.prototype.invitationRow = function () {
    var bubble = $('div', { class: 'bubble' });
    linkify(bubble, this.invitation);
    var w = this.settings || {};
    return $('div', { class: 'msg theirs greeting invitation', 'data-state': 'invitation' },
      [bubble, $('div', { class: 'meta', text: w.team_name || this.t.title })]);
  };

  // ---- automatic invitations (the site's settings): a greeting after N seconds on matching pages,
  // each at most once per visit (a visit ends after 30 minutes without a page), shown only to a
  // visitor who has not written yet. Nothing is sent: the visitor's reply starts the chat. ----------

  var VISIT_GAP_MS = 30 * 60 * 1000;

  function pageMatches(pattern, href) {
    if (!pattern) return true;
    if (pattern.indexOf('*') < 0) return href.indexOf(pattern) >= 0;
    var re = new RegExp('^' + pattern.split('*').map(function (part) {
      return part.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    }).join('.*') + '$');
    var url = new URL(href);
    return re.test(href) || re.test(url.pathname + url.search);
  }

  Widget.prototype.scheduleInvitations = function () {
    var self = this, rules = (this.settings || {}).auto_invitations || [];
    (this.invitationTimers || []).forEach(clearTimeout);
    this.invitationTimers = [];
    var visit = store.get(this.key + ':visit') || {};
    if (!visit.at || Date.now() - visit.at > VISIT_GAP_MS) visit = { fired: [] };
    visit.at = Date.now();
    store.set(this.key + ':visit', visit);
    rules.forEach(function (rule, i) {
      var id = i + ':' + rule.message;
      if (visit.fired.indexOf(id) >= 0 || !pageMatches(rule.url_pattern, location.href)) return;
      self.invitationTimers.push(setTimeout(function () {
        var now = store.get(self.key + ':visit') || { fired: [] };
        if (now.fired.indexOf(id) >= 0 || !self.fresh() || self.invitation || self.refused) return;
        now.fired.push(id);
        store.set(self.key + ':visit', now);
        self.invitation = rule.message;
        self.render();
        if (!self.isOpen) self.open();
      }, rule.delay_seconds * 1000));
    });
  };

  // The satisfaction rating, asked once a chat has ended (docs/protocol.md, `rate`): 1-5 stars and
  // an optional comment, once per conversation.
  Widget.prototype.buildRating = function (color) {
    var self = this, t = this.t;
    this.stars = [1, 2, 3, 4, 5].map(function (n) {
      return $('button', { type: 'button', text: '★', 'aria-label': n + t.star, 'data-score': String(n),
        onclick: function () { self.score = n; self.render(); } });
    });
    this.rateComment = $('input', { maxlength: '200', placeholder: t.rateComment, 'aria-label': t.rateComment });
    var go = $('button', { class: 'go', type: 'button', text: t.rateSend, onclick: function () { self.sendRating(); } });
    go.style.background = color;
    this.rateThanks = $('div', { class: 'thanks', text: t.rateThanks, hidden: '' });
    this.rateForm = $('div', { class: 'rate-form' }, [$('div', { text: t.rateAsk }), $('div', { class: 'stars' }, this.stars), this.rateComment, go]);
    return $('div', { class: 'rate', hidden: '' }, [this.rateForm, this.rateThanks]);
  };

  Widget.prototype.sendRating = function () {
    var self = this, cid = this.cid;
    if (!this.score) return;
    var frame = { action: 'rate', conversation_id: cid, rating: this.score };
    var comment = this.rateComment.value.trim();
    if (comment) frame.comment = comment;
    this.call(frame).then(function (r) {
      if (cid === self.cid) { self.rated = r.conversation.rating.score; self.thanked = true; self.render(); }
    }, function (err) {
      if (err.code === 'already_rated') { self.rated = self.score; self.render(); }
      else self.showNotice(self.t[REASONS[err.code]] || self.t.error);
    });
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
    if (this.polling) { this.idle = 0; this.poll(); }
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

  // ---- the conversation held in memory (and in kefu:<site>:h) ----------------------------------

  Widget.prototype.sess = function () { return store.get(this.key) || {}; };

  Widget.prototype.load = function (cid) {
    var h = store.get(this.key + ':h') || {};
    if (h.c !== cid) h = {};
    this.cid = cid;
    this.msgs = {};
    this.held = {};           // seq -> true: a message we hold, or a gap the server listed
    (h.m || []).forEach(function (m) { this.msgs[m.seq] = this.held[m.seq] = m; }, this);
    (h.g || []).forEach(function (seq) { this.held[seq] = true; }, this);
    this.synced = h.s || 0;   // the catch-up rule's synced_seq
    this.lastSeq = this.synced;
    this.readSeq = h.r || 0;
    this.agentReadSeq = h.a || 0;
    this.closed = false;
    this.rated = this.thanked = this.score = null;
    this.render();
  };

  Widget.prototype.save = function () {
    var self = this, seqs = Object.keys(this.held).map(Number).filter(function (s) { return s > self.synced; });
    var all = Object.keys(this.msgs).map(Number).sort(function (a, b) { return a - b; });
    store.set(this.key + ':h', {
      c: this.cid, s: this.synced, r: this.readSeq, a: this.agentReadSeq,
      g: seqs.filter(function (s) { return !self.msgs[s]; }),
      m: all.slice(-200).map(function (s) { return self.msgs[s]; })
    });
  };

  Widget.prototype.maxSeq = function () {
    return Math.max.apply(null, [0].concat(Object.keys(this.msgs).map(Number)));
  };

  // ---- session ----------------------------------------------------------------------------

  function claims(jwt) {
    try { return JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))); } catch (e) { return {}; }
  }

  // Who the page says the visitor is: a user id (from identityToken's `sub`, or userId), or null.
  Widget.prototype.user = function () {
    var o = this.opts;
    return (o.identityToken ? claims(o.identityToken).sub : o.userId) || null;
  };

  Widget.prototype.sessionBody = function (s) {
    var body = { site_id: this.opts.siteId }, o = this.opts;
    if (o.identityToken) body.identity_token = o.identityToken;
    else if (o.userId) { body.user_id = String(o.userId); body.user_hash = o.userHash; } else if (this.resume) body.resume_token = this.resume;
    else if (s.visitorId && !s.userId) body.visitor_id = s.visitorId;
    if (o.name) body.name = o.name;
    if (o.attributes) body.attributes = o.attributes;
    return body;
  };

  Widget.prototype.usable = function (s) {
    return s.token && s.token !== this.stale && s.renewAt > Date.now() && s.userId === this.user();
  };

  // A usable session from storage (another tab may have made it) or a new one; never two tabs at once,
  // or each would create a conversation.
  Widget.prototype.ensureSession = function () {
    var self = this;
    if (this.usable(this.sess())) return Promise.resolve(this.adopt(this.sess()));
    return locked(this.key + ':session', function () {
      var s = self.sess();
      if (self.usable(s)) return self.adopt(s);
      return self.postSession(self.sessionBody(s)).then(function (r) {
        var c = claims(r.token);
        // renew after 80% of the token's life, measured on this clock (the server's may differ)
        var life = c.exp && c.iat ? (c.exp - c.iat) * 1000 : r.expires_at * 1000 - Date.now();
        s = { token: r.token, expiresAt: r.expires_at, renewAt: Date.now() + Math.max(1000, life * 0.8),
          visitorId: r.visitor_id, conversationId: r.conversation_id, userId: self.user(),
          websocketUrl: self.opts.websocketUrl || r.websocket_url, upload: r.upload,
          widget: r.widget || {}, agents: r.agents || {}, contact: r.contact || {} };
        self.resume = null;
        store.set(self.key, s);
        self.agentsOnline = r.agents_online;
        self.applySettings(s.widget);
        return self.adopt(s);
      });
    });
  };

  Widget.prototype.postSession = function (body, retried) {
    var self = this;
    return fetch(this.apiUrl + '/v1/visitor/session', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (r.ok) return j;
        if (j.code === 'invalid_visitor_id' && !retried) { delete body.visitor_id; return self.postSession(body, true); }
        if (/^resume_token_/.test(j.code || '') && !retried) { self.resume = null; delete body.resume_token; return self.postSession(body, true); }
        // a 4xx other than these will not change by retrying: say so once, no retry storm
        throw { code: j.code || 'http_' + r.status, permanent: r.status < 500 && [401, 408, 429].indexOf(r.status) < 0 };
      });
    });
  };

  Widget.prototype.adopt = function (s) {
    var self = this;
    this.stale = null;
    if (s.conversationId !== this.cid) {
      this.drop();
      this.load(s.conversationId);
    }
    clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(function () { self.renew(s.token); }, Math.max(0, s.renewAt - Date.now()));
    return s;
  };

  // Before the token expires: a fresh one. A live socket stays (it was authorised when it opened),
  // unless the session now names another conversation.
  Widget.prototype.renew = function (token) {
    var self = this;
    this.stale = token;  // if another tab renewed it already, its session is taken as it is
    this.ensureSession().then(function () { self.connect(); }, function (err) {
      if (err.permanent) self.refuse(err.code);
      else self.renewTimer = setTimeout(function () { self.renew(token); }, 15000);
    });
  };

  Widget.prototype.refuse = function (code) {
    this.refused = code;
    this.drop();
    this.render();
  };

  // ---- transport: a WebSocket, or REST polling when there is none --------------------------

  Widget.prototype.connect = function () {
    var self = this;
    clearTimeout(this.retryTimer);
    if (this.refused || this.busy || this.ws || this.polling || !navigator.onLine) return;
    this.busy = true;
    this.ensureSession().then(function (s) {
      self.busy = false;
      if (self.ws || self.polling) return;
      if (self.mode === 'rest' || !window.WebSocket || !s.websocketUrl) self.startPolling();
      else self.openSocket(s);
    }, function (err) {
      self.busy = false;
      if (err.permanent) self.refuse(err.code); else self.retryLater();
    });
    this.flush();  // messages queued under an earlier identity go over REST, whatever the transport
  };

  Widget.prototype.retryLater = function () {
    clearTimeout(this.retryTimer);
    if (!navigator.onLine || this.refused) return;
    var delay = Math.min(30000, 500 * Math.pow(2, this.attempt++)) * (0.5 + Math.random() / 2);
    this.retryTimer = setTimeout(this.connect.bind(this), delay);
  };

  Widget.prototype.reconnect = function () { this.drop(); this.connect(); };

  Widget.prototype.openSocket = function (s) {
    var self = this, ws;
    this.render();
    try { ws = new WebSocket(s.websocketUrl + '?token=' + encodeURIComponent(s.token)); } catch (e) { this.mode = 'rest'; this.connect(); return; }
    this.ws = ws;
    // a handshake that neither opens nor fails (some proxies) counts as a failure too
    var handshake = setTimeout(function () { if (ws.readyState === 0) ws.onclose(); }, 10000);
    ws.onopen = function () { clearTimeout(handshake); self.onOpen(); };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      self.lastHeard = Date.now();
      if (self.ws === ws) self.handle(frame);
    };
    ws.onclose = function () {
      if (self.ws !== ws) return;
      // A socket that never caught up counts as a failure: refused (maybe the token), or cut by a proxy.
      if (!self.ready) self.wsFailures++;
      self.drop();
      if (self.wsFailures === 2) self.stale = self.sess().token;
      if (self.wsFailures >= 3) { self.mode = 'rest'; self.connect(); } else self.retryLater();
    };
  };

  Widget.prototype.drop = function () {
    var ws = this.ws, replies = this.replies;
    this.ws = null;
    this.ready = false;
    this.polling = false;
    clearTimeout(this.pollTimer);
    clearTimeout(this.probeTimer);
    clearInterval(this.heartbeat);
    this.replies = {};
    Object.keys(replies).forEach(function (req) { clearTimeout(replies[req].timer); replies[req].no({}); });
    if (ws) { ws.onclose = null; try { ws.close(); } catch (e) {} }
    this.render();
  };

  Widget.prototype.onOpen = function () {
    var self = this;
    this.lastHeard = Date.now();
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(function () {
      if (Date.now() - self.lastHeard > 40000 && self.ws) { self.ws.close(); return; }  // a dead link
      self.request({ action: 'ping' }).catch(function () {});
    }, 25000);
    this.reportPage();
    this.refreshState();
    this.catchUp().catch(function (err) { self.syncFailed(err); });
  };

  Widget.prototype.syncFailed = function (err) {
    var self = this;
    if (!this.ws || err.code === undefined) return;  // the socket went: reconnecting catches up again
    this.syncNotice = true;
    this.render();
    setTimeout(function () {
      if (self.ws) self.catchUp().catch(function (e) { self.syncFailed(e); });
    }, Math.min(10000, 1000 * Math.pow(2, this.attempt++)));
  };

  Widget.prototype.refreshState = function () {
    var self = this;
    this.stateAt = Date.now();
    this.call({ action: 'state' }).then(function (state) {
      self.agentsOnline = state.agents_online.length;
      if (state.conversation && state.conversation.conversation_id === self.cid) {
        self.closed = state.conversation.status === 'closed';
        if (state.conversation.rating) self.rated = state.conversation.rating.score;
      }
      self.render();
    }).catch(function () { self.render(); });  // render asks again later while nobody is online
  };

  // REST mode: sync on a timer, fast while the chat is open, slow while closed; now and then try a socket again.
  Widget.prototype.startPolling = function () {
    var self = this;
    this.mode = 'rest';
    this.polling = true;
    this.idle = 0;
    this.refreshState();
    this.poll();
    if (window.WebSocket) {
      this.probeTimer = setTimeout(function () {
        if (!self.polling) return;
        self.drop();
        self.mode = 'ws';
        self.wsFailures = 2;  // one more failure and it is back to polling
        self.connect();
      }, Math.min(120000, 5000 * Math.pow(2, this.probes = (this.probes || 0) + 1)));
    }
  };

  Widget.prototype.poll = function () {
    var self = this, before = this.maxSeq();
    clearTimeout(this.pollTimer);
    this.catchUp().then(function () {
      if (!self.polling) return;
      self.idle = self.maxSeq() > before || self.nextItem() ? 0 : self.idle + 1;
      // no presence frames reach a poller: who is online is asked now and then while the chat is open
      if (self.isOpen && Date.now() - (self.stateAt || 0) > 60000) self.refreshState();
      var base = self.isOpen ? 1500 : 10000;
      self.pollTimer = setTimeout(self.poll.bind(self), Math.min(base * 5, base * Math.pow(1.5, self.idle)));
    }, function () {
      if (!self.polling) return;
      self.ready = false;
      self.render();
      self.pollTimer = setTimeout(self.poll.bind(self), Math.min(30000, 1000 * Math.pow(2, self.attempt++)));
    });
  };

  Widget.prototype.request = function (frame) {
    var self = this, ws = this.ws;
    return new Promise(function (resolve, reject) {
      if (!ws || ws.readyState !== 1) { reject({}); return; }
      var req = frame.req = newId('r');
      self.replies[req] = {
        ok: resolve, no: reject,
        timer: setTimeout(function () {
          delete self.replies[req];
          reject({});
          if (self.ws === ws) ws.close();  // no answer in this long: the link is dead
        }, REPLY_TIMEOUT)
      };
      ws.send(JSON.stringify(frame));
    });
  };

  // An action over whichever transport is up (REST: docs/protocol.md, section 4); `via` sends as an
  // earlier identity (after identify or reset). A message with an attachment always goes over REST:
  // only the REST function attaches uploads.
  Widget.prototype.call = function (frame, via) {
    if (!via && this.mode !== 'rest' && !frame.attachment) return this.request(frame);
    var path = '/v1/conversations/{c}/';
    switch (frame.action) {
      case 'sync': return this.api('GET', path + 'messages?after_seq=' + frame.after_seq, null, via);
      case 'state': return this.api('GET', '/v1/state', null, via);
      case 'read': return this.api('POST', path + 'read', { seq: frame.seq }, via);
      case 'typing': return this.api('POST', path + 'typing', { is_typing: frame.is_typing }, via);
      case 'rate': return this.api('POST', path + 'rating', { rating: frame.rating, comment: frame.comment }, via);
    }
    return this.api('POST', path + 'messages', { client_msg_id: frame.client_msg_id, text: frame.text, attachment: frame.attachment }, via);
  };

  // REST with the session's token ({c} is its conversation); an expired token is renewed and the call made again.
  Widget.prototype.api = function (method, path, body, via, retried) {
    var self = this, token = via ? via.t : this.sess().token;
    return fetch(this.apiUrl + path.replace('{c}', encodeURIComponent(via ? via.c : this.cid)), {
      method: method, body: body ? JSON.stringify(body) : undefined,
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token }
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (r.ok) return j;
        var err = { code: j.code || 'http_' + r.status };
        if (retried || ['token_expired', 'token_invalid'].indexOf(err.code) < 0) throw err;
        if (!via) { self.stale = token; return self.ensureSession().then(function () { return self.api(method, path, body, via, true); }); }
        return self.postSession(via.b).then(function (r) {
          via.t = r.token; via.c = r.conversation_id;
          return self.api(method, path, body, via, true);
        });
      });
    }, function () { throw {}; });
  };

  // ---- frames from the server --------------------------------------------------------------

  Widget.prototype.handle = function (frame) {
    var waiting = frame.req && this.replies[frame.req];
    if (frame.code === 'connection_unknown') { this.drop(); this.retryLater(); }
    if (waiting) {
      delete this.replies[frame.req];
      clearTimeout(waiting.timer);
      if (frame.type === 'error') waiting.no(frame); else waiting.ok(frame);
      return;
    }
    var c = frame.conversation;
    switch (frame.type) {
      case 'message': this.receive(frame, false); break;
      case 'read':
        if (frame.by && frame.by.role === 'agent' && frame.conversation_id === this.cid && frame.seq > this.agentReadSeq) {
          this.agentReadSeq = frame.seq; this.save(); this.render();
        }
        break;
      case 'typing':
        if (frame.from && frame.from.role === 'agent') { this.showTyping(frame.is_typing); this.agentSeen(); }
        break;
      case 'presence':
        if (frame.role === 'agent' && typeof frame.agents_online === 'number') {
          // the site's first agent came online or its last left: the count comes with the frame
          this.agentsOnline = frame.agents_online; this.render();
        } else if (frame.role === 'agent') {
          if (frame.status === 'online') this.agentSeen();
          this.refreshState();
        }
        break;
      case 'conversation':
        if (c && c.conversation_id === this.cid) {
          this.closed = c.status === 'closed';
          if (c.rating) this.rated = c.rating.score;
          if (c.status === 'assigned') this.agentSeen();
          if (frame.event === 'invited' && !this.isOpen) this.open();  // an agent invited the visitor to chat
          this.render();
        }
        break;
    }
  };

  Widget.prototype.agentSeen = function () {
    if (!this.agentsOnline) { this.agentsOnline = 1; this.render(); }
  };

  // ---- messages ----------------------------------------------------------------------------

  // The catch-up rule (docs/protocol.md): sync after synced_seq, then after next_after_seq while has_more.
  Widget.prototype.catchUp = function () {
    var self = this, cid = this.cid;
    if (this.syncing) { this.again = true; return this.syncing; }
    function page(after) {
      return self.call({ action: 'sync', conversation_id: cid, after_seq: after }).then(function (p) {
        if (cid !== self.cid) return;
        p.messages.forEach(function (m) { self.receive(m, true); });
        (p.gaps || []).forEach(function (seq) { self.held[seq] = true; });
        self.lastSeq = Math.max(self.lastSeq, p.last_seq || 0);
        // what a socket would have pushed: the agent's read mark (it only grows) and, to a poller, the status
        if (p.agent_read_seq > self.agentReadSeq) self.agentReadSeq = p.agent_read_seq;
        if (self.polling && p.status) self.closed = p.status === 'closed';
        self.advance();
        if (p.has_more && p.next_after_seq > after) return page(p.next_after_seq);
      });
    }
    this.syncing = page(this.synced).then(function () {
      self.syncing = null;
      if (cid === self.cid) self.caughtUp();
      if (self.again) { self.again = false; return self.catchUp(); }
    }, function (err) {
      self.syncing = null;
      self.again = false;
      if (err.code === 'seq_out_of_range' && cid === self.cid) { store.del(self.key + ':h'); self.load(cid); }
      throw err;
    });
    return this.syncing;
  };

  Widget.prototype.advance = function () {
    while (this.held[this.synced + 1]) this.synced++;
    this.save();
    this.render();
  };

  Widget.prototype.caughtUp = function () {
    var first = !this.readyOnce;
    this.ready = this.readyOnce = true;
    this.wsFailures = this.attempt = 0;
    this.syncNotice = false;
    this.render();
    this.flush();
    if (first) { this.scheduleInvitations(); this.emit('ready'); }
    if (this.mode === 'ws') this.probes = 0;
    this.checkHoles();
  };

  // A number below the newest that we still lack is in flight or about to become a listed gap:
  // look again later (less and less often), without holding anything up meanwhile.
  Widget.prototype.checkHoles = function () {
    var self = this;
    if (this.polling || this.synced >= Math.max(this.lastSeq, this.maxSeq())) {
      clearTimeout(this.holeTimer);
      this.holeTimer = null;
      this.holeDelay = 0;
      return;
    }
    if (this.holeTimer) return;
    this.holeDelay = Math.min(60000, (this.holeDelay || 1000) * 2);
    this.holeTimer = setTimeout(function () {
      self.holeTimer = null;
      if (self.ready) self.catchUp().catch(function () {});
    }, this.holeDelay);
  };

  Widget.prototype.receive = function (m, fromSync) {
    if (m.conversation_id !== this.cid || this.msgs[m.seq]) return;
    this.msgs[m.seq] = this.held[m.seq] = m;
    if (m.sender.role === 'visitor') {
      var item = store.get(this.key + ':o:' + m.client_msg_id);
      if (item && !item.via) store.del(this.key + ':o:' + m.client_msg_id);  // delivered (from another tab, or its ack was lost)
    }
    if (!fromSync) { this.advance(); this.checkHoles(); }
    if (m.sender.role !== 'visitor') {
      this.showTyping(false);
      this.agentSeen();
      if (this.isOpen && document.visibilityState === 'visible') this.markRead();
      else if (!fromSync || m.seq > this.readSeq) this.setUnread(this.unread + 1);
      this.emit('message', { text: m.text, attachment: m.attachment, seq: m.seq, from: m.sender.role });
    }
  };

  // Every tab's unsent messages, oldest first.
  Widget.prototype.outbox = function () {
    return store.keys(this.key + ':o:').map(store.get).filter(Boolean)
      .sort(function (a, b) { return a.at - b.at || (a.id < b.id ? -1 : 1); });
  };

  Widget.prototype.submit = function () {
    var text = this.input.value.trim();
    if (!text || this.opts.preview) return;
    if (this.asking) { this.submitWithContact(text); return; }
    this.input.value = '';
    this.enqueue({ text: text });
  };

  Widget.prototype.enqueue = function (content) {
    var item = { id: newId('w'), text: content.text || null, attachment: content.attachment || null, at: Date.now() };
    store.set(this.key + ':o:' + item.id, item);
    this.render();
    this.flush();
  };

  Widget.prototype.nextItem = function () {
    var ready = this.ready;
    return this.outbox().filter(function (o) { return !o.failed && (o.via || ready); })[0];
  };

  // One send in flight across all tabs, oldest first: API Gateway runs frames concurrently, so
  // sending several at once could store them out of order. Retries reuse the client_msg_id.
  Widget.prototype.flush = function () {
    var self = this;
    if (this.flushing || !navigator.onLine || !this.nextItem()) return;
    this.flushing = true;
    locked(this.key + ':send', function () {
      var item = self.nextItem();  // read again: another tab may have sent it meanwhile
      return item ? self.sendItem(item) : -1;
    }).then(function (wait) {
      self.flushing = false;
      if (wait === 0) self.flush(); else if (wait > 0) setTimeout(self.flush.bind(self), wait);
    });
  };

  // Resolves to 0 (next, please), a delay before trying again, or -1 (wait for the connection).
  Widget.prototype.sendItem = function (item) {
    var self = this, via = item.via, cid = via ? via.c : this.cid, key = this.key + ':o:' + item.id;
    if (!via && !item.tx) { item.tx = 1; store.set(key, item); }
    return this.call({ action: 'send', conversation_id: cid, client_msg_id: item.id,
      text: item.text || undefined, attachment: item.attachment || undefined }, via).then(function (ack) {
      store.del(key);
      if (via) return 0;
      if (ack.conversation_id !== cid) {
        // It landed in the visitor's newer conversation: a session for that one, and the rest follows it.
        self.stale = self.sess().token;
        self.reconnect();
        return -1;
      }
      if (cid === self.cid) {
        self.receive({ conversation_id: cid, seq: ack.seq, id: ack.id, client_msg_id: item.id,
          sender: { role: 'visitor', id: self.sess().visitorId }, text: item.text, attachment: item.attachment,
          created_at: ack.created_at }, false);
      }
      self.render();
      return 0;
    }, function (err) {
      if (err.code === undefined) return self.ready || via ? 3000 : -1;
      if (RETRY.indexOf(err.code) >= 0) return 2000;
      if (err.code === 'not_in_conversation' && !via) { self.stale = self.sess().token; self.reconnect(); return -1; }
      item.failed = err.code;
      if (store.get(key)) store.set(key, item);
      self.render();
      return 0;
    });
  };

  Widget.prototype.retry = function (item) {
    delete item.failed;
    store.set(this.key + ':o:' + item.id, item);
    this.render();
    this.flush();
  };

  Widget.prototype.markRead = function () {
    var seq = this.maxSeq();
    if (!seq || seq <= this.readSeq || !(this.ws || this.polling)) return;
    this.readSeq = seq;
    this.save();
    this.call({ action: 'read', conversation_id: this.cid, seq: seq }).catch(function () {});
  };

  Widget.prototype.noteTyping = function () {
    var now = Date.now();
    var frame = { action: 'typing', conversation_id: this.cid, is_typing: true };
    if (now - (this.typingSent || 0) < 3000) return;
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
    else if (this.polling) this.call(frame).catch(function () {});
    else return;
    this.typingSent = now;
  };

  Widget.prototype.showTyping = function (on) {
    clearTimeout(this.typingTimer);
    this.typingLine.textContent = on ? this.t.typing : '';
    if (on) this.typingTimer = setTimeout(this.showTyping.bind(this, false), 6000);
  };

  // ---- identity changes ----------------------------------------------------------------------

  // Messages that may already have reached the current conversation stay bound to it (and to this
  // identity's token), so a retry finds the original instead of storing a second copy elsewhere.
  Widget.prototype.detach = function (all) {
    var s = this.sess(), key = this.key;
    if (!s.token) return;
    var via = { t: s.token, c: s.conversationId, b: this.sessionBody(s) };
    this.outbox().forEach(function (o) {
      if (!o.via && (all || o.tx)) { o.via = via; store.set(key + ':o:' + o.id, o); }
    });
  };

  Widget.prototype.identify = function (arg) {
    var before = this.user();
    var after = Object.assign({}, this.opts, arg || {});
    if (((after.identityToken ? claims(after.identityToken).sub : after.userId) || null) !== before) this.detach(false);
    Object.assign(this.opts, arg || {});
    this.stale = this.sess().token;
    this.refused = null;
    this.reconnect();
  };

  // Logout: what was queued is still delivered, as the visitor who wrote it; then the visitor is forgotten.
  Widget.prototype.reset = function () {
    this.detach(true);
    ['userId', 'userHash', 'identityToken', 'name', 'attributes'].forEach(function (k) { delete this.opts[k]; }, this);
    store.del(this.key);
    store.del(this.key + ':h');
    this.drop();
    this.load(null);
    this.setUnread(0);
    this.connect();
  };

  // ---- uploads ------------------------------------------------------------------------------

  Widget.prototype.sendFile = function (file) {
    var policy = this.sess().upload || { max_bytes: 10485760, allowed_types: ['image/*', 'application/pdf', 'text/plain'] };
    if (file.size > policy.max_bytes) { this.showNotice(this.t.tooLarge); return; }
    if (!typeAllowed(file.type, policy.allowed_types)) { this.showNotice(this.t.badType); return; }
    var self = this, pendingRow = { name: file.name, size: file.size };
    this.uploading.push(pendingRow);
    this.render();
    this.api('POST', '/v1/uploads', { conversation_id: this.cid, file_name: file.name, content_type: file.type, size: file.size })
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
          if (!r.ok) throw {};
          if (/^image\//.test(file.type)) self.previews[grant.key] = URL.createObjectURL(file);
          self.enqueue({ attachment: { key: grant.key, name: file.name, size: file.size, content_type: file.type } });
        });
      })
      .catch(function (err) {
        // a closed chat takes no file until a message reopens it
        self.showNotice(err.code === 'conversation_closed' ? self.t.closed : self.t[REASONS[err.code]] || self.t.uploadFailed);
      })
      .then(function () { self.uploading.splice(self.uploading.indexOf(pendingRow), 1); self.render(); });
  };

  // Signed download URLs expire: a fresh one when ours has (and when an image fails to load).
  Widget.prototype.signedUrl = function (a) {
    var u = this.urls[a.key];
    if (!u && a.url) u = this.urls[a.key] = { u: a.url, e: a.url_expires_at };
    // (a URL fetched just now is used even if this clock thinks it has expired already)
    if (u && (u.e * 1000 > Date.now() + 2000 || Date.now() - u.f < 10000)) return u.u;
    this.freshUrl(a.key);
    return null;
  };

  Widget.prototype.freshUrl = function (key) {
    var self = this, u = this.urls[key] || {};
    if (u.busy || Date.now() - (u.f || 0) < 10000) return;
    u.busy = true;
    this.urls[key] = u;
    this.api('GET', '/v1/conversations/{c}/attachments/url?key=' + encodeURIComponent(key)).then(function (r) {
      self.urls[key] = { u: r.url, e: r.expires_at, f: Date.now() };
      self.render();
    }, function () { u.busy = false; u.f = Date.now(); });
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
    if (this.lastPage && this.readyOnce) this.scheduleInvitations();  // moved within a single-page app
    this.lastPage = location.href;
    var frame = { action: 'page_view', url: location.href.slice(0, 2048) };
    if (document.title) frame.title = document.title.slice(0, 300);
    if (document.referrer) frame.referrer = document.referrer.slice(0, 2048);
    this.request(frame).catch(function () {});
  };

  Widget.prototype.watch = function () {
    var self = this;
    window.addEventListener('offline', function () { self.drop(); });
    window.addEventListener('online', function () { self.attempt = 0; self.connect(); });
    document.addEventListener('visibilitychange', function () {
      if (document.visibilityState === 'visible') {
        self.connect();
        if (self.isOpen) self.markRead();
      }
    });
    // Another tab changed the session or the outbox.
    window.addEventListener('storage', function (e) {
      if (!e.key || e.key.indexOf(self.key) !== 0 || e.key === self.key + ':h') return;
      var s = self.sess();
      if (e.key === self.key && s.conversationId && s.conversationId !== self.cid && s.userId === self.user()) {
        self.adopt(s);
        self.connect();
      }
      self.render();
      self.flush();
    });
  };

  // ---- rendering ------------------------------------------------------------------------------

  Widget.prototype.showNotice = function (text) {
    var self = this;
    clearTimeout(this.noticeTimer);
    this.noticeText = text;
    this.render();
    this.noticeTimer = setTimeout(function () { self.noticeText = null; self.render(); }, 8000);
  };

  Widget.prototype.render = function () {
    if (!this.log) return;
    var t = this.t, self = this, online = navigator.onLine;
    var connection = this.refused ? 'refused' : !online ? 'offline' : this.ready ? 'online' : 'connecting';
    this.host.setAttribute('data-connection', connection);  // for the page and for tests
    this.host.setAttribute('data-transport', this.mode);
    this.status.textContent = connection === 'online' ? (this.agentsOnline > 0 ? t.online : '') : connection === 'connecting' ? t.connecting : '';
    var text = null, warn = true;
    if (this.refused) text = t[REASONS[this.refused]] || t.unavailable;
    else if (!online || (!this.ready && this.readyOnce)) text = t.offline;
    else if (this.noticeText) text = this.noticeText;
    else if (this.syncNotice) text = t.syncFailed;
    else if (this.leftMessage) { warn = false; text = t.left.replace('{email}', this.leftMessage); }
    else {
      warn = false;
      var w = this.settings || {};
      text = this.closed ? t.closed : this.away() ? (w.within_hours === false ? t.outside : t.away) : null;
    }
    // Away with the widget set to hide: no launcher, unless a chat is under way.
    this.launcher.hidden = !!(this.away() && (this.settings || {}).offline === 'hide' && this.fresh() && !this.isOpen);
    this.notice.hidden = !text;
    this.notice.textContent = text || '';
    this.notice.className = 'notice' + (warn ? ' offline' : '');
    // the rating: asked once the chat has ended, thanked once given
    this.rateBox.hidden = !(this.closed && this.ready && (!this.rated || this.thanked));
    this.rateForm.hidden = !!this.rated;
    this.rateThanks.hidden = !this.rated;
    this.stars.forEach(function (b, i) { b.className = i < (self.score || self.rated || 0) ? 'on' : ''; });
    // Nobody online while the visitor looks: ask again now and then (an agent coming online is
    // otherwise only heard of once they take the conversation or write).
    if ((this.ws || this.polling) && this.ready && (this.isOpen || this.launcher.hidden) && !this.agentsOnline && !this.awayTimer) {
      this.awayTimer = setTimeout(function () { self.awayTimer = null; if (self.ws || self.polling) self.refreshState(); }, 15000);
    }

    this.renderAsk();
    this.transcriptButton.hidden = this.fresh() || !!this.opts.preview;
    var rows = Object.keys(this.msgs).map(Number).sort(function (a, b) { return a - b; })
      .map(function (seq) { return self.row(self.msgs[seq]); });
    var greeting = this.greetingRow();
    if (this.invitation && this.fresh()) rows.unshift(this.invitationRow());
    if (greeting) rows.unshift(greeting);
    this.outbox().forEach(function (o) { if (!o.via) rows.push(self.row(o, o.failed ? 'failed' : 'sending')); });
    this.uploading.forEach(function (u) { rows.push(self.row({ attachment: u }, 'uploading')); });
    var atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.replaceChildren.apply(this.log, rows);
    if (atBottom) this.scrollDown();
  };

  Widget.prototype.row = function (m, state) {
    var t = this.t, self = this;
    var mine = !m.sender || m.sender.role === 'visitor';
    var bubble = $('div', { class: 'bubble' });
    if (m.text) linkify(bubble, m.text);
    var a = m.attachment;
    if (a) {
      var label = '📄 ' + a.name + ' (' + humanSize(a.size) + ')';
      var url = a.key && (this.previews[a.key] || this.signedUrl(a));
      if (url && /^image\//.test(a.content_type)) {
        bubble.appendChild($('img', { src: url, alt: a.name, onerror: function () {
          if (!self.previews[a.key]) { delete self.urls[a.key].e; self.freshUrl(a.key); }
        } }));
      } else if (url) {
        bubble.appendChild($('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: label }));
      } else {
        bubble.appendChild(document.createTextNode(label));
      }
    }
    var status = '', read = mine && m.seq <= this.agentReadSeq;
    if (mine) status = state ? t[state] : read ? t.read : t.sent;
    if (state === 'failed') status += t.colon + (t[REASONS[m.failed]] || t.error);
    var when = new Date(m.created_at || m.at || Date.now());
    var who = !mine && m.sender && m.sender.role === 'agent' ? (this.sess().agents || {})[m.sender.id] : null;
    var meta = $('div', { class: 'meta', text: (mine ? '' : ((who && who.name) || t.agent) + ' · ') + when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) + (status ? ' · ' + status : '') });
    if (who && who.avatar_url) meta.insertBefore($('img', { class: 'avatar', src: who.avatar_url, alt: '' }), meta.firstChild);
    if (state === 'failed') meta.appendChild($('button', { type: 'button', text: t.retry, onclick: function () { self.retry(m); } }));
    return $('div', { class: 'msg ' + (mine ? 'mine' : 'theirs') + (state ? ' ' + state : ''), 'data-seq': m.seq || '',
      'data-state': state || (mine ? (read ? 'read' : 'sent') : 'received') }, [bubble, meta]);
  };

  Widget.prototype.scrollDown = function () { this.log.scrollTop = this.log.scrollHeight; };

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
      case 'identify': widget.identify(arg); break;
      case 'preview': if (widget.opts.preview) widget.preview(arg); break;
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
