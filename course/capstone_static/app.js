// The capstone's page: the upload form with a progress bar per upload, and the feed.
// Given: nothing to change here. The live feed itself (reconnect and resume) is YOUR code,
// lessons/l07_capstone.js, served as /live.js.
import { openFeed } from "/live.js";

const HALF = 50;  // each <progress> has max 100: 0-50 while the bytes are sent, 50-100 while processed
const form = document.getElementById("upload-form");
const input = document.getElementById("file");
const uploads = document.getElementById("uploads");
const feedList = document.getElementById("feed");
const statusLine = document.getElementById("status");
const bars = new Map();   // upload id -> its <progress>
const early = new Map();  // upload id -> its events that came before the upload's own response

window.capstone = { worker: null, feed: null, lines: () => [...feedList.children].map((li) => li.textContent) };

function setStatus(state, text) {
  statusLine.dataset.state = state;
  statusLine.textContent = state === "live" && window.capstone.worker ? `live, on worker ${window.capstone.worker}` : text;
}

function show(bar, phase, value) {
  bar.dataset.phase = phase;
  bar.value = value;
}

function updateBar(bar, event) {
  if (event.kind === "progress" && bar.dataset.phase !== "done") {
    show(bar, "processing", HALF + (HALF * event.done) / event.steps);
  } else if (event.kind === "processed") {
    show(bar, "done", bar.max);
  }
}

function onEvent(event) {
  if (event.kind === "processed") {
    const line = document.createElement("li");
    line.textContent = `${event.name}: processed, ${event.size} bytes, sha256 ${event.sha256.slice(0, 12)}…`;
    feedList.append(line);
  }
  const bar = bars.get(event.upload);
  if (bar) updateBar(bar, event);
  else if (event.upload) early.set(event.upload, [...(early.get(event.upload) || []), event]);
}

function onMessage(message) {
  if (message.hello) {
    window.capstone.worker = message.hello.worker;
    setStatus("live", "live");
    return;
  }
  if (message.error) {
    setStatus("down", message.error);
    return;
  }
  let event = null;
  try {
    event = JSON.parse(message.text);
  } catch {
    event = null;  // not one of ours: someone's plain text (lesson 6's clients can chat)
  }
  if (event && event.kind) {
    onEvent(event);
  } else {
    const line = document.createElement("li");
    line.textContent = message.text;
    feedList.append(line);
  }
}

function upload(file) {
  const item = document.createElement("li");
  const label = document.createElement("span");
  const bar = document.createElement("progress");
  label.textContent = file.name;
  bar.max = 100;
  show(bar, "sending", 0);
  item.append(label, bar);
  uploads.append(item);

  // XMLHttpRequest, not fetch: only XHR reports how many bytes of the body have been sent.
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/uploads");
  xhr.responseType = "json";
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) show(bar, "sending", (HALF * e.loaded) / e.total);
  };
  xhr.onload = () => {
    if (xhr.status !== 202) {
      bar.dataset.phase = "failed";
      label.textContent = `${file.name}: refused (${xhr.status}) ${xhr.response?.detail ?? ""}`;
      return;
    }
    const id = xhr.response.id;
    bars.set(id, bar);
    bar.dataset.upload = id;
    show(bar, "queued", HALF);
    for (const event of early.get(id) || []) updateBar(bar, event);
    early.delete(id);
  };
  xhr.onerror = () => {
    bar.dataset.phase = "failed";
    label.textContent = `${file.name}: the upload did not get through`;
  };
  const body = new FormData();
  body.append("file", file);
  xhr.send(body);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  for (const file of input.files) upload(file);
  form.reset();
});

window.capstone.feed = openFeed("/ws", { onMessage, onStatus: setStatus });
