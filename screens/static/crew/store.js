// What the crew app keeps on the phone, in IndexedDB, so that closing the app or
// restarting the phone loses nothing:
//   - "kv": the token, the day's route and its ETag, the changes cursor, the notices not
//     yet dismissed, the last proof results;
//   - "outbox": every action the crew took, in the order they took it, with its
//     Idempotency-Key and (for a completion) the photo files themselves as Blobs;
//   - "pings": GPS fixes waiting to be batched into one POST.
// IndexedDB, not localStorage: it survives restarts the same way, but also holds Blobs
// and is reachable from the service worker.

const DB_NAME = "streetloop-crew";
const VERSION = 1;

let opening = null;

function open() {
  opening ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains("kv")) db.createObjectStore("kv");
      // autoIncrement ids give the order the crew acted in: replay follows it.
      if (!db.objectStoreNames.contains("outbox")) db.createObjectStore("outbox", { keyPath: "id", autoIncrement: true });
      if (!db.objectStoreNames.contains("pings")) db.createObjectStore("pings", { keyPath: "id", autoIncrement: true });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  return opening;
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Run fn(store…) in one transaction; resolves once it has committed (durable). */
async function tx(names, mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction(names, mode, { durability: "strict" });
    let result;
    Promise.resolve(fn(...[names].flat().map((n) => t.objectStore(n)))).then((r) => { result = r; }, reject);
    t.oncomplete = () => resolve(result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error || new Error("transaction aborted"));
  });
}

export const kv = {
  get: (key) => tx("kv", "readonly", (s) => done(s.get(key))),
  set: (key, value) => tx("kv", "readwrite", (s) => done(s.put(value, key))),
  delete: (key) => tx("kv", "readwrite", (s) => done(s.delete(key))),
};

export const outbox = {
  /** Add an action at the end of the queue; resolves with its id once it is on disk. */
  add: (item) => tx("outbox", "readwrite", (s) => done(s.add({ ...item, state: "waiting", created_at: new Date().toISOString() }))),
  all: () => tx("outbox", "readonly", (s) => done(s.getAll())),
  get: (id) => tx("outbox", "readonly", (s) => done(s.get(id))),
  put: (item) => tx("outbox", "readwrite", (s) => done(s.put(item))),
  delete: (id) => tx("outbox", "readwrite", (s) => done(s.delete(id))),
};

export const pings = {
  add: (ping) => tx("pings", "readwrite", (s) => done(s.add(ping))),
  /**
   * Move every buffered ping into one outbox item, in one transaction: a ping is either
   * still buffered or in the outbox, never both and never neither.
   */
  batch: (max) => tx(["pings", "outbox"], "readwrite", async (buffer, box) => {
    const rows = (await done(buffer.getAll())).slice(0, max);
    if (!rows.length) return null;
    for (const row of rows) buffer.delete(row.id);
    const body = { pings: rows.map(({ id, ...p }) => p) };
    return done(box.add({ kind: "positions", json: body, state: "waiting", created_at: new Date().toISOString() }));
  }),
};
