// This phone's enrollment, kept in IndexedDB: the CryptoKeyPair itself (its private key
// is non-extractable: the browser keeps it and only lets this origin sign with it), the
// device_id the IdP gave, and whose phone it is. Never a password, never a key export.

const DB_NAME = "qr-idp";
const STORE = "enrollment";
const KEY = "this-phone";

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => { request.result.createObjectStore(STORE); };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, action) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const transaction = db.transaction(STORE, mode);
      const request = action(transaction.objectStore(STORE));
      transaction.oncomplete = () => resolve(request.result);
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error);
    });
  } finally {
    db.close();
  }
}

/** The enrollment for `issuer`, or null. */
export async function load(issuer) {
  const record = await run("readonly", (store) => store.get(KEY));
  return record && record.issuer === issuer ? record : null;
}

/** Keep an enrollment: {issuer, keyPair, deviceId, deviceName, user}. */
export function save(record) {
  return run("readwrite", (store) => store.put(record, KEY));
}

/** Forget this phone's enrollment (it was removed): the key is gone with it. */
export function forget() {
  return run("readwrite", (store) => store.delete(KEY));
}

// A phone waiting for another phone's approval (enrollment.js) is kept apart, under its
// own name: its key is not an enrollment yet, so load() never returns it, and a key that
// is never approved never looks enrolled. Kept so that a reload comes back to the waiting
// screen: {issuer, keyPair, id, code, expiresAt, deviceName}.
const PENDING = "pending-phone";

/** The request of this phone to be approved by another, for `issuer`, or null. */
export async function loadPending(issuer) {
  const pending = await run("readonly", (store) => store.get(PENDING));
  return pending && pending.issuer === issuer ? pending : null;
}

/** Keep the waiting request and its key. */
export function savePending(pending) {
  return run("readwrite", (store) => store.put(pending, PENDING));
}

/** Forget the waiting request: its key is gone with it (approved ones are save()d first). */
export function forgetPending() {
  return run("readwrite", (store) => store.delete(PENDING));
}
