// The rosters desk: every active crew × the coming days, each day showing the crew's
// shift and breaks (or "Off", or a day off), and beside the grid the selected day's shift
// to add, change, cancel or end early, and the crew's weekly pattern to set or change.
//
// Everything is read and written through /api/v1 (shifts, shift-patterns, crews), and every
// time is the city's: a shift is shown by the local day it starts on, and a night shift
// that runs past midnight is drawn on both days (the second as its tail). Times typed into
// the forms are the city's clock times too, turned into instants here with the city's
// time zone, never the browser's.
//
// Dispatchers and admins change rosters; supervisors see the same grid read-only (the API
// refuses them the changes anyway, so the desk does not offer them).
import { ApiError, NetworkError } from "/assets/shared/api.js";
import { announce, h, replace } from "/assets/shared/dom.js";
import { instantOf } from "/assets/shared/time.js";

const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const SPANS = [7, 14];
const DEFAULT_SHIFT = { starts: "07:00", ends: "15:30" };
let uid = 0;
const nextId = (stem) => `rosters-${stem}-${++uid}`;

// -- the city's calendar -------------------------------------------------------------
// Local days are "YYYY-MM-DD" strings and clock times "HH:MM", as the API and the
// <input type="date|time"> controls both write them; string order is time order.

const zoneParts = new Map();
function partsIn(timeZone, instant) {
  if (!zoneParts.has(timeZone)) {
    zoneParts.set(timeZone, new Intl.DateTimeFormat("en-CA", {
      timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    }));
  }
  const p = Object.fromEntries(zoneParts.get(timeZone).formatToParts(instant).map((x) => [x.type, x.value]));
  return { day: `${p.year}-${p.month}-${p.day}`, clock: `${p.hour}:${p.minute}`, p };
}

export function addDays(day, n) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

/** 0 for Monday … 6 for Sunday, as the API's weekday names are ordered. */
const weekdayIndex = (day) => (new Date(`${day}T12:00:00Z`).getUTCDay() + 6) % 7;

/** "22:00"–"06:00" ends the next day: an end at or before the start is the next morning,
 * the same rule as the API's weekly patterns. A break's clock time before the start is
 * likewise the next day's (a night shift's break after midnight). */
function laterInstant(timeZone, day, startClock, clock) {
  return instantOf(timeZone, clock <= startClock ? addDays(day, 1) : day, clock);
}

/** Clock times are typed as 24-hour "HH:MM" (also "7:00" or "0700"), the way the grid and
 * the API write them: a native time control shows AM/PM in some browsers' locales, beside
 * a grid in the city's 24-hour clock. */
const CLOCK = /^([01]?\d|2[0-3]):?([0-5]\d)$/;
function clockOf(input) {
  const m = CLOCK.exec(input.value.trim());
  return m ? `${m[1].padStart(2, "0")}:${m[2]}` : null;
}

// -- the desk --------------------------------------------------------------------------

export async function mount(root, ctx) {
  const { api, t, fmt, config } = ctx;
  const zone = config.time_zone;
  const canEdit = ctx.user.role === "dispatcher" || ctx.user.role === "admin";
  const local = (iso) => partsIn(zone, new Date(iso));
  const dayLabel = (day) => fmt.date(instantOf(zone, day, "12:00"));
  const clockInput = (id, value, describedBy) => h("input", {
    type: "text", class: "clock", id, value, required: true, inputmode: "numeric", maxlength: "5", autocomplete: "off",
    placeholder: t("rosters.clock_placeholder"), pattern: "([01]?[0-9]|2[0-3]):?[0-5][0-9]", "aria-describedby": describedBy,
  });

  const state = {
    from: fmt.localDate(),
    span: SPANS[0],
    crews: [],
    shifts: [],
    patterns: [],
    selected: null, // {crew, day}
    pattern: null, // the pattern editor: {crew, pattern|null}
    addAnother: false,
  };

  // -- layout --
  const status = h("p", { class: "message", id: "rosters-status", role: "status" });
  const fromInput = h("input", { type: "date", id: "rosters-from", value: state.from });
  const spanSelect = h("select", { id: "rosters-span" },
    SPANS.map((n) => h("option", { value: String(n) }, t("rosters.span_days", { count: n }))));
  const grid = h("div", { class: "roster-grid-wrap" });
  const panel = h("section", { class: "roster-panel", id: "rosters-panel", "aria-labelledby": "rosters-panel-heading" });
  const move = (days) => { state.from = addDays(state.from, days); fromInput.value = state.from; reload(); };

  replace(root, h("div", { class: "rosters" },
    h("div", { class: "roster-main" },
      h("h1", {}, t("rosters.heading")),
      h("p", { class: "field-hint" }, t("rosters.intro", { zone })),
      canEdit ? null : h("p", { class: "message", id: "rosters-read-only" }, t("rosters.read_only")),
      h("div", { class: "roster-toolbar" },
        h("div", {}, h("label", { for: "rosters-from" }, t("rosters.from")), fromInput),
        h("div", {}, h("label", { for: "rosters-span" }, t("rosters.span")), spanSelect),
        h("button", { type: "button", onclick: () => move(-state.span) }, t("rosters.earlier")),
        h("button", { type: "button", onclick: () => { state.from = fmt.localDate(); fromInput.value = state.from; reload(); } }, t("rosters.today")),
        h("button", { type: "button", onclick: () => move(state.span) }, t("rosters.later"))),
      status,
      grid),
    panel));
  fromInput.addEventListener("change", () => { if (fromInput.value) { state.from = fromInput.value; reload(); } });
  spanSelect.addEventListener("change", () => { state.span = Number(spanSelect.value); reload(); });

  // -- data --
  function days() {
    return Array.from({ length: state.span }, (_, k) => addDays(state.from, k));
  }

  let loads = 0;
  async function reload() {
    // Only the latest reload draws: paging quickly through weeks must not end on an older answer.
    const seq = ++loads;
    announce(status, t("rosters.loading"));
    try {
      // From the day before: a night shift that started then is still on the first day.
      const [crews, shifts, patterns] = await Promise.all([
        api.get("/crews"),
        api.get("/shifts", { query: { from: addDays(state.from, -1), to: addDays(state.from, state.span - 1), include_cancelled: true } }),
        api.get("/shift-patterns"),
      ]);
      if (seq !== loads) return;
      state.crews = crews.filter((c) => c.active);
      state.shifts = shifts;
      state.patterns = patterns;
      replace(status);
    } catch (err) {
      if (seq === loads) announce(status, describe(err), "error");
      return;
    }
    renderGrid();
    renderPanel();
  }

  const today = () => fmt.localDate();
  const activePatterns = (crew) =>
    state.patterns.filter((p) => p.crew === crew && (!p.valid_until || p.valid_until >= today()));
  const startingOn = (crew, day) =>
    state.shifts.filter((s) => s.crew === crew && local(s.starts_at).day === day);
  // The tail of a shift that started the day before and runs past this day's midnight.
  const carriedInto = (crew, day) =>
    state.shifts.filter((s) => s.crew === crew && s.state !== "cancelled"
      && local(s.starts_at).day === addDays(day, -1) && local(s.ends_at).day >= day && local(s.ends_at).clock !== "00:00");

  function describe(err) {
    if (err instanceof NetworkError) return t("rosters.offline");
    if (err instanceof ApiError) {
      // The API's message is the reason in words; field messages add what it did not say.
      const extra = err.details.filter((d) => !d.startsWith("error_code:") && !d.endsWith(err.message));
      return t("rosters.refused", { message: [err.message, ...extra].join(" ") });
    }
    return err.message;
  }

  // -- the grid --
  function timesText(s) {
    const start = local(s.starts_at);
    const end = local(s.ends_at);
    return [h("span", { class: "clock" }, t("rosters.times", { start: start.clock, end: end.clock })),
      end.day > start.day ? [" ", h("span", { class: "next-day" }, t("rosters.plus_day"), h("span", { class: "visually-hidden" }, ` (${t("rosters.next_day")})`))] : null];
  }

  function breakText(b) {
    return t("rosters.break", { minutes: b.minutes, earliest: local(b.earliest_start).clock, latest: local(b.latest_end).clock });
  }

  /** A 24-hour bar of the day: the shift from its start (to midnight, for a night shift),
   * or a night shift's tail from midnight. Placed by CSSOM, which the CSP allows. */
  function bar(day, pieces) {
    if (!pieces.length) return null;
    const track = h("span", { class: "track", "aria-hidden": "true" });
    const minutes = (iso) => fmt.minutesOfDay(iso);
    for (const { shift, tail } of pieces) {
      const from = tail ? 0 : minutes(shift.starts_at);
      const to = local(shift.ends_at).day > day ? 24 * 60 : minutes(shift.ends_at);
      const seg = h("span", { class: `seg ${tail ? "tail" : ""} ${shift.state}` });
      seg.style.left = `${(from / 1440) * 100}%`;
      seg.style.width = `${Math.max(1, ((to - from) / 1440) * 100)}%`;
      track.append(seg);
    }
    return track;
  }

  function cell(crew, day) {
    const own = startingOn(crew.code, day);
    const tails = carriedInto(crew.code, day);
    const lines = [];
    for (const s of tails) lines.push(h("span", { class: "slot tail" }, t("rosters.carry", { time: local(s.ends_at).clock })));
    for (const s of own) {
      lines.push(h("span", { class: `slot ${s.state}` },
        h("span", { class: "times" }, timesText(s)),
        s.state === "cancelled" ? h("span", { class: "note" }, t("rosters.day_off")) : null,
        s.state === "ended_early" ? h("span", { class: "note" }, t("rosters.ended_at", { time: local(s.ends_at).clock })) : null,
        s.state !== "cancelled" ? s.breaks.map((b) => h("span", { class: "brk" }, breakText(b))) : null));
    }
    if (!own.length && !tails.length) lines.push(h("span", { class: "slot off" }, t("rosters.off")));
    const pieces = [...tails.map((s) => ({ shift: s, tail: true })), ...own.filter((s) => s.state !== "cancelled").map((s) => ({ shift: s }))];
    const selected = state.selected && state.selected.crew === crew.code && state.selected.day === day;
    return h("td", { class: day === today() ? "today" : null },
      h("button", {
        type: "button", class: "cell", tabindex: "-1", "aria-pressed": selected ? "true" : "false",
        dataset: { crew: crew.code, day, shifts: [...tails, ...own].map((s) => s.id).join(" ") },
        onclick: () => select(crew.code, day),
      },
      h("span", { class: "visually-hidden" }, t("rosters.cell_prefix", { crew: crew.code, day: dayLabel(day) })),
      lines, bar(day, pieces)));
  }

  function patternLine(p) {
    return t("rosters.pattern_summary", { days: weekdaysText(p.weekdays), start: p.starts, end: p.ends });
  }

  function weekdaysText(list) {
    if (list.length === 7) return t("rosters.every_day");
    return list.map((d) => t(`rosters.weekday.${d}`)).join(" ");
  }

  function renderGrid() {
    if (!state.crews.length) {
      replace(grid, h("p", { class: "message" }, t("rosters.no_crews")));
      return;
    }
    const list = days();
    const table = h("table", { class: "roster", id: "rosters-grid" },
      h("caption", {}, t("rosters.caption", { from: dayLabel(list[0]), to: dayLabel(list[list.length - 1]) })),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, t("rosters.crew")),
        list.map((day) => h("th", { scope: "col", class: day === today() ? "today" : null },
          dayLabel(day), day === today() ? h("span", { class: "badge" }, t("rosters.today_badge")) : null)))),
      h("tbody", {}, state.crews.map((crew) => h("tr", {},
        h("th", { scope: "row" },
          h("span", { class: "crew-code" }, crew.code),
          crew.name && crew.name !== crew.code ? h("span", { class: "crew-name" }, crew.name) : null,
          activePatterns(crew.code).length
            ? activePatterns(crew.code).map((p) => h("span", { class: "crew-pattern" }, p.valid_until
              ? t("rosters.pattern_until", { line: patternLine(p), day: dayLabel(p.valid_until) })
              : patternLine(p)))
            : h("span", { class: "crew-pattern none" }, t("rosters.no_pattern"))),
        list.map((day) => cell(crew, day))))));
    table.addEventListener("keydown", arrows);
    replace(grid, table);
    // One cell is in the tab order (the selected one, or the first): arrows do the rest.
    const current = table.querySelector('button.cell[aria-pressed="true"]') || table.querySelector("button.cell");
    if (current) current.tabIndex = 0;
  }

  /** Arrow keys, Home and End move between the grid's cells, as in a spreadsheet. */
  function arrows(event) {
    const target = event.target.closest("button.cell");
    if (!target) return;
    const rows = [...grid.querySelectorAll("tbody tr")].map((tr) => [...tr.querySelectorAll("button.cell")]);
    const r = rows.findIndex((row) => row.includes(target));
    const c = rows[r].indexOf(target);
    const to = {
      ArrowLeft: [r, c - 1], ArrowRight: [r, c + 1], ArrowUp: [r - 1, c], ArrowDown: [r + 1, c],
      Home: [r, 0], End: [r, rows[r].length - 1],
    }[event.key];
    if (!to) return;
    const next = rows[to[0]] && rows[to[0]][to[1]];
    event.preventDefault();
    if (!next) return;
    target.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  }

  function select(crew, day) {
    state.selected = { crew, day };
    state.pattern = null;
    state.addAnother = false;
    renderGrid();
    renderPanel(true);
  }

  // -- the panel: the selected day's shifts, and the crew's weekly pattern --
  function renderPanel(focus = false) {
    const sel = state.selected;
    if (!sel) {
      replace(panel, h("h2", { id: "rosters-panel-heading", tabindex: "-1" }, t("rosters.title")), h("p", {}, t("rosters.pick")));
      return;
    }
    const heading = h("h2", { id: "rosters-panel-heading", tabindex: "-1" },
      t("rosters.day_heading", { crew: sel.crew, day: dayLabel(sel.day) }));
    const parts = [heading];
    if (state.pattern) {
      parts.push(patternEditor(state.pattern.crew, state.pattern.pattern));
    } else {
      const own = startingOn(sel.crew, sel.day);
      const now = new Date();
      // A night shift from the day before that is still under way is today's to end early.
      for (const s of carriedInto(sel.crew, sel.day)) {
        if (new Date(s.starts_at) <= now && new Date(s.ends_at) > now && s.state === "scheduled") parts.push(shiftCard(s, sel, true));
      }
      for (const s of own) parts.push(shiftCard(s, sel, false));
      if (canEdit) {
        if (!own.length || state.addAnother) parts.push(shiftForm(sel, null));
        else {
          const another = () => {
            state.addAnother = true;
            renderPanel();
            panel.querySelector("#rosters-add input").focus();
          };
          parts.push(h("button", { type: "button", id: "rosters-add-another", onclick: another }, t("rosters.add_another")));
        }
      } else if (!own.length) {
        parts.push(h("p", {}, t("rosters.off")));
      }
      parts.push(patternSection(sel.crew));
    }
    replace(panel, ...parts);
    if (focus) heading.focus();
  }

  function shiftCard(s, sel, carried) {
    const now = new Date();
    const started = new Date(s.starts_at) <= now;
    const underWay = started && new Date(s.ends_at) > now && s.state === "scheduled";
    const card = h("article", { class: `shift-card ${s.state}`, dataset: { shift: String(s.id) } },
      h("h3", {}, t("rosters.shift_heading", { start: local(s.starts_at).clock, end: local(s.ends_at).clock }),
        local(s.ends_at).day > local(s.starts_at).day ? ` (${t("rosters.next_day")})` : ""),
      h("p", {},
        h("span", { class: `badge ${s.state === "scheduled" ? "ok" : s.state === "cancelled" ? "bad" : "warn"}` }, t(`rosters.state.${s.state}`)), " ",
        s.pattern_id ? t("rosters.from_pattern") : t("rosters.by_hand"), " ",
        carried ? t("rosters.started_yesterday") : "", " ",
        underWay ? t("rosters.under_way") : ""),
      s.end_reason ? h("p", {}, t("rosters.reason", { reason: s.end_reason })) : null,
      s.breaks.length && s.state !== "cancelled"
        ? h("ul", { class: "breaks" }, s.breaks.map((b) => h("li", {}, breakText(b))))
        : null);
    // What the API allows: a shift not over may be changed (a break moved while the crew
    // is out); one under way ends early; only one not yet started is cancelled.
    if (canEdit && s.state === "scheduled" && new Date(s.ends_at) > now) {
      if (underWay) card.append(endForm(s));
      card.append(shiftForm(sel, s));
      if (!started) card.append(cancelForm(s));
    }
    return card;
  }

  /** Break windows as rows of three controls (earliest start, latest end, minutes). */
  function breaksEditor(initial) {
    const list = h("div", { class: "break-rows" });
    const empty = h("p", { class: "field-hint" }, t("rosters.no_breaks"));
    const rows = [];
    const renumber = () => {
      rows.forEach((row, k) => row.label(k + 1));
      empty.hidden = rows.length > 0;
    };
    const add = (b = { earliest: "", latest: "", minutes: 30 }) => {
      const ids = [nextId("be"), nextId("bl"), nextId("bm")];
      const earliest = clockInput(ids[0], b.earliest);
      const latest = clockInput(ids[1], b.latest);
      const minutes = h("input", { type: "number", id: ids[2], min: "1", max: "480", step: "1", value: String(b.minutes), required: true });
      // The visible label is short; the break's number is read out with it.
      const numbers = ids.map(() => h("span", { class: "visually-hidden" }));
      const labels = ids.map((id, k) => h("label", { for: id }, numbers[k],
        t(["rosters.break_earliest", "rosters.break_latest", "rosters.break_minutes"][k])));
      const remove = h("button", { type: "button", class: "danger" });
      const el = h("div", { class: "break-row" },
        h("div", {}, labels[0], earliest), h("div", {}, labels[1], latest), h("div", {}, labels[2], minutes), remove);
      const row = {
        el,
        label(n) {
          numbers.forEach((span) => { span.textContent = t("rosters.break_number", { n }); });
          remove.textContent = t("rosters.break_remove", { n });
        },
        read: () => ({ earliest: clockOf(earliest), latest: clockOf(latest), minutes: Number(minutes.value) }),
      };
      remove.addEventListener("click", () => {
        rows.splice(rows.indexOf(row), 1);
        el.remove();
        renumber();
      });
      rows.push(row);
      list.append(el);
      renumber();
      return earliest;
    };
    initial.forEach((b) => add(b));
    renumber();
    const el = h("fieldset", { class: "breaks-editor" }, h("legend", {}, t("rosters.breaks")), empty, list,
      h("button", { type: "button", class: "add-break", onclick: () => add().focus() }, t("rosters.break_add")));
    return { el, read: () => rows.map((r) => r.read()) };
  }

  function timeField(label, value, hint) {
    const id = nextId("time");
    const hintId = hint ? `${id}-hint` : null;
    const input = clockInput(id, value, hintId);
    // The hint goes under the pair of fields, not inside the one it describes.
    return { input, el: h("div", {}, h("label", { for: id }, label), input), hint: hint ? h("p", { class: "field-hint", id: hintId }, hint) : null };
  }

  /** Add a shift on the selected day (shift null), or change one's times and breaks on
   * the day it starts (its clock times are read on that day). */
  function shiftForm(sel, shift) {
    const day = shift ? local(shift.starts_at).day : sel.day;
    const pattern = activePatterns(sel.crew).find((p) => p.weekdays.includes(WEEKDAYS[weekdayIndex(day)]));
    const base = shift
      ? { starts: local(shift.starts_at).clock, ends: local(shift.ends_at).clock }
      : pattern ? { starts: pattern.starts, ends: pattern.ends } : DEFAULT_SHIFT;
    const start = timeField(t("rosters.start"), base.starts);
    const end = timeField(t("rosters.end"), base.ends, t("rosters.end_hint"));
    const breaks = breaksEditor(shift
      ? shift.breaks.map((b) => ({ earliest: local(b.earliest_start).clock, latest: local(b.latest_end).clock, minutes: b.minutes }))
      : []);
    const message = h("p", { class: "message", "aria-live": "polite" });
    const form = h("form", { class: "shift-form", novalidate: true, id: shift ? `rosters-change-${shift.id}` : "rosters-add" },
      h("h3", {}, shift ? t("rosters.change_heading") : t("rosters.add_heading")),
      h("div", { class: "pair" }, start.el, end.el), end.hint,
      breaks.el,
      h("button", { type: "submit", class: "primary" }, shift ? t("rosters.save") : t("rosters.add")),
      message);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (badClock(form, message)) return;
      const s = clockOf(start.input);
      const e = clockOf(end.input);
      const body = {
        starts_at: instantOf(zone, day, s).toISOString(),
        ends_at: laterInstant(zone, day, s, e).toISOString(),
        breaks: breaks.read().map((b) => ({
          earliest_start: laterInstant(zone, day, s, b.earliest).toISOString(),
          latest_end: laterInstant(zone, day, s, b.latest).toISOString(),
          minutes: b.minutes,
        })),
      };
      const said = { crew: sel.crew, day: dayLabel(day) };
      submit(form, message, shift
        ? () => api.patch(`/shifts/${shift.id}`, { json: body }).then(() => t("rosters.saved", said))
        : () => api.post("/shifts", { json: { crew: sel.crew, ...body } }).then(() => t("rosters.added", said)));
    });
    return form;
  }

  function reasonField(label) {
    const id = nextId("reason");
    const input = h("input", { type: "text", id, maxlength: "500", required: true, autocomplete: "off" });
    return { input, el: h("div", {}, h("label", { for: id }, label), input) };
  }

  function endForm(shift) {
    const startDay = local(shift.starts_at).day;
    const startClock = local(shift.starts_at).clock;
    // Default: now, to the next five minutes.
    const soon = new Date(Math.ceil(Date.now() / 300000) * 300000);
    const at = timeField(t("rosters.end_at"), partsIn(zone, soon).clock);
    const reason = reasonField(t("rosters.end_reason"));
    const message = h("p", { class: "message", "aria-live": "polite" });
    const form = h("form", { class: "end-form", novalidate: true, id: `rosters-end-${shift.id}` },
      h("h3", {}, t("rosters.end_heading")), h("div", { class: "pair" }, at.el, reason.el),
      h("button", { type: "submit", class: "danger primary" }, t("rosters.end_submit")), message);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (badClock(form, message)) return;
      if (!reason.input.value.trim()) { announce(message, t("rosters.need_reason"), "error"); reason.input.focus(); return; }
      const when = laterInstant(zone, startDay, startClock, clockOf(at.input));
      submit(form, message, () => api.post(`/shifts/${shift.id}/end`, { json: { at: when.toISOString(), reason: reason.input.value.trim() } })
        .then((out) => t("rosters.ended", { crew: shift.crew, time: local(out.ends_at).clock })));
    });
    return form;
  }

  function cancelForm(shift) {
    const reason = reasonField(t("rosters.cancel_reason"));
    const message = h("p", { class: "message", "aria-live": "polite" });
    const form = h("form", { class: "cancel-form", novalidate: true, id: `rosters-cancel-${shift.id}` },
      h("h3", {}, t("rosters.cancel_heading")), reason.el,
      h("button", { type: "submit", class: "danger" }, t("rosters.cancel")), message);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!reason.input.value.trim()) { announce(message, t("rosters.need_reason"), "error"); reason.input.focus(); return; }
      submit(form, message, () => api.post(`/shifts/${shift.id}/cancel`, { json: { reason: reason.input.value.trim() } })
        .then(() => t("rosters.cancelled", { crew: shift.crew, day: dayLabel(local(shift.starts_at).day) })));
    });
    return form;
  }

  /** The first clock field of the form that is not a time, said and focused; false if none. */
  function badClock(form, message) {
    const bad = [...form.querySelectorAll("input.clock")].find((input) => !clockOf(input));
    for (const input of form.querySelectorAll("input.clock")) input.toggleAttribute("aria-invalid", input === bad);
    if (!bad) return false;
    announce(message, t("rosters.bad_clock"), "error");
    bad.focus();
    return true;
  }

  /** Send a form's change; on success reload and say so, on a refusal keep the form as
   * typed and give the API's reason in words next to it. */
  async function submit(form, message, send) {
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    replace(message);
    try {
      const said = await send();
      state.addAnother = false;
      state.pattern = null;
      await reload();
      ctx.toast(said, "ok");
      const heading = panel.querySelector("#rosters-panel-heading");
      if (heading) heading.focus();
    } catch (err) {
      if (!(err instanceof ApiError) && !(err instanceof NetworkError)) throw err;
      announce(message, describe(err), "error");
      button.disabled = false;
      // An overlap names the shift it clashes with: point at it in the grid too.
      const clash = err instanceof ApiError && err.status === 409 && err.errors.detail && err.errors.detail.shift_id;
      for (const el of grid.querySelectorAll("button.cell.clash")) el.classList.remove("clash");
      if (clash) for (const el of grid.querySelectorAll(`button.cell[data-shifts~="${Number(clash)}"]`)) el.classList.add("clash");
    }
  }

  // -- weekly patterns --
  function patternSection(crew) {
    const patterns = activePatterns(crew);
    return h("section", { class: "pattern-section", "aria-labelledby": "rosters-pattern-heading" },
      h("h2", { id: "rosters-pattern-heading" }, t("rosters.pattern_heading", { crew })),
      patterns.length ? null : h("p", {}, t("rosters.no_pattern")),
      patterns.map((p) => h("article", { class: "pattern-card", dataset: { pattern: String(p.id) } },
        h("h3", {}, patternLine(p)),
        p.breaks.length ? h("ul", { class: "breaks" }, p.breaks.map((b) => h("li", {},
          t("rosters.break", { minutes: b.minutes, earliest: b.earliest, latest: b.latest })))) : null,
        h("p", {}, p.valid_until
          ? t("rosters.pattern_validity", { from: dayLabel(p.valid_from), until: dayLabel(p.valid_until) })
          : t("rosters.pattern_validity_open", { from: dayLabel(p.valid_from) })),
        canEdit ? h("button", { type: "button", onclick: () => openPattern(crew, p) }, t("rosters.pattern_change")) : null)),
      canEdit ? h("button", { type: "button", id: "rosters-pattern-new", onclick: () => openPattern(crew, null) }, t("rosters.pattern_new")) : null);
  }

  function openPattern(crew, pattern) {
    state.pattern = { crew, pattern };
    renderPanel();
    const first = panel.querySelector(".pattern-form input");
    if (first) first.focus();
  }

  function patternEditor(crew, pattern) {
    const days = WEEKDAYS.map((d) => {
      const id = nextId(`day-${d}`);
      const box = h("input", { type: "checkbox", id, value: d, checked: pattern ? pattern.weekdays.includes(d) : !["sat", "sun"].includes(d) });
      return { d, box, el: h("div", { class: "check" }, box, h("label", { for: id }, t(`rosters.weekday_long.${d}`))) };
    });
    const start = timeField(t("rosters.start"), pattern ? pattern.starts : DEFAULT_SHIFT.starts);
    const end = timeField(t("rosters.end"), pattern ? pattern.ends : DEFAULT_SHIFT.ends, t("rosters.end_hint"));
    const breaks = breaksEditor(pattern ? pattern.breaks : [{ earliest: "11:30", latest: "13:30", minutes: 30 }]);
    const fromId = nextId("valid-from");
    const untilId = nextId("valid-until");
    const validFrom = h("input", { type: "date", id: fromId, value: pattern ? pattern.valid_from : today(), required: true });
    const validUntil = h("input", { type: "date", id: untilId, value: pattern && pattern.valid_until ? pattern.valid_until : "" });
    const message = h("p", { class: "message", "aria-live": "polite" });
    const form = h("form", { class: "pattern-form", novalidate: true, id: "rosters-pattern-form" },
      h("h3", {}, pattern ? t("rosters.pattern_edit_heading", { crew }) : t("rosters.pattern_new_heading", { crew })),
      h("fieldset", { class: "weekdays" }, h("legend", {}, t("rosters.pattern_days")), days.map((x) => x.el)),
      h("div", { class: "pair" }, start.el, end.el), end.hint,
      breaks.el,
      h("div", { class: "pair" },
        h("div", {}, h("label", { for: fromId }, t("rosters.pattern_valid_from")), validFrom),
        h("div", {}, h("label", { for: untilId }, t("rosters.pattern_valid_until")), validUntil)),
      pattern ? h("p", { class: "field-hint" }, t("rosters.pattern_hint")) : null,
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("rosters.pattern_save")),
        h("button", { type: "button", onclick: () => { state.pattern = null; renderPanel(true); } }, t("rosters.pattern_back"))),
      message);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const weekdays = days.filter((x) => x.box.checked).map((x) => x.d);
      if (!weekdays.length) { announce(message, t("rosters.pattern_need_day"), "error"); days[0].box.focus(); return; }
      if (badClock(form, message)) return;
      const body = {
        weekdays, starts: clockOf(start.input), ends: clockOf(end.input), breaks: breaks.read(),
        valid_from: validFrom.value || undefined, valid_until: validUntil.value || null,
      };
      submit(form, message, () => (pattern
        ? api.put(`/shift-patterns/${pattern.id}`, { json: body })
        : api.post("/shift-patterns", { json: { crew, ...body } }))
        .then((out) => t("rosters.pattern_saved", { count: out.shifts_made ?? 0 })));
    });
    if (!pattern) return form;
    // Ending a pattern: its shifts after the last day go; those before stay.
    const lastId = nextId("last-day");
    const lastDay = h("input", { type: "date", id: lastId, value: today(), required: true });
    const endMessage = h("p", { class: "message", "aria-live": "polite" });
    const endForm = h("form", { class: "pattern-end-form", novalidate: true },
      h("h3", {}, t("rosters.pattern_end_heading")),
      h("label", { for: lastId }, t("rosters.pattern_last_day")), lastDay,
      h("button", { type: "submit", class: "danger" }, t("rosters.pattern_end")), endMessage);
    endForm.addEventListener("submit", (event) => {
      event.preventDefault();
      submit(endForm, endMessage, () => api.post(`/shift-patterns/${pattern.id}/end`, { json: { last_day: lastDay.value } })
        .then(() => t("rosters.pattern_ended", { day: dayLabel(lastDay.value) })));
    });
    return h("div", {}, form, endForm);
  }

  await reload();
  return () => replace(root);
}
