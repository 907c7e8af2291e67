// Strings live in one file per app (crew/strings.js, console/strings.js), so a city can
// translate an app by translating one file. A value is a string with {named} slots, or an
// object of plural forms ({one, other, …}) chosen with Intl.PluralRules on `count`.

// The plural rules follow the page's language (set from app-config's locale at start).
export function translator(strings) {
  let plural = null;
  let pluralLang = null;
  return function t(key, params = {}) {
    const lang = document.documentElement.lang || "en";
    if (lang !== pluralLang) {
      plural = new Intl.PluralRules(lang);
      pluralLang = lang;
    }
    let value = strings[key];
    if (value === undefined) {
      // Visible, not silent: an untranslated key shows as itself, with a warning.
      console.warn(`missing string: ${key}`);
      return key;
    }
    if (typeof value === "object") value = value[plural.select(params.count ?? 0)] ?? value.other;
    return value.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  };
}
