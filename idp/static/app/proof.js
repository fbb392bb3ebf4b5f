// The Device-Proof header (docs/phone-api.md, tests/data/phone_wire.json), made in the
// browser: a compact JWS, ES256, signed with the phone's non-extractable WebCrypto key.
// It binds the method, the URL without query or fragment (htu = issuer + path), the exact
// body string (bh), a fresh iat and a random jti: the same proof idp-phone makes.

const encoder = new TextEncoder();

/** Unpadded base64url of bytes (an ArrayBuffer or a Uint8Array). */
export function b64url(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let text = "";
  for (const byte of view) { text += String.fromCharCode(byte); }
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The bh claim: unpadded base64url of the SHA-256 of the body's UTF-8 bytes. */
export async function bodyHash(body) {
  return b64url(await crypto.subtle.digest("SHA-256", encoder.encode(body)));
}

/** A new P-256 key pair whose private half can sign and can never be exported. */
export function newDeviceKey() {
  return crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
}

/** The public key as the proof's jwk header carries it: kty, crv, x, y and nothing else. */
export async function publicJwk(keyPair) {
  const jwk = await crypto.subtle.exportKey("jwk", keyPair.publicKey);
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
}

/**
 * The Device-Proof value for one request. `url` is issuer + path (no query, no fragment);
 * `body` the exact string that will be sent ("" for none); exactly one of `kid` (the
 * device_id) or `jwk` (enrollment).
 */
export async function makeProof(keyPair, { method, url, body, kid, jwk }) {
  if ((kid === undefined) === (jwk === undefined)) {
    throw new Error("give exactly one of kid or jwk");
  }
  const header = { typ: "device-proof+jwt", alg: "ES256" };
  if (kid !== undefined) { header.kid = kid; } else { header.jwk = jwk; }
  const claims = {
    htm: method.toUpperCase(),
    htu: url,
    iat: Math.floor(Date.now() / 1000),
    jti: b64url(crypto.getRandomValues(new Uint8Array(24))), // 32 characters
    bh: await bodyHash(body),
  };
  const input = `${b64url(encoder.encode(JSON.stringify(header)))}.${b64url(encoder.encode(JSON.stringify(claims)))}`;
  // WebCrypto's ECDSA signature is r || s, 64 bytes: exactly JWS ES256's format.
  const signature = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" }, keyPair.privateKey, encoder.encode(input),
  );
  return `${input}.${b64url(signature)}`;
}
