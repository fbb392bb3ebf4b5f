// "A new phone needs an old phone" (docs/phone-api.md, enrollment approved by another phone).
// Two sides, two sets of screens of idp/templates/webapp/app.html:
// - the NEW phone sent its password and the server answered 202 pending_enrollment: it
//   shows the code (screen-pending) and asks GET /enrollments/<id> every 2 s, signed by its
//   waiting key, until another phone decides or the code expires;
// - a phone SET UP already: "Set up another phone" (screen-add), the code typed, what the
//   new phone is and where it is (screen-review), then Approve or Deny, then done.
// The waiting key is kept apart from this phone's enrollment (keystore.js savePending): a
// key never approved never looks enrolled, and a reload comes back to the waiting screen.
// Text is only ever set with textContent.

import { ApiError, PhoneApi } from "./api.js";
import * as keystore from "./keystore.js";
import { publicJwk } from "./proof.js";

const POLL_MS = 2000;
const WITHDRAW_MS = 5000; // Cancel waits no longer than this for the server
// Worth another try: the request did not reach the server, or not in a state to answer.
const TRANSIENT = ["network", "unavailable", "too_many", "invalid_proof"];
const byId = (id) => document.getElementById(id);

let app = null; // what app.js lends: its state, its sentences, its screens
let waitSession = 0; // which wait is current: Cancel or a new wait makes older answers stale
let pollTimer = null;
let countdown = null;

/**
 * Wire the screens. `context`: {state, say, notify, errorText, fail, showScreen,
 * formatTime, item, finish, showHome, showForm, keepEnrollment, api} (api() is this
 * phone's PhoneApi; keepEnrollment(keyPair, device) keeps an enrolled device as the
 * password path does).
 */
export function initEnrollment(context) {
  app = context;
  byId("pending-cancel").onclick = () => { cancelWaiting().catch((error) => app.fail(error)); };
  byId("add-phone").onclick = () => openAdd();
  byId("add-back").onclick = () => { stopCountdown(); app.notify(""); app.showHome(); };
  byId("add-form").onsubmit = (event) => { event.preventDefault(); lookUp().catch((error) => app.fail(error)); };
}

// --- The new phone: waiting for another phone ------------------------------------------

/** The password was right and another phone must approve: keep the key, show the code. */
export async function waitForApproval(keyPair, pending, deviceName) {
  const waiting = {
    issuer: app.state.issuer,
    keyPair,
    id: pending.id,
    code: pending.code,
    expiresAt: pending.expires_at,
    deviceName,
  };
  await keystore.savePending(waiting);
  showWaiting(waiting);
}

/** A reload while waiting: the waiting screen again (true), or nothing waits (false).
 * Even past its time it asks the server once: the other phone may have approved it while
 * this page was closed, and only the server knows. */
export async function resumeWaiting() {
  const waiting = await keystore.loadPending(app.state.issuer);
  if (!waiting) { return false; }
  showWaiting(waiting);
  return true;
}

function showWaiting(waiting) {
  const session = ++waitSession;
  byId("pending-code").textContent = waiting.code;
  startCountdown(byId("pending-left"), waiting.expiresAt, "pending_left", () => null);
  app.showScreen("pending");
  askAgain(waiting, session, 0);
}

/** The next status poll in `ms`; what goes wrong in it (IndexedDB, say) is said. */
function askAgain(waiting, session, ms) {
  pollTimer = window.setTimeout(() => { poll(waiting, session).catch((error) => app.fail(error)); }, ms);
}

async function poll(waiting, session) {
  if (session !== waitSession) { return; }
  let answer;
  try {
    const api = new PhoneApi(app.state, waiting.keyPair);
    answer = await api.enrollmentStatus(waiting.id, await publicJwk(waiting.keyPair));
  } catch (error) {
    if (session !== waitSession) { return; }
    if (error instanceof ApiError && !TRANSIENT.includes(error.kind)) {
      // unknown_enrollment: purged, or never this key's; nothing will come of waiting.
      await endWaiting(session, error.kind);
      return;
    }
    app.notify(app.errorText(error)); // said, and asked again: the person may Cancel
    const later = error instanceof ApiError && error.retryAfter ? error.retryAfter * 1000 : POLL_MS;
    askAgain(waiting, session, later);
    return;
  }
  if (session !== waitSession) { return; }
  const status = answer && answer.pending_enrollment ? answer.pending_enrollment.status : null;
  if (status === "approved" && answer.device) {
    stopWaiting();
    app.notify("");
    await app.keepEnrollment(waiting.keyPair, answer.device); // and forgets the waiting copy
  } else if (status === "denied") {
    await endWaiting(session, "enrollment_denied");
  } else if (status === "expired" || status === "withdrawn") { // withdrawn: Cancel, elsewhere
    await endWaiting(session, "enrollment_expired");
  } else {
    if (!byId("message").hidden && status === "pending") { app.notify(""); } // reached again
    askAgain(waiting, session, POLL_MS);
  }
}

function stopWaiting() {
  waitSession += 1;
  if (pollTimer !== null) { window.clearTimeout(pollTimer); }
  pollTimer = null;
  stopCountdown();
}

/** The request is over without a device: its key is forgotten, the form comes back. */
async function endWaiting(session, key) {
  if (session !== waitSession) { return; }
  stopWaiting();
  await keystore.forgetPending();
  app.showForm();
  app.notify(app.say(key));
}

/** Cancel: stop waiting, withdraw the request, forget the key. Withdrawing is what keeps
 * an old phone from approving it afterwards (a phone whose key nobody holds). It is best
 * effort: offline, or the server refusing, the key is forgotten all the same (the person
 * asked for it), and the request then lasts until it expires. */
async function cancelWaiting() {
  const waiting = await keystore.loadPending(app.state.issuer);
  stopWaiting();
  app.notify("");
  if (waiting) {
    try {
      const api = new PhoneApi(app.state, waiting.keyPair);
      const withdrawn = api.withdrawEnrollment(waiting.id, await publicJwk(waiting.keyPair));
      const late = new Promise((resolve, reject) => { window.setTimeout(() => reject(new Error("timeout")), WITHDRAW_MS); });
      await Promise.race([withdrawn, late]);
    } catch (error) {
      // Offline or refused (already decided, expired): forget it locally anyway.
    }
  }
  await keystore.forgetPending();
  app.showForm();
}

// --- A phone set up already: approve a new one -----------------------------------------

function openAdd() {
  stopCountdown();
  app.notify("");
  byId("add-code").value = "";
  byId("add-button").disabled = false;
  app.showScreen("add");
}

/** What a person types: any case, spaces, a dash or none; the server matches the same way. */
function cleanCode(typed) {
  const letters = typed.toUpperCase().replace(/[\s-]+/g, "");
  return letters.length === 8 ? `${letters.slice(0, 4)}-${letters.slice(4)}` : letters;
}

async function lookUp() {
  const code = cleanCode(byId("add-code").value);
  if (!code) {
    app.notify(app.say("enter_enrollment_code"));
    byId("add-code").focus();
    return;
  }
  // One lookup per tap: a second Enter before the answer would spend the phone's budget.
  const button = byId("add-button");
  if (button.disabled) { return; }
  button.disabled = true;
  app.notify("");
  let answer;
  try {
    answer = await app.api().lookupEnrollment(code);
  } catch (error) {
    button.disabled = false;
    if (error instanceof ApiError && ["invalid_enrollment_code", "refused"].includes(error.kind)
        && error.status < 500) {
      app.notify(app.say("invalid_enrollment_code")); // a code of the wrong shape too
      byId("add-code").focus();
    } else {
      await app.fail(error);
    }
    return;
  }
  showReview(answer.pending_enrollment);
}

function showReview(view) {
  const from = view.from || {};
  byId("review-name").textContent = view.device_name;
  byId("review-from").textContent = app.say("browser_at", { browser: from.summary || "?", ip: from.ip || "?" });
  byId("review-location").textContent = typeof from.location === "string" && from.location
    ? from.location : app.say("location_unknown");
  byId("review-when").textContent = app.say("asked_at", { time: app.formatTime(view.created_at) });
  // The proximity sentence first, as the sign-in screen shows it: a calm line on this
  // phone's network, a warning elsewhere (a stranger with the password asks from afar).
  const proximity = view.proximity;
  const shown = [];
  if (proximity && (proximity.message || proximity.verdict)) {
    // The app's sentence about a new phone for a verdict it knows; else the server's own.
    const own = `enrollment_${proximity.verdict}`;
    const words = typeof proximity.verdict === "string" && own in app.state.messages
      ? app.say(own) : proximity.message;
    if (words) { shown.push(app.item(words, proximity.verdict === "same_network" ? "proximity" : "warning")); }
  }
  byId("review-warnings").replaceChildren(...shown);
  byId("review-approve").onclick = () => decide(view, "approve");
  byId("review-deny").onclick = () => decide(view, "deny");
  setReviewButtons(true);
  startCountdown(byId("review-left"), view.expires_at, "time_left", () => setReviewButtons(false));
  app.showScreen("review");
}

function setReviewButtons(enabled) {
  for (const id of ["review-approve", "review-deny"]) { byId(id).disabled = !enabled; }
}

async function decide(view, choice) {
  setReviewButtons(false);
  app.notify("");
  let answer;
  try {
    const api = app.api();
    answer = choice === "approve" ? await api.approveEnrollment(view.id) : await api.denyEnrollment(view.id);
  } catch (error) {
    if (error instanceof ApiError && error.code === "already_used") {
      stopCountdown();
      app.notify(app.say("enrollment_decided")); // another of the user's phones was quicker
    } else if (error instanceof ApiError && error.kind === "invalid_enrollment_code") {
      stopCountdown();
      app.notify(app.say("invalid_enrollment_code")); // expired meanwhile
    } else {
      await app.fail(error);
      const again = !(error instanceof ApiError) || TRANSIENT.includes(error.kind);
      if (again && countdown !== null) { setReviewButtons(true); }
    }
    return;
  }
  stopCountdown();
  if (answer.pending_enrollment && answer.pending_enrollment.status === "approved") {
    const name = answer.device && answer.device.device_name ? answer.device.device_name : view.device_name;
    app.finish(app.say("enrollment_approved_title", { name }), app.say("enrollment_approved_text"));
  } else {
    app.finish(app.say("enrollment_denied_title"), app.say("enrollment_denied_text"));
  }
}

// --- The time left -------------------------------------------------------------------

/** The time left, each second, in a role=timer element (shown, never announced); at the
 * end the sentence that the code expired, and `onEnd`. */
function startCountdown(element, expiresAt, key, onEnd) {
  stopCountdown();
  const deadline = Date.parse(expiresAt);
  const tick = () => {
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    if (!(left > 0)) { // NaN too: an unreadable time is no time left
      stopCountdown();
      element.textContent = app.say("code_expired_now");
      onEnd();
      return;
    }
    const time = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    element.textContent = app.say(key, { time });
  };
  countdown = window.setInterval(tick, 1000);
  tick();
}

function stopCountdown() {
  if (countdown !== null) { window.clearInterval(countdown); }
  countdown = null;
}
