// The test SPA: oidc-client-ts (global `oidc`) against QR-IdP, from another origin.
//
// oidc-client-ts 3.x checks the state, that the ID token has a `sub`, its `nonce`, and
// on refresh that `sub`, `auth_time` and `azp` did not change; it does NOT check the
// signature, `iss`, `aud` or `exp` (it trusts the TLS connection to the token
// endpoint, as OIDC Core §3.1.3.7 allows). So this app checks those itself, with
// WebCrypto and the IdP's JWKS: a browser app that wants them must do the same.
"use strict";

const show = (id, text) => { document.getElementById(id).textContent = text; };
const fail = (error) => show("error", String(error && error.message || error));
window.addEventListener("unhandledrejection", (event) => fail(event.reason));

const b64url = (text) => Uint8Array.from(
  atob(text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=")),
  (c) => c.charCodeAt(0),
);
const json = (part) => JSON.parse(new TextDecoder().decode(b64url(part)));

const ALGORITHMS = {
  RS256: [{ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, { name: "RSASSA-PKCS1-v1_5" }],
  ES256: [{ name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" }],
};

async function verifyIdToken(idToken, settings, metadata) {
  const [head, body, signature] = idToken.split(".");
  const header = json(head);
  const claims = json(body);
  const algorithm = ALGORITHMS[header.alg];
  if (!algorithm) throw new Error(`unexpected alg ${header.alg}`);
  const jwks = await (await fetch(metadata.jwks_uri)).json();  // CORS: the JWKS answers *
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`no key ${header.kid} in the JWKS`);
  const key = await crypto.subtle.importKey("jwk", jwk, algorithm[0], false, ["verify"]);
  const signed = new TextEncoder().encode(`${head}.${body}`);
  if (!await crypto.subtle.verify(algorithm[1], key, b64url(signature), signed)) {
    throw new Error("the ID token's signature does not verify");
  }
  const audience = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.iss !== metadata.issuer || metadata.issuer !== settings.authority) {
    throw new Error(`iss ${claims.iss} is not the authority`);
  }
  if (!audience.includes(settings.client_id)) throw new Error("aud is not this client");
  if (!(claims.exp > Date.now() / 1000)) throw new Error("the ID token has expired");
  return `valid: ${header.alg} signature by key ${header.kid}; iss, aud and exp checked`;
}

async function main() {
  const config = await (await fetch("/config.json")).json();
  const origin = window.location.origin;
  const settings = {
    authority: config.authority,
    client_id: config.client_id,
    redirect_uri: `${origin}/callback`,
    post_logout_redirect_uri: `${origin}/signed-out`,
    response_type: "code",
    scope: "openid profile email",
    loadUserInfo: true,  // UserInfo with the access token: a CORS preflight (Authorization)
    automaticSilentRenew: false,
  };
  const manager = new oidc.UserManager(settings);
  const button = (id, action) => {
    const element = document.getElementById(id);
    element.hidden = false;
    element.addEventListener("click", () => action().catch(fail));
  };
  const path = window.location.pathname;

  if (path === "/callback") {
    const user = await manager.signinRedirectCallback();
    window.history.replaceState({}, "", "/signed-in");
    show("signin", `signed in as ${user.profile.name} (${user.profile.email})`);
    const metadata = await manager.metadataService.getMetadata();
    show("id-token", await verifyIdToken(user.id_token, settings, metadata));
    button("refresh", async () => {
      const before = await manager.getUser();
      const after = await manager.signinSilent();  // a refresh_token grant (it has one)
      const rotated = after.refresh_token && after.refresh_token !== before.refresh_token;
      if (after.access_token === before.access_token || !rotated) {
        throw new Error("the refresh did not give new tokens");
      }
      show("refreshed", `refreshed: new access token, refresh token rotated, still ${after.profile.name}`);
    });
    button("revoke", async () => {
      const user = await manager.getUser();
      await manager.revokeTokens(["access_token", "refresh_token"]);
      const userinfo = (await manager.metadataService.getMetadata()).userinfo_endpoint;
      const answer = await fetch(userinfo, { headers: { Authorization: `Bearer ${user.access_token}` } });
      const error = (await answer.json()).error;
      show("revoked", `revoked: UserInfo now answers ${answer.status} ${error}`);
    });
    // With state data, oidc-client-ts sends a `state` and checks it comes back.
    button("sign-out", () => manager.signoutRedirect({ state: "from the test SPA" }));
    return;
  }
  if (path === "/signed-out") {
    const response = await manager.signoutRedirectCallback();
    const user = await manager.getUser();
    show("signed-out", user === null ? `signed out (state back: ${response.userState})` : "still holding a user");
  }
  button("sign-in", () => manager.signinRedirect());
}

main().catch(fail);
