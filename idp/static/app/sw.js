// The phone app's service worker (scope /app/). It keeps the app's own static files, so
// that the app opens on a bad connection, and nothing else: it never answers an API
// call, a page, /authorize, /q/ or /token, which always go to the network untouched.
// Files are fetched from the network first, so an update is seen at once; the cached
// copy is used only when the network fails.

const CACHE = "qr-idp-app-v1";
// The same list as idp/webapp/views.py's APP_FILES (a test checks they agree).
const APP_FILES = [
  "/static/idp.css",
  "/static/app/app.css",
  "/static/app/app.js",
  "/static/app/api.js",
  "/static/app/keystore.js",
  "/static/app/proof.js",
  "/static/app/enrollment.js",
  "/static/app/inbox.js",
  "/static/app/scanner.js",
  "/static/vendor/zxing-library.min.js",
  "/static/app/icon-192.png",
  "/static/app/icon-512.png",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(APP_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const ours = event.request.method === "GET" && url.origin === self.location.origin
    && url.search === "" && APP_FILES.includes(url.pathname);
  if (!ours) { return; } // not handled: the browser goes to the network as without us
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(event.request, copy));
        }
        return response;
      })
      .catch(() => caches.match(event.request).then((cached) => cached || Response.error())),
  );
});
