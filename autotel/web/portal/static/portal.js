/* The operator page: sign-in, update status, confirmation and live progress.
 *
 * Plain JavaScript, no build step, no network beyond the portal itself (plants
 * have no internet). Words and the first status come from the JSON block the
 * server renders into the page; progress comes from /api/update/progress (SSE).
 */
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("portal-data").textContent);
  const T = data.texts;
  const STEPS = ["verify", "backup", "patch", "migrate"];  // the stream's steps before `done`
  const RELOAD_AFTER_S = 10;
  const STATUS_EVERY_MS = 30000;
  const $ = (id) => document.getElementById(id);
  const fmt = (text, values) =>
    text.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole));

  function formatTime(iso) {
    if (!iso) return "";
    const moment = new Date(iso);
    if (Number.isNaN(moment.getTime())) return iso;
    return moment.toLocaleString(data.lang === "uk" ? "uk-UA" : "en-GB",
      { dateStyle: "long", timeStyle: "short" });
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (data.csrf) headers["X-CSRF-Token"] = data.csrf;
    const response = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let payload = {};
    try { payload = await response.json(); } catch (e) { payload = {}; }
    return { status: response.status, headers: response.headers, body: payload };
  }

  /* ---- sign-in ------------------------------------------------------------ */

  function setupLogin() {
    const pin = $("pin");
    const error = $("login-error");
    const button = $("login-button");
    const showError = (text) => { error.textContent = text; error.hidden = false; };
    document.querySelectorAll(".key").forEach((key) => key.addEventListener("click", () => {
      const value = key.dataset.key;
      if (value === "clear") pin.value = "";
      else if (value === "back") pin.value = pin.value.slice(0, -1);
      else if (pin.value.length < 32) pin.value += value;
      error.hidden = true;
    }));
    $("login-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!pin.value) { pin.focus(); return; }
      button.disabled = true;
      error.hidden = true;
      try {
        const answer = await api("POST", "/api/login", { pin: pin.value });
        if (answer.status === 200) { window.location.reload(); return; }
        if (answer.status === 429) {
          const seconds = Number(answer.headers.get("Retry-After") || "300");
          showError(fmt(T.locked, { min: Math.max(1, Math.ceil(seconds / 60)) }));
        } else {
          showError(T.wrong_pin);
        }
      } catch (e) {
        showError(T.network_error);
      } finally {
        button.disabled = false;
      }
      pin.value = "";
    });
  }

  /* ---- status and dialog --------------------------------------------------- */

  function renderStatus(status) {
    data.status = status;
    const pending = Boolean(status.pending_update);
    $("current-version").textContent = status.current_version;
    $("installed-version").textContent = "v" + status.current_version;
    $("badge").hidden = !pending || active !== null;
    $("idle-none").hidden = pending;
    $("idle-pending").hidden = !pending;
    if (pending) {
      $("badge-text").textContent = fmt(T.badge, { v: status.pending_version });
      $("pending-title").textContent = fmt(T.update_ready, { v: status.pending_version });
      $("dialog-title").textContent = fmt(T.dialog_title, { v: status.pending_version });
      $("dialog-received").textContent = formatTime(status.received_at);
      $("dialog-notes").textContent = status.notes || T.no_notes;
    }
  }

  async function refreshStatus() {
    try {
      const answer = await api("GET", "/api/update/status");
      if (answer.status === 401) { window.location.reload(); return null; }
      if (answer.status === 200) { renderStatus(answer.body); return answer.body; }
    } catch (e) { /* the portal is restarting; the next refresh will tell */ }
    return null;
  }

  function show(...views) {
    for (const name of ["status", "progress", "done", "failed"]) {
      $(name + "-card").hidden = !views.includes(name);
    }
  }

  function openDialog() {
    if (!data.status || !data.status.pending_update) return;
    $("dialog-error").hidden = true;
    $("update-dialog").showModal();
  }

  async function confirmApply() {
    const button = $("apply");
    const error = $("dialog-error");
    button.disabled = true;
    error.hidden = true;
    try {
      const answer = await api("POST", "/api/update/apply", { sha256: data.status.sha256 });
      if (answer.status === 202) {
        $("update-dialog").close();
        startProgress(answer.body.job, true);
        return;
      }
      if (answer.status === 401) { window.location.reload(); return; }
      error.textContent = fmt(T.apply_refused, { error: answer.body.error || answer.status });
      error.hidden = false;
      refreshStatus();
    } catch (e) {
      error.textContent = T.network_error;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  /* ---- progress -------------------------------------------------------------- */

  let active = null;            // the apply job on screen: {job, live, conn (connections then), pct}
  let connections = 0;          // SSE connections opened so far
  const finished = new Set();   // jobs whose end is already shown

  function startProgress(job, live) {
    active = { job, live, conn: connections, pct: 0 };
    $("badge").hidden = true;
    const version = data.status && data.status.pending_version;
    $("progress-title").textContent = fmt(T.progress_title, { v: version || "" });
    $("step-msg").textContent = T.starting;
    $("progress-hint").hidden = false;
    setBar(0);
    markSteps(null);
    show("progress");
  }

  function setBar(pct) {
    const value = Math.max(active.pct, Math.min(100, Math.round(Number(pct) || 0)));
    active.pct = value;
    $("bar-fill").style.width = value + "%";
    $("bar-pct").textContent = value + "%";
    $("bar").setAttribute("aria-valuenow", String(value));
  }

  function markSteps(current) {
    const index = current === "done" ? STEPS.length : STEPS.indexOf(current);
    document.querySelectorAll("#steps li").forEach((item, i) => {
      item.className = index < 0 ? "" : i < index ? "done" : i === index ? "active" : "";
    });
  }

  function messageOf(event) {
    return (data.lang === "en" && event.msg_en) ? event.msg_en : (event.msg || "");
  }

  function onEvent(event) {
    if (event.kind === "receive" && event.step === "done") { refreshStatus(); return; }
    if (event.kind !== "apply" || finished.has(event.job)) return;
    const ends = event.step === "done" || event.step === "failed";
    const watching = active !== null && active.job === event.job;
    if (!event.replay && watching) active.live = true;
    // A replayed end is news only to a page that watched this job on an earlier connection.
    const seenBefore = watching && (active.live || (active.conn > 0 && connections > active.conn));
    if (ends && event.replay && !seenBefore) {
      showLastResult(event);
      return;
    }
    if (!watching) startProgress(event.job, !event.replay);
    if (event.step === "done") { finishDone(event); return; }
    if (event.step === "failed") { finishFailed(event); return; }
    setBar(event.pct);
    if (STEPS.includes(event.step)) markSteps(event.step);
    $("step-msg").textContent = messageOf(event) || T.starting;
  }

  function showLastResult(event) {
    finished.add(event.job);
    if (active && active.job === event.job) { active = null; show("status"); }
    const note = $("last-result");
    note.textContent = event.step === "done"
      ? fmt(T.last_done, { time: formatTime(event.time) })
      : fmt(T.last_failed, { time: formatTime(event.time), reason: reasonOf(event) });
    note.className = "last-result " + (event.step === "done" ? "ok" : "bad");
    note.hidden = false;
    refreshStatus();
  }

  // The plain words for a failure go by the step that failed, except where the error's
  // class says more: a full disk, or a `verify` that failed for another reason than the
  // package itself (its words would blame the administrator's package).
  const PACKAGE_ERRORS = ["SignatureError", "PackageError", "NotNewerError", "VerificationError"];

  function reasonOf(event) {
    if (event.error_type === "DiskSpaceError") return T.reason_disk;
    if (event.failed_step === "verify" && !PACKAGE_ERRORS.includes(event.error_type)) {
      return T.reason_other;
    }
    return T["reason_" + event.failed_step] || T.reason_other;
  }

  function finishDone(event) {
    finished.add(event.job);
    setBar(100);
    markSteps("done");
    $("step-msg").textContent = messageOf(event);
    $("progress-hint").hidden = true;
    active = null;
    show("progress", "done");  // the full bar stays in view under the good news
    let left = RELOAD_AFTER_S;
    const tick = () => {
      $("reload-msg").textContent = fmt(T.reload_in, { s: left });
      if (left <= 0) { reloadWhenBack(); return; }
      left -= 1;
      window.setTimeout(tick, 1000);
    };
    tick();
  }

  async function reloadWhenBack() {
    // The services restart after an update: reload only once the portal answers again.
    try {
      const answer = await fetch("/api/update/status", { credentials: "same-origin", cache: "no-store" });
      if (answer.status < 500) { window.location.reload(); return; }
    } catch (e) { /* not back yet */ }
    window.setTimeout(reloadWhenBack, 2000);
  }

  async function finishFailed(event) {
    finished.add(event.job);
    active = null;
    $("failed-reason").textContent = reasonOf(event);
    $("failed-details").textContent = messageOf(event);
    const status = (await refreshStatus()) || data.status;
    $("failed-old").textContent = fmt(T.old_running, { v: status.current_version });
    show("failed");
  }

  function connect() {
    const source = new EventSource("/api/update/progress");
    source.onopen = () => { connections += 1; $("connection").hidden = true; };
    source.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      onEvent(event);
    };
    source.onerror = () => {
      $("connection").hidden = false;
      if (source.readyState === EventSource.CLOSED) {   // refused (401/503): not retried by the browser
        source.close();
        window.setTimeout(async () => { await refreshStatus(); connect(); }, 3000);
      }
    };
  }

  function setupSignedIn() {
    $("badge").addEventListener("click", openDialog);
    $("review").addEventListener("click", openDialog);
    $("later").addEventListener("click", () => $("update-dialog").close());
    $("apply").addEventListener("click", confirmApply);
    $("failed-close").addEventListener("click", () => { show("status"); refreshStatus(); });
    $("logout").addEventListener("click", async () => {
      try { await api("POST", "/api/logout"); } finally { window.location.reload(); }
    });
    renderStatus(data.status);
    if (data.status.apply_job) startProgress(data.status.apply_job, false);
    connect();
    window.setInterval(() => { if (active === null) refreshStatus(); }, STATUS_EVERY_MS);
  }

  if (data.signedIn) setupSignedIn(); else setupLogin();
  // The page renders these disabled: a tap before this script has wired them would be
  // lost, and an Enter in the PIN field would submit the form natively.
  for (const id of ["badge", "review", "logout", "login-button"]) {
    const button = $(id);
    if (button) button.disabled = false;
  }
}());
