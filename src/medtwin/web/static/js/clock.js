// The server's clock (GET /dashboard/clock): what "now" is for every time the page shows ("5 min ago", the
// live charts' "now"). In a demo whose devices run faster than real time the server says its clock is
// simulated; the page then shows a "simulated time" badge. The page never guesses: between two reads it
// extrapolates at the rate the server gave (simulated seconds per wall second), and re-reads every 15 s.
import { call } from "./api.js";

let anchor = { server: null, local: 0, rate: 1, simulated: false };
let timer = null;
const listeners = new Set();

/** The server's time now (ms since the epoch); the browser's until the server has answered once. */
export function serverNow() {
  if (anchor.server === null) return Date.now();
  return anchor.server + (performance.now() - anchor.local) * anchor.rate;
}

export const isSimulated = () => anchor.simulated;

/** fn({simulated, rate, note}) after every read of the server's clock; returns the unsubscribe function. */
export function onClock(fn) { listeners.add(fn); return () => listeners.delete(fn); }

export async function syncClock() {
  const t0 = performance.now();
  const s = await call("/dashboard/clock");
  const t1 = performance.now();
  anchor = { server: Date.parse(s.now) + (t1 - t0) / 2, local: t1, rate: Number(s.rate) || 1, simulated: Boolean(s.simulated) };
  for (const fn of listeners) fn({ simulated: anchor.simulated, rate: anchor.rate, note: s.note || "" });
  return anchor;
}

/** Read the server's clock now and every ``ms`` (once started, later calls only re-read). */
export function startClock(ms = 15_000) {
  const first = syncClock().catch(() => null);
  if (!timer) timer = setInterval(() => { syncClock().catch(() => {}); }, ms);
  return first;
}

export function stopClock() { clearInterval(timer); timer = null; anchor = { server: null, local: 0, rate: 1, simulated: false }; }
