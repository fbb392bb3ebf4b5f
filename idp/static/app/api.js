// The phone API (/api/mobile/v1), every request signed with this phone's key. Errors
// come back as ApiError, whose `kind` names a sentence of the app's messages: the app
// shows that sentence, never a raw code.

import { makeProof } from "./proof.js";

/** What went wrong, in the app's words: `kind` is a key of the app's messages. */
export class ApiError extends Error {
  constructor(kind, { code = null, status = 0, retryAfter = null, description = "" } = {}) {
    super(description || kind);
    this.kind = kind;
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// Each error code of the wire contract (tests/data/phone_wire.json) -> a message key.
export const ERROR_KINDS = {
  invalid_request: "refused",
  not_a_login_code: "not_a_login_code",
  invalid_proof: "invalid_proof",
  unknown_device: "device_removed",
  device_revoked: "device_removed",
  invalid_credentials: "invalid_credentials",
  wrong_account: "wrong_account",
  wrong_device: "wrong_device",
  wrong_number: "wrong_number",
  different_network: "different_network",
  device_not_found: "refused",
  unknown_code: "unknown_code",
  already_used: "already_used",
  device_exists: "device_exists",
  expired: "expired",
  invalid_invitation: "invalid_invitation",
  password_enrollment_disabled: "password_enrollment_disabled",
  unknown_enrollment: "enrollment_expired",
  invalid_enrollment_code: "invalid_enrollment_code",
  too_many_requests: "too_many",
  too_many_attempts: "too_many",
  temporarily_unavailable: "unavailable",
};

export class PhoneApi {
  /** `state`: the page's {issuer, api}; `keyPair` this phone's key. */
  constructor(state, keyPair, deviceId = null) {
    this.api = state.api; // "{issuer}/api/mobile/v1", as the server builds htu
    this.keyPair = keyPair;
    this.deviceId = deviceId;
  }

  /** One signed request; `jwk` instead of the device id for enrollment. */
  async request(method, path, body = null, { jwk } = {}) {
    const text = body === null ? "" : JSON.stringify(body);
    const url = this.api + path; // htu: the issuer as configured plus the path
    const proof = await makeProof(this.keyPair, {
      method, url, body: text,
      ...(jwk ? { jwk } : { kid: this.deviceId }),
    });
    const headers = { "Device-Proof": proof, Accept: "application/json" };
    if (body !== null) { headers["Content-Type"] = "application/json"; }
    let response;
    try {
      response = await fetch(url, {
        method, headers, body: body === null ? undefined : text,
        credentials: "omit", cache: "no-store",
      });
    } catch (error) {
      throw new ApiError("network", { description: String(error) });
    }
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!response.ok) {
      const code = data && typeof data.error === "string" ? data.error : null;
      const retry = parseInt(response.headers.get("Retry-After") || "", 10);
      throw new ApiError(ERROR_KINDS[code] || (response.status >= 500 ? "unavailable" : "refused"), {
        code, status: response.status,
        retryAfter: Number.isFinite(retry) ? retry : null,
        description: data && data.error_description,
      });
    }
    return data;
  }

  enroll(fields, jwk) { return this.request("POST", "/devices", fields, { jwk }); }
  me() { return this.request("GET", "/devices/me"); }
  devices() { return this.request("GET", "/devices"); }
  revoke(deviceId) { return this.request("POST", `/devices/${encodeURIComponent(deviceId)}/revoke`, {}); }
  scanUrl(qr) { return this.request("POST", "/login-requests/scan", { qr }); }
  scanCode(code) { return this.request("POST", "/login-requests/scan", { code }); }
  approve(id, number) {
    return this.request("POST", `/login-requests/${encodeURIComponent(id)}/approve`, number ? { number } : {});
  }
  deny(id) { return this.request("POST", `/login-requests/${encodeURIComponent(id)}/deny`, {}); }
  release(id) { return this.request("POST", `/login-requests/${encodeURIComponent(id)}/release`, {}); }

  // Requests sites sent from their servers (OpenID CIBA), waiting in this user's inbox.
  inbox() { return this.request("GET", "/inbox"); }
  openInboxItem(id) { return this.request("POST", `/inbox/${encodeURIComponent(id)}/open`, {}); }
  /** The inbox socket's URL and its proof (offered as a subprotocol beside "idp-inbox"). */
  async inboxSocket() {
    const url = `${this.api}/inbox/ws`;
    const proof = await makeProof(this.keyPair, { method: "GET", url, body: "", kid: this.deviceId });
    return new WebSocket(url.replace(/^http/, "ws"), ["idp-inbox", proof]);
  }

  // A new phone waiting for an old one (enrollment.js): signed by the waiting key itself.
  enrollmentStatus(id, jwk) {
    return this.request("GET", `/enrollments/${encodeURIComponent(id)}`, null, { jwk });
  }
  // Cancel on the waiting screen: no phone may approve the request afterwards.
  withdrawEnrollment(id, jwk) {
    return this.request("POST", `/enrollments/${encodeURIComponent(id)}/withdraw`, {}, { jwk });
  }
  // An active phone answering a new one's code.
  lookupEnrollment(code) { return this.request("POST", "/enrollments/lookup", { code }); }
  approveEnrollment(id) {
    return this.request("POST", `/enrollments/${encodeURIComponent(id)}/approve`, {});
  }
  denyEnrollment(id) { return this.request("POST", `/enrollments/${encodeURIComponent(id)}/deny`, {}); }
}
