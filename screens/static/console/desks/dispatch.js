// The dispatch desk: the day on a map and a timeline per crew.
//
// Left, the panels a dispatcher works down: plan a day (date, scope, time limit), the
// day's plans, the open plan (its progress while the solver runs, then its figures,
// publish and re-plan), the selected stop (move, lock, remove), the work the plan left
// out with each reason, and reports waiting for a pin. Right, the map (open work by type,
// priority and overdue; crews' latest positions; the plan's routes on the roads) above
// the timeline (one row per crew: stops at their times, driving between them, breaks).
//
// Everything goes through the same API the integrators use; a refused edit shows the
// API's own message. The open plan is kept in the URL (#/dispatch/<plan id>) with
// history.replaceState, so a reload comes back to it without remounting the desk.
import { ApiError } from "/assets/shared/api.js";
import { announce, h, replace } from "/assets/shared/dom.js";
import { createMap, PALETTE } from "/assets/shared/map.js";

/** Black or white, whichever reads better on `colour` (#rrggbb): the palette has both light
 * and dark colours, and a number on a marker must pass WCAG AA on each. */
function inkOn(colour) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16) / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#000000" : "#ffffff";
}

function paint(el, colour) {
  el.style.background = colour;
  el.style.color = inkOn(colour);
  return el;
}

const OPEN = ["new", "planned", "dispatched", "en_route", "on_site"];
const POLL_MS = 700;
const MAX_PAGE = 500;

export function mount(root, ctx) {
  const { t, fmt, config } = ctx;
  // Every request of the desk carries this signal: leaving the desk (or signing out) aborts
  // what is still in flight, so nothing the desk asked for lands on the next screen, and no
  // request goes out with a token that sign-out has just revoked.
  const aborter = new AbortController();
  const call = (method) => (path, opts = {}) => ctx.api.request(method, path, { ...opts, signal: aborter.signal });
  const api = { get: call("GET"), post: call("POST"), put: call("PUT"), delete: call("DELETE") };
  const state = {
    date: fmt.localDate(),
    plans: [],
    plan: null,
    work: new Map(), // work order id → work order (the open work the desk knows of)
    types: new Map(), // service code → {name, colour}
    selected: null, // work order id of the selected stop
    placing: null, // the request being pinned
    timer: null,
    gone: false,
  };

  // -- the frame -------------------------------------------------------------------
  const heading = h("h1", { class: "visually-hidden" }, t("dispatch.title"));
  const side = h("div", { class: "dispatch-side", role: "region", "aria-label": t("dispatch.panels") });
  const mapEl = h("div", { class: "dispatch-map", id: "dispatch-map" });
  const legend = h("div", { class: "dispatch-legend", id: "dispatch-legend", role: "region", "aria-label": t("dispatch.legend") });
  const timeline = h("section", { class: "dispatch-timeline", id: "timeline", "aria-label": t("dispatch.timeline") });
  const stage = h("div", { class: "dispatch-stage" }, h("div", { class: "dispatch-map-wrap" }, mapEl, legend), timeline);
  root.append(h("div", { class: "dispatch" }, heading, side, stage));

  const map = createMap(mapEl, config, { label: t("dispatch.map") });
  const layers = {
    work: L.layerGroup().addTo(map),
    crews: L.layerGroup().addTo(map),
    routes: L.layerGroup().addTo(map),
  };

  // -- panels ----------------------------------------------------------------------
  const dateInput = h("input", { type: "date", id: "plan-date", name: "date", value: state.date, min: fmt.localDate(), required: true });
  const scopeSelect = h("select", { id: "plan-scope", name: "scope" }, h("option", { value: "" }, t("dispatch.scope_all")));
  const limitInput = h("input", { type: "number", id: "plan-limit", name: "time_limit_s", min: 1, max: 600, value: 30, required: true });
  const planError = h("div", { class: "message", "data-kind": "error", id: "plan-error" });
  const planForm = h("form", { class: "panel", id: "plan-form", "aria-labelledby": "plan-form-title" },
    h("h2", { id: "plan-form-title" }, t("dispatch.plan_day")),
    h("div", { class: "row3" },
      h("div", { class: "grow" }, h("label", { for: "plan-date" }, t("dispatch.date")), dateInput),
      h("div", {}, h("label", { for: "plan-limit" }, t("dispatch.time_limit")), limitInput)),
    h("label", { for: "plan-scope" }, t("dispatch.scope")), scopeSelect,
    planError,
    h("button", { type: "submit", class: "primary", id: "plan-start" }, t("dispatch.start")));
  const plansList = h("ul", { class: "plans", id: "plans" });
  const plansPanel = h("section", { class: "panel", "aria-labelledby": "plans-title" },
    h("h2", { id: "plans-title" }, t("dispatch.plans_of_day")), plansList);
  const planPanel = h("section", { class: "panel", id: "plan-panel", "aria-labelledby": "plan-title", hidden: true });
  const stopPanel = h("section", { class: "panel", id: "stop-panel", "aria-labelledby": "stop-title", hidden: true });
  const unassignedPanel = h("section", { class: "panel", id: "unassigned", "aria-labelledby": "unassigned-title", hidden: true });
  // Hidden until its first list is drawn: a section labelled by a heading it does not have
  // yet is a "generic" element with a label, which ARIA prohibits (axe flags it).
  const pinsPanel = h("section", { class: "panel", id: "pins", "aria-labelledby": "pins-title", hidden: true });
  side.append(planForm, plansPanel, planPanel, stopPanel, unassignedPanel, pinsPanel);

  // -- loading what the desk shows ---------------------------------------------------
  async function loadLists() {
    const [types, crews, depots, districts] = await Promise.all([
      api.get("/service-types"), api.get("/crews"), api.get("/depots"), api.get("/districts"),
    ]);
    types.forEach((st, i) => state.types.set(st.code, { name: st.name, colour: PALETTE[i % PALETTE.length] }));
    const agencies = [...new Set(crews.filter((c) => c.active).map((c) => c.agency))].sort();
    const group = (label, kind, items) => items.length
      ? h("optgroup", { label }, items.map(([value, name]) => h("option", { value: `${kind}:${value}` }, name)))
      : null;
    scopeSelect.append(
      group(t("dispatch.scope_agency"), "agency", agencies.map((a) => [a, a])),
      group(t("dispatch.scope_depot"), "depot", depots.map((d) => [d.code, d.name])),
      group(t("dispatch.scope_district"), "district", districts.map((d) => [d.code, d.name])));
    renderLegend();
  }

  async function loadWork() {
    const page = await api.get("/work-orders", { query: { status: OPEN.join(","), page_size: MAX_PAGE } });
    state.work = new Map(page.items.map((wo) => [wo.id, wo]));
    renderWork();
  }

  async function loadCrews() {
    const positions = await api.get("/crews/positions");
    layers.crews.clearLayers();
    for (const p of positions) {
      const el = h("span", { class: "crew-pin" }, p.crew);
      L.marker([p.lat, p.lon], { icon: L.divIcon({ html: el, className: "crew-icon", iconSize: null }), keyboard: false,
        title: t("dispatch.crew_at", { crew: p.crew, time: fmt.time(p.at) }), zIndexOffset: 1000 }).addTo(layers.crews);
    }
  }

  async function loadPins() {
    const page = await api.get("/requests", { query: { needs_pin: true, status: "received,acknowledged,scheduled,in_progress,reopened", page_size: 100 } });
    renderPins(page.items);
  }

  async function loadPlans(keep) {
    state.plans = await api.get("/plans", { query: { date: state.date } });
    renderPlans();
    const wanted = keep ?? (state.plan && state.plan.date === state.date ? state.plan.id : null);
    const open = state.plans.find((p) => p.id === wanted) || state.plans.find((p) => p.status === "published")
      || state.plans.find((p) => ["ready", "running", "queued"].includes(p.status));
    if (open) await openPlan(open.id);
    else showPlan(null);
  }

  // -- the map -----------------------------------------------------------------------
  function typeOf(code) {
    return state.types.get(code) || { name: code, colour: "#3d4550" };
  }

  function renderLegend() {
    const swatch = (colour, round) => {
      const dot = h("span", { class: `swatch${round ? " round" : ""}`, "aria-hidden": "true" });
      dot.style.background = colour;
      return dot;
    };
    const routes = state.plan && state.plan.routes && state.plan.routes.length ? state.plan.routes : null;
    replace(legend,
      h("h2", {}, t("dispatch.legend")),
      routes ? h("h3", {}, t("dispatch.legend_routes")) : null,
      routes ? h("ul", {}, routes.map((r) => h("li", {}, swatch(crewColour(r.crew), true), r.crew))) : null,
      routes ? h("h3", {}, t("dispatch.legend_open_work")) : null,
      h("ul", {}, [...state.types.entries()].map(([, ty]) => h("li", {}, swatch(ty.colour), ty.name)),
      h("li", {}, h("span", { class: "work-pin sample", "aria-hidden": "true" }, "3"), t("dispatch.legend_priority")),
      h("li", {}, h("span", { class: "work-pin sample overdue", "aria-hidden": "true" }, "!"), t("dispatch.legend_overdue")),
      h("li", {}, h("span", { class: "crew-pin sample", "aria-hidden": "true" }, "A"), t("dispatch.legend_crew"))));
  }

  function isOverdue(wo) {
    return wo.due_at && new Date(wo.due_at) < new Date();
  }

  function renderWork() {
    layers.work.clearLayers();
    const onPlan = planJobIds();
    for (const wo of state.work.values()) {
      if (!wo.location || onPlan.has(wo.id)) continue; // a planned stop shows as its numbered stop
      const ty = typeOf(wo.service_code);
      const overdue = isOverdue(wo);
      const el = h("span", { class: `work-pin${overdue ? " overdue" : ""}` }, overdue ? `${wo.priority}!` : String(wo.priority));
      paint(el, ty.colour);
      const title = t("dispatch.work_title", { id: wo.id, type: ty.name, priority: wo.priority, address: wo.address || "" })
        + (overdue ? ` · ${t("dispatch.overdue")}` : "");
      L.marker([wo.location.lat, wo.location.lon], { icon: L.divIcon({ html: el, className: "work-icon", iconSize: null }),
        title, keyboard: false }).addTo(layers.work);
    }
  }

  function crewColour(code) {
    const codes = state.plan ? state.plan.routes.map((r) => r.crew) : [];
    const i = codes.indexOf(code);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
  }

  function renderRoutes() {
    layers.routes.clearLayers();
    const plan = state.plan;
    if (!plan || !plan.routes) return;
    L.geoJSON(plan.geojson, {
      style: (ft) => ({ color: crewColour(ft.properties.crew), weight: 5, opacity: 0.85 }),
      interactive: false,
    }).addTo(layers.routes);
    for (const route of plan.routes) {
      let n = 0;
      for (const stop of route.stops) {
        if (stop.kind !== "job") continue;
        n += 1;
        const wo = state.work.get(stop.work_order_id);
        if (!wo || !wo.location) continue;
        const el = h("span", { class: `stop-pin${stop.locked ? " locked" : ""}${stop.work_order_id === state.selected ? " selected" : ""}` }, String(n));
        paint(el, crewColour(route.crew));
        L.marker([wo.location.lat, wo.location.lon], {
          icon: L.divIcon({ html: el, className: "stop-icon", iconSize: null }), keyboard: false,
          title: t("dispatch.stop_title", { n, crew: route.crew, id: wo.id, address: wo.address || "", time: fmt.time(stop.start_at) }),
        }).on("click", () => selectStop(stop.work_order_id)).addTo(layers.routes);
      }
    }
  }

  function planJobIds() {
    const ids = new Set();
    for (const r of (state.plan && state.plan.routes) || []) for (const s of r.stops) if (s.kind === "job") ids.add(s.work_order_id);
    return ids;
  }

  /** Zoom to what matters (the routes, else the open work); the service area otherwise. */
  function fitTo(group) {
    const layersIn = group.getLayers();
    if (!layersIn.length) return;
    const bounds = L.featureGroup(layersIn).getBounds();
    if (bounds.isValid()) map.fitBounds(bounds, { padding: [48, 48], maxZoom: 16 });
  }

  // -- pins: address-only reports ----------------------------------------------------
  const pinStatus = h("p", { class: "pin-status", id: "pin-status", role: "status" });

  function renderPins(items) {
    pinsPanel.hidden = false;
    replace(pinsPanel, h("h2", { id: "pins-title" }, t("dispatch.pins", { count: items.length })), pinStatus,
      items.length ? h("ul", { class: "pins-list" }, items.map((req) => h("li", {},
        h("span", { class: "pin-what" }, h("strong", {}, req.address || t("dispatch.no_address")), " ",
          h("span", { class: "muted" }, `${typeOf(req.service_code).name} · ${req.service_request_id}`)),
        h("button", { type: "button", class: "small", dataset: { request: req.service_request_id },
          "aria-pressed": state.placing === req.service_request_id ? "true" : "false",
          onclick: () => startPlacing(req) }, t("dispatch.place_pin")))))
        : h("p", { class: "muted" }, t("dispatch.no_pins")));
  }

  function startPlacing(req) {
    state.placing = req.service_request_id;
    mapEl.classList.add("placing");
    announce(pinStatus, t("dispatch.placing", { address: req.address || req.service_request_id }));
    for (const b of pinsPanel.querySelectorAll("button[aria-pressed]")) b.setAttribute("aria-pressed", "false");
    pinsPanel.querySelector(`[data-request="${CSS.escape(req.service_request_id)}"]`)?.setAttribute("aria-pressed", "true");
    mapEl.focus();
  }

  const cancelPlacing = (e) => {
    if (e.key !== "Escape" || !state.placing) return;
    state.placing = null;
    mapEl.classList.remove("placing");
    replace(pinStatus);
  };
  document.addEventListener("keydown", cancelPlacing);

  map.on("click", async (e) => {
    if (!state.placing) return;
    const id = state.placing;
    state.placing = null;
    mapEl.classList.remove("placing");
    try {
      await api.post(`/requests/${encodeURIComponent(id)}/pin`, { json: { lat: e.latlng.lat, lon: e.latlng.lng } });
      replace(pinStatus);
      ctx.toast(t("dispatch.pinned", { id }), "ok");
      await Promise.all([loadPins(), loadWork()]);
    } catch (err) {
      if (!state.gone) announce(pinStatus, refusal(err), "error");
    }
  });

  // -- plans of the day ----------------------------------------------------------------
  function statusBadge(status) {
    const kind = { published: "ok", ready: "ok", failed: "bad", running: "warn", queued: "warn" }[status] || "";
    return h("span", { class: `badge ${kind}` }, t(`dispatch.status_${status}`));
  }

  function renderPlans() {
    replace(plansList, state.plans.length ? state.plans.map((p) => h("li", {},
      h("button", { type: "button", class: "plan-link", "aria-current": state.plan && state.plan.id === p.id ? "true" : null,
        onclick: () => openPlan(p.id) },
        h("span", {}, t("dispatch.plan_name", { version: p.version, scope: scopeWords(p.scope) })), statusBadge(p.status))))
      : h("li", { class: "muted" }, t("dispatch.no_plans")));
  }

  function scopeWords(scope) {
    const parts = Object.entries(scope || {}).filter(([, v]) => v).map(([k, v]) => `${t(`dispatch.scope_${k}`)} ${v}`);
    return parts.length ? parts.join(", ") : t("dispatch.scope_all");
  }

  planForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    replace(planError);
    const [kind, value] = (scopeSelect.value || ":").split(/:(.*)/s);
    const body = { date: dateInput.value, time_limit_s: Number(limitInput.value), scope: kind ? { [kind]: value } : {} };
    try {
      const accepted = await api.post("/plans", { json: body });
      state.date = body.date;
      await loadPlans(accepted.id);
    } catch (err) {
      replace(planError, refusal(err));
    }
  });

  dateInput.addEventListener("change", () => {
    if (!dateInput.value) return;
    state.date = dateInput.value;
    state.plan = null;
    loadPlans().catch(fail);
  });

  // -- the open plan ---------------------------------------------------------------------
  async function openPlan(id) {
    clearTimeout(state.timer);
    const plan = await api.get(`/plans/${id}`);
    if (state.gone) return;
    const fresh = !state.plan || state.plan.id !== plan.id;
    const solving = plan.status === "queued" || plan.status === "running";
    if (fresh) state.selected = null;
    // While it solves only the progress changes: the map and the lists are left as they are
    // (a city's day is hundreds of markers, and this runs every POLL_MS).
    if (!fresh && solving && state.plan.status === plan.status) {
      state.plan = plan;
      renderPlanPanel();
    } else {
      showPlan(plan);
    }
    history.replaceState(null, "", `#/dispatch/${plan.id}`);
    if (solving) {
      state.timer = setTimeout(() => openPlan(id).catch(fail), POLL_MS);
    } else if (fresh || plan.status === "ready") {
      // A plan just solved has put work in "planned": the map's work follows.
      await loadWork();
      renderRoutes();
      fitTo(layers.routes);
    }
  }

  function showPlan(plan) {
    state.plan = plan;
    // The list says what the open plan says (it was read before the plan moved on).
    if (plan) state.plans = state.plans.map((p) => (p.id === plan.id ? { ...p, status: plan.status } : p));
    renderLegend();
    renderPlans();
    renderPlanPanel();
    renderUnassigned();
    renderStop();
    renderTimeline();
    renderRoutes();
    renderWork();
  }

  function figure(label, value, id) {
    return h("div", { class: "figure", id }, h("span", { class: "figure-value" }, value), h("span", { class: "figure-label" }, label));
  }

  function renderPlanPanel() {
    const plan = state.plan;
    planPanel.hidden = !plan;
    if (!plan) return replace(planPanel);
    const title = h("h2", { id: "plan-title" }, t("dispatch.plan_name", { version: plan.version, scope: scopeWords(plan.scope) }), " ", statusBadge(plan.status));
    const body = [];
    if (plan.status === "queued" || plan.status === "running") {
      const p = plan.progress;
      const limit = (p && p.time_limit_s) || plan.time_limit_s;
      const elapsed = p ? Math.min(p.elapsed_s, limit) : 0;
      const phase = p ? p.phase : "queued";
      body.push(h("div", { class: "progress", id: "solve-progress" },
        h("label", { for: "solve-bar" }, t(`dispatch.phase_${phase}`)),
        h("progress", { id: "solve-bar", max: limit, value: elapsed }),
        h("p", { class: "progress-time" }, t("dispatch.elapsed", { elapsed: elapsed.toFixed(1), limit })),
        p && p.parts ? h("p", { class: "progress-parts", id: "solve-parts" }, t("dispatch.parts_done", p.parts)) : null,
        p && p.best
          ? h("div", { class: "figures", "aria-label": t("dispatch.best_so_far") },
            figure(t("dispatch.fig_scheduled"), p.best.scheduled, "best-scheduled"),
            figure(t("dispatch.fig_unassigned"), p.best.unassigned),
            figure(t("dispatch.fig_drive"), fmt.duration(p.best.drive_s)),
            figure(t("dispatch.fig_distance"), km(p.best.distance_m)))
          : h("p", { class: "muted" }, t("dispatch.no_best_yet"))));
    } else if (plan.status === "failed") {
      body.push(h("p", { class: "message", "data-kind": "error" }, t("dispatch.failed", { error: plan.error || "" })));
    } else {
      const s = plan.stats || {};
      body.push(h("div", { class: "figures" },
        figure(t("dispatch.fig_scheduled"), s.scheduled ?? 0, "fig-scheduled"),
        figure(t("dispatch.fig_unassigned"), plan.unassigned.length),
        figure(t("dispatch.fig_drive"), fmt.duration(s.drive_s || 0)),
        figure(t("dispatch.fig_distance"), km(s.distance_m || 0))));
      if (plan.progress && plan.progress.phase === "done") {
        body.push(h("p", { class: "muted" }, t("dispatch.solved_in", { elapsed: plan.progress.elapsed_s, limit: plan.progress.time_limit_s })));
      }
      if (s.feasible === false) body.push(h("p", { class: "message", "data-kind": "error" }, (s.violations || []).join("; ")));
      if (plan.published_at) body.push(h("p", { class: "muted" }, t("dispatch.published_at", { time: fmt.dateTime(plan.published_at) })));
      for (const ex of plan.excluded_crews || []) body.push(h("p", { class: "muted" }, t("dispatch.crew_left_out", { crew: ex.crew, message: ex.message })));
      const actions = h("div", { class: "actions" });
      if (plan.status === "ready") actions.append(h("button", { type: "button", class: "primary", id: "publish", onclick: publish }, t("dispatch.publish")));
      if (plan.status === "published") actions.append(h("button", { type: "button", class: "primary", id: "replan", onclick: replan }, t("dispatch.replan")));
      body.push(actions);
    }
    body.push(h("div", { class: "message", "data-kind": "error", id: "plan-refusal", role: "alert" }));
    replace(planPanel, title, ...body);
  }

  function km(m) {
    return t("dispatch.km", { km: (m / 1000).toFixed(1) });
  }

  async function publish() {
    try {
      await api.post(`/plans/${state.plan.id}/publish`);
      ctx.toast(t("dispatch.published"), "ok");
      await loadPlans(state.plan.id);
    } catch (err) {
      replace(planPanel.querySelector("#plan-refusal"), refusal(err));
    }
  }

  async function replan() {
    try {
      const accepted = await api.post(`/plans/${state.plan.id}/replan`, { json: { time_limit_s: Number(limitInput.value) } });
      await loadPlans(accepted.id);
    } catch (err) {
      replace(planPanel.querySelector("#plan-refusal"), refusal(err));
    }
  }

  // -- unassigned work ---------------------------------------------------------------------
  function renderUnassigned() {
    const plan = state.plan;
    const items = plan && plan.unassigned ? plan.unassigned : [];
    unassignedPanel.hidden = !plan || !["ready", "published"].includes(plan.status);
    const list = h("ul", { class: "unassigned-list" }, items.map((u) => {
      const wo = state.work.get(u.work_order_id);
      return h("li", {},
        h("div", {}, h("strong", {}, t("dispatch.work_order", { id: u.work_order_id })), " ",
          wo ? h("span", {}, `${typeOf(wo.service_code).name} · ${wo.address || ""}`) : null),
        h("p", { class: "reason" }, u.message),
        wo && !wo.must_do_on && u.reason !== "needs_pin"
          ? h("button", { type: "button", class: "small", onclick: () => mustDo(u.work_order_id) }, t("dispatch.must_do"))
          : wo && wo.must_do_on ? h("span", { class: "badge warn" }, t("dispatch.is_must_do")) : null);
    }));
    replace(unassignedPanel, h("h2", { id: "unassigned-title" }, t("dispatch.unassigned", { count: items.length })),
      items.length ? list : h("p", { class: "muted" }, t("dispatch.none_unassigned")));
  }

  async function mustDo(id) {
    try {
      await api.put(`/work-orders/${id}/must-do`, { json: { date: state.plan.date } });
      ctx.toast(t("dispatch.must_do_done", { id }), "ok");
      await loadWork();
      renderUnassigned();
    } catch (err) {
      fail(err);
    }
  }

  // -- the selected stop: move, lock, remove -------------------------------------------------
  function findStop(id) {
    for (const route of (state.plan && state.plan.routes) || []) {
      const jobs = route.stops.filter((s) => s.kind === "job");
      const i = jobs.findIndex((s) => s.work_order_id === id);
      if (i >= 0) return { route, stop: jobs[i], position: i + 1 };
    }
    return null;
  }

  function selectStop(id) {
    state.selected = id;
    renderStop();
    renderTimeline();
    renderRoutes();
    const first = stopPanel.querySelector("select");
    if (first) first.focus();
  }

  function renderStop() {
    const found = state.selected != null ? findStop(state.selected) : null;
    const plan = state.plan;
    stopPanel.hidden = !found;
    if (!found) return replace(stopPanel);
    const { route, stop, position } = found;
    const wo = state.work.get(stop.work_order_id);
    const editable = plan.status === "ready";
    const crewSelect = h("select", { id: "move-crew", name: "crew" },
      plan.routes.map((r) => h("option", { value: r.crew, selected: r.crew === route.crew }, r.crew)));
    const positionInput = h("input", { type: "number", id: "move-position", name: "position", min: 1, value: position, required: true });
    const makeRoom = h("input", { type: "checkbox", id: "move-room", name: "make_room" });
    const refusalBox = h("div", { class: "message", "data-kind": "error", id: "edit-refusal", role: "alert" });
    const form = h("form", { id: "move-form", "aria-labelledby": "move-title" },
      h("h3", { id: "move-title" }, t("dispatch.move_to")),
      h("div", { class: "row3" },
        h("div", { class: "grow" }, h("label", { for: "move-crew" }, t("dispatch.crew")), crewSelect),
        h("div", {}, h("label", { for: "move-position" }, t("dispatch.position")), positionInput)),
      h("div", { class: "check" }, makeRoom, h("label", { for: "move-room" }, t("dispatch.make_room"))),
      h("button", { type: "submit", class: "primary", id: "move-submit", disabled: !editable }, t("dispatch.move")));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      move(stop.work_order_id, crewSelect.value, Number(positionInput.value), makeRoom.checked, refusalBox);
    });
    replace(stopPanel,
      h("h2", { id: "stop-title" }, t("dispatch.stop_heading", { n: position, crew: route.crew }),
        stop.locked ? h("span", { class: "badge warn" }, t("dispatch.locked")) : null),
      h("p", {}, h("strong", {}, t("dispatch.work_order", { id: stop.work_order_id })), " ",
        wo ? `${typeOf(wo.service_code).name} · ${wo.address || ""}` : ""),
      h("p", { class: "muted" }, t("dispatch.stop_times", { start: fmt.time(stop.start_at), end: fmt.time(stop.end_at) })),
      editable ? null : h("p", { class: "muted" }, t("dispatch.edit_draft_only")),
      form,
      h("div", { class: "actions" },
        h("button", { type: "button", id: "lock-toggle", "aria-pressed": stop.locked ? "true" : "false",
          disabled: !["ready", "published"].includes(plan.status), onclick: () => lock(stop.work_order_id, !stop.locked, refusalBox) },
        stop.locked ? t("dispatch.unlock") : t("dispatch.lock")),
        h("button", { type: "button", class: "danger", id: "remove-stop", disabled: !editable,
          onclick: () => removeStop(stop.work_order_id, refusalBox) }, t("dispatch.remove")),
        h("button", { type: "button", onclick: () => selectStop(null) }, t("dispatch.close"))),
      refusalBox);
  }

  async function edit(call, box) {
    try {
      const plan = await call();
      showPlan(plan);
      return true;
    } catch (err) {
      if (state.gone) return false;
      if (!(err instanceof ApiError)) throw err;
      // The stop panel was redrawn by nothing: the refusal stays where the edit was asked.
      replace(box, h("strong", {}, t("dispatch.refused")), " ", refusal(err));
      return false;
    }
  }

  async function move(id, crew, position, makeRoomFlag, box) {
    if (await edit(() => api.post(`/plans/${state.plan.id}/moves`, { json: { work_order_id: id, crew, position, make_room: makeRoomFlag } }), box)) {
      ctx.toast(t("dispatch.moved", { id, crew, position }), "ok");
    }
  }

  async function lock(id, locked, box) {
    await edit(() => api.put(`/plans/${state.plan.id}/stops/${id}/lock`, { json: { locked } }), box);
  }

  async function removeStop(id, box) {
    if (await edit(() => api.delete(`/plans/${state.plan.id}/stops/${id}`), box)) {
      state.selected = null;
      renderStop();
      ctx.toast(t("dispatch.removed", { id }), "ok");
    }
  }

  // -- the timeline --------------------------------------------------------------------------
  function renderTimeline() {
    const plan = state.plan;
    if (!plan || !plan.routes || !plan.routes.length) {
      replace(timeline, h("h2", {}, t("dispatch.timeline")), h("p", { class: "muted" }, plan ? t("dispatch.timeline_waiting") : t("dispatch.timeline_empty")));
      return;
    }
    const starts = plan.routes.map((r) => fmt.minutesOfDay(r.start_at));
    const ends = plan.routes.map((r) => fmt.minutesOfDay(r.end_at));
    const from = Math.floor(Math.min(...starts) / 60) * 60;
    const to = Math.max(from + 60, Math.ceil(Math.max(...ends) / 60) * 60);
    const pct = (v) => `${((fmt.minutesOfDay(v) - from) / (to - from)) * 100}%`;
    const span = (a, b) => `${Math.max(0.3, ((fmt.minutesOfDay(b) - fmt.minutesOfDay(a)) / (to - from)) * 100)}%`;
    const place = (el, a, b) => { el.style.left = pct(a); el.style.width = span(a, b); return el; };

    const axis = h("div", { class: "tl-axis", "aria-hidden": "true" });
    for (let m = from; m <= to; m += 60) {
      const tick = h("span", { class: "tl-tick" }, `${String(Math.floor(m / 60) % 24).padStart(2, "0")}:00`);
      tick.style.left = `${((m - from) / (to - from)) * 100}%`;
      axis.append(tick);
    }
    const editable = plan.status === "ready";
    const rows = plan.routes.map((route) => {
      const colour = crewColour(route.crew);
      const track = h("div", { class: "tl-track", dataset: { crew: route.crew } });
      track.style.backgroundSize = `${(60 / (to - from)) * 100}% 100%`;
      const shift = place(h("div", { class: "tl-shift", "aria-hidden": "true" }), route.start_at, route.end_at);
      track.append(shift);
      let prevEnd = route.start_at;
      let n = 0;
      for (const stop of route.stops) {
        if (stop.kind === "job" && new Date(stop.arrival_at) > new Date(prevEnd)) {
          track.append(place(h("div", { class: "tl-drive", "aria-hidden": "true" }), prevEnd, stop.arrival_at));
        }
        if (stop.kind === "break") {
          track.append(place(h("div", { class: "tl-break", title: t("dispatch.break_title", { start: fmt.time(stop.start_at), end: fmt.time(stop.end_at) }) },
            h("span", { class: "visually-hidden" }, t("dispatch.break_title", { start: fmt.time(stop.start_at), end: fmt.time(stop.end_at) }))), stop.start_at, stop.end_at));
        } else {
          n += 1;
          const wo = state.work.get(stop.work_order_id);
          const label = t("dispatch.block_label", { n, id: stop.work_order_id, type: wo ? typeOf(wo.service_code).name : "",
            address: wo ? wo.address || "" : "", start: fmt.time(stop.start_at), end: fmt.time(stop.end_at) })
            + (stop.locked ? ` · ${t("dispatch.locked")}` : "");
          const block = h("button", {
            type: "button", class: `tl-stop${stop.locked ? " locked" : ""}${state.selected === stop.work_order_id ? " selected" : ""}`,
            draggable: editable && !stop.locked ? "true" : "false", "aria-label": label, title: label,
            dataset: { wo: stop.work_order_id, crew: route.crew, position: n },
            onclick: () => selectStop(stop.work_order_id),
          }, String(n));
          paint(block, colour);
          block.addEventListener("dragstart", (e) => {
            e.dataTransfer.setData("text/plain", String(stop.work_order_id));
            e.dataTransfer.effectAllowed = "move";
            block.classList.add("dragging");
          });
          block.addEventListener("dragend", () => block.classList.remove("dragging"));
          track.append(place(block, stop.start_at, stop.end_at));
        }
        prevEnd = stop.end_at;
      }
      if (new Date(route.end_at) > new Date(prevEnd) && n) track.append(place(h("div", { class: "tl-drive", "aria-hidden": "true" }), prevEnd, route.end_at));
      if (editable) dropTarget(track, route);
      const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = colour;
      return h("div", { class: "tl-row", role: "group", "aria-label": t("dispatch.row_label", { crew: route.crew }) },
        h("div", { class: "tl-crew" }, swatch, h("strong", {}, route.crew),
          h("span", { class: "muted" }, t("dispatch.row_figures", { count: n, drive: fmt.duration(route.drive_s),
            start: fmt.time(route.start_at), end: fmt.time(route.end_at) }))),
        track);
    });
    replace(timeline,
      h("div", { class: "tl-head" }, h("h2", {}, t("dispatch.timeline")),
        h("p", { class: "muted" }, editable ? t("dispatch.drag_hint") : t("dispatch.edit_draft_only")),
        h("ul", { class: "tl-key", "aria-hidden": "true" },
          h("li", {}, h("span", { class: "tl-key-stop" }), t("dispatch.key_stop")),
          h("li", {}, h("span", { class: "tl-key-drive" }), t("dispatch.key_drive")),
          h("li", {}, h("span", { class: "tl-key-break" }), t("dispatch.key_break")),
          h("li", {}, h("span", { class: "tl-key-locked" }), t("dispatch.key_locked")))),
      h("div", { class: "tl-grid" }, h("div", { class: "tl-row tl-axis-row" }, h("div", { class: "tl-crew" }), axis), ...rows));
  }

  /** A crew's row takes a dragged stop; the position is where it is dropped among the row's stops. */
  function dropTarget(track, route) {
    track.addEventListener("dragover", (e) => {
      e.preventDefault();
      e.dataTransfer.dropEffect = "move";
      track.classList.add("drop");
    });
    track.addEventListener("dragleave", () => track.classList.remove("drop"));
    track.addEventListener("drop", (e) => {
      e.preventDefault();
      track.classList.remove("drop");
      const id = Number(e.dataTransfer.getData("text/plain"));
      if (!id) return;
      const blocks = [...track.querySelectorAll(".tl-stop")].filter((b) => Number(b.dataset.wo) !== id);
      const position = 1 + blocks.filter((b) => {
        const r = b.getBoundingClientRect();
        return r.left + r.width / 2 < e.clientX;
      }).length;
      state.selected = id;
      renderStop();
      move(id, route.crew, position, false, stopPanel.querySelector("#edit-refusal"));
    });
  }

  // -- words for refusals ----------------------------------------------------------------------
  function refusal(err) {
    if (err instanceof ApiError) {
      const details = err.details.filter((d) => !err.message.includes(d.replace(/^[^:]*: /, "")));
      return [err.message, ...details].join(" · ");
    }
    return t("dispatch.unreachable");
  }

  function fail(err) {
    if (state.gone || (err && err.name === "AbortError")) return;
    ctx.toast(refusal(err), "error");
  }

  // -- start -----------------------------------------------------------------------------------
  // The desk loads in the background: mount returns its unmount at once, so the console can
  // take the desk down (sign-out, another desk) while it is still loading.
  async function load() {
    await loadLists();
    await Promise.all([loadWork(), loadCrews(), loadPins()]);
    fitTo(layers.work);
    const wanted = Number(ctx.params[0]) || null;
    if (wanted) {
      const p = await api.get(`/plans/${wanted}`).catch((err) => { if (err.name === "AbortError") throw err; return null; });
      if (p && p.date) { state.date = p.date; dateInput.value = p.date; }
    }
    await loadPlans(wanted);
  }
  load().catch(fail);
  const refresh = setInterval(() => loadCrews().catch(fail), 30000);

  return () => {
    state.gone = true;
    aborter.abort();
    clearTimeout(state.timer);
    clearInterval(refresh);
    document.removeEventListener("keydown", cancelPlacing);
    map.remove();
  };
}
