// rtcontrol softphone: plain JavaScript over the emulator's control API (/control/v1).
"use strict";

const API = "/control/v1";
const $ = (id) => document.getElementById(id);

const state = {
  current: null,        // callid of the call on the softphone
  ringing: null,        // callid of an outbound call ringing the softphone
  selected: null,       // callid whose transcript is shown
  calls: new Map(),     // callid -> info
  events: new Map(),    // callid -> [event], in time order (at, then seq)
  seen: new Set(),      // seq of every event kept: history and live never duplicate
  since: 0,             // the live stream carries every event after this seq
  complete: new Set(),  // calls whose history is loaded (the live stream has the rest)
  history: null,        // {callid, source}: the selected call's history stream
  recorder: null,       // {recorder, stream, started, bytes} while the microphone records
  placing: false,       // "Have the app call me" is on its way
};

async function api(method, path, body) {
  const response = await fetch(API + path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) {
    const message = (data.error && data.error.message) || response.statusText;
    setStatus("Error: " + message);
    throw new Error(message);
  }
  return data;
}

function setStatus(text) { $("status").textContent = text; }

// ------------------------------------------------------------------ speech
function speak(items) {
  const synth = window.speechSynthesis;
  if (!synth || typeof window.SpeechSynthesisUtterance !== "function") return;
  synth.cancel();
  for (const item of items) {
    const utterance = new window.SpeechSynthesisUtterance(item.text);
    if (item.lang) utterance.lang = item.lang;
    synth.speak(utterance);
  }
}

function silence() {
  if (window.speechSynthesis) window.speechSynthesis.cancel();
}

// ------------------------------------------------------------------ transcript
// Phone numbers are masked in everything the page shows (as the CLI's printer does):
// +33612345678 -> +33*******78. The user's own input fields stay as typed.
const E164 = /\+[0-9]{6,15}/g;
function mask(text) {
  return String(text).replace(E164, (n) => n.slice(0, 3) + "*".repeat(n.length - 5) + n.slice(-2));
}

function fmt(value) {
  const text = value === undefined ? "" : mask(JSON.stringify(value));  // masked, then cut
  return text.length > 300 ? text.slice(0, 297) + "..." : text;
}

// How a call ended, in words: a declined or unanswered call says so.
const UNANSWERED = {
  BUSY: "declined (busy)",
  REJECTED: "declined (rejected)",
  NOANSWER: "not answered (no answer)",
  CONGESTION: "not answered (network congestion)",
};
function ending(d) {
  if (d.ended_by === "unanswered") return UNANSWERED[d.final_status] || "not answered";
  if (d.ended_by === "cancel") return "cancelled while ringing";
  return `ended by ${d.ended_by}`;
}

function describe(ev) {
  const d = ev.data;
  switch (ev.type) {
    case "call.ringing": return ["RINGING", `${d.from || "BLOCKED"} → ${d.to} (app ${d.app})`];
    case "call.started": return ["CALL", `${d.direction} ${d.from || "BLOCKED"} → ${d.to}${d.live ? " (softphone)" : ""}`];
    case "post": return ["POST", d.text];
    case "reply": {
      if (d.timeout) return ["REPLY", "no reply within the deadline"];
      const parts = [];
      if (d.status !== null) parts.push(String(d.status));
      if (d.latency_ms !== null) parts.push(`${Math.round(d.latency_ms)} ms`);
      if (d.margin_ms !== null && !d.ignored) parts.push(`${Math.round(d.margin_ms)} ms of ${d.deadline_ms} left`);
      if (d.ignored) parts.push("ignored");
      const role = d.role && d.role !== "command" ? d.role : "";
      return ["REPLY", parts.join(" · ") + " — " + d.text, role, d.margin_ms !== null && d.margin_ms < 1000];
    }
    case "command.started": return ["RUN", `${d.command} ${fmt(d.params || {})}`, d.role !== "command" ? d.role : ""];
    case "command.ended": return ["RESULT", `${d.command} → ${fmt(d.result)}${d.error ? " error " + fmt(d.error) : ""}`];
    case "break": return ["BREAK", d.text];
    case "callee": return ["CALLEE", d.text];
    case "platform": return ["PLATFORM", d.text];
    case "error": return ["ERROR", d.text];
    case "call.ended": return ["ENDED", ending(d) + (d.posts !== undefined ? `, ${d.posts} POSTs, ${d.hangup_count} HANGUP` : "")];
    default: return [ev.type, fmt(d)];
  }
}

function row(ev) {
  const [tag, text, role, low] = describe(ev);
  const div = document.createElement("div");
  div.className = "ev ev-" + ev.type.replace(".", "-");
  div.dataset.type = ev.type;
  div.dataset.seq = String(ev.seq);
  const at = document.createElement("span");
  at.className = "at";
  at.textContent = ev.at.toFixed(2) + "s";
  const label = document.createElement("span");
  label.className = "tag";
  label.textContent = tag;
  const detail = document.createElement("span");
  detail.className = "detail" + (low ? " margin-low" : "");
  if (role) {
    const badge = document.createElement("span");
    badge.className = "role role-" + role;
    badge.textContent = role;
    detail.append(badge, " ");
  }
  detail.append(mask(text));
  div.append(at, label, detail);
  return div;
}

const earlier = (a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq);

// Keep an event once (by seq), in its call's time order; draw it if its call is shown.
// An answered softphone call's call.started (at 0) comes after the ringing's events.
function store(ev) {
  if (state.seen.has(ev.seq)) return false;
  state.seen.add(ev.seq);
  if (!state.events.has(ev.callid)) state.events.set(ev.callid, []);
  const list = state.events.get(ev.callid);
  let i = list.length;
  while (i > 0 && earlier(ev, list[i - 1])) i--;
  list.splice(i, 0, ev);
  if (ev.callid === state.selected) {
    const box = $("transcript");
    box.insertBefore(row(ev), box.children[i] || null);
  }
  return true;
}

function select(callid) {
  state.selected = callid;
  $("log-title").textContent = callid === null ? "" : `call ${callid}`;
  const box = $("transcript");
  box.replaceChildren(...(state.events.get(callid) || []).map(row));
  box.dataset.history = state.complete.has(callid) ? "loaded" : "loading";
  renderCalls();
  loadHistory(callid);
}

// A call's whole history: its own event stream replays it from the start (the emulator
// keeps its last 20,000 events). Once it reaches the live stream's start (or the call's end), the
// live stream has the rest: the history stream closes.
function loadHistory(callid) {
  closeHistory();
  if (callid === null || state.complete.has(callid)) return;
  const source = new EventSource(`${API}/calls/${callid}/events`);
  state.history = { callid, source };
  source.onmessage = (message) => {
    const ev = JSON.parse(message.data);
    store(ev);
    if (ev.seq > state.since || ev.type === "call.ended") {
      state.complete.add(callid);
      closeHistory();
      if (callid === state.selected) $("transcript").dataset.history = "loaded";
    }
  };
  source.onerror = () => closeHistory();  // over (or no such call): nothing more to replay
}

function closeHistory() {
  if (state.history === null) return;
  state.history.source.close();
  state.history = null;
}

// ------------------------------------------------------------------ calls
function renderCalls() {
  const list = $("calls");
  const ids = [...state.calls.keys()].sort((a, b) => b - a);
  list.replaceChildren(...ids.map((id) => {
    const c = state.calls.get(id);
    const li = document.createElement("li");
    const how = c.ended_by === "unanswered" ? ending(c).split(" (")[0] : c.ended_by;
    li.textContent = `${id} ${c.direction} ${c.state}${how ? " (" + how + ")" : ""}`;
    li.dataset.callid = id;
    if (id === state.selected) li.className = "selected";
    li.onclick = () => select(id);
    return li;
  }));
}

function updateButtons() {
  const inCall = state.current !== null;
  $("dial").disabled = inCall || state.ringing !== null;
  $("callme").disabled = inCall || state.ringing !== null || state.placing;
  $("hangup").disabled = !inCall;
  for (const b of $("keypad").querySelectorAll("button")) b.disabled = !inCall;
  $("incoming").hidden = state.ringing === null;
}

// An event of the live stream: kept (unless its call's history had it already), and
// it drives the softphone.
function onEvent(ev) {
  store(ev);
  const info = state.calls.get(ev.callid) || { callid: ev.callid, direction: "", state: "" };
  const d = ev.data;
  switch (ev.type) {
    case "call.ringing":
      Object.assign(info, d);
      if (d.live && state.current === null) ring(ev.callid, d);
      break;
    case "call.started":
      Object.assign(info, d);
      if (d.live && state.ringing === ev.callid) {
        state.ringing = null;
        state.current = ev.callid;
        setStatus(`In call ${ev.callid}`);
      }
      break;
    case "command.started":
      info.running = d.command;
      if (ev.callid === state.current) onCommand(ev.callid, d);
      break;
    case "command.ended":
      info.running = null;
      if (ev.callid === state.current) {
        $("recording").hidden = true;
        stopRecorder(false);
      }
      break;
    case "call.ended":
      info.state = "ended";
      info.ended_by = d.ended_by;
      info.final_status = d.final_status;
      if (ev.callid === state.current || ev.callid === state.ringing) {
        state.current = null;
        state.ringing = null;
        silence();
        stopRecorder(false);
        $("recording").hidden = true;
        $("prompt").textContent = "";
        setStatus(`Call ${ev.callid} ${ending(d)}`);
      }
      break;
  }
  state.calls.set(ev.callid, info);
  updateButtons();
  renderCalls();
}

function ring(callid, d) {
  if (state.ringing === callid) return;
  state.ringing = callid;
  $("incoming-detail").textContent = mask(`from app ${d.app} to ${d.to}`);
  setStatus(`Ringing: call ${callid}`);
  select(callid);
}

function onCommand(callid, d) {
  setStatus(`In call ${callid}: ${d.command}`);
  const say = d.say || [];
  $("prompt").textContent = say.map((s) => s.text).join(" ");  // none: the last one goes
  if (say.length) speak(say);
  $("recording").hidden = d.command !== "record";
  $("record-note").textContent = "";
  if (d.command === "record") offerMicrophone();
}

// ------------------------------------------------------------------ actions
async function dial() {
  const body = { from: $("from").value.trim(), to: $("to").value.trim(), callee: "live" };
  if ($("app").value) body.app = $("app").value;
  $("prompt").textContent = "";
  const call = await api("POST", "/calls", body);
  state.current = call.callid;
  state.calls.set(call.callid, Object.assign(state.calls.get(call.callid) || {}, call));
  setStatus(`In call ${call.callid}`);
  select(call.callid);
  // Events of the call may have come in before this answer: catch up on its command.
  const seen = state.events.get(call.callid) || [];
  const last = [...seen].reverse().find((e) => e.type.startsWith("command."));
  if (last && last.type === "command.started") onCommand(call.callid, last.data);
  updateButtons();
}

// The app calls the softphone's number: bind the number to this page (unless it rings
// the page already), then calls.realtime through the control API; the call.ringing
// event (or this answer, whichever comes first) shows the incoming call.
async function callMe() {
  const me = $("from").value.trim();
  state.placing = true;
  updateButtons();
  try {
    const book = await api("GET", "/phonebook");
    const rings = book.live.includes(me) || (book.live_default && !(me in book.numbers));
    if (!rings) await api("PUT", "/phonebook/" + encodeURIComponent(me), { callee: "live" });
    const body = { to: me, cli: $("to").value.trim() || "BLOCKED" };
    if ($("app").value) body.app = $("app").value;
    const call = await api("POST", "/calls/outbound", body);
    const known = state.calls.get(call.callid);
    const over = known && known.state === "ended";
    const mine = call.live && call.state === "ringing" && !over;
    if (mine && state.current === null) ring(call.callid, call);
  } finally {
    state.placing = false;
    updateButtons();
  }
}

async function press(key) {
  if (state.current === null) return;
  await api("POST", `/calls/${state.current}/dtmf`, { digits: key });
}

async function hangup() {
  if (state.current === null) return;
  silence();
  await api("POST", `/calls/${state.current}/hangup`);
}

async function answer() {
  if (state.ringing === null) return;
  $("prompt").textContent = "";
  await api("POST", `/calls/${state.ringing}/answer`);
}

async function decline() {
  if (state.ringing === null) return;
  await api("POST", `/calls/${state.ringing}/decline`, { as: "busy" });
}

// seconds: rounded to 0.1 s (what the transcript then shows).
async function sendSpeech(seconds, how) {
  if (state.current === null) return;
  seconds = Math.round(seconds * 10) / 10;
  const sent = await api("POST", `/calls/${state.current}/speech`, { seconds });
  $("record-note").textContent = sent.heard
    ? `Sent ${seconds.toFixed(1)} s of speech ${how}.`
    : "Too late: the recording is over.";
}

function microphone() {
  const media = navigator.mediaDevices;
  return media && typeof media.getUserMedia === "function" && typeof window.MediaRecorder === "function";
}

// A record command: the microphone if this browser has one, else the stand-in only.
function offerMicrophone() {
  const mic = $("record-mic");
  mic.hidden = !microphone();
  mic.textContent = "Record with the microphone";
  if (mic.hidden) $("record-note").textContent = "No microphone here: send the stand-in recording.";
}

async function recordWithMic() {
  if (state.recorder) { stopRecorder(true); return; }
  if (!microphone()) { offerMicrophone(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    $("record-mic").hidden = true;
    $("record-note").textContent = "Microphone not allowed: send the stand-in recording.";
    return;
  }
  if ($("recording").hidden) {  // the record ended while the browser asked
    for (const track of stream.getTracks()) track.stop();
    return;
  }
  const recorder = new window.MediaRecorder(stream);
  const rec = { recorder, stream, started: performance.now(), bytes: 0 };
  recorder.ondataavailable = (e) => {  // the audio is counted, not kept
    if (!e.data || !e.data.size) return;
    rec.bytes += e.data.size;
    $("recording").dataset.audioBytes = String(rec.bytes);
    if (state.recorder === rec) {
      $("record-note").textContent = `Recording… ${Math.ceil(rec.bytes / 1024)} kB: talk, then stop.`;
    }
  };
  state.recorder = rec;
  $("recording").dataset.audioBytes = "0";
  recorder.start(250);  // a chunk every 250 ms: the note shows the audio coming in
  $("record-mic").textContent = "Stop recording";
  $("record-note").textContent = "Recording… talk, then stop.";
  $("recording").dataset.mic = "on";
}

// Stop the microphone; with send, tell the emulator how long the person talked (the
// audio itself stays here: the emulator only needs its length).
function stopRecorder(send) {
  const rec = state.recorder;
  if (!rec) return;
  state.recorder = null;
  const seconds = (performance.now() - rec.started) / 1000;
  rec.recorder.onstop = () => {  // after the last chunk
    for (const track of rec.stream.getTracks()) track.stop();
    if (send) sendSpeech(seconds, `with the microphone (${Math.ceil(rec.bytes / 1024)} kB of audio)`);
  };
  rec.recorder.stop();
  $("record-mic").textContent = "Record with the microphone";
  $("recording").dataset.mic = "off";
}

// ------------------------------------------------------------------ start
async function start() {
  const info = await api("GET", "/");
  state.since = info.last_event;
  const apps = $("app");
  apps.replaceChildren(...info.apps.filter((a) => a.type === "REALTIME10").map((a) => {
    const option = document.createElement("option");
    option.value = a.hash;
    option.textContent = `${a.hash} ${a.name}`;
    return option;
  }));
  // The calls there are already (their transcripts load when selected); one still
  // ringing the softphone rings this page too.
  for (const call of await api("GET", "/calls")) state.calls.set(call.callid, call);
  renderCalls();
  const ringing = [...state.calls.values()].find((c) => c.live && c.state === "ringing");
  if (ringing && state.ringing === null) ring(ringing.callid, ringing);
  const events = new EventSource(`${API}/events?since=${info.last_event}`);
  events.onopen = () => { $("connection").textContent = "live"; };
  events.onerror = () => { $("connection").textContent = "reconnecting…"; };
  events.onmessage = (message) => onEvent(JSON.parse(message.data));
  $("dial").onclick = dial;
  $("hangup").onclick = hangup;
  $("answer").onclick = answer;
  $("decline").onclick = decline;
  $("record-mic").onclick = recordWithMic;
  $("record-standin").onclick = () => sendSpeech(3, "(a stand-in recording)");
  $("callme").onclick = callMe;
  for (const button of $("keypad").querySelectorAll("button")) {
    button.onclick = () => press(button.dataset.key);
  }
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement) return;
    if ("0123456789*#".includes(e.key) && e.key.length === 1) press(e.key);
  });
  updateButtons();
  document.body.dataset.ready = "true";
}

start();
