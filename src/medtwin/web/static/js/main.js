// The medtwin dashboard: sign in, the patient list and the twin page, routed by the URL hash
// (#/ the list, #/patients/<id>/<tab> a patient). Everything shown comes from /api/v1 with the user's token.
import { call, errorText, login, onSession, signedIn, signOut } from "./api.js";
import { $, clock as hhmm } from "./dom.js";
import { onClock, serverNow, startClock, stopClock } from "./clock.js";
import * as events from "./events.js";
import { showPatients, hidePatients } from "./patients.js";
import { showPatient, hidePatient } from "./patient.js";
import { loadVocabulary } from "./vocab.js";
import { hideWorklist, showWorklist, watchAlerts } from "./worklist.js";
import { hideCommandCentre, showCommandCentre } from "./hospital.js";

const VIEWS = ["login-view", "list-view", "patient-view", "alerts-view", "hospital-view"];
let stopWatch = null;
let current = null;
let identity = null;  // the signed-in user's /auth/me answer (a promise), asked once per session

function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
  $("logout").hidden = view === "login-view";
  $("main-nav").hidden = view === "login-view";
  for (const [link, views] of [["nav-patients", ["list-view", "patient-view"]], ["nav-alerts", ["alerts-view"]],
                               ["nav-hospital", ["hospital-view"]]]) {
    if (views.includes(view)) $(link).setAttribute("aria-current", "page"); else $(link).removeAttribute("aria-current");
  }
}

function who() {
  identity = identity || askWho();
  return identity;
}

async function askWho() {
  try {
    const me = await call("/auth/me");
    $("who").textContent = `${me.subject} · ${me.role}`;
    if (me.role === "operations" && !location.hash.startsWith("#/hospital")) location.hash = "#/hospital";
    return me;
  } catch (error) {
    $("who").textContent = "";
    return null;
  }
}

export async function route() {
  if (!signedIn()) {
    hidePatients(); hidePatient(); hideWorklist(); hideCommandCentre(); events.stop(); stopClock(); showSimulated(false);
    if (stopWatch) { stopWatch(); stopWatch = null; }
    show("login-view");
    document.title = "Sign in · medtwin";
    $("username").focus();
    return;
  }
  const [me] = await Promise.all([who(), loadVocabulary(), startClock()]);  // labels, units, thresholds; "now"
  if (!me || me.role !== "operations") {  // operations reach no patient: no patient events, no alert worklist
    events.start();
    if (!stopWatch) stopWatch = watchAlerts();
  }
  if (location.hash.startsWith("#/hospital")) {  // the command centre: counts and flows, no patient
    hidePatients(); hidePatient(); hideWorklist();
    show("hospital-view");
    document.title = "Command centre · medtwin";
    await showCommandCentre();
    return;
  }
  hideCommandCentre();
  const match = location.hash.match(/^#\/patients\/([^/]+)(?:\/([a-z-]+))?/);
  if (location.hash.startsWith("#/alerts")) {
    hidePatients(); hidePatient();
    show("alerts-view");
    document.title = "Alerts · medtwin";
    await showWorklist();
  } else if (match) {
    hidePatients(); hideWorklist();
    show("patient-view");
    const id = decodeURIComponent(match[1]);
    const tab = match[2] || "live";
    current = `${id}`;
    await showPatient(id, tab);
  } else {
    hidePatient(); hideWorklist();
    current = null;
    show("list-view");
    document.title = "Patients · medtwin";
    await showPatients();
  }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("login-error");
  error.textContent = "";
  const username = $("username").value.trim(), password = $("password").value;
  if (!username || !password) { error.textContent = "Enter your user name and password."; return; }
  const button = event.submitter || $("login-form").querySelector("button");
  button.disabled = true;
  try {
    await login(username, password);
    $("password").value = "";
  } catch (e) {
    error.textContent = e.status === 400 ? "User name or password is wrong, or the account is disabled." : errorText(e);
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", () => signOut());

onSession(async (_session, reason) => {
  if (reason === "signed-in") {
    identity = null;  // a new user: ask again
    await who();
    await route();
    $("main").focus();
  } else if (reason === "signed-out" || reason === "expired") {
    identity = null;
    $("who").textContent = "";
    if (reason === "expired") $("login-error").textContent = "Your session has ended: sign in again.";
    await route();
  }
});

// "Simulated time" when the server says its clock is (a demo): every time on the page is on that clock.
let simTimer = null;
function showSimulated(simulated, rate = 1) {
  const node = $("sim-clock");
  node.hidden = !simulated;
  clearInterval(simTimer);
  if (!simulated) return;
  const paint = () => {
    node.textContent = `Simulated time ${hhmm(serverNow())}${rate > 1.01 ? ` · ${Math.round(rate)}× faster` : ""}`;
    node.title = "The demo's devices run on a simulated clock; every time shown here is on it.";
  };
  paint();
  simTimer = setInterval(paint, 5000);
}
onClock(({ simulated, rate }) => showSimulated(simulated, rate));

events.onStatus((status) => {
  const node = $("live-status");
  node.hidden = status === "off";
  node.className = `live-status status-${status}`;
  node.textContent = { live: "● Live", connecting: "Connecting…", reconnecting: "Reconnecting…",
                       unavailable: "Live updates unavailable" }[status] || "";
});

window.addEventListener("hashchange", () => { route().catch((e) => console.error(e)); });

(async () => {
  if (signedIn()) who();  // in parallel with the first view's requests
  await route();
})().catch((error) => { $("login-error").textContent = errorText(error); });

export const currentPatient = () => current;
