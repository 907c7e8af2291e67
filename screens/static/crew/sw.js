// The crew app's service worker (scope /crew/): it keeps the app itself on the phone, so
// the app opens with no network, in a yard or a basement.
//
// - The app shell (pages, modules, styles, Leaflet, icons) is stored when the worker is
//   installed, and every other file the app loads from StreetLoop (a module another one
//   imports, map tiles) is stored as it passes.
// - Files are asked from the network first and the stored copy answers only when the
//   network fails: StreetLoop serves them no-cache with an ETag, so a city's update
//   reaches the phones at their next start online and costs a 304 otherwise.
// - Residents' photos (/media/) never change under their key: the stored copy answers
//   first. The app stores the day's photos itself when it reads the route (app.js).
// - /api/ and every write go straight to the network, never to a stored copy: the app
//   keeps the route in IndexedDB and queues its actions there (store.js), and a failed
//   request must reach the app as a failure. They are still answered here with fetch()
//   rather than left to the browser: a request a worker declines hangs under the test
//   browser's request interception (Playwright with chromium), and fetch() is the same
//   request to the same server.

const SHELL_CACHE = "streetloop-crew-shell-v1";
const MEDIA_CACHE = "streetloop-crew-media-v1";
const TILE_CACHE = "streetloop-crew-tiles-v1";

const SHELL = [
  "/crew/",
  "/crew/app.js",
  "/crew/store.js",
  "/crew/outbox.js",
  "/crew/strings.js",
  "/crew/crew.css",
  "/crew/manifest.webmanifest",
  "/crew/icons/icon-192.png",
  "/crew/icons/icon-512.png",
  "/assets/shared/api.js",
  "/assets/shared/dom.js",
  "/assets/shared/i18n.js",
  "/assets/shared/map.js",
  "/assets/shared/signin.js",
  "/assets/shared/time.js",
  "/assets/shared/base.css",
  "/assets/vendor/leaflet/leaflet.js",
  "/assets/vendor/leaflet/leaflet.css",
  "/assets/vendor/protomaps-leaflet/protomaps-leaflet.js",
];

self.addEventListener("install", (event) => {
  // cache: "reload" so the shell stored is the server's current one, not an HTTP-cached copy.
  event.waitUntil(caches.open(SHELL_CACHE)
    .then((cache) => cache.addAll(SHELL.map((url) => new Request(url, { cache: "reload" }))))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  const keep = new Set([SHELL_CACHE, MEDIA_CACHE, TILE_CACHE]);
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n.startsWith("streetloop-crew-") && !keep.has(n)).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

async function networkFirst(request) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const answer = await fetch(request);
    if (answer.ok) await cache.put(request, answer.clone());
    return answer;
  } catch (err) {
    // The page itself ("/crew/", "/crew/?source=pwa") is one stored copy.
    const stored = (await cache.match(request, { ignoreSearch: true }))
      || (request.mode === "navigate" ? await cache.match("/crew/") : undefined);
    if (stored) return stored;
    throw err;
  }
}

async function storedFirst(request, name) {
  const cache = await caches.open(name);
  const stored = await cache.match(request);
  if (stored) return stored;
  const answer = await fetch(request);
  if (answer.ok) await cache.put(request, answer.clone());
  return answer;
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.method !== "GET" || url.pathname.startsWith("/api/")) {
    event.respondWith(fetch(request));
    return;
  }
  if (url.pathname.startsWith("/media/")) {
    event.respondWith(storedFirst(request, MEDIA_CACHE));
    return;
  }
  if (url.pathname.startsWith("/tiles/")) {
    // A basemap tile changes only when the basemap is rebuilt: the phone's copy first, so
    // the map has its streets offline (the page keeps the tiles around the day's stops).
    event.respondWith(storedFirst(request, TILE_CACHE));
    return;
  }
  event.respondWith(networkFirst(request));
});
