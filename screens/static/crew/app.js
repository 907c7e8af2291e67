// The crew app: a phone in a glove, often without network. Today's route as a list and
// on a map, each stop's details, progress (on my way, on site, unable), and completion
// with photos and the phone's GPS fix.
//
// Offline first: everything shown comes from the copy on the phone (IndexedDB, store.js)
// and is refreshed from StreetLoop when the network allows; everything the crew does goes
// to the outbox first and is sent in order from there (outbox.js). The service worker
// (sw.js) keeps the app's own files. The token lives in IndexedDB too, so the app works
// after a restart, and is only ever sent in the Authorization header.
//
// Screens are the URL's hash: #/list, #/map, #/stop/<id>, #/complete/<id>, #/result/<id>,
// #/queue; the phone's back button works.
import { Api, ApiError, NetworkError, idempotencyKey, loadConfig } from "/assets/shared/api.js";
import { announce, h, replace } from "/assets/shared/dom.js";
import { translator } from "/assets/shared/i18n.js";
import { PALETTE, createMap, tileUrlsAround } from "/assets/shared/map.js";
import { signIn } from "/assets/shared/signin.js";
import { formatters } from "/assets/shared/time.js";
import { Outbox } from "./outbox.js";
import { kv, pings } from "./store.js";
import strings from "./strings.js";

// How often the app looks for changes and sends what waits, while it is open.
const SYNC_EVERY_MS = 20_000;
// GPS: keep a fix at most this often, and send what was kept at most this often (one POST).
const PING_EVERY_MS = 15_000;
const PINGS_SENT_EVERY_MS = 60_000;
// Must match sw.js: the cache that holds residents' photos for the day.
const MEDIA_CACHE = "streetloop-crew-media-v1";
const TILE_CACHE = "streetloop-crew-tiles-v1";
// Changes on /crew/changes the crew is told about, in words (the others just refresh).
const TOLD = new Set(["removed", "cancelled", "rejected", "assigned", "urgent_stop", "route"]);
const ACTIVE = new Set(["dispatched", "en_route", "on_site"]);

const t = translator(strings);
const view = document.getElementById("view");
const top = document.getElementById("top");
const tabs = document.getElementById("tabs");
const noticesRegion = document.getElementById("notices");
const live = document.getElementById("live");

const state = {
  token: null, // {access_token, expires_at}
  config: null,
  fmt: null,
  route: null,
  etag: null,
  lastSync: null, // when the route was last read from StreetLoop
  offline: false,
  signedOut: false,
  offlineReady: false,
  notices: [],
  results: {}, // work order id → the proof checks' answer
  addresses: {}, // work order id → address, of every stop the phone has seen
  fix: null, // the phone's latest position
  items: [], // the outbox, for drawing
  map: null,
};

const api = new Api({
  getToken: () => state.token && state.token.access_token,
  onUnauthorized: () => signedOut(),
});

const box = new Outbox({
  api,
  onChange: () => redrawCounts(),
  onSent: async (item, answer) => {
    if (item.kind === "completion" && answer) {
      state.results[item.work_order_id] = answer;
      await kv.set("results", state.results);
    }
    // The stop shows what the server now says, before the next read of the route.
    const stop = item.work_order_id && stopOf(item.work_order_id);
    if (stop && answer) {
      if (item.kind === "event" && answer.status) stop.status = answer.status;
      if (item.kind === "completion") stop.status = answer.verdict === "auto_verified" ? "verified" : "completed";
      await kv.set("route", { route: state.route, etag: state.etag, addresses: state.addresses });
    }
  },
  onAuthLost: () => signedOut(),
});

// -- helpers -----------------------------------------------------------------------

function stopOf(id) {
  return state.route && state.route.stops.find((s) => s.work_order_id === Number(id));
}

function label(prefix, code) {
  const key = `${prefix}.${code}`;
  return key in strings ? t(key) : String(code).replaceAll("_", " ");
}

/** What the crew's own waiting actions make of a stop's status, before the server knows. */
function shownStatus(stop) {
  const mine = state.items.filter((i) => i.work_order_id === stop.work_order_id && i.state === "waiting");
  const last = mine[mine.length - 1];
  if (!last) return { status: stop.status, waiting: false };
  return { status: last.kind === "completion" ? "completed" : last.json.type, waiting: true };
}

function statusBadge(stop) {
  const { status, waiting } = shownStatus(stop);
  const kind = status === "unable" ? "bad" : ["completed", "verified"].includes(status) ? "ok" : "warn";
  return h("span", { class: `badge ${kind}` }, label("status", status), waiting ? ` · ${t("status.waiting")}` : null);
}

function windowText(stop) {
  const fmt = state.fmt;
  const windows = (stop.time_windows || []).map((w) => t("stop.window_range", { start: fmt.time(w.start), end: fmt.time(w.end) }));
  return windows.join(", ");
}

function waitingCount() {
  // GPS batches go quietly: the count is of what the crew did.
  return state.items.filter((i) => i.state === "waiting" && i.kind !== "positions").length;
}

function refusedCount() {
  return state.items.filter((i) => i.state === "refused").length;
}

async function redrawCounts() {
  state.items = await box.items();
  drawTop();
  refresh();
}

/**
 * Draw the screen again with what changed in the background (a sync, an action sent),
 * where the crew keeps their place: never the completion form, whose photos and notes
 * would be lost, and at the same scroll position.
 */
let drawn = "";

function signature() {
  // What the screens show: the route, the notices, the outbox, the proof results.
  return JSON.stringify([state.etag, state.route && state.route.stops.map((st) => st.status), state.notices.map((n) => n.id),
    state.items.map((i) => `${i.id}:${i.state}`), Object.keys(state.results)]);
}

function refresh() {
  const { name } = parseHash();
  drawTop();
  if (name === "complete" || state.signedOut || signature() === drawn) return;
  if (name === "map") {
    drawTop();
    drawNotices();
    return; // the map keeps its zoom; the next visit shows the news
  }
  const y = window.scrollY;
  const focused = document.activeElement && document.activeElement.id;
  render();
  window.scrollTo(0, y);
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus({ preventScroll: true });
}

// -- the frame: header, notices, tabs ------------------------------------------------

function drawTop() {
  if (!state.token || state.signedOut) {
    replace(top, h("div", { class: "top-line" }, h("span", { class: "crew-name" }, t("app.title"))));
    return;
  }
  const waiting = waitingCount();
  const refused = refusedCount();
  const status = state.signedOut ? t("top.signed_out")
    : state.offline ? t("top.offline")
      : state.lastSync ? t("top.synced", { time: state.fmt.time(state.lastSync) }) : t("top.syncing");
  replace(top,
    h("div", { class: "top-line" },
      h("span", { class: "crew-name" }, state.route ? state.route.crew.name || state.route.crew.code : t("app.title")),
      h("span", { class: "day" }, state.route ? state.fmt.day(state.route.date) : ""),
      h("button", { type: "button", class: "refresh", id: "refresh", onclick: () => sync({ force: true }) }, t("top.refresh"))),
    h("div", { class: "top-line" },
      h("a", { href: "#/queue", class: `queue-count${waiting || refused ? " pending" : ""}`, id: "queue-count" },
        refused ? t("queue.refused_count", { count: refused }) + (waiting ? ` · ${t("queue.waiting_count", { count: waiting })}` : "")
          : waiting ? t("queue.waiting_count", { count: waiting }) : t("queue.nothing_waiting")),
      h("span", { class: `sync-state${state.offline || state.signedOut ? " off" : ""}`, role: "status" }, status,
        state.offlineReady ? ` · ${t("top.offline_ready")}` : "")));
}

function drawTabs() {
  const { name } = parseHash();
  const current = name === "map" ? "map" : name === "queue" ? "queue" : "list";
  replace(tabs, ...[["list", t("tabs.list")], ["map", t("tabs.map")], ["queue", t("tabs.queue")]].map(([id, text]) =>
    h("a", { href: `#/${id}`, "aria-current": id === current ? "page" : false }, text)));
}

function drawNotices() {
  replace(noticesRegion, ...state.notices.map((n) =>
    h("div", { class: `notice ${n.kind}`, role: "alert" },
      h("p", {}, n.text),
      h("div", { class: "notice-actions" },
        n.work_order_id && stopOf(n.work_order_id) ? h("a", { class: "button", href: `#/stop/${n.work_order_id}` }, t("notice.open")) : null,
        h("button", { type: "button", onclick: () => dismiss(n.id) }, t("notice.dismiss"))))));
}

async function dismiss(id) {
  state.notices = state.notices.filter((n) => n.id !== id);
  await kv.set("notices", state.notices);
  drawNotices();
}

// -- screens -------------------------------------------------------------------------

function parseHash() {
  const [name = "list", id] = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  return { name, id };
}

function render() {
  if (state.signedOut || !state.token) return;
  drawn = signature();
  if (state.map) {
    state.map.remove();
    state.map = null;
  }
  drawTabs();
  drawTop();
  drawNotices();
  const { name, id } = parseHash();
  if (!state.route) {
    replace(view, h("p", { class: "message" }, state.offline ? t("route.none_offline") : t("route.loading")));
    return;
  }
  const screens = { list: listScreen, map: mapScreen, stop: stopScreen, complete: completeScreen, result: resultScreen, queue: queueScreen };
  (screens[name] || listScreen)(id);
}

function heading(text) {
  const el = h("h1", { tabindex: "-1" }, text);
  document.title = `${text} · ${t("app.title")}`;
  return el;
}

function stopLine(stop) {
  const when = stop.eta ? t("stop.eta", { time: state.fmt.time(stop.eta) }) : windowText(stop);
  return h("li", {},
    h("a", { href: `#/stop/${stop.work_order_id}`, class: "stop-link", id: `stop-${stop.work_order_id}` },
      h("span", { class: "seq", "aria-hidden": "true" }, String(stop.sequence)),
      h("span", { class: "stop-main" },
        h("span", { class: "address" }, t("stop.numbered", { n: stop.sequence, address: stop.address || t("stop.no_address") })),
        h("span", { class: "work" }, stop.service_name),
        h("span", { class: "when" }, when)),
      statusBadge(stop)));
}

function listScreen() {
  const stops = state.route.stops;
  replace(view,
    heading(t("route.title")),
    shiftLine(),
    stops.length ? h("ol", { class: "stops" }, stops.map(stopLine)) : h("p", { class: "message" }, t("route.empty")));
}

function shiftLine() {
  const r = state.route;
  if (!r.shift) return null;
  return h("p", { class: "shift" }, t("route.shift", { start: state.fmt.time(r.shift.start), end: state.fmt.time(r.shift.end) }),
    r.breaks.length ? ` · ${t("route.breaks", { count: r.breaks.length })}` : "");
}

function mapScreen() {
  const r = state.route;
  const el = h("div", { id: "route-map", class: "route-map" });
  replace(view, heading(t("map.title")), el, h("ol", { class: "stops compact" }, r.stops.map(stopLine)));
  const map = createMap(el, state.config, { label: t("map.label"), t });
  state.map = map;
  const points = [];
  if (r.geometry) {
    const line = L.geoJSON(r.geometry, { style: { color: PALETTE[0], weight: 5, opacity: 0.85 } }).addTo(map);
    points.push(...line.getBounds().isValid() ? [line.getBounds().getSouthWest(), line.getBounds().getNorthEast()] : []);
  }
  for (const place of [r.depot_start].filter(Boolean)) {
    L.circleMarker([place.lat, place.lon], { radius: 8, color: "#000", weight: 3, fillColor: "#fff", fillOpacity: 1, interactive: false }).addTo(map);
    points.push([place.lat, place.lon]);
  }
  for (const stop of r.stops) {
    if (stop.lat === null || stop.lon === null) continue;
    const { status } = shownStatus(stop);
    const icon = L.divIcon({
      className: `stop-pin${ACTIVE.has(status) ? "" : " done"}`,
      html: h("span", { "aria-hidden": "true" }, String(stop.sequence)),
      iconSize: [40, 40], iconAnchor: [20, 20],
    });
    const name = t("stop.numbered", { n: stop.sequence, address: stop.address || t("stop.no_address") });
    const marker = L.marker([stop.lat, stop.lon], { icon, title: name, alt: name, keyboard: true }).addTo(map);
    marker.on("click", () => { location.hash = `#/stop/${stop.work_order_id}`; });
    marker.on("keypress", (e) => { if (e.originalEvent.key === "Enter") location.hash = `#/stop/${stop.work_order_id}`; });
    const iconEl = marker.getElement();
    if (iconEl) {
      iconEl.setAttribute("role", "link");
      iconEl.setAttribute("aria-label", name);
    }
    points.push([stop.lat, stop.lon]);
  }
  if (state.fix) {
    const { latitude, longitude, accuracy } = state.fix.coords;
    L.circle([latitude, longitude], { radius: accuracy, color: PALETTE[1], weight: 2, fillOpacity: 0.15, interactive: false }).addTo(map);
    L.circleMarker([latitude, longitude], { radius: 7, color: "#fff", weight: 3, fillColor: PALETTE[1], fillOpacity: 1, interactive: false }).addTo(map);
  }
  // No animation: the map may be taken down (another screen) before one would end.
  if (points.length) map.fitBounds(L.latLngBounds(points), { padding: [36, 36], maxZoom: 17, animate: false });
}

function navigateLinks(stop) {
  if (stop.lat === null || stop.lon === null) return null;
  const ll = `${stop.lat},${stop.lon}`;
  // Links the crew follows to their phone's map app; the page itself never loads them.
  return h("div", { class: "navigate" },
    h("a", { class: "button primary", href: `geo:${ll}?q=${ll}`, id: "navigate" }, t("stop.navigate")),
    h("a", { class: "button", href: `https://www.openstreetmap.org/directions?route=%3B${encodeURIComponent(ll)}#map=17/${stop.lat}/${stop.lon}`,
      target: "_blank", rel: "noopener noreferrer" }, t("stop.navigate_osm")));
}

function stopScreen(id) {
  const stop = stopOf(id);
  if (!stop) {
    replace(view, heading(t("stop.gone_title")), h("p", { class: "message" }, t("stop.gone")), h("a", { class: "button", href: "#/list" }, t("stop.back")));
    return;
  }
  const { status } = shownStatus(stop);
  const fmt = state.fmt;
  const texts = stop.descriptions && stop.descriptions.length ? stop.descriptions : [stop.description].filter(Boolean);
  replace(view,
    h("a", { href: "#/list", class: "back" }, t("stop.back")),
    heading(stop.address || t("stop.no_address")),
    h("p", { class: "stop-status" }, statusBadge(stop)),
    h("dl", { class: "facts" },
      h("dt", {}, t("stop.work")), h("dd", {}, stop.service_name, stop.reports > 1 ? ` · ${t("stop.reports", { count: stop.reports })}` : ""),
      stop.eta ? [h("dt", {}, t("stop.eta_label")), h("dd", {}, fmt.time(stop.eta))] : null,
      windowText(stop) ? [h("dt", {}, t("stop.window")), h("dd", {}, windowText(stop))] : null,
      stop.due_at ? [h("dt", {}, t("stop.due")), h("dd", {}, fmt.dateTime(stop.due_at))] : null,
      h("dt", {}, t("stop.on_site_minutes")), h("dd", {}, t("stop.minutes", { count: stop.minutes_on_site || 0 }))),
    navigateLinks(stop),
    progressButtons(stop, status),
    texts.length ? [h("h2", {}, t("stop.residents_said")), ...texts.map((d) => h("blockquote", { class: "resident-text" }, d))] : null,
    // What residents wrote since they reported (a route read before comments existed has none).
    stop.comments && stop.comments.length ? [h("h2", {}, t("stop.comments")), h("ul", { class: "notes comments" },
      stop.comments.map((c) => h("li", {}, h("span", { class: "note-time" }, fmt.dateTime(c.at)), " ",
        h("q", { class: "resident-text" }, c.text))))] : null,
    stop.notes.length ? [h("h2", {}, t("stop.notes")), h("ul", { class: "notes" },
      stop.notes.map((n) => h("li", {}, h("span", { class: "note-time" }, fmt.time(n.at)), " ", n.note)))] : null,
    residentsPhotos(stop),
    state.results[stop.work_order_id] ? h("a", { class: "button", href: `#/result/${stop.work_order_id}` }, t("result.see")) : null);
}

/** The residents' photos: ours (kept on the phone for the day), then the ones a report
 * sent as links to another site (FixMyStreet's), which open there and need the network.
 * A link is offered only as an http(s) URL: never javascript: or data:, whatever a
 * client sent. */
function residentsPhotos(stop) {
  const links = (stop.photo_links || []).filter((link) => isWebUrl(link.url));
  if (!stop.photos.length && !links.length) return null;
  return [h("h2", {}, t("stop.photos")),
    stop.photos.length ? h("div", { class: "photos" },
      stop.photos.map((p, k) => h("a", { href: p.url, target: "_blank", rel: "noopener" },
        h("img", { src: p.thumbnail_url, alt: t("stop.photo_alt", { n: k + 1 }), loading: "lazy" })))) : null,
    links.length ? h("ul", { class: "photo-links" },
      links.map((link, k) => h("li", {}, h("a", { href: link.url, target: "_blank", rel: "noopener noreferrer" },
        t("stop.photo_link", { n: stop.photos.length + k + 1 }))))) : null];
}

function isWebUrl(url) {
  try {
    const { protocol } = new URL(url);
    return protocol === "https:" || protocol === "http:";
  } catch {
    return false;
  }
}

function progressButtons(stop, status) {
  if (!ACTIVE.has(status)) return null;
  const reasonId = `unable-reason-${stop.work_order_id}`;
  const reasons = state.route.unable_reasons || [];
  const unablePanel = h("div", { class: "unable-panel", hidden: true },
    h("label", { for: reasonId }, t("progress.unable_reason")),
    h("select", { id: reasonId }, h("option", { value: "" }, t("progress.choose")), reasons.map((r) => h("option", { value: r }, label("reason", r)))),
    h("p", { class: "message", id: `${reasonId}-message` }),
    h("button", { type: "button", class: "danger primary", onclick: async () => {
      const select = document.getElementById(reasonId);
      if (!select.value) {
        announce(document.getElementById(`${reasonId}-message`), t("progress.reason_needed"), "error");
        select.focus();
        return;
      }
      await progress(stop, "unable", select.value);
    } }, t("progress.unable_send")));
  return h("div", { class: "progress" },
    status === "dispatched" ? h("button", { type: "button", class: "primary big", onclick: () => progress(stop, "en_route") }, t("progress.en_route")) : null,
    status !== "on_site" ? h("button", { type: "button", class: "primary big", onclick: () => progress(stop, "on_site") }, t("progress.on_site")) : null,
    h("a", { class: "button primary big complete", href: `#/complete/${stop.work_order_id}` }, t("progress.complete")),
    h("button", { type: "button", class: "danger", "aria-expanded": "false", onclick: (e) => {
      unablePanel.hidden = !unablePanel.hidden;
      e.currentTarget.setAttribute("aria-expanded", String(!unablePanel.hidden));
      if (!unablePanel.hidden) document.getElementById(reasonId).focus();
    } }, t("progress.unable")),
    unablePanel);
}

function fixFields() {
  if (!state.fix) return {};
  const { latitude, longitude, accuracy } = state.fix.coords;
  return { lat: latitude, lon: longitude, accuracy_m: Math.round(accuracy * 10) / 10 };
}

// A gloved double tap is one action: while one is being queued, another tap is ignored
// (two queued copies would have two Idempotency-Keys, and the second would be refused).
let queuing = false;

async function queueOnce(item) {
  if (queuing) return false;
  queuing = true;
  try {
    await box.add(item);
    return true;
  } finally {
    queuing = false;
  }
}

async function progress(stop, type, reason) {
  const json = { type, device_time: new Date().toISOString(), ...fixFields() };
  if (reason) json.reason = reason;
  if (!await queueOnce({ kind: "event", work_order_id: stop.work_order_id, key: idempotencyKey(), json,
    label: { type, address: stop.address } })) return;
  announce(live, t("progress.saved", { what: label("status", type) }));
  box.replay();
}

function completeScreen(id) {
  const stop = stopOf(id);
  if (!stop) {
    stopScreen(id);
    return;
  }
  const message = h("p", { class: "message", id: "complete-message" });
  const files = h("input", { type: "file", id: "photos", name: "photos", accept: "image/*", capture: "environment", multiple: true, "aria-describedby": "photos-hint" });
  const previews = h("div", { class: "photos previews" });
  files.addEventListener("change", () => {
    replace(previews, [...files.files].map((file, k) => h("img", { src: URL.createObjectURL(file), alt: t("complete.preview_alt", { n: k + 1 }) })));
  });
  const fixLine = h("p", { class: "fix", id: "fix-line", role: "status" });
  const drawFix = () => replace(fixLine, state.fix
    ? t("complete.fix", { accuracy: Math.round(state.fix.coords.accuracy), time: state.fmt.time(state.fix.timestamp) })
    : t("complete.no_fix"));
  drawFix();
  askFix().then(drawFix, drawFix);
  const outcome = h("select", { id: "outcome", name: "outcome" },
    (state.route.outcomes || ["fixed"]).map((o) => h("option", { value: o }, label("outcome", o))));
  const notes = h("textarea", { id: "notes", name: "notes", maxlength: "4000" });
  const form = h("form", { class: "complete-form", novalidate: true },
    h("label", { for: "photos" }, t("complete.photos")), files,
    h("p", { class: "field-hint", id: "photos-hint" }, t("complete.photos_hint")), previews,
    h("h2", {}, t("complete.position")), fixLine,
    h("button", { type: "button", onclick: () => askFix().then(drawFix, drawFix) }, t("complete.refix")),
    h("label", { for: "outcome" }, t("complete.outcome")), outcome,
    h("label", { for: "notes" }, t("complete.notes")), notes,
    message,
    h("button", { type: "submit", class: "primary big" }, t("complete.submit")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!files.files.length && outcome.value === "fixed") {
      announce(message, t("complete.photo_needed"), "error");
      files.focus();
      return;
    }
    const now = new Date().toISOString();
    const fix = state.fix;
    const fields = {
      outcome: outcome.value, notes: notes.value.trim(), captured_at: now,
      ...(fix ? { ...fixFields(), fix_time: new Date(fix.timestamp).toISOString() } : {}),
    };
    // The File objects themselves go to IndexedDB (a File is a Blob): the bytes the camera
    // wrote, EXIF included, are what the server gets, today or after a restart.
    const photos = [...files.files].map((file) => ({ blob: file, name: file.name || "photo.jpg", type: file.type }));
    if (!await queueOnce({ kind: "completion", work_order_id: stop.work_order_id, key: idempotencyKey(), fields, photos,
      label: { type: "completion", address: stop.address } })) return;
    location.hash = `#/result/${stop.work_order_id}`;
    box.replay().then(() => refresh());
  });
  replace(view,
    h("a", { href: `#/stop/${stop.work_order_id}`, class: "back" }, t("complete.back")),
    heading(t("complete.title", { address: stop.address || t("stop.no_address") })),
    form);
}

function resultScreen(id) {
  const stop = stopOf(id);
  const result = state.results[Number(id)];
  const waiting = state.items.find((i) => i.kind === "completion" && i.work_order_id === Number(id));
  const parts = [h("a", { href: "#/list", class: "back" }, t("stop.back")), heading(t("result.title", { address: (stop && stop.address) || t("stop.no_address") }))];
  if (waiting && waiting.state === "refused") {
    parts.push(h("p", { class: "message", "data-kind": "error" }, t("result.refused")), h("a", { class: "button", href: "#/queue" }, t("queue.open")));
  } else if (waiting) {
    parts.push(h("p", { class: "message", "data-kind": "info", role: "status" }, t("result.waiting")));
  } else if (result) {
    const verdictKind = ["auto_verified", "verified"].includes(result.verdict) ? "ok" : result.verdict === "rejected" ? "error" : "info";
    parts.push(
      h("p", { class: "message verdict", "data-kind": verdictKind, role: "status" }, label("verdict", result.verdict)),
      h("h2", {}, t("result.checks")),
      h("ul", { class: "checks" }, result.checks.map((c) => {
        const kind = c.passed === true ? "passed" : c.passed === false ? "failed" : "unknown";
        return h("li", { class: `check ${kind}` },
          h("span", { class: "check-mark", "aria-hidden": "true" }, kind === "passed" ? "✓" : kind === "failed" ? "✗" : "?"),
          h("span", {}, label("check", c.name), ": ", h("strong", {}, t(`result.${kind}`))));
      })),
      h("p", { class: "field-hint" }, t("result.photos", { count: result.photos })));
  } else {
    parts.push(h("p", { class: "message" }, t("result.none")));
  }
  replace(view, ...parts);
}

function itemTitle(item) {
  if (item.kind === "positions") return t("queue.positions", { count: item.json.pings.length });
  const what = item.kind === "completion" ? t("queue.completion") : label("status", item.json.type);
  return t("queue.item", { what, address: (item.label && item.label.address) || t("stop.no_address") });
}

function queueScreen() {
  const items = state.items;
  const confirm = h("dialog", { id: "discard-dialog", "aria-labelledby": "discard-title" });
  const rows = items.map((item) => {
    const refused = item.state === "refused";
    return h("li", { class: `queue-item${refused ? " refused" : ""}` },
      h("p", { class: "queue-title" }, itemTitle(item)),
      h("p", { class: "queue-when" }, t("queue.taken_at", { time: state.fmt.dateTime(item.created_at) }),
        item.photos && item.photos.length ? ` · ${t("queue.photos", { count: item.photos.length })}` : ""),
      refused ? [
        h("p", { class: "message", "data-kind": "error" },
          t("queue.refused", { message: item.refused.message }), ...(item.refused.details || []).map((d) => [h("br"), d])),
        h("div", { class: "queue-actions" },
          h("button", { type: "button", class: "primary", onclick: () => box.retry(item.id) }, t("queue.retry")),
          h("button", { type: "button", class: "danger", onclick: () => askDiscard(confirm, item) }, t("queue.discard"))),
      ] : h("p", { class: "badge warn" }, state.signedOut ? t("queue.needs_sign_in") : t("queue.waiting")));
  });
  replace(view,
    heading(t("queue.title")),
    h("p", { class: "message", role: "status" },
      items.length ? t("queue.summary", { waiting: waitingCount(), refused: refusedCount() }) : t("queue.empty")),
    items.length ? h("ul", { class: "queue" }, rows) : null,
    items.some((i) => i.state === "waiting") ? h("button", { type: "button", class: "primary", onclick: () => sync({ force: true }) }, t("queue.send_now")) : null,
    confirm);
}

function askDiscard(dialog, item) {
  replace(dialog,
    h("h2", { id: "discard-title" }, t("queue.discard_title")),
    h("p", {}, itemTitle(item)),
    h("p", {}, t("queue.discard_warning")),
    h("div", { class: "queue-actions" },
      h("button", { type: "button", class: "danger primary", onclick: async () => { dialog.close(); await box.discard(item.id); } }, t("queue.discard_yes")),
      h("button", { type: "button", onclick: () => dialog.close() }, t("queue.discard_no"))));
  dialog.showModal();
}

// -- syncing with StreetLoop ---------------------------------------------------------

async function loadRoute() {
  const headers = state.etag ? { "If-None-Match": state.etag } : {};
  const answer = await api.get("/crew/route", { headers, raw: true });
  if (answer.status !== 304) {
    state.route = await answer.json();
    state.etag = answer.headers.get("ETag");
    // Addresses of every stop seen, so a notice can still name a stop that has left the route.
    for (const s of state.route.stops) state.addresses[s.work_order_id] = s.address;
    await kv.set("route", { route: state.route, etag: state.etag, addresses: state.addresses });
    keepTheDay(state.route);
  }
  if ((await kv.get("cursor")) == null) await kv.set("cursor", state.route.changes_cursor);
  state.lastSync = new Date();
}

/** Keep exactly `urls` in the phone's cache `name` (sw.js answers from it offline): what
 * is no longer wanted goes, what is missing is fetched. False when the network failed on
 * the way (the next sync carries on). */
async function keepOnPhone(name, urls) {
  if (!("caches" in window)) return false;
  const cache = await caches.open(name);
  const wanted = new Set(urls.map((u) => new URL(u, location.origin).href));
  for (const request of await cache.keys()) if (!wanted.has(request.url)) await cache.delete(request);
  for (const url of wanted) {
    if (await cache.match(url)) continue;
    try {
      const answer = await fetch(url, { credentials: "omit" });
      // A 204 tile is an empty one (nothing mapped there): kept too, so it is not asked again.
      if (answer.ok) await cache.put(url, answer);
    } catch {
      return false;
    }
  }
  return true;
}

/** The day's residents' photos (earlier days' go), then the basemap tiles around the day's
 * stops (another basemap build's, with another ?v=, go), so the stops and the map work
 * offline. */
async function keepTheDay(route) {
  const photos = route.stops.flatMap((s) => s.photos.flatMap((p) => [p.thumbnail_url, p.url]));
  if (!await keepOnPhone(MEDIA_CACHE, photos)) return;
  await markOfflineReady();
  const points = route.stops.filter((s) => s.lat !== null && s.lon !== null);
  await keepOnPhone(TILE_CACHE, tileUrlsAround(state.config, points));
}

async function markOfflineReady() {
  const registration = "serviceWorker" in navigator ? await navigator.serviceWorker.getRegistration("/crew/") : null;
  const ready = Boolean(registration && registration.active && navigator.serviceWorker.controller);
  if (ready !== state.offlineReady) {
    state.offlineReady = ready;
    drawTop();
  }
}

function describe(change) {
  const address = state.addresses[change.work_order_id] || t("stop.no_address");
  return t(`notice.${change.change}`, { address });
}

async function followChanges() {
  let cursor = (await kv.get("cursor")) ?? 0;
  const told = [];
  let reread = false;
  for (;;) {
    const answer = await api.get("/crew/changes", { query: { since: cursor } });
    if (answer.reset) reread = true;
    for (const c of answer.changes) {
      reread = true;
      if (TOLD.has(c.change)) told.push(c);
    }
    cursor = answer.cursor;
    if (!answer.more) break;
  }
  if (reread) await loadRoute();
  // The cursor moves on only once the notices are written: a crash in between tells twice.
  if (told.length) {
    const known = new Set(state.notices.map((n) => n.id));
    for (const c of told) {
      const id = `change-${c.cursor}`;
      if (known.has(id)) continue;
      state.notices.push({ id, kind: ["removed", "cancelled", "rejected"].includes(c.change) ? "bad" : "info",
        work_order_id: c.change === "route" ? null : c.work_order_id, text: describe(c) });
    }
    await kv.set("notices", state.notices);
  }
  await kv.set("cursor", cursor);
}

let syncing = null;

/** Read the route and changes, then send what waits. Offline, nothing but a note changes. */
function sync() {
  if (state.signedOut || !state.token) return Promise.resolve();
  syncing ??= (async () => {
    try {
      await box.replay();
      await loadRoute();
      await followChanges();
      state.offline = false;
    } catch (err) {
      if (err instanceof NetworkError) state.offline = true;
      else if (!(err instanceof ApiError && err.status === 401)) console.warn("sync", err);
    } finally {
      syncing = null;
    }
    await markOfflineReady();
    state.items = await box.items();
    refresh();
  })();
  return syncing;
}

// -- GPS -----------------------------------------------------------------------------

let lastPingAt = 0;

function askFix() {
  return new Promise((resolve, reject) => {
    if (!("geolocation" in navigator)) return reject(new Error("no geolocation"));
    navigator.geolocation.getCurrentPosition((pos) => { state.fix = pos; resolve(pos); }, reject,
      { enableHighAccuracy: true, maximumAge: 10_000, timeout: 20_000 });
  });
}

function watchGps() {
  if (!("geolocation" in navigator)) return;
  navigator.geolocation.watchPosition(async (pos) => {
    state.fix = pos;
    if (pos.timestamp - lastPingAt < PING_EVERY_MS) return;
    lastPingAt = pos.timestamp;
    const c = pos.coords;
    await pings.add({ time: new Date(pos.timestamp).toISOString(), lat: c.latitude, lon: c.longitude, accuracy: c.accuracy,
      speed: Number.isFinite(c.speed) ? c.speed : null, heading: Number.isFinite(c.heading) ? c.heading : null });
  }, () => {}, { enableHighAccuracy: true, maximumAge: 5_000 });
  setInterval(() => box.replay(), PINGS_SENT_EVERY_MS);
}

// -- signing in and out ----------------------------------------------------------------

async function signedOut() {
  if (state.signedOut) return;
  state.signedOut = true;
  box.paused = true;
  state.items = await box.items();
  drawTop();
  replace(tabs);
  replace(noticesRegion);
  const waiting = state.items.filter((i) => i.kind !== "positions").length;
  const form = h("div", {});
  replace(view, waiting ? h("p", { class: "message", "data-kind": "error", role: "alert" }, t("app.expired", { count: waiting })) : null, form);
  const answer = await signIn(form, { api, t, title: t("sign_in.title") });
  await saveToken(answer);
  state.signedOut = false;
  await box.resume();
  await sync();
}

async function saveToken(answer) {
  state.token = { access_token: answer.access_token, expires_at: Date.now() + (answer.expires_in || 0) * 1000 };
  await kv.set("token", state.token);
}

// -- start -----------------------------------------------------------------------------

async function start() {
  // The queue lives in IndexedDB: asked to be kept, the browser does not evict it (with
  // the rest of the app's storage) when the phone runs short of space.
  if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/crew/sw.js", { scope: "/crew/" }).catch((err) => console.warn("service worker", err));
    navigator.serviceWorker.addEventListener("controllerchange", () => markOfflineReady());
  }
  try {
    state.config = await loadConfig();
    await kv.set("config", state.config);
  } catch (err) {
    state.config = await kv.get("config");
    state.offline = true;
    if (!state.config) {
      replace(view, h("p", { class: "message", "data-kind": "error", role: "alert" }, t("app.first_start_offline")));
      window.addEventListener("online", () => location.reload(), { once: true });
      return;
    }
  }
  // Dates and numbers in the city's own locale (STREETLOOP_LOCALE), whatever the phone's.
  if (state.config.locale) document.documentElement.lang = state.config.locale;
  state.fmt = formatters(state.config.time_zone, state.config.locale);
  const [token, saved, notices, results] = await Promise.all([kv.get("token"), kv.get("route"), kv.get("notices"), kv.get("results")]);
  state.token = token || null;
  state.notices = notices || [];
  state.results = results || {};
  if (saved) {
    state.route = saved.route;
    state.etag = saved.etag;
    state.addresses = saved.addresses || {};
  }
  state.items = await box.items();
  if (!state.token) {
    drawTop();
    const form = h("div", {});
    replace(view, form);
    const answer = await signIn(form, { api, t, title: t("sign_in.title") });
    await saveToken(answer);
  }
  window.addEventListener("hashchange", () => {
    render();
    const first = view.querySelector("h1");
    if (first) first.focus();
  });
  window.addEventListener("online", () => sync());
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") sync(); });
  setInterval(() => sync(), SYNC_EVERY_MS);
  render();
  watchGps();
  await sync();
}

document.documentElement.lang = document.documentElement.lang || "en";
document.getElementById("skip-link").textContent = t("app.skip");
tabs.setAttribute("aria-label", t("tabs.label"));
document.title = t("app.title");
start().catch((err) => {
  console.error(err);
  replace(view, h("p", { class: "message", "data-kind": "error", role: "alert" }, t("app.failed", { message: err.message })));
});
