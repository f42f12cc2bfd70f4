// The live event stream: Server-Sent Events read with fetch() (EventSource cannot send the bearer token).
// One connection for the whole app; views subscribe with a callback and unsubscribe when they go away.
// It reconnects with back-off, sending Last-Event-ID so the server can replay what was missed.
import { authFetch, signedIn } from "./api.js";

const subscribers = new Set();
const statusListeners = new Set();
let controller = null;
let lastId = null;
let status = "off";
let retry = 1000;
let path = "/events";

export function onStatus(callback) { statusListeners.add(callback); callback(status); return () => statusListeners.delete(callback); }
function setStatus(value) { status = value; for (const cb of statusListeners) cb(value); }
export const streamStatus = () => status;

/** callback({type, data, id}) for every event; returns the unsubscribe function. */
export function subscribe(callback) { subscribers.add(callback); return () => subscribers.delete(callback); }

/** Events arrive as the hub's envelope {id, type, patient_id, published_at, data}; subscribers get
 *  {type, patient_id, data, id} (``lagged``: events were lost, re-read the state over the REST API). */
function dispatch(type, data, id) {
  let parsed = data;
  try { parsed = JSON.parse(data); } catch { /* plain text */ }
  let event = { type, data: parsed, id, patient_id: null };
  if (parsed && typeof parsed === "object" && "data" in parsed && "type" in parsed) {
    event = { type: parsed.type || type, data: parsed.data, id, patient_id: parsed.patient_id || null,
              published_at: parsed.published_at };
  }
  for (const callback of [...subscribers]) {
    try { callback(event); } catch (error) { console.error(error); }
  }
}

/** Parse one SSE block ("event: x\ndata: y\nid: z"). */
export function parseBlock(block) {
  let type = "message", id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }
  return data.length ? { type, data: data.join("\n"), id } : null;
}

async function run(signal) {
  while (!signal.aborted && signedIn()) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await authFetch(path, { headers, signal });
      if (response.status === 404 || response.status === 403) { setStatus("unavailable"); return; }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      setStatus("live");
      retry = 1000;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = parseBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (!event) continue;
          if (event.id) lastId = event.id;
          dispatch(event.type, event.data, event.id);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error && error.status === 401) { setStatus("off"); return; }
    }
    if (signal.aborted) return;
    setStatus("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, retry));
    retry = Math.min(retry * 2, 15_000);
  }
}

export function start(eventsPath = "/events") {
  if (controller) return;
  path = eventsPath;
  controller = new AbortController();
  setStatus("connecting");
  run(controller.signal).finally(() => { if (status !== "unavailable") setStatus("off"); controller = null; });
}

export function stop() {
  if (controller) controller.abort();
  controller = null;
  lastId = null;
  setStatus("off");
}
