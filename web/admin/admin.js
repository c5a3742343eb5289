/* Kefu site admin: the owner's page. Static files; talks to /v1/admin (chalicelib/admin.py). */
(function () {
  'use strict';

  var config = window.KEFU_ADMIN_CONFIG || {};
  window.KEFU_ADMIN_CONFIG = config;
  var apiUrl = (config.apiUrl || location.origin + '/api').replace(/\/$/, '');
  var widgetUrl = config.widgetUrl || new URL('../widget.js', location.href).href;
  var SESSION_KEY = 'kefu-admin:session';
  var DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

  var STRINGS = {
    en: {
      adminTitle: 'site admin', siteId: 'Site id', email: 'Email', password: 'Password', logIn: 'Log in', logOut: 'Log out',
      console: 'Console', tabWidget: 'Widget', tabSite: 'Site', tabAgents: 'Agents', tabIdentity: 'Identity verification',
      tabInstall: 'Install', look: 'Look', color: 'Colour', position: 'Position', right: 'Bottom right', left: 'Bottom left',
      launcherText: 'Launcher text (empty: an icon only)', teamName: 'Team name', teamAvatar: 'Team avatar (https URL)',
      greeting: 'Welcome greeting', replyTime: 'Expected reply time (minutes; empty: not shown)', preChat: 'Pre-chat form',
      fieldName: 'Name', fieldEmail: 'Email', fieldPhone: 'Phone', off: 'Not asked', optional: 'Optional', required: 'Required',
      availability: 'When nobody can answer', offline: 'Offline behaviour', offlineForm: 'Show a leave-a-message form',
      offlineHide: 'Hide the widget', hoursEnabled: 'Business hours', timeZone: 'Time zone',
      hoursHint: 'Ranges like 09:00-12:00, 13:00-18:00; empty: closed that day.', save: 'Save', saved: 'Saved.',
      preview: 'Live preview', previewAway: 'as seen when nobody is online', siteName: 'Site name',
      origins: 'Allowed origins (one per line)', language: 'Widget language', langAuto: "The visitor's browser",
      uploadTypes: 'Files visitors may send (MIME types, comma-separated)', uploadMax: 'Largest file (MB)',
      role: 'Role', status: 'Status', addAgent: 'Add an agent', passwordOptional: 'Password (empty: made up)',
      roleAgent: 'Agent', roleOwner: 'Owner', add: 'Add', avatarOptional: 'Avatar (https URL, optional)',
      avatar: 'Avatar', newAvatar: 'Avatar URL for {name} (https; empty: none):', enabled: 'Active', disabled: 'Disabled', online: 'online',
      disable: 'Disable', enable: 'Enable', resetPassword: 'Reset password', newPassword: 'New password for {name} (at least 8 characters):',
      madeUp: 'Agent added. Their password (shown once): {password}', passwordSet: 'Password changed; {name} is logged out everywhere.',
      identityIntro: 'When your visitors are logged in on your site, your server proves who they are, so agents see verified users and a visitor cannot pose as another. Sign with the site secret; never put it in a page.',
      reveal: 'Show', rotate: 'Rotate the secret', rotateConfirm: 'Rotate the secret? Identity tokens and hashes made with the old one stop working.',
      rotated: 'New secret made. Put it on your server now.', jwtTitle: 'Recommended: an identity token (JWT, HS256, expiring)',
      hashTitle: 'Or: a user hash (hex HMAC-SHA256 of the user id)', installIntro: 'Paste this before </body> on every page of your site:',
      copy: 'Copy', copied: 'Copied.', notOwner: 'Only the site\'s owners can use this page.', ended: 'Your session has ended: log in again.',
      autoInvitations: 'Automatic invitations',
      autoInvitationsHint: 'One per line: seconds | page pattern (* matches anything; empty: every page) | message. Each shows at most once per visit.',
      lang: '中文', you: 'you', days: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']
    },
    zh: {
      adminTitle: '站点管理', siteId: '站点 ID', email: '邮箱', password: '密码', logIn: '登录', logOut: '退出',
      console: '客服工作台', tabWidget: '聊天窗口', tabSite: '站点', tabAgents: '客服', tabIdentity: '身份验证', tabInstall: '安装',
      look: '外观', color: '主题色', position: '位置', right: '右下角', left: '左下角', launcherText: '按钮文字（留空：仅图标）',
      teamName: '团队名称', teamAvatar: '团队头像（https 地址）', greeting: '欢迎语', replyTime: '预计回复时间（分钟；留空：不显示）',
      preChat: '咨询前表单', fieldName: '称呼', fieldEmail: '邮箱', fieldPhone: '电话', off: '不询问', optional: '选填', required: '必填',
      availability: '无人应答时', offline: '离线时', offlineForm: '显示留言表单', offlineHide: '隐藏聊天窗口',
      hoursEnabled: '工作时间', timeZone: '时区', hoursHint: '格式如 09:00-12:00, 13:00-18:00；留空：当天休息。',
      save: '保存', saved: '已保存。', preview: '实时预览', previewAway: '无客服在线时的样子', siteName: '站点名称',
      origins: '允许的来源（每行一个）', language: '聊天窗口语言', langAuto: '跟随访客浏览器',
      uploadTypes: '访客可发送的文件（MIME 类型，逗号分隔）', uploadMax: '文件大小上限（MB）',
      role: '角色', status: '状态', addAgent: '添加客服', passwordOptional: '密码（留空：自动生成）',
      roleAgent: '客服', roleOwner: '管理员', add: '添加', avatarOptional: '头像（https 地址，选填）',
      avatar: '头像', newAvatar: '{name} 的头像地址（https；留空：不显示）：', enabled: '正常', disabled: '已停用', online: '在线',
      disable: '停用', enable: '启用', resetPassword: '重置密码', newPassword: '为 {name} 设置新密码（至少 8 位）：',
      madeUp: '已添加客服。初始密码（仅显示一次）：{password}', passwordSet: '密码已修改；{name} 已在所有设备上退出。',
      identityIntro: '访客在您的网站登录后，由您的服务器证明其身份：客服可以看到已验证的用户，访客也无法冒充他人。请用站点密钥签名，切勿把密钥放到网页中。',
      reveal: '显示', rotate: '更换密钥', rotateConfirm: '确定更换密钥？用旧密钥生成的令牌和哈希将失效。',
      rotated: '已生成新密钥，请立即更新到您的服务器。', jwtTitle: '推荐：身份令牌（JWT，HS256，会过期）',
      hashTitle: '或：用户哈希（用户 ID 的 HMAC-SHA256，十六进制）', installIntro: '把下面的代码粘贴到网站每个页面的 </body> 之前：',
      copy: '复制', copied: '已复制。', notOwner: '只有站点管理员可以使用此页面。', ended: '登录已失效，请重新登录。',
      autoInvitations: '自动邀请', autoInvitationsHint: '每行一条：秒数 | 页面规则（* 匹配任意内容；留空：所有页面）| 邀请语。每次访问最多显示一次。',
      lang: 'English', you: '您', days: ['周一', '周二', '周三', '周四', '周五', '周六', '周日']
    }
  };
  var ERRORS = {
    en: { invalid_origin: 'An origin is scheme://host[:port], e.g. https://shop.example.', greeting_too_long: 'The greeting is limited to 300 characters.',
      invalid_business_hours: 'Business hours: check the time zone and the ranges (HH:MM-HH:MM, in order).', invalid_color: 'Pick a colour.',
      invalid_team_avatar_url: 'The avatar must be an https:// URL.', invalid_credentials: 'Wrong site, email or password.',
      agent_exists: 'An agent with that email exists.', weak_password: 'Passwords need at least 8 characters.', last_owner: 'A site keeps at least one owner.',
      invalid_email: 'Not an email address.', invalid_upload_types: 'File types look like image/png or image/*.', invalid_upload_max_bytes: 'Between 1 KB and 100 MB.',
      invalid_auto_invitations: 'Automatic invitations: at most 5 lines of "seconds (0-3600) | pattern | message (up to 200 characters)".' },
    zh: { invalid_origin: '来源格式为 scheme://host[:port]，例如 https://shop.example。', greeting_too_long: '欢迎语最多 300 字。',
      invalid_business_hours: '工作时间：请检查时区和时间段（HH:MM-HH:MM，按顺序）。', invalid_color: '请选择颜色。',
      invalid_team_avatar_url: '头像必须是 https:// 地址。', invalid_credentials: '站点、邮箱或密码错误。',
      agent_exists: '该邮箱的客服已存在。', weak_password: '密码至少 8 位。', last_owner: '站点至少保留一位管理员。',
      invalid_email: '邮箱地址无效。', invalid_upload_types: '文件类型形如 image/png 或 image/*。', invalid_upload_max_bytes: '大小须在 1 KB 到 100 MB 之间。',
      invalid_auto_invitations: '自动邀请：最多 5 行，格式为“秒数（0-3600）| 页面规则 | 邀请语（最多 200 字）”。' }
  };

  var lang = localStorage.getItem('kefu-admin:lang') || ((navigator.language || '').toLowerCase().indexOf('zh') === 0 ? 'zh' : 'en');
  var t = STRINGS[lang];
  var session = null, site = null, agents = [], previewFrame = null;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), attrs[k]);
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function say(key, values) {
    return (t[key] || key).replace(/\{(\w+)\}/g, function (_, k) { return values[k]; });
  }

  function errorText(err) {
    return (ERRORS[lang] || {})[err.code] || err.message || err.code || 'error';
  }

  function translate() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    document.querySelectorAll('[data-t]').forEach(function (node) { node.textContent = t[node.getAttribute('data-t')]; });
    document.querySelectorAll('[data-t-placeholder]').forEach(function (node) { node.placeholder = t[node.getAttribute('data-t-placeholder')]; });
    document.querySelectorAll('[data-lang-switch]').forEach(function (node) { node.textContent = t.lang; });
    document.querySelectorAll('[data-day]').forEach(function (node) { node.textContent = t.days[node.getAttribute('data-day')]; });
    ['pre_name', 'pre_email', 'pre_phone'].forEach(function (name) {
      var select = document.querySelector('select[name=' + name + ']'), value = select.value;
      select.replaceChildren.apply(select, ['off', 'optional', 'required'].map(function (m) { return el('option', { value: m, text: t[m] }); }));
      if (value) select.value = value;
    });
    if (site) { renderAgents(); renderIdentity(); }
  }

  document.querySelectorAll('[data-lang-switch]').forEach(function (node) {
    node.addEventListener('click', function () {
      lang = lang === 'zh' ? 'en' : 'zh';
      t = STRINGS[lang];
      localStorage.setItem('kefu-admin:lang', lang);
      translate();
    });
  });

  // ---- the API ----------------------------------------------------------------------------

  function api(method, path, body) {
    var headers = { 'Content-Type': 'application/json' };
    if (session) headers.Authorization = 'Bearer ' + session.token;
    return fetch(apiUrl + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) {
          if (r.ok) return j;
          if (['token_expired', 'token_invalid', 'token_revoked', 'agent_disabled', 'owner_only'].indexOf(j.code) >= 0 && session) {
            showLogin(j.code === 'owner_only' ? t.notOwner : t.ended);
          }
          throw j;
        });
      });
  }

  // ---- login ------------------------------------------------------------------------------

  function showLogin(message) {
    session = null;
    sessionStorage.removeItem(SESSION_KEY);
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
  }

  $('login-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var form = e.target;
    $('login-error').textContent = '';
    api('POST', '/v1/agent/session', { site_id: form.site_id.value.trim(), email: form.email.value.trim(), password: form.password.value })
      .then(function (s) {
        if (s.role !== 'owner') { $('login-error').textContent = t.notOwner; return; }
        form.password.value = '';
        sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
        start(s);
      }, function (err) { $('login-error').textContent = errorText(err); });
  });

  $('logout').addEventListener('click', function () { showLogin(); });

  function start(s) {
    session = s;
    $('login').hidden = true;
    $('app').hidden = false;
    $('me-name').textContent = s.name;
    loadSite();
    loadAgents();
    loadSnippet();
  }

  // ---- tabs -------------------------------------------------------------------------------

  document.querySelectorAll('.tabs button').forEach(function (button) {
    button.addEventListener('click', function () {
      document.querySelectorAll('.tabs button').forEach(function (b) { b.classList.toggle('active', b === button); });
      document.querySelectorAll('[data-panel]').forEach(function (panel) {
        panel.hidden = panel.getAttribute('data-panel') !== button.getAttribute('data-tab');
      });
    });
  });

  function notice(text) {
    var node = $('notice');
    node.textContent = text;
    node.hidden = !text;
    clearTimeout(notice.timer);
    if (text) notice.timer = setTimeout(function () { node.hidden = true; }, 8000);
  }

  // ---- site and widget settings ---------------------------------------------------------------

  function loadSite() {
    return api('GET', '/v1/admin/site').then(function (s) {
      site = s;
      $('site-name').textContent = s.name + ' (' + s.site_id + ')';
      fillWidgetForm(s.widget);
      fillSiteForm(s);
      renderIdentity();
      updatePreview();
    });
  }

  function fillWidgetForm(w) {
    var f = $('widget-form');
    f.color.value = w.color;
    f.position.value = w.position;
    f.launcher_text.value = w.launcher_text;
    f.team_name.value = w.team_name;
    f.team_avatar_url.value = w.team_avatar_url;
    f.greeting.value = w.greeting;
    f.expected_reply_minutes.value = w.expected_reply_minutes || '';
    f.pre_name.value = w.pre_chat_form.name;
    f.pre_email.value = w.pre_chat_form.email;
    f.pre_phone.value = w.pre_chat_form.phone;
    f.offline.value = w.offline;
    f.auto_invitations.value = (w.auto_invitations || []).map(function (r) {
      return r.delay_seconds + ' | ' + r.url_pattern + ' | ' + r.message;
    }).join('\n');
    f.hours_enabled.checked = w.business_hours.enabled;
    f.time_zone.value = w.business_hours.time_zone;
    var hours = $('hours');
    hours.replaceChildren.apply(hours, DAYS.map(function (day, i) {
      var ranges = (w.business_hours.days[day] || []).map(function (r) { return r.join('-'); }).join(', ');
      return el('label', {}, [el('span', { 'data-day': i, text: t.days[i] }),
        el('input', { name: 'day_' + day, value: ranges, placeholder: '09:00-18:00', 'aria-label': t.days[i] })]);
    }));
  }

  // The widget part of the form as the API takes it (ranges parsed; the API checks everything).
  function widgetSettings() {
    var f = $('widget-form'), days = {};
    DAYS.forEach(function (day) {
      var text = f['day_' + day] ? f['day_' + day].value.trim() : '';
      if (!text) return;
      days[day] = text.split(',').map(function (range) { return range.trim().split('-').map(function (x) { return x.trim(); }); });
    });
    return {
      color: f.color.value, position: f.position.value, launcher_text: f.launcher_text.value,
      team_name: f.team_name.value, team_avatar_url: f.team_avatar_url.value.trim(), greeting: f.greeting.value,
      expected_reply_minutes: f.expected_reply_minutes.value ? Number(f.expected_reply_minutes.value) : null,
      pre_chat_form: { name: f.pre_name.value, email: f.pre_email.value, phone: f.pre_phone.value },
      offline: f.offline.value,
      auto_invitations: autoInvitations(f.auto_invitations.value),
      business_hours: { enabled: f.hours_enabled.checked, time_zone: f.time_zone.value.trim(), days: days }
    };
  }

  // "seconds | pattern | message" lines; a line that does not parse is sent as it is, for the API to refuse.
  function autoInvitations(text) {
    return text.split('\n').filter(function (line) { return line.trim(); }).map(function (line) {
      var parts = line.split('|');
      if (parts.length < 3) return line;
      var seconds = parts[0].trim();
      return { delay_seconds: /^\d+$/.test(seconds) ? Number(seconds) : seconds, url_pattern: parts[1].trim(),
        message: parts.slice(2).join('|').trim() };
    });
  }

  $('widget-form').addEventListener('input', updatePreview);
  $('widget-form').addEventListener('change', updatePreview);
  $('preview-away').addEventListener('change', updatePreview);
  $('widget-form').addEventListener('submit', function (e) {
    e.preventDefault();
    $('widget-error').textContent = '';
    api('PATCH', '/v1/admin/site', { widget: widgetSettings() }).then(function (s) {
      site = s;
      fillWidgetForm(s.widget);
      notice(t.saved);
    }, function (err) { $('widget-error').textContent = errorText(err); });
  });

  function fillSiteForm(s) {
    var f = $('site-form');
    f.name.value = s.name;
    f.allowed_origins.value = s.allowed_origins.join('\n');
    f.default_language.value = s.default_language;
    f.upload_types.value = s.upload.allowed_types.join(', ');
    f.upload_mb.value = Math.round(s.upload.max_bytes / 1048576 * 1000) / 1000;
  }

  $('site-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var f = e.target;
    $('site-error').textContent = '';
    api('PATCH', '/v1/admin/site', {
      name: f.name.value.trim(),
      allowed_origins: f.allowed_origins.value.split('\n').map(function (o) { return o.trim(); }).filter(Boolean),
      default_language: f.default_language.value,
      upload: { allowed_types: f.upload_types.value.split(',').map(function (x) { return x.trim(); }).filter(Boolean),
        max_bytes: Math.round(Number(f.upload_mb.value) * 1048576) }
    }).then(function (s) {
      site = s;
      fillSiteForm(s);
      $('site-name').textContent = s.name + ' (' + s.site_id + ')';
      updatePreview();
      notice(t.saved);
    }, function (err) { $('site-error').textContent = errorText(err); });
  });

  // ---- the live preview: the real widget in an iframe -----------------------------------------------

  window.KefuAdmin = {
    previewSettings: function () { return site ? currentPreview() : null; },
    previewReady: function () { previewFrame = $('preview').contentWindow; updatePreview(); }
  };

  function currentPreview() {
    return Object.assign(widgetSettings(), { default_language: site.default_language, away: $('preview-away').checked });
  }

  function updatePreview() {
    if (!site || !previewFrame || !previewFrame.Kefu) return;
    previewFrame.Kefu('preview', currentPreview());
  }

  // ---- agents -----------------------------------------------------------------------------

  function loadAgents() {
    return api('GET', '/v1/admin/agents').then(function (r) { agents = r.agents; renderAgents(); });
  }

  // Who is online changes by itself: the list is read again while it is on screen.
  setInterval(function () {
    if (session && !document.querySelector('[data-panel=agents]').hidden && !document.hidden) loadAgents().catch(function () {});
  }, 5000);

  function patchAgent(agent, change, done) {
    return api('PATCH', '/v1/admin/agents/' + encodeURIComponent(agent.agent_id), change).then(function (updated) {
      if (done) notice(done);
      return loadAgents().then(function () { return updated; });
    }, function (err) { $('agent-error').textContent = errorText(err); });
  }

  function renderAgents() {
    var body = $('agents');
    body.replaceChildren.apply(body, agents.map(function (a) {
      var role = el('select', { 'aria-label': t.role, onchange: function () { patchAgent(a, { role: role.value }); } },
        ['agent', 'owner'].map(function (r) { return el('option', { value: r, text: r === 'owner' ? t.roleOwner : t.roleAgent }); }));
      role.value = a.role;
      var me = a.agent_id === session.agent_id;
      return el('tr', { 'data-agent': a.email, class: a.disabled ? 'off' : '' }, [
        el('td', {}, (a.avatar_url ? [el('img', { class: 'avatar', src: a.avatar_url, alt: '' })] : [])
          .concat([document.createTextNode(a.name + (me ? ' (' + t.you + ')' : ''))])), el('td', { text: a.email }), el('td', {}, [role]),
        el('td', { class: 'state', text: (a.disabled ? t.disabled : t.enabled) + (a.online ? ' · ' + t.online : '') }),
        el('td', {}, [
          el('button', { type: 'button', class: a.disabled ? '' : 'danger', 'data-action': a.disabled ? 'enable' : 'disable',
            text: a.disabled ? t.enable : t.disable, onclick: function () { patchAgent(a, { disabled: !a.disabled }); } }),
          el('button', { type: 'button', 'data-action': 'password', text: t.resetPassword, onclick: function () {
            var password = prompt(say('newPassword', { name: a.name }));
            if (password) patchAgent(a, { password: password }, say('passwordSet', { name: a.name }));
          } }),
          el('button', { type: 'button', 'data-action': 'avatar', text: t.avatar, onclick: function () {
            var url = prompt(say('newAvatar', { name: a.name }), a.avatar_url || '');
            if (url !== null) patchAgent(a, { avatar_url: url.trim() });
          } })
        ])
      ]);
    }));
  }

  $('agent-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var f = e.target, body = { name: f.name.value.trim(), email: f.email.value.trim(), role: f.role.value };
    if (f.password.value) body.password = f.password.value;
    if (f.avatar_url.value.trim()) body.avatar_url = f.avatar_url.value.trim();
    $('agent-error').textContent = '';
    api('POST', '/v1/admin/agents', body).then(function (created) {
      f.reset();
      if (created.password) notice(say('madeUp', { password: created.password }));
      loadAgents();
    }, function (err) { $('agent-error').textContent = errorText(err); });
  });

  // ---- identity verification ----------------------------------------------------------------------

  var secret = null;

  function renderIdentity() {
    var key = secret || 'YOUR_SITE_SECRET';
    $('secret').textContent = secret || '••••••••••••••••••••••••••••••••';
    $('jwt-sample').textContent = [
      '# Python (PyJWT), on your server, for the logged-in user:',
      'import jwt, time',
      'token = jwt.encode({"sub": user.id, "name": user.name, "exp": int(time.time()) + 3600},',
      '                   "' + key + '", algorithm="HS256")',
      '',
      '// Node (jsonwebtoken):',
      "const token = jwt.sign({ sub: user.id, name: user.name }, '" + key + "', { algorithm: 'HS256', expiresIn: '1h' });",
      '',
      '// then, in the page:',
      "Kefu('boot', { siteId: '" + site.site_id + "', identityToken: token });"
    ].join('\n');
    $('hash-sample').textContent = [
      '# Python:',
      'import hmac, hashlib',
      'user_hash = hmac.new(b"' + key + '", user.id.encode(), hashlib.sha256).hexdigest()',
      '',
      "// Node: require('crypto').createHmac('sha256', '" + key + "').update(user.id).digest('hex')",
      '',
      "Kefu('boot', { siteId: '" + site.site_id + "', userId: user.id, userHash: user_hash });"
    ].join('\n');
  }

  $('reveal').addEventListener('click', function () {
    api('GET', '/v1/admin/site/secret').then(function (r) { secret = r.secret; renderIdentity(); });
  });
  $('rotate').addEventListener('click', function () {
    if (!confirm(t.rotateConfirm)) return;
    api('POST', '/v1/admin/site/secret').then(function (r) { secret = r.secret; renderIdentity(); notice(t.rotated); });
  });

  // ---- the embed snippet --------------------------------------------------------------------

  function loadSnippet() {
    api('GET', '/v1/admin/snippet?script_url=' + encodeURIComponent(widgetUrl)).then(function (r) {
      $('snippet').textContent = r.snippet;
    });
  }

  $('copy').addEventListener('click', function () {
    var text = $('snippet').textContent;
    var done = function () { $('copied').textContent = t.copied; setTimeout(function () { $('copied').textContent = ''; }, 4000); };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
    function fallback() {  // plain http outside localhost has no clipboard API
      var area = el('textarea', {});
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand('copy');
      area.remove();
      done();
    }
  });

  translate();
  var saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(SESSION_KEY)); } catch (e) {}
  if (saved && saved.expires_at * 1000 > Date.now()) start(saved); else showLogin();
})();
