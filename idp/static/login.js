// The authorize page: follow one login request over a WebSocket (push, never
// polling), renew the code when it expires, and go on once the phone decides.
(function () {
  "use strict";
  var root = document.getElementById("qr-login");
  if (!root) { return; }
  var state = JSON.parse(root.getAttribute("data-state"));
  var statusEl = document.getElementById("status");
  var countdownEl = document.getElementById("countdown");
  var qrEl = document.getElementById("qr");
  var qrTextEl = document.getElementById("qr-text");
  var refreshButton = document.getElementById("refresh");
  var notYouButton = document.getElementById("not-you");
  var cantScan = document.getElementById("cant-scan");
  var shortCodeEl = document.getElementById("short-code");
  var shortCodeNote = document.getElementById("short-code-note");
  var matchEl = document.getElementById("match-number");
  var socket = null;
  var finished = false;
  var lastStatus = null;
  var retries = 0;
  // Reconnect backoff: quick at first, never more than RETRY_CAP apart, so that a page
  // is back within seconds of a restarted server (a deploy), and jittered, so that the
  // pages of a restarted server do not all come back in the same instant.
  var RETRY_FIRST = 500;
  var RETRY_CAP = 5000;
  // A refusal the person must read (the phone was not on this computer's network) stays
  // this long before the page goes on, as after any denial, back to the site.
  var REFUSAL_PAUSE = 6000;
  var deadline = Date.now() + state.expires_in * 1000;

  var text = state.messages;
  var MESSAGES = {
    pending: [text.pending, ""],
    scanned: [text.scanned, "scanned"],
    approved: [text.approved, "done"],
    denied: [text.denied, "bad"],
    expired: [text.expired, "bad"],
    completed: [text.completed, "bad"]
  };
  // Why a sign-in was denied, when the server says (the socket's "reason").
  var DENIALS = {
    different_network: text.denied_different_network,
    wrong_number: text.denied_wrong_number,
    device_revoked: text.denied_device_revoked
  };

  function show(text, kind) {
    statusEl.textContent = text;
    statusEl.className = "status" + (kind ? " " + kind : "");
  }

  function onStatus(status, number, reason) {
    var message = MESSAGES[status];
    if (!message) { return; }
    // The phone gave the code back ("Not my sign-in"): the scan used up any typed code.
    var givenBack = status === "pending" && lastStatus === "scanned";
    lastStatus = status;
    if (givenBack && cantScan.open) { fetchShortCode(); }
    var denial = status === "denied" && DENIALS.hasOwnProperty(reason) ? DENIALS[reason] : "";
    show(denial || message[0], message[1]);
    // Number matching: the phone must pick the number shown here.
    var matching = status === "scanned" && /^[0-9]{2}$/.test(number || "");
    matchEl.hidden = !matching;
    matchEl.textContent = matching ? number : "";
    if (matching) { show(text.match.replace("{number}", number), "scanned"); }
    // Scanned by a phone that is not this person's (someone who glimpsed the screen)?
    // They can have the code back as a new one.
    notYouButton.hidden = status !== "scanned";
    if (status === "approved" || status === "denied") {
      finished = true;
      var pause = reason === "different_network" ? REFUSAL_PAUSE : 0;
      if (pause) { qrEl.classList.add("dimmed"); countdownEl.textContent = ""; }
      window.setTimeout(function () { window.location.assign(state.complete_url); }, pause);
    } else if (status === "expired") {
      renew();
    } else if (status === "completed") {
      finished = true;
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + state.socket_path);
    var mine = socket;
    socket.onopen = function () { retries = 0; };
    socket.onmessage = function (event) {
      if (mine !== socket) { return; } // a replaced request's last words
      var data = JSON.parse(event.data);
      if (data.status) { onStatus(data.status, data.number, data.reason); }
    };
    socket.onclose = function () {
      if (finished || mine !== socket) { return; }
      // While the code is valid the login can still succeed: keep trying (however long
      // the server is away). Past its expiry a reconnect would only learn "expired", and
      // renewing needs the server: the person gets a new code by hand.
      if (Date.now() >= deadline) {
        offerRefresh();
        show(text.connection_lost, "bad");
        return;
      }
      // The server sends the current state first: a change missed meanwhile is not lost.
      var ceiling = Math.min(RETRY_CAP, RETRY_FIRST * Math.pow(2, retries));
      retries += 1;
      window.setTimeout(connect, ceiling / 2 + Math.random() * ceiling / 2);
    };
  }

  // POST {} to one of our own URLs; resolves with the JSON answer, rejects with its
  // error_description.
  function postJson(url) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: "{}"
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { throw new Error(body.error_description || "refused"); }
        return body;
      });
    });
  }

  function stopFollowing() {
    if (socket) { var old = socket; socket = null; old.close(); }
  }

  // Show the fresh request that replaces this one (renewed or restarted), and follow it.
  function follow(fresh) {
    qrEl.innerHTML = fresh.qr_svg;
    qrTextEl.textContent = fresh.qr_url;
    delete fresh.qr_svg;
    state = fresh;
    deadline = Date.now() + state.expires_in * 1000;
    show(MESSAGES.pending[0], "");
    lastStatus = null;
    matchEl.hidden = true;
    notYouButton.hidden = true;
    connect();
    if (cantScan.open) { fetchShortCode(); }
  }

  function renew() {
    if (state.renewals_left <= 0) { offerRefresh(); return; }
    stopFollowing();
    postJson(state.renew_url).then(follow).catch(function () { offerRefresh(); });
  }

  // "Not you? Show a new code": the scanned request is released, a fresh one replaces it.
  function restart() {
    notYouButton.hidden = true;
    if (state.renewals_left <= 0) { window.location.reload(); return; }
    stopFollowing();
    // Refused (the phone decided meanwhile, or the code expired): the socket, back on
    // the same request, says what became of it.
    postJson(state.restart_url).then(follow).catch(function () { connect(); });
  }

  // "Can't scan?": a short code to type into the app, made only when asked for.
  function fetchShortCode() {
    shortCodeEl.textContent = "\u2026";
    shortCodeNote.textContent = "";
    postJson(state.short_code_url).then(function (given) {
      shortCodeEl.textContent = given.code;
      shortCodeNote.textContent = text.short_code_valid.replace(
        "{seconds}", String(given.expires_in));
    }).catch(function (error) {
      shortCodeEl.textContent = "";
      shortCodeNote.textContent = error.message;
    });
  }

  function offerRefresh() {
    finished = true;
    qrEl.classList.add("dimmed");
    countdownEl.textContent = "";
    show(text.code_expired, "bad");
    refreshButton.hidden = false;
    refreshButton.focus();
  }

  function tick() {
    // A local clock for the reader; the server says when the code expires.
    if (finished) { return; }
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    countdownEl.textContent = text.countdown.replace(
      "{time}", Math.floor(left / 60) + ":" + ("0" + (left % 60)).slice(-2));
  }

  refreshButton.addEventListener("click", function () { window.location.reload(); });
  notYouButton.addEventListener("click", restart);
  cantScan.addEventListener("toggle", function () {
    if (cantScan.open && !finished) { fetchShortCode(); }
  });
  window.setInterval(tick, 1000);
  tick();
  connect();
}());
