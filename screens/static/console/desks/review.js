// The review desk: supervisors judge the crews' proof of work that the checks did not
// accept on their own (or that was drawn for an audit).
//
// Left, the queue (GET /reviews, oldest first, with the API's filters). Right, the item
// chosen: the residents' and the crew's photos side by side, a map of the site, the crew's
// fix, its accuracy and its GPS track, every check with its number and its limit, and the
// work order's timeline. The decision (POST /completions/{id}/review) is taken by mouse or
// keyboard: V verify, R reject with a reason, C close with an outcome, J/K move in the
// queue, Esc cancels. After a decision the next item is shown.
//
// The item is in the URL (#/review/<completion id>) so a link to it can be shared. Everything
// residents and crews wrote is put on the page as text (dom.js). Originals of photos are
// fetched with the token in the header and shown from a blob URL, never a token in a URL.
import { ApiError, NetworkError } from "/assets/shared/api.js";
import { h, replace } from "/assets/shared/dom.js";
import { createMap, PALETTE } from "/assets/shared/map.js";

// The queue's reason codes (geo.proof.verdict and core.closing), for the filter.
const REASONS = [
  "distance_failed", "fix_age_failed", "exif_location_failed", "exif_time_failed", "track_failed", "teleport_failed",
  "reuse_failed", "photo_missing", "distance_missing", "fix_age_missing", "policy_requires_review", "audit_sample",
  "needs_other_crew",
];
// What a supervisor may close with instead of the crew's outcome (core.models.CLOSE_OUTCOMES).
const CLOSE_OUTCOMES = ["not_found", "no_action_needed", "referred", "duplicate"];
// The oldest this many are listed; the count says how many more wait.
const PAGE_SIZE = 100;
const COLOURS = { site: PALETTE[0], fix: PALETTE[1], track: PALETTE[2] };

export async function mount(root, ctx) {
  const { api, t, fmt } = ctx;
  const state = {
    filters: { service_code: "", crew: "", district: "", reason: "" },
    items: [],
    total: 0,
    selectedId: ctx.params[0] ? Number(ctx.params[0]) : null,
    detail: null,
    map: null,
    panel: null, // "verify" | "reject" | "close" | null
    busy: false,
    blobs: new Set(),
    // Answers that arrive after a newer request was sent are dropped (filters changed,
    // another item chosen meanwhile).
    queueSeq: 0,
    detailSeq: 0,
  };

  // -- the layout ---------------------------------------------------------------------
  const selects = {};
  const filterField = (name) => {
    const id = `review-filter-${name}`;
    selects[name] = h("select", { id, name, onchange: () => { state.filters[name] = selects[name].value; loadQueue(); } },
      h("option", { value: "" }, t("review.filter.any")));
    return h("div", { class: "review-filter" }, h("label", { for: id }, t(`review.filter.${name}`)), selects[name]);
  };
  const filters = h("form", { class: "review-filters", "aria-label": t("review.filters"), onsubmit: (e) => e.preventDefault() },
    filterField("service_code"), filterField("crew"), filterField("district"), filterField("reason"));
  const count = h("p", { class: "review-count", id: "review-count", role: "status" });
  const queue = h("ol", { class: "review-queue", id: "review-queue", "aria-label": t("review.queue") });
  const keyRow = (key, what) => [h("dt", {}, h("kbd", {}, key)), h("dd", {}, t(what))];
  const keys = h("section", { class: "review-keys", "aria-labelledby": "review-keys-title" },
    h("h2", { id: "review-keys-title" }, t("review.keys")),
    h("dl", {},
      keyRow("J", "review.key.next"), keyRow("K", "review.key.previous"), keyRow("V", "review.key.verify"),
      keyRow("R", "review.key.reject"), keyRow("C", "review.key.close"), keyRow("Esc", "review.key.cancel")),
    h("p", { class: "field-hint" }, t("review.key.note")));
  const side = h("div", { class: "review-side" }, h("h1", {}, t("review.heading")), filters, count, queue, keys);
  const pane = h("div", { class: "review-detail", id: "review-detail" },
    h("p", { class: "message" }, t("review.select_hint")));
  root.append(h("div", { class: "review-desk" }, side, pane));

  // -- helpers ------------------------------------------------------------------------
  const words = (prefix, code) => (code ? t(`${prefix}.${code}`) : "");
  const measure = (value, unit) => {
    if (value === null || value === undefined) return "–";
    const n = Number.isInteger(value) ? String(value) : value.toFixed(1);
    return unit ? t(`review.unit.${unit}`, { value: n }) : n;
  };
  const failure = (err) => {
    if (err instanceof NetworkError) return t("review.offline");
    if (err instanceof ApiError) return [err.message, ...err.details].join(" ");
    return String(err && err.message ? err.message : err);
  };
  // The checks' details are the server's words, with any instant in ISO form (UTC): shown
  // in the city's zone like every other time of the desk.
  const localTimes = (text) => (text || "").replace(/\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)/g,
    (iso) => fmt.dateTime(iso));
  const itemTitle = (item) => t("review.detail_title", {
    service: item.work_order.service_name || item.work_order.service_code,
    address: item.work_order.address || t("review.no_address"),
  });

  function clearMap() {
    if (state.map) { state.map.stop(); state.map.remove(); state.map = null; }
  }
  function revokeBlobs() {
    for (const url of state.blobs) URL.revokeObjectURL(url);
    state.blobs.clear();
  }

  // -- the filters' choices -------------------------------------------------------------
  async function loadChoices() {
    const add = (name, rows) => selects[name].append(...rows.map(([value, label]) => h("option", { value }, label)));
    add("reason", REASONS.map((r) => [r, t(`review.reason.${r}`)]));
    const [types, crews, districts] = await Promise.all(
      ["/service-types", "/crews", "/districts"].map((p) => api.get(p).catch((err) => { console.warn(p, err); return []; })));
    add("service_code", types.map((x) => [x.code, x.name || x.code]));
    add("crew", crews.map((x) => [x.code, x.name && x.name !== x.code ? `${x.code} (${x.name})` : x.code]));
    add("district", districts.map((x) => [x.code, x.name || x.code]));
  }

  // -- the queue --------------------------------------------------------------------------
  async function loadQueue({ keepIndex = null } = {}) {
    const seq = ++state.queueSeq;
    let page;
    try {
      page = await api.get("/reviews", { query: { ...state.filters, page_size: PAGE_SIZE } });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      replace(count, failure(err));
      count.dataset.kind = "error";
      return;
    }
    if (seq !== state.queueSeq) return;
    delete count.dataset.kind;
    state.items = page.items;
    state.total = page.total;
    replace(count, t("review.count", { count: page.total }),
      page.total > page.items.length ? ` ${t("review.count_more", { shown: page.items.length, count: page.total })}` : "");
    renderQueue();
    const filtered = Object.values(state.filters).some(Boolean);
    if (keepIndex !== null) {
      // After a decision: the item that took the decided one's place, else the last.
      const next = state.items[Math.min(keepIndex, state.items.length - 1)];
      if (next) await select(next.id, { focus: "heading" });
      else { state.selectedId = null; setHash(null); showEmpty(filtered); }
    } else if (state.selectedId && (!filtered || state.items.some((i) => i.id === state.selectedId))) {
      // The item of the URL, even one already decided (it shows who decided it).
      await select(state.selectedId);
    } else if (state.items.length) {
      await select(state.items[0].id);
    } else {
      state.selectedId = null;
      setHash(null);
      showEmpty(filtered);
    }
  }

  function showEmpty(filtered) {
    clearMap();
    revokeBlobs();
    state.detail = null;
    replace(pane, h("p", { class: "message", "data-kind": "ok", id: "review-empty" },
      t(filtered ? "review.empty_filtered" : "review.empty")));
  }

  function renderQueue() {
    replace(queue, ...state.items.map((item) => {
      const wo = item.work_order;
      const waited = (Date.now() - new Date(item.submitted_at).getTime()) / 1000;
      const current = item.id === state.selectedId;
      return h("li", {},
        h("button", {
          type: "button", class: "review-item", id: `review-item-${item.id}`, "aria-current": current ? "true" : null,
          onclick: () => select(item.id),
        },
        h("span", { class: "review-item-title" }, wo.service_name || wo.service_code, " · ", wo.address || t("review.no_address")),
        h("span", { class: "review-item-meta" }, item.crew, " · ", fmt.dateTime(item.submitted_at), " · ",
          t("review.waiting", { duration: fmt.duration(Math.max(0, waited)) })),
        h("span", { class: "review-reasons" }, item.reasons.map((r) => h("span", { class: "badge warn" }, words("review.reason", r))))));
    }));
  }

  function setHash(id) {
    // replaceState, not location.hash: the console would mount the desk again on a hashchange.
    history.replaceState(null, "", id ? `#/review/${id}` : "#/review");
  }

  function move(step) {
    if (!state.items.length) return;
    const at = state.items.findIndex((i) => i.id === state.selectedId);
    const next = at < 0 ? 0 : Math.max(0, Math.min(state.items.length - 1, at + step));
    if (state.items[next].id === state.selectedId && at >= 0) return;
    select(state.items[next].id, { focus: "item" });
  }

  // -- one item ----------------------------------------------------------------------------
  async function select(id, { focus = null } = {}) {
    state.selectedId = id;
    state.panel = null;
    setHash(id);
    for (const b of queue.querySelectorAll("button.review-item")) {
      if (b.id === `review-item-${id}`) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
    const button = document.getElementById(`review-item-${id}`);
    if (button) {
      button.scrollIntoView({ block: "nearest" });
      if (focus === "item") button.focus();
    }
    const seq = ++state.detailSeq;
    let detail;
    try {
      detail = await api.get(`/completions/${id}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      if (seq !== state.detailSeq) return;
      clearMap();
      replace(pane, h("p", { class: "message", "data-kind": "error", role: "alert" }, failure(err)));
      return;
    }
    if (seq !== state.detailSeq) return;
    state.detail = detail;
    renderDetail(detail);
    if (focus === "heading") document.getElementById("review-detail-title").focus();
  }

  function renderDetail(c) {
    clearMap();
    revokeBlobs();
    const wo = c.work_order;
    const pending = c.verdict === "needs_review";
    const meta = [
      t("review.meta.work_order", { id: wo.id }),
      t("review.meta.crew", { crew: c.crew }),
      t("review.meta.outcome", { outcome: words("review.outcome", c.outcome) }),
      t("review.meta.submitted", { when: fmt.dateTime(c.submitted_at) }),
      c.captured_at ? t("review.meta.captured", { when: fmt.dateTime(c.captured_at) }) : null,
      wo.due_at ? t("review.meta.due", { when: fmt.dateTime(wo.due_at) }) : null,
      wo.reopen_count ? t("review.meta.reopened", { count: wo.reopen_count }) : null,
    ].filter(Boolean);

    const mapEl = h("div", { class: "review-map", id: "review-map" });
    replace(pane,
      h("header", { class: "review-head" },
        h("h2", { id: "review-detail-title", tabindex: "-1" }, itemTitle(c)),
        h("p", { class: "review-meta" }, meta.join(" · ")),
        c.reasons.length ? h("p", { class: "review-reasons", "aria-label": t("review.reasons") },
          h("span", { class: "visually-hidden" }, t("review.reasons"), ": "),
          c.reasons.map((r) => h("span", { class: "badge warn" }, words("review.reason", r)))) : null,
        c.notes ? h("p", { class: "review-notes" }, h("strong", {}, t("review.crew_notes"), ": "), c.notes) : null),
      pending ? actions(c) : decided(c),
      h("div", { class: "review-grid" },
        photos(c),
        h("section", { class: "review-where", "aria-labelledby": "review-map-title" },
          h("h3", { id: "review-map-title" }, t("review.map")), mapEl, legend(c)),
        checks(c),
        reports(c),
        timeline(c)));
    drawMap(mapEl, c);
  }

  function decided(c) {
    return h("section", { class: "review-decided message", "data-kind": "ok" },
      h("p", {}, t("review.decided", { verdict: words("review.verdict", c.verdict) })),
      c.reviews.map((r) => h("p", {}, t("review.decided_by", {
        decision: words("review.decision", r.decision), reviewer: r.reviewer, when: fmt.dateTime(r.at),
      }), r.reason ? ` — ${r.reason}` : "", r.outcome ? ` — ${words("review.outcome", r.outcome)}` : "")));
  }

  // -- the decision -------------------------------------------------------------------------
  function actions(c) {
    const canVerify = c.outcome !== "needs_other_crew";
    const bar = h("div", { class: "review-actions", role: "group", "aria-label": t("review.actions") },
      h("button", { type: "button", class: "primary", id: "review-verify", "aria-keyshortcuts": "V", disabled: !canVerify,
        onclick: () => openPanel("verify") }, t("review.action.verify"), h("kbd", { "aria-hidden": "true" }, "V")),
      h("button", { type: "button", class: "danger", id: "review-reject", "aria-keyshortcuts": "R", onclick: () => openPanel("reject") },
        t("review.action.reject"), h("kbd", { "aria-hidden": "true" }, "R")),
      h("button", { type: "button", id: "review-close", "aria-keyshortcuts": "C", onclick: () => openPanel("close") },
        t("review.action.close"), h("kbd", { "aria-hidden": "true" }, "C")));
    const panel = h("div", { class: "review-panel", id: "review-panel" });
    return h("section", { class: "review-decision" },
      bar, canVerify ? null : h("p", { class: "field-hint" }, t("review.verify.not_possible")), panel);
  }

  function openPanel(kind) {
    const c = state.detail;
    if (!c || c.verdict !== "needs_review" || state.busy) return;
    if (kind === "verify" && c.outcome === "needs_other_crew") return;
    const panel = document.getElementById("review-panel");
    if (!panel) return;
    state.panel = kind;
    const message = h("p", { class: "message", id: "review-panel-message" });
    const note = h("input", { id: "review-note", name: "note", type: "text", maxlength: "2000" });
    const noteField = [h("label", { for: "review-note" }, t("review.note")), note];
    const cancel = h("button", { type: "button", onclick: () => closePanel() }, t("review.action.cancel"));
    let form;
    let first;
    if (kind === "verify") {
      first = h("button", { type: "submit", class: "primary", id: "review-confirm" }, t("review.verify.confirm"));
      form = h("form", { "aria-labelledby": "review-panel-title" },
        h("h3", { id: "review-panel-title" }, t("review.action.verify")),
        h("p", {}, t("review.verify.explain", { outcome: words("review.outcome", c.outcome) })),
        noteField, h("div", { class: "review-panel-buttons" }, first, cancel), message);
      form.onsubmit = (e) => { e.preventDefault(); decide({ decision: "verify", note: note.value.trim() || undefined }, message); };
    } else if (kind === "reject") {
      first = h("textarea", { id: "review-reason", name: "reason", required: true, maxlength: "2000", rows: "3",
        "aria-describedby": "review-reason-hint review-panel-message" });
      form = h("form", { "aria-labelledby": "review-panel-title", novalidate: true },
        h("h3", { id: "review-panel-title" }, t("review.action.reject")),
        h("p", {}, t("review.reject.explain")),
        h("label", { for: "review-reason" }, t("review.reject.reason")), first,
        h("p", { class: "field-hint", id: "review-reason-hint" }, t("review.reject.reason_hint")),
        noteField,
        h("div", { class: "review-panel-buttons" },
          h("button", { type: "submit", class: "danger primary", id: "review-confirm" }, t("review.reject.confirm")), cancel),
        message);
      first.addEventListener("input", () => { if (first.value.trim()) replace(message); });
      form.onsubmit = (e) => {
        e.preventDefault();
        const reason = first.value.trim();
        if (!reason) { showMessage(message, t("review.reject.missing")); first.focus(); return; }
        decide({ decision: "reject", reason, note: note.value.trim() || undefined }, message);
      };
    } else {
      first = h("select", { id: "review-outcome", name: "outcome", required: true },
        CLOSE_OUTCOMES.map((o) => h("option", { value: o }, words("review.outcome", o))));
      const notes = h("textarea", { id: "review-status-notes", name: "status_notes", maxlength: "2000", rows: "2",
        "aria-describedby": "review-status-notes-hint" });
      form = h("form", { "aria-labelledby": "review-panel-title" },
        h("h3", { id: "review-panel-title" }, t("review.action.close")),
        h("p", {}, t("review.close.explain")),
        h("label", { for: "review-outcome" }, t("review.close.outcome")), first,
        h("label", { for: "review-status-notes" }, t("review.close.status_notes")), notes,
        h("p", { class: "field-hint", id: "review-status-notes-hint" }, t("review.close.status_notes_hint")),
        noteField,
        h("div", { class: "review-panel-buttons" },
          h("button", { type: "submit", class: "primary", id: "review-confirm" }, t("review.close.confirm")), cancel),
        message);
      form.onsubmit = (e) => {
        e.preventDefault();
        decide({ decision: "close", outcome: first.value, status_notes: notes.value.trim() || undefined,
          note: note.value.trim() || undefined }, message);
      };
    }
    // Ctrl+Enter sends from any field of the form (Enter alone makes a new line in a text area).
    form.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
    form.classList.add("review-form");
    replace(panel, form);
    for (const b of document.querySelectorAll(".review-actions button")) b.setAttribute("aria-expanded", "false");
    document.getElementById(`review-${kind}`)?.setAttribute("aria-expanded", "true");
    first.focus();
  }

  function closePanel() {
    const kind = state.panel;
    state.panel = null;
    const panel = document.getElementById("review-panel");
    if (panel) replace(panel);
    if (kind) {
      const button = document.getElementById(`review-${kind}`);
      button?.setAttribute("aria-expanded", "false");
      button?.focus();
    }
  }

  function showMessage(el, text) {
    el.dataset.kind = "error";
    el.setAttribute("role", "alert");
    replace(el, text);
  }

  async function decide(body, message) {
    const c = state.detail;
    if (state.busy || !c) return;
    state.busy = true;
    for (const b of pane.querySelectorAll(".review-decision button")) b.disabled = true;
    const index = state.items.findIndex((i) => i.id === c.id);
    try {
      const answer = await api.post(`/completions/${c.id}/review`, { json: body });
      const wo = answer.completion.work_order.id;
      ctx.toast(body.decision === "close"
        ? t("review.done.close", { id: wo, outcome: words("review.outcome", body.outcome) })
        : t(`review.done.${body.decision}`, { id: wo }), "ok");
      state.busy = false;
      await loadQueue({ keepIndex: Math.max(0, index) });
    } catch (err) {
      state.busy = false;
      if (err instanceof ApiError && err.status === 401) return;
      for (const b of pane.querySelectorAll(".review-decision button")) b.disabled = false;
      if (err instanceof ApiError && err.status === 409) {
        // Someone else decided it first: say so, and show the queue as it is now.
        ctx.toast(t("review.refused", { message: err.message }), "error");
        await loadQueue({ keepIndex: Math.max(0, index) });
        return;
      }
      showMessage(message, t("review.refused", { message: failure(err) }));
    }
  }

  // -- the evidence --------------------------------------------------------------------------
  function figure(p, label, alt) {
    const open = h("button", { type: "button", class: "review-original",
      "aria-label": t("review.photo.original_label", { id: p.id }), onclick: () => showOriginal(p) }, t("review.photo.original"));
    // The public copy (EXIF removed) at its full size: the detail is what is being judged.
    const src = p.url || p.thumbnail_url;
    return h("figure", { class: "review-photo", dataset: { kind: p.kind } },
      src ? h("img", { src, alt, loading: "lazy", width: String(p.width || ""), height: String(p.height || "") })
        : h("p", { class: "review-photo-pending" }, t("review.photo.pending")),
      h("figcaption", {}, h("span", {}, label), open));
  }

  function photos(c) {
    const residents = c.reports.flatMap((r) => r.photos.map((p) => figure(p,
      t("review.photo.kind.report", { id: r.service_request_id }), t("review.photo.alt.report", { id: r.service_request_id }))));
    const crew = c.photos.map((p) => figure(p, t(`review.photo.kind.${p.kind}`), t(`review.photo.alt.${p.kind}`)));
    return h("section", { class: "review-photos", "aria-labelledby": "review-photos-title" },
      h("h3", { id: "review-photos-title", class: "visually-hidden" }, t("review.photos")),
      h("div", { class: "review-photo-col", id: "review-photos-residents" },
        h("h3", {}, t("review.photos.residents")),
        residents.length ? residents : h("p", { class: "field-hint" }, t("review.photos.none_residents"))),
      h("div", { class: "review-photo-col", id: "review-photos-crew" },
        h("h3", {}, t("review.photos.crew")),
        crew.length ? crew : h("p", { class: "field-hint" }, t("review.photos.none_crew"))));
  }

  async function showOriginal(p) {
    let blob;
    try {
      // The token goes in the header (api.js); the page gets the bytes, never a URL with a token.
      const response = await api.get(p.original_url, { raw: true });
      blob = await response.blob();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) ctx.toast(failure(err), "error");
      return;
    }
    const url = URL.createObjectURL(blob);
    state.blobs.add(url);
    const title = t("review.photo.original_title", { id: p.id });
    const cannot = h("p", { class: "message", hidden: true }, t("review.photo.original_cannot_show"));
    const img = h("img", { src: url, alt: title, class: "review-original-img",
      onerror: () => { img.hidden = true; cannot.hidden = false; } });
    const ext = (blob.type.split("/")[1] || "bin").replace("jpeg", "jpg");
    const dialog = h("dialog", { class: "review-dialog", id: "review-original-dialog", "aria-labelledby": "review-original-title" },
      h("h2", { id: "review-original-title" }, title),
      h("p", { class: "field-hint" }, t("review.photo.original_size", {
        width: p.width, height: p.height, size: Math.round(blob.size / 1024), type: blob.type || "?" })),
      img, cannot,
      h("div", { class: "review-panel-buttons" },
        h("a", { class: "button", href: url, download: `photo-${p.id}.${ext}` }, t("review.photo.download")),
        h("button", { type: "button", class: "primary", onclick: () => dialog.close() }, t("review.photo.close"))));
    dialog.addEventListener("close", () => { dialog.remove(); URL.revokeObjectURL(url); state.blobs.delete(url); });
    document.body.append(dialog);
    dialog.showModal();
  }

  function reports(c) {
    return h("section", { class: "review-reports", "aria-labelledby": "review-reports-title" },
      h("h3", { id: "review-reports-title" }, t("review.reports")),
      h("ul", {}, c.reports.map((r) => h("li", {},
        h("p", { class: "review-report-meta" }, t("review.report.meta", { id: r.service_request_id, when: fmt.dateTime(r.requested_at) }),
          " · ", h("a", { href: `/status/${encodeURIComponent(r.service_request_id)}`, target: "_blank", rel: "noopener" },
            t("review.report.status_page"))),
        h("p", { class: "review-report-text" }, r.description || t("review.report.no_description"))))));
  }

  function checks(c) {
    const rows = c.checks.map((ch) => {
      const result = ch.passed === true ? "passed" : ch.passed === false ? "failed" : "unknown";
      const badge = { passed: "ok", failed: "bad", unknown: "" }[result];
      const limit = ch.limit === null || ch.limit === undefined ? "–"
        : ch.pass_when ? t(`review.limit.${ch.pass_when}`, { limit: measure(ch.limit, ch.unit) }) : measure(ch.limit, ch.unit);
      return h("tr", { dataset: { check: ch.name, result } },
        h("th", { scope: "row" }, words("review.check", ch.name)),
        h("td", {}, h("span", { class: `badge ${badge}` }, t(`review.checks.${result}`))),
        h("td", { class: "num" }, measure(ch.value, ch.unit)),
        h("td", { class: "num" }, limit),
        h("td", { class: "review-check-detail" }, localTimes(ch.detail)));
    });
    return h("section", { class: "review-checks", "aria-labelledby": "review-checks-title" },
      h("h3", { id: "review-checks-title" }, t("review.checks")),
      rows.length
        ? h("table", { id: "review-checks-table" },
          h("thead", {}, h("tr", {}, ["check", "result", "value", "limit", "detail"].map((k) => h("th", { scope: "col" }, t(`review.checks.${k}`))))),
          h("tbody", {}, rows))
        : h("p", {}, t("review.checks.none")));
  }

  function timeline(c) {
    return h("section", { class: "review-timeline", "aria-labelledby": "review-timeline-title" },
      h("h3", { id: "review-timeline-title" }, t("review.timeline")),
      h("ol", { id: "review-timeline-list" }, c.timeline.map((ev) => h("li", {},
        h("time", { datetime: ev.at }, fmt.dateTime(ev.at)), " ",
        h("strong", {}, ev.from_status && ev.from_status !== ev.to_status
          ? t("review.timeline.change", { from: words("review.status", ev.from_status), to: words("review.status", ev.to_status) })
          : words("review.status", ev.to_status)),
        " ", h("span", { class: "review-actor" }, t("review.timeline.by", { actor: ev.actor })),
        ev.note ? h("span", { class: "review-event-note" }, ev.note) : null))));
  }

  function features(c, role) {
    return c.geojson.features.filter((f) => f.properties.role === role);
  }

  function legend(c) {
    const [fix] = features(c, "fix");
    const distance = c.checks.find((ch) => ch.name === "distance");
    const swatch = (kind) => h("span", { class: `review-swatch ${kind}`, "aria-hidden": "true" });
    const items = [h("li", {}, swatch("site"), t("review.legend.site"))];
    if (distance && distance.limit) items.push(h("li", {}, swatch("limit"), t("review.legend.limit", { limit: distance.limit })));
    if (fix) {
      items.push(h("li", {}, swatch("fix"), t("review.legend.fix")));
      items.push(h("li", {}, swatch("accuracy"), t("review.legend.accuracy", { accuracy: Math.round(fix.properties.accuracy_m) })));
    } else items.push(h("li", {}, t("review.legend.no_fix")));
    const track = c.track || [];
    items.push(track.length
      ? h("li", {}, swatch("track"), t("review.legend.track", { count: track.length, from: fmt.time(track[0].at), to: fmt.time(track[track.length - 1].at) }))
      : h("li", {}, t("review.legend.no_track")));
    return h("ul", { class: "review-legend", id: "review-legend" }, items);
  }

  function drawMap(el, c) {
    const map = createMap(el, ctx.config, { label: t("review.map_label") });
    state.map = map;
    const bounds = [];
    const latLng = (coords) => [coords[1], coords[0]];
    const track = c.track || [];
    if (track.length) {
      const line = track.map((p) => [p.lat, p.lon]);
      L.polyline(line, { color: COLOURS.track, weight: 4, opacity: 0.9, interactive: false }).addTo(map);
      for (const ll of line) L.circleMarker(ll, { radius: 3, color: COLOURS.track, fillOpacity: 1, weight: 1, interactive: false }).addTo(map);
      bounds.push(...line);
    }
    const [site] = features(c, "site");
    const distance = c.checks.find((ch) => ch.name === "distance");
    if (site) {
      const ll = latLng(site.geometry.coordinates);
      if (distance && distance.limit) {
        L.circle(ll, { radius: distance.limit, color: COLOURS.site, weight: 2, dashArray: "6 6", fill: false, interactive: false }).addTo(map);
      }
      L.circleMarker(ll, { radius: 9, color: "#000", weight: 2, fillColor: COLOURS.site, fillOpacity: 1, interactive: false }).addTo(map);
      bounds.push(ll);
    }
    const [fix] = features(c, "fix");
    if (fix) {
      const ll = latLng(fix.geometry.coordinates);
      if (fix.properties.accuracy_m) {
        L.circle(ll, { radius: fix.properties.accuracy_m, color: COLOURS.fix, weight: 2, fillOpacity: 0.15, interactive: false }).addTo(map);
      }
      L.circleMarker(ll, { radius: 7, color: "#000", weight: 2, fillColor: COLOURS.fix, fillOpacity: 1, interactive: false }).addTo(map);
      bounds.push(ll);
    }
    if (bounds.length) {
      // The evidence decides the view, not the service area: a fix 300 m off must show.
      const box = L.latLngBounds(bounds);
      if (site && distance && distance.limit) box.extend(L.latLng(latLng(site.geometry.coordinates)).toBounds(distance.limit * 2));
      // Not animated: J/K may replace the map before an animation ends, and Leaflet's
      // end-of-zoom step on a removed map throws.
      map.fitBounds(box, { padding: [24, 24], maxZoom: 18, animate: false });
    }
  }

  // -- the keyboard --------------------------------------------------------------------------
  function onKey(e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    // Nothing behind an open dialog (it closes itself on Esc).
    if (document.querySelector("dialog[open]")) return;
    if (e.key === "Escape" && state.panel) { e.preventDefault(); closePanel(); return; }
    const target = e.target;
    // Never while typing in a field.
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    const key = e.key.toLowerCase();
    const act = { j: () => move(1), k: () => move(-1), v: () => openPanel("verify"), r: () => openPanel("reject"), c: () => openPanel("close") }[key];
    if (act) { e.preventDefault(); act(); }
  }
  document.addEventListener("keydown", onKey);

  await loadChoices();
  await loadQueue();

  return () => {
    document.removeEventListener("keydown", onKey);
    state.queueSeq += 1;
    state.detailSeq += 1;
    clearMap();
    revokeBlobs();
    for (const d of document.querySelectorAll("dialog.review-dialog")) d.remove();
  };
}
