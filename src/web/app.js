// The page of serve.py: the microphone streamed to WS /v1/stream (partial text as it changes,
// final segments with word times), Stop, and a file picker posting to /v1/transcribe.
"use strict";

const $ = (id) => document.getElementById(id);
// The recording in progress (see record())
let session = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setState(text, kind = "") {
  $("state").textContent = text;
  $("state").className = `state ${kind}`;
}

function seconds(t) {
  return t.toFixed(2);
}

// A line of words, each with its times and confidence on hover (title) and click.
function wordLine(words, start, end) {
  const line = document.createElement("li");
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${seconds(start)}–${seconds(end)} s`;
  line.appendChild(time);
  const text = document.createElement("span");
  text.className = "words";
  words.forEach((w, i) => {
    const span = document.createElement("span");
    span.className = "word" + (w.confidence < 0.5 ? " unsure" : "");
    span.textContent = w.word;
    const info = `${w.word}: ${seconds(w.start)}–${seconds(w.end)} s, confidence ` +
      `${w.confidence.toFixed(2)}`;
    span.title = info;
    span.addEventListener("click", () => {
      document.querySelectorAll(".word.selected").forEach((s) => s.classList.remove("selected"));
      span.classList.add("selected");
      $("word-info").textContent = info;
    });
    text.appendChild(span);
    if (i < words.length - 1) text.appendChild(document.createTextNode(" "));
  });
  line.appendChild(text);
  return line;
}

function onEvent(s, event) {
  if (event.event === "partial") {
    $("partial").textContent = event.text;
  } else if (event.event === "final") {
    $("partial").textContent = "";
    if (event.text) $("finals").appendChild(wordLine(event.words, event.start, event.end));
  } else if (event.event === "error") {
    s.refused = true;
    showError(`The server refused the stream: ${event.message}`);
  }
}

function streamUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/stream`;
}

function microphoneError(err) {
  if (err.name === "NotAllowedError" || err.name === "SecurityError") {
    return "The microphone was refused. Allow it for this page in the browser's site " +
      "settings, then press Record again.";
  }
  if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
    return "No microphone was found: connect one and press Record again.";
  }
  return `The microphone could not be opened: ${err.message || err.name}`;
}

const UNREACHABLE = "Cannot reach the server: is serve.py still running? Start it, reload " +
  "the page and try again.";

async function reachable() {
  try {
    return (await fetch("/healthz", {cache: "no-store"})).ok;
  } catch (err) {
    return false;
  }
}

function recorderButtons(recording) {
  $("record").disabled = recording;
  $("record").classList.toggle("recording", recording);
  $("stop").disabled = !recording;
}

async function record() {
  if (session) return;
  showError("");
  if (!window.isSecureContext) {
    showError("Browsers give the microphone only to https:// pages and to localhost: open " +
      "this page through HTTPS (see docs/serving.md) or on the machine of the server.");
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia ||
      !window.AudioWorkletNode) {
    showError("This browser cannot record here (it lacks getUserMedia or AudioWorklet): " +
      "use a current Chrome, Edge, Firefox or Safari.");
    return;
  }
  recorderButtons(true);
  $("stop").disabled = true; // until the microphone is open
  $("finals").replaceChildren();
  $("partial").textContent = "";
  setState("waiting for the microphone…");
  // Made in the click itself: the autoplay policy lets a context made then run, even when the
  // permission prompt takes longer than the click's activation lasts.
  const context = new AudioContext();
  const worklet = context.audioWorklet.addModule("/static/recorder-worklet.js");
  worklet.catch(() => {}); // awaited below once the microphone is open (not if it is refused)
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({audio: {
      channelCount: 1, echoCancellation: false, noiseSuppression: false,
      autoGainControl: false}});
    await worklet;
  } catch (err) {
    if (media) media.getTracks().forEach((t) => t.stop());
    context.close();
    recorderButtons(false);
    // the worklet script comes from the server: a server gone since the page loaded is the
    // likelier cause, and the one the user can fix
    const gone = media !== undefined && !(await reachable());
    if (gone) setState("not connected", "failed"); else setState("ready");
    showError(!media ? microphoneError(err) : gone ? UNREACHABLE :
      `The page's recorder could not start: ${err.message}`);
    return;
  }
  if (context.state === "suspended") context.resume();
  const node = new AudioWorkletNode(context, "recorder");
  const s = {context, media, node, socket: null, opened: false, queue: [], stopping: false,
    flushed: false, refused: false};
  session = s;
  // The microphone is recorded from now on; what comes before the socket is open waits in
  // s.queue, so the start of the speech is not lost.
  node.port.onmessage = (message) => onAudio(s, message.data);
  // a microphone unplugged or taken away by the browser ends the stream as Stop does
  media.getTracks().forEach((t) => { t.onended = stop; });
  context.createMediaStreamSource(media).connect(node);
  node.connect(context.destination); // silent: keeps the worklet running
  const socket = new WebSocket(streamUrl());
  s.socket = socket;
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    s.opened = true;
    socket.send(JSON.stringify({sample_rate: context.sampleRate, format: "f32le"}));
    s.queue.forEach((buffer) => socket.send(buffer));
    s.queue = [];
    if (s.flushed) socket.send(JSON.stringify({event: "end"}));
  };
  socket.onmessage = (message) => onEvent(s, JSON.parse(message.data));
  socket.onclose = (close) => finished(s, close);
  $("stop").disabled = false;
  setState(`recording at ${context.sampleRate} Hz…`, "live");
}

// A block of samples (Float32Array) or "flushed" (the last block was sent) from the worklet.
function onAudio(s, data) {
  const open = s.socket.readyState === WebSocket.OPEN;
  if (data === "flushed") {
    s.flushed = true;
    s.media.getTracks().forEach((t) => t.stop()); // the microphone is off from here
    if (open) s.socket.send(JSON.stringify({event: "end"}));
  } else if (!s.flushed) {
    if (open) s.socket.send(data.buffer);
    else if (s.socket.readyState === WebSocket.CONNECTING) s.queue.push(data.buffer);
  }
}

function stop() {
  const s = session;
  if (!s || s.stopping) return;
  s.stopping = true;
  $("stop").disabled = true;
  setState("finishing…");
  s.node.port.postMessage("flush"); // the last samples, then "flushed": {"event": "end"}
}

// The socket closed: the recording ends, whatever the reason.
function finished(s, close) {
  if (session !== s) return;
  session = null;
  s.media.getTracks().forEach((t) => t.stop());
  s.node.port.onmessage = null;
  s.context.close();
  recorderButtons(false);
  $("partial").textContent = "";
  if (close.code === 1000) {
    setState("done", "done");
  } else if (!s.opened) {
    setState("not connected", "failed");
    showError(UNREACHABLE);
  } else if (s.refused) {
    setState(`refused (${close.code})`, "failed"); // the error event's message is shown
  } else if (close.code === 1006) {
    setState("disconnected", "failed");
    showError("The connection to the server was lost: is serve.py still running?");
  } else {
    setState(`closed (${close.code})`, "failed");
    showError(`The server closed the stream (${close.code}): ${close.reason || "no reason"}`);
  }
}

async function transcribeFile(file) {
  showError("");
  $("file-state").textContent = `transcribing ${file.name}…`;
  $("file-result").hidden = true;
  const form = new FormData();
  form.append("file", file, file.name);
  let response;
  try {
    response = await fetch("/v1/transcribe", {method: "POST", body: form});
  } catch (err) {
    $("file-state").textContent = "";
    showError(UNREACHABLE);
    return;
  }
  const result = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
  if (!response.ok) {
    $("file-state").textContent = "";
    showError(`${file.name}: ${result.error || `HTTP ${response.status}`}`);
    return;
  }
  $("file-state").textContent = `${file.name}: ${seconds(result.duration)} s of audio`;
  const list = document.createElement("ol");
  if (result.words.length) {
    list.appendChild(wordLine(result.words, 0, result.duration));
  } else {
    list.textContent = "(no speech recognised)";
  }
  const box = $("file-result");
  box.replaceChildren(list);
  box.hidden = false;
}

async function showModel() {
  try {
    const health = await (await fetch("/healthz")).json();
    const m = health.model;
    const offline = health.offline_model ?
      ` · uploads: ${health.offline_model.hidden_size} × ${health.offline_model.num_layers}` +
      `${health.offline_model.bidirectional ? " bidirectional" : ""}` : "";
    $("model").textContent = `Streaming model ${m.hidden_size} × ${m.num_layers} ` +
      `(${m.backend}, ${m.chunk_ms} ms chunks) · decoder ${health.decoder.method}${offline}`;
  } catch (err) {
    $("model").textContent = "";
    showError(UNREACHABLE);
  }
}

$("record").addEventListener("click", record);
$("stop").addEventListener("click", stop);
$("file").addEventListener("change", (e) => {
  if (e.target.files.length) transcribeFile(e.target.files[0]);
  e.target.value = "";
});
showModel();
