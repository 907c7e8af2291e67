// Sending what the crew did, in the order they did it, whenever the network allows.
//
// Every action is first written to the outbox (store.js) and only then sent, online or
// not: one path for both, so an action taken online is as safe as one taken in a tunnel.
// Replay runs from the page (on start, on the browser's "online" event, on a timer, and
// after each new action); Background Sync is not relied on, phones and browsers differ
// too much in whether and when they fire it.
//
// What an answer does to an item:
//   - 2xx: sent; the item leaves the outbox (a completion's answer is kept as its result);
//   - no answer (offline), 5xx, 429: the item stays waiting and the replay stops there, so
//     later actions are not sent before it;
//   - 401: the token expired; the replay stops, the app asks the crew to sign in again,
//     and the item stays waiting (a new sign-in keeps the outbox);
//   - any other refusal (409: the order moved on; 422: bad input; 404: not this crew's
//     any more): the item is marked refused with the server's words, kept, and shown to
//     the crew, who retry or discard it. Nothing is ever dropped without them.
// The Idempotency-Key stored with each completion makes a resend after a lost answer
// harmless: the server answers what it answered the first time.
import { ApiError, NetworkError } from "/assets/shared/api.js";
import { outbox, pings } from "./store.js";

export const MAX_PINGS_PER_BATCH = 500;

function formOf(item) {
  const form = new FormData();
  for (const [name, value] of Object.entries(item.fields || {})) {
    if (value !== null && value !== undefined && value !== "") form.append(name, String(value));
  }
  // The files as the camera wrote them: no canvas, no re-encoding, so their EXIF (where
  // and when the photo was taken) reaches the proof checks intact.
  for (const photo of item.photos || []) form.append("photos", photo.blob, photo.name);
  return form;
}

async function send(api, item) {
  if (item.kind === "event") {
    // Events carry their key too; the server also knows a resend by its device time.
    return api.post(`/work-orders/${item.work_order_id}/events`, { json: item.json, idempotencyKey: item.key });
  }
  if (item.kind === "completion") {
    return api.post(`/work-orders/${item.work_order_id}/completion`, { form: formOf(item), idempotencyKey: item.key });
  }
  if (item.kind === "positions") return api.post("/crew/positions", { json: item.json });
  throw new Error(`unknown outbox item ${item.kind}`);
}

export class Outbox {
  /**
   * onChange(): the outbox changed (counts to redraw); onSent(item, answer); onAuthLost().
   */
  constructor({ api, onChange = () => {}, onSent = () => {}, onAuthLost = () => {} }) {
    this.api = api;
    this.onChange = onChange;
    this.onSent = onSent;
    this.onAuthLost = onAuthLost;
    this.running = null;
    this.again = false;
    this.paused = false; // signed out: nothing can be sent until the crew signs in again
  }

  async add(item) {
    // Buffered GPS fixes go first: the track leading to the site is on the server before
    // the completion that is checked against it.
    await pings.batch(MAX_PINGS_PER_BATCH);
    const id = await outbox.add(item);
    this.onChange();
    return id;
  }

  async items() {
    return (await outbox.all()).sort((a, b) => a.id - b.id);
  }

  /** Send what is waiting, in order; one replay at a time (a second call runs it again after). */
  replay() {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.#replayOnce();
        } while (this.again && !this.paused);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  async #replayOnce() {
    if (this.paused) return "paused";
    await pings.batch(MAX_PINGS_PER_BATCH);
    for (const item of await this.items()) {
      if (item.state !== "waiting") continue;
      let answer;
      try {
        answer = await send(this.api, item);
      } catch (err) {
        if (err instanceof NetworkError) return "offline";
        if (err instanceof ApiError && err.status === 401) {
          this.paused = true;
          this.onAuthLost();
          return "signed-out";
        }
        if (err instanceof ApiError && (err.status >= 500 || err.status === 429)) return "later";
        const status = err instanceof ApiError ? err.status : 0;
        const details = err instanceof ApiError ? err.details : [];
        await outbox.put({ ...item, state: "refused", refused: { status, message: err.message, details, at: new Date().toISOString() } });
        this.onChange();
        continue;
      }
      await outbox.delete(item.id);
      await this.onSent(item, answer);
      this.onChange();
    }
    return "sent";
  }

  /** The crew asks for a refused item to be sent again. It keeps its place among the items
   * still waiting (they are sent oldest first); what came after it and was sent meanwhile
   * stays sent: a refused item never holds up the rest of the day. */
  async retry(id) {
    const item = await outbox.get(id);
    if (!item) return;
    delete item.refused;
    await outbox.put({ ...item, state: "waiting" });
    this.onChange();
    await this.replay();
  }

  /** The crew confirmed they give this item up. */
  async discard(id) {
    await outbox.delete(id);
    this.onChange();
  }

  resume() {
    this.paused = false;
    return this.replay();
  }
}
