// The phone web app. One page, several screens (sections of idp/templates/webapp/app.html):
// set up this phone, home (scan, type a code, the phones), a sign-in request, done; and
// setting up a phone with the approval of another (enrollment.js).
// Every change goes through the phone API with a proof signed by this browser's key
// (api.js); text is only ever set with textContent, never parsed as HTML.

import { ApiError, PhoneApi } from "./api.js";
import { initEnrollment, resumeWaiting, waitForApproval } from "./enrollment.js";
import { watchInbox } from "./inbox.js";
import * as keystore from "./keystore.js";
import { newDeviceKey, publicJwk } from "./proof.js";

const root = document.getElementById("phone-app");
const state = JSON.parse(root.getAttribute("data-state"));
const text = state.messages;
const lang = document.documentElement.lang || "en";
const byId = (id) => document.getElementById(id);

let record = null; // this phone's enrollment (keystore.js)
let api = null;
let countdown = null;
let stopScanner = null;
let scanSession = 0; // which tap of Scan is current (see the Scan button)
let stopInbox = null; // the inbox socket, while the home screen shows (inbox.js)

// --- Saying things ---------------------------------------------------------------

/** A message of the page's language, with its {fields} filled in. */
function say(key, fields = {}) {
  const template = text[key] || text.failed;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in fields ? String(fields[name]) : whole));
}

function notify(message) {
  const element = byId("message");
  element.textContent = message || "";
  element.hidden = !message;
}

function errorText(error) {
  if (!(error instanceof ApiError)) { return say("failed"); }
  if (error.kind === "too_many") {
    return error.retryAfter ? say("too_many", { seconds: error.retryAfter }) : say("too_many_later");
  }
  return say(error.kind in text ? error.kind : "failed");
}

/** Show what went wrong; a removed phone forgets its key and says so. */
async function fail(error) {
  if (error instanceof ApiError && error.kind === "device_removed") {
    await keystore.forget();
    record = null;
    api = null;
    showScreen("removed");
    notify(say("device_removed"));
    return;
  }
  if (!(error instanceof ApiError)) { console.error(error); }
  notify(errorText(error));
}

function showScreen(name) {
  for (const section of root.querySelectorAll("section")) {
    section.hidden = section.id !== `screen-${name}`;
  }
  const heading = root.querySelector(`#screen-${name} h1`);
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
}

function formatTime(iso, withDate = false) {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) { return ""; }
  return withDate ? moment.toLocaleDateString(lang, { dateStyle: "medium" })
    : moment.toLocaleTimeString(lang, { timeStyle: "short" });
}

function item(content, className) {
  const li = document.createElement("li");
  li.textContent = content;
  if (className) { li.className = className; }
  return li;
}

// --- Set up this phone -----------------------------------------------------------

function showEnroll({ invitation = null, note = null } = {}) {
  const form = byId("enroll-form");
  byId("password-fields").hidden = Boolean(invitation);
  for (const id of ["username", "password"]) { byId(id).required = !invitation; }
  byId("device-name").value = byId("device-name").value || state.device_name;
  byId("enroll-note").textContent = note || "";
  byId("enroll-note").hidden = !note;
  form.onsubmit = async (event) => {
    event.preventDefault();
    notify("");
    const fields = { device_name: byId("device-name").value.trim() };
    if (invitation) {
      fields.invitation = invitation;
    } else {
      fields.username = byId("username").value.trim();
      fields.password = byId("password").value;
    }
    const missing = Object.entries(fields).find(([, value]) => !value);
    if (missing) {
      byId(missing[0] === "device_name" ? "device-name" : missing[0]).focus();
      return;
    }
    const button = byId("enroll-button");
    button.disabled = true;
    try {
      await enroll(fields);
    } catch (error) {
      if (!invitation && error instanceof ApiError && error.code === "invalid_request") {
        // A username no account can have ("alice smith"): say what the person can fix,
        // not that the service refused (the device name is checked here already).
        notify(say("invalid_credentials"));
        byId("username").focus();
      } else {
        await fail(error);
      }
    } finally {
      button.disabled = false;
    }
  };
  showScreen("enroll");
}

async function enroll(fields) {
  const keyPair = await newDeviceKey(); // non-extractable: no script can read it out
  const enrolling = new PhoneApi(state, keyPair);
  const device = await enrolling.enroll(fields, await publicJwk(keyPair));
  byId("password").value = "";
  if (device.pending_enrollment) {
    // The user has a phone already: that phone must approve this one (enrollment.js).
    await waitForApproval(keyPair, device.pending_enrollment, fields.device_name);
    return;
  }
  await keepEnrollment(keyPair, device);
}

/** Keep an enrolled device (a password, an invitation, or another phone approved it). */
async function keepEnrollment(keyPair, device) {
  const replaced = record; // set up again over an enrollment (an invitation does that)
  record = {
    issuer: state.issuer,
    keyPair,
    deviceId: device.device_id,
    deviceName: device.device_name,
    user: device.user,
  };
  await keystore.save(record);
  await keystore.forgetPending(); // a wait for approval this enrollment ends, if any
  if (replaced) {
    // Its key is gone from this browser: retire that device too, so that the list of
    // phones shows no phone that can never sign in again. (It may be revoked already.)
    await new PhoneApi(state, replaced.keyPair, replaced.deviceId).revoke(replaced.deviceId)
      .catch(() => null);
  }
  api = new PhoneApi(state, keyPair, record.deviceId);
  if (navigator.storage && navigator.storage.persist) {
    navigator.storage.persist().catch(() => false); // ask the browser not to evict the key
  }
  if (state.invitation) {
    delete state.invitation;
    history.replaceState(null, "", "/app/"); // the used link leaves the address bar
  }
  if (state.screen === "request") {
    await openRequest();
  } else {
    await showHome();
    notify(say("enrolled"));
  }
}

// --- Home: scan, type a code, the phones -------------------------------------------

async function showHome() {
  stopCountdown();
  showScreen("home");
  showWho();
  if (!stopInbox) { stopInbox = watchInbox(api, showInbox); }
  byId("storage-note").textContent = say("storage_note");
  byId("storage-note").hidden = window.matchMedia("(display-mode: standalone)").matches;
  await loadDevices();
}

function showWho() {
  const user = record.user || {};
  byId("home-who").textContent = say("signed_in_as", {
    name: user.name || user.username, username: user.username,
  });
}

async function loadDevices() {
  let answer;
  try {
    answer = await api.devices();
  } catch (error) {
    await fail(error);
    return;
  }
  const list = byId("devices");
  list.replaceChildren();
  const active = answer.devices.filter((device) => !device.revoked_at);
  for (const device of active) { list.append(deviceItem(device, answer.devices)); }
  if (!active.length) { list.append(item(say("no_devices"))); }
}

/** How a phone was set up (enrolled_via), in words, or "" (phones set up before it was kept). */
function enrolledVia(device, devices) {
  const via = device.enrolled_via;
  if (via === "password") { return say("via_password"); }
  if (via === "invitation") { return say("via_invitation"); }
  if (typeof via !== "string" || !via.startsWith("device:")) { return ""; }
  const approver = devices.find((other) => other.device_id === via.slice("device:".length));
  if (!approver) { return say("via_other_device"); }
  return approver.this_device ? say("via_this_device") : say("via_device", { name: approver.device_name });
}

function deviceItem(device, devices = []) {
  const li = document.createElement("li");
  const name = document.createElement("strong");
  name.textContent = device.device_name;
  li.append(name);
  if (device.this_device) {
    const mark = document.createElement("span");
    mark.className = "badge";
    mark.textContent = say("this_device");
    li.append(" ", mark);
  }
  const facts = document.createElement("span");
  facts.className = "muted";
  const dates = [say("added_on", { date: formatTime(device.created_at, true) })];
  const via = enrolledVia(device, devices);
  if (via) { dates.push(via); }
  if (device.last_used_at) { dates.push(say("last_used", { date: formatTime(device.last_used_at, true) })); }
  facts.textContent = dates.join(", ");
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "secondary small";
  remove.textContent = text.remove || "Remove";
  remove.setAttribute("aria-label", say("remove_named", { name: device.device_name }));
  remove.onclick = () => removeDevice(device, remove);
  li.append(document.createElement("br"), facts, " ", remove);
  return li;
}

async function removeDevice(device, button) {
  const question = device.this_device ? say("confirm_remove_this")
    : say("confirm_remove", { name: device.device_name });
  if (!window.confirm(question)) { return; }
  button.disabled = true;
  notify("");
  try {
    await api.revoke(device.device_id);
  } catch (error) {
    button.disabled = false;
    await fail(error);
    return;
  }
  if (device.this_device) {
    await keystore.forget();
    record = null;
    api = null;
    showScreen("removed");
    return;
  }
  notify(say("removed_other", { name: device.device_name }));
  await loadDevices();
}

byId("code-form").onsubmit = async (event) => {
  event.preventDefault();
  const code = byId("code").value.trim();
  if (!code) {
    notify(say("enter_code"));
    byId("code").focus();
    return;
  }
  notify("");
  // One scan per code: the scan uses the code up, so a second tap (or Enter) sent before
  // the answer came would be a wrong code, counted against the user's few tries.
  const button = byId("code-button");
  button.disabled = true;
  try {
    const answer = await api.scanCode(code);
    byId("code-note").hidden = true;
    if (answer.login_request.kind === "device") {
      // A device's code: shown here, with the code to compare (the request's own page
      // would scan it again by its id, and could not show the code).
      showRequest(answer.login_request);
      return;
    }
    // The request's own page: the same approval screen a camera app opens.
    window.location.assign(`/app/q/${encodeURIComponent(answer.login_request.id)}`);
  } catch (error) {
    button.disabled = false;
    if (error instanceof ApiError && error.code === "invalid_request") {
      notify(say("not_a_code")); // not even the shape of a code
    } else {
      await fail(error);
    }
  }
};

// Back from the request's page, out of the back-forward cache: the code can be typed again.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) { byId("code-button").disabled = false; }
});

byId("scan-button").onclick = async () => {
  notify("");
  const video = byId("camera");
  byId("scanner").hidden = false;
  byId("scan-button").hidden = true;
  byId("scanner-note").textContent = say("scanning");
  // Starting the camera waits for the person to allow it: "Stop scanning" may be tapped
  // meanwhile. A scan that was closed before its camera came on turns that camera off
  // at once and reports nothing (else it would film on, hidden, and act on what it reads).
  const session = ++scanSession;
  const current = (handler) => (value) => { if (session === scanSession) { handler(value); } };
  try {
    const { startScanner } = await import("./scanner.js");
    const stop = await startScanner(video, current(onScanned), current(onScannerError));
    if (session === scanSession) { stopScanner = stop; } else { stop(); }
  } catch (error) {
    current(onScannerError)("failed");
  }
};

byId("scan-stop").onclick = () => closeScanner();

function closeScanner() {
  scanSession += 1; // whatever the scan in progress reports after this is ignored
  if (stopScanner) { stopScanner(); }
  stopScanner = null;
  byId("scanner").hidden = true;
  byId("scan-button").hidden = false;
}

const REQUEST_ID = /^[A-Za-z0-9_-]{1,100}$/;

/**
 * The user code of a device's QR code (RFC 8628's verification_uri_complete,
 * `{issuer}/device?user_code=...`): this issuer's origin, exactly that path, only that
 * parameter, no fragment. Null for anything else. The server checks it all again.
 */
function deviceUserCode(text) {
  let url;
  try { url = new URL(text); } catch (error) { return null; }
  const issuer = new URL(state.issuer);
  const keys = [...url.searchParams.keys()];
  if (url.origin !== issuer.origin || url.pathname !== `${issuer.pathname.replace(/\/$/, "")}/device`
      || text.includes("#") || keys.length !== 1 || keys[0] !== "user_code") {
    return null;
  }
  return url.searchParams.get("user_code");
}

/** A device's code read by the camera: sent as typed, then its request shown. */
async function scanDeviceCode(code) {
  showScreen("loading");
  byId("loading-text").textContent = say("checking");
  let view;
  try {
    view = (await api.scanCode(code)).login_request;
  } catch (error) {
    showScreen("home");
    if (error instanceof ApiError && error.code === "invalid_request") {
      notify(say("not_a_code"));
    } else {
      await fail(error);
    }
    return;
  }
  showRequest(view);
}

function onScanned(scanned) {
  closeScanner();
  const prefix = `${state.issuer}/q/`;
  const value = scanned.trim();
  const userCode = deviceUserCode(value);
  if (userCode !== null) {
    scanDeviceCode(userCode);
    return;
  }
  if (!value.startsWith(prefix) || !REQUEST_ID.test(value.slice(prefix.length))) {
    notify(say("not_a_login_code"));
    return;
  }
  window.location.assign(`/app/q/${value.slice(prefix.length)}`);
}

function onScannerError(kind) {
  closeScanner();
  const key = { no_camera: "no_camera", denied: "camera_denied", insecure: "insecure" }[kind];
  notify(say(key || "camera_failed"));
}

// --- The inbox: what sites asked for from their servers ---------------------------

function leaveHome() {
  if (stopInbox) { stopInbox(); }
  stopInbox = null;
}

function showInbox(items) {
  byId("inbox-box").hidden = !items.length;
  byId("inbox").replaceChildren(...items.map((entry) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "inbox-item";
    const title = document.createElement("strong");
    title.textContent = say("inbox_item", { client: entry.client.name });
    button.append(title);
    if (entry.binding_message) {
      const message = document.createElement("span");
      message.className = "binding-message";
      message.textContent = entry.binding_message;
      button.append(document.createElement("br"), message);
    }
    const facts = document.createElement("span");
    facts.className = "muted";
    const words = [say("asked_at", { time: formatTime(entry.created_at) })];
    if (entry.scanned_by === "this_phone") { words.push(say("inbox_opened_here")); }
    if (entry.scanned_by === "another_phone") { words.push(say("inbox_opened_elsewhere")); }
    facts.textContent = words.join(", ");
    button.append(document.createElement("br"), facts);
    button.onclick = () => openInboxItem(entry.id);
    li.append(button);
    return li;
  }));
}

async function openInboxItem(id) {
  leaveHome();
  notify("");
  showScreen("loading");
  byId("loading-text").textContent = say("checking");
  let view;
  try {
    view = (await api.openInboxItem(id)).login_request;
  } catch (error) {
    await fail(error);
    if (api) { await showHome(); }
    return;
  }
  showRequest(view);
}

// --- A sign-in request: Approve or Deny --------------------------------------------

async function openRequest() {
  leaveHome();
  showScreen("loading");
  byId("loading-text").textContent = say("checking");
  let view;
  try {
    view = (await api.scanUrl(`${state.issuer}/q/${state.request_id}`)).login_request;
  } catch (error) {
    await fail(error);
    if (api) { showScreen("home"); showWho(); await loadDevices(); }
    return;
  }
  showRequest(view);
}

const ACCOUNT_HINT = /^[A-Za-z0-9_.@+-]{1,150}$/; // a username (accounts.check_username) or e-mail

function showRequest(view) {
  const client = view.client;
  // A device (RFC 8628): the code to compare with its screen, no site to return to, a
  // device not a computer. A site's request from its server (CIBA): no browser, no page to
  // give it back to; its message is what the person compares with the site.
  const device = view.kind === "device";
  const backchannel = view.kind === "backchannel";
  const title = device ? "device_title" : backchannel ? "backchannel_title" : "request_title";
  byId("request-title").textContent = say(title, { client: client.name });
  for (const element of byId("screen-request").querySelectorAll(".browser-only")) {
    element.hidden = backchannel;
  }
  const code = device && typeof view.user_code === "string" ? view.user_code : "";
  byId("request-code").textContent = code;
  byId("request-code-label").hidden = !code;
  byId("request-code-row").hidden = !code;
  byId("request-host-label").hidden = device || backchannel;
  byId("request-host").hidden = device || backchannel;
  byId("request-browser-label").textContent = say(device ? "device_label" : "computer_label");
  byId("release").hidden = backchannel;
  const binding = backchannel && typeof view.binding_message === "string" ? view.binding_message : "";
  byId("request-binding-box").hidden = !binding;
  byId("request-binding-label").textContent = say("binding_label");
  byId("request-binding").textContent = binding;
  const logo = byId("client-logo");
  // The home screen's policy loads no other site's image: a site's own logo shows on the
  // QR request's page only.
  logo.hidden = !client.logo_uri || backchannel;
  if (client.logo_uri && !backchannel) { logo.src = client.logo_uri; }
  byId("request-host").textContent = client.redirect_host;
  byId("request-scopes").replaceChildren(...view.scopes.map((scope) => item(scope.description)));
  const browser = view.browser;
  byId("request-browser").textContent = say("browser_at", { browser: browser.summary, ip: browser.ip || "?" });
  byId("request-location").textContent = browser.location || say("location_unknown");
  byId("request-when").textContent = backchannel
    ? `${say("asked_at", { time: formatTime(view.created_at) })}. ${say("backchannel_from")}`
    : say("started_at", { time: formatTime(view.created_at) });
  // login_hint is whatever the one who opened the sign-in page put in its URL (up to 255
  // characters): shown only when it has the shape of an account name or e-mail address,
  // so that it cannot put a sentence of its own ("safe to approve") on this screen.
  const hintText = typeof view.login_hint === "string" && ACCOUNT_HINT.test(view.login_hint)
    ? view.login_hint : "";
  const hint = byId("request-hint");
  hint.hidden = !hintText;
  hint.textContent = hintText ? say("login_hint", { hint: hintText }) : "";
  // Every warning the server gives is shown first, as it gives it.
  // Proximity first: a calm line when the phone is on the browser's network, a warning
  // when it is not (a relayed QR code is approved from elsewhere); then any other warning.
  // No proximity (null: the policy is off) shows nothing. When the policy does not allow
  // an approval from here (require_same_network), its message is the refusal, and only
  // Deny is offered.
  const shown = [];
  // Device-code phishing sends a real code to a victim: said first, every time.
  if (device) { shown.push(item(say("device_warning"), "warning")); }
  const proximity = view.proximity;
  const refused = Boolean(proximity) && proximity.allowed === false;
  if (proximity && proximity.message) {
    const calm = proximity.verdict === "same_network" && !refused;
    shown.push(item(proximity.message, calm ? "proximity" : "warning"));
  }
  for (const warning of view.warnings || []) {
    const words = typeof warning === "string" ? warning : warning.message || "";
    if (words) { shown.push(item(words, "warning")); }
  }
  byId("request-warnings").replaceChildren(...shown);

  const approve = byId("approve");
  const matching = refused ? null : view.number_matching;
  byId("numbers").hidden = !matching;
  approve.hidden = Boolean(matching) || refused;
  // Deny as wide as the numbers, or alone.
  byId("decision").classList.toggle("single", Boolean(matching) || refused);
  if (matching) {
    byId("numbers-label").textContent = say("choose_number");
    byId("number-choices").replaceChildren(...matching.choices.map((number) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "number";
      button.textContent = number;
      button.onclick = () => decide(view, "approve", number);
      return button;
    }));
  }
  approve.onclick = () => decide(view, "approve");
  byId("deny").onclick = () => decide(view, "deny");
  // Scanned someone else's screen: the code goes back to that page, for the right phone.
  byId("release").onclick = () => decide(view, "release");
  setButtons(true);
  startCountdown(view.expires_at);
  showScreen("request");
}

function setButtons(enabled) {
  for (const button of byId("screen-request").querySelectorAll("button")) { button.disabled = !enabled; }
}

async function decide(view, choice, number) {
  setButtons(false);
  notify("");
  const client = { client: view.client.name };
  try {
    if (choice === "approve") {
      await api.approve(view.id, number);
    } else if (choice === "release") {
      await api.release(view.id);
    } else {
      await api.deny(view.id);
    }
  } catch (error) {
    if (error instanceof ApiError && error.kind === "wrong_number") {
      finish(say("wrong_number_title"), say("wrong_number_text"));
      return;
    }
    if (error instanceof ApiError && error.kind === "different_network") {
      finish(say("different_network_title"), say("different_network_text"));
      return;
    }
    await fail(error);
    const again = !(error instanceof ApiError)
      || ["network", "unavailable", "too_many", "invalid_proof"].includes(error.kind);
    if (again && countdown !== null) {
      setButtons(true); // worth another try, while the code lasts (the countdown runs)
    }
    return;
  }
  if (choice === "approve" && view.kind === "device") {
    finish(say("device_approved_title"), say("device_approved_text", client));
  } else if (choice === "approve" && view.kind === "backchannel") {
    finish(say("backchannel_approved_title"), say("backchannel_approved_text", client));
  } else if (choice === "deny" && view.kind === "backchannel") {
    finish(say("denied_title"), say("backchannel_denied_text", client));
  } else if (choice === "approve") {
    finish(say("approved_title"), say("approved_text", client));
  } else if (choice === "release") {
    finish(say("released_title"), say("released_text"));
  } else {
    finish(say("denied_title"), say("denied_text", client));
  }
}

function finish(title, detail) {
  stopCountdown();
  byId("done-title").textContent = title;
  byId("done-text").textContent = detail;
  showScreen("done");
}

/** The time left, each second, in a role=timer element: shown, never announced (a live
 * region would make a screen reader read it out every second); the end is announced, as
 * an alert (notify). */
function startCountdown(expiresAt) {
  stopCountdown();
  const deadline = Date.parse(expiresAt);
  const element = byId("request-left");
  const tick = () => {
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    if (left === 0) {
      stopCountdown();
      element.textContent = say("expired_now");
      setButtons(false);
      notify(say("expired"));
      return;
    }
    const time = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    element.textContent = say("time_left", { time });
  };
  tick();
  countdown = window.setInterval(tick, 1000);
}

function stopCountdown() {
  if (countdown !== null) { window.clearInterval(countdown); }
  countdown = null;
}

byId("setup-again").onclick = () => showEnroll({});

/** The form a phone without a key starts from (a request's page says why first). */
function showForm() {
  showEnroll({ note: state.screen === "request" ? say("request_for") : null });
}

initEnrollment({
  state, say, notify, errorText, fail, showScreen, formatTime, item, finish, showHome,
  showForm, keepEnrollment, api: () => api,
});

// --- Start -----------------------------------------------------------------------------

async function start() {
  if (!window.isSecureContext || !window.crypto || !window.crypto.subtle) {
    notify(say("insecure"));
    byId("loading-text").textContent = "";
    return;
  }
  if (!window.indexedDB) {
    notify(say("unsupported"));
    return;
  }
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(() => null);
  }
  try {
    record = await keystore.load(state.issuer);
  } catch (error) {
    notify(say("unsupported")); // e.g. private browsing without IndexedDB
    return;
  }
  if (state.screen === "invitation_gone") { showScreen("gone"); return; }
  if (state.screen === "invitation") {
    let note = say("invited", state.invited);
    if (record) {
      const user = record.user || {};
      note += ` ${say("invited_replaces", { name: user.name || user.username })}`;
    }
    showEnroll({ invitation: state.invitation, note });
    return;
  }
  if (!record) {
    if (!(await resumeWaiting())) { showForm(); } // waiting for another phone: back to it
    return;
  }
  api = new PhoneApi(state, record.keyPair, record.deviceId);
  if (state.screen === "request" && state.sent_by_site) {
    // Another website sent this phone here: scanning would tie a stranger's sign-in to
    // this phone and put it on screen, unasked. Only a person's tap goes on.
    byId("sent-continue").onclick = () => openRequest();
    showScreen("sent");
  } else if (state.screen === "request") {
    await openRequest();
  } else {
    await showHome();
    prefillDeviceCode();
  }
}

/**
 * `/app/#device=CODE` (the link of the IdP's /device page): the code is put in the
 * "type a code" field, with a warning, and nothing is sent until the person taps
 * Continue (a link anyone can send must not scan by itself). The fragment never reaches
 * the server, and is removed from the address.
 */
function prefillDeviceCode() {
  const match = /^#device=([A-Za-z-]{8,9})$/.exec(window.location.hash);
  if (!match) { return; }
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  byId("code").value = match[1].toUpperCase();
  const note = byId("code-note");
  note.textContent = say("device_prefilled");
  note.hidden = false;
  byId("code-button").focus();
}

start().catch(fail);
