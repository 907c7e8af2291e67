// Times as the city reads them: always in its time zone (app-config's time_zone), never in
// the zone of the browser that shows them, so a dispatcher on a laptop set to UTC and a
// crew's phone agree on "09:30".

export function formatters(timeZone, locale = document.documentElement.lang || "en") {
  const make = (options) => new Intl.DateTimeFormat(locale, { timeZone, ...options });
  const time = make({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const date = make({ weekday: "short", day: "numeric", month: "short" });
  // A calendar day ("2026-12-02") has no zone: formatted at noon UTC in UTC it is that day
  // everywhere (formatted in the city's zone, noon UTC is the next day east of UTC+12).
  const calendarDay = new Intl.DateTimeFormat(locale, { timeZone: "UTC", weekday: "short", day: "numeric", month: "short" });
  const dateTime = make({ weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const parts = make({ year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  const at = (v) => (v instanceof Date ? v : new Date(v));
  return {
    timeZone,
    time: (v) => (v ? time.format(at(v)) : ""),
    date: (v) => (v ? date.format(at(v)) : ""),
    dateTime: (v) => (v ? dateTime.format(at(v)) : ""),
    /** A calendar day as YYYY-MM-DD (a plan's or route's date), as the city reads it. */
    day: (v) => (v ? calendarDay.format(new Date(`${v}T12:00:00Z`)) : ""),
    /** The city's calendar date of an instant, as YYYY-MM-DD (what the API's `date` takes). */
    localDate(v = new Date()) {
      const p = Object.fromEntries(parts.formatToParts(at(v)).map((x) => [x.type, x.value]));
      return `${p.year}-${p.month}-${p.day}`;
    },
    /** Minutes since the city's midnight, for timelines. */
    minutesOfDay(v) {
      const p = Object.fromEntries(parts.formatToParts(at(v)).map((x) => [x.type, x.value]));
      return Number(p.hour) * 60 + Number(p.minute) + Number(p.second) / 60;
    },
    duration(seconds) {
      const m = Math.round(seconds / 60);
      return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")}`;
    },
  };
}

const zoneFormats = new Map();

/** How far `timeZone`'s clocks are ahead of UTC at the instant `ms`, in ms. */
function offsetAt(timeZone, ms) {
  if (!zoneFormats.has(timeZone)) {
    zoneFormats.set(timeZone, new Intl.DateTimeFormat("en-CA", {
      timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    }));
  }
  const p = Object.fromEntries(zoneFormats.get(timeZone).formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
}

/** The instant at which the city's clocks read `clock` ("HH:MM") on local `day`
 * ("YYYY-MM-DD"): what a time typed on a screen means, whatever the browser's zone. Two
 * passes, so on a day the clocks change the offset is the one in force at that hour. */
export function instantOf(timeZone, day, clock) {
  const [y, m, d] = day.split("-").map(Number);
  const [hh, mm] = clock.split(":").map(Number);
  const wall = Date.UTC(y, m - 1, d, hh, mm);
  const guess = wall - offsetAt(timeZone, wall);
  return new Date(wall - offsetAt(timeZone, guess));
}
