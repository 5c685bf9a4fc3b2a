<!DOCTYPE html>
<html lang="{{lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>{{t['html_title']}} · {{site}}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/portal.css">
<script type="application/json" id="portal-data">{{!data_json}}</script>
<script src="/static/portal.js" defer></script>
</head>
<body class="{{'signed-in' if signed_in else 'signed-out'}}">
<header class="topbar">
  <div class="brand">
    <svg class="logo" viewBox="0 0 32 32" aria-hidden="true"><rect x="2" y="2" width="28" height="28" rx="6"/><path d="M7 20l6-7 5 5 7-9" fill="none" stroke="#fff" stroke-width="3" stroke-linecap="round" stroke-linejoin="round"/></svg>
    <div>
      <div class="product">{{t['product']}}</div>
      <div class="site">{{t['site']}}: {{site}}</div>
    </div>
  </div>
  % if signed_in:
  <div class="version">{{t['version']}} <strong id="current-version">{{status['current_version']}}</strong></div>
  <button type="button" id="badge" class="badge" disabled {{'' if status['pending_update'] else 'hidden'}}>
    <span class="dot" aria-hidden="true"></span><span id="badge-text">{{t['badge'].format(v=status['pending_version'] or '')}}</span>
  </button>
  % end
  <nav class="tools">
    <a class="lang" href="?lang={{t['other_lang_code']}}" hreflang="{{t['other_lang_code']}}">{{t['other_lang']}}</a>
    % if signed_in:
    <button type="button" id="logout" class="quiet" disabled>{{t['logout']}}</button>
    % end
  </nav>
</header>
<main>
% if not signed_in:
  <section class="card login" aria-labelledby="login-title">
    <h1 id="login-title">{{t['login_title']}}</h1>
    <p class="hint">{{t['login_hint']}}</p>
    % if not pin_set:
    <p class="error" role="alert">{{t['no_pin']}}</p>
    % end
    <form id="login-form" method="post" autocomplete="off">
      <label for="pin">{{t['pin']}}</label>
      <input id="pin" name="pin" type="password" inputmode="numeric" autocomplete="current-password" maxlength="32" required autofocus>
      <div class="keypad" aria-hidden="true">
        % for key in ['1', '2', '3', '4', '5', '6', '7', '8', '9']:
        <button type="button" class="key" data-key="{{key}}" tabindex="-1">{{key}}</button>
        % end
        <button type="button" class="key key-clear" data-key="clear" tabindex="-1">{{t['clear']}}</button>
        <button type="button" class="key" data-key="0" tabindex="-1">0</button>
        <button type="button" class="key key-back" data-key="back" tabindex="-1">⌫</button>
      </div>
      <p id="login-error" class="error" role="alert" hidden></p>
      <button type="submit" id="login-button" class="primary wide" disabled>{{t['login']}}</button>
    </form>
  </section>
% else:
  <section id="status-card" class="card status" aria-live="polite">
    <div class="installed">
      <span class="label">{{t['installed']}}</span>
      <span class="big" id="installed-version">v{{status['current_version']}}</span>
    </div>
    <div id="idle-none" {{'hidden' if status['pending_update'] else ''}}>
      <h1 class="ok"><span class="icon" aria-hidden="true">✓</span> {{t['no_update']}}</h1>
      <p class="hint">{{t['no_update_hint']}}</p>
    </div>
    <div id="idle-pending" {{'' if status['pending_update'] else 'hidden'}}>
      <h1 class="attention" id="pending-title">{{t['update_ready'].format(v=status['pending_version'] or '')}}</h1>
      <p class="hint">{{t['update_ready_hint']}}</p>
      <button type="button" id="review" class="primary wide" disabled>{{t['review']}}</button>
    </div>
    <p id="last-result" class="last-result" hidden></p>
  </section>

  <section id="done-card" class="card done" hidden aria-live="assertive">
    <h1 class="ok"><span class="icon" aria-hidden="true">✓</span> {{t['done_title']}}</h1>
    <p class="big-msg">{{t['done_msg']}}</p>
    <p class="hint" id="reload-msg"></p>
  </section>

  <section id="progress-card" class="card progress" hidden aria-live="polite">
    <h1 id="progress-title"></h1>
    <p class="hint" id="progress-hint">{{t['progress_hint']}}</p>
    <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0" id="bar">
      <div class="fill" id="bar-fill"></div>
      <span class="pct" id="bar-pct">0%</span>
    </div>
    <p class="step-msg" id="step-msg">{{t['starting']}}</p>
    <ol class="steps" id="steps">
      % for name in ['verify', 'backup', 'patch', 'migrate']:
      <li data-step="{{name}}"><span class="mark" aria-hidden="true"></span>{{t['step_' + name]}}</li>
      % end
    </ol>
  </section>


  <section id="failed-card" class="card failed" hidden role="alert">
    <h1 class="bad"><span class="icon" aria-hidden="true">✕</span> {{t['failed_title']}}</h1>
    <p class="reason" id="failed-reason"></p>
    <p class="safe" id="failed-old"></p>
    <p class="hint">{{t['kept_pending']}}</p>
    <details><summary>{{t['details']}}</summary><pre id="failed-details"></pre></details>
    <button type="button" id="failed-close" class="secondary wide">{{t['close']}}</button>
  </section>

  <p id="connection" class="connection" hidden>{{t['reconnecting']}}</p>

  <dialog id="update-dialog" aria-labelledby="dialog-title">
    <form method="dialog">
      <h2 id="dialog-title">{{t['dialog_title'].format(v=status['pending_version'] or '')}}</h2>
      <dl class="facts">
        <dt>{{t['received']}}</dt><dd id="dialog-received" data-time="{{status['received_at'] or ''}}">{{status['received_at'] or ''}}</dd>
      </dl>
      <h3>{{t['notes']}}</h3>
      <div class="notes" id="dialog-notes">{{status['notes'] or t['no_notes']}}</div>
      <p class="warning">{{t['apply_warning']}}</p>
      <p id="dialog-error" class="error" role="alert" hidden></p>
      <div class="actions">
        <button type="button" id="later" class="secondary">{{t['later']}}</button>
        <button type="button" id="apply" class="primary">{{t['apply']}}</button>
      </div>
    </form>
  </dialog>
% end
</main>
</body>
</html>
