"use strict";
// The page of `avemo serve`: upload, poll the job, show the answers, the timeline chart synced with the video.
const COLOURS = {neutral: "#8a8f98", calm: "#2a9d8f", happy: "#e9c46a", sad: "#3a6ea5", angry: "#d62828",
                 fearful: "#7b2cbf", disgust: "#588157", surprised: "#f77f00"};
const TITLES = {single_clip: "Single clip", speaker_adapted: "Adapted to this person"};
const $ = (id) => document.getElementById(id);
let recorded = null;  // a webcam recording waiting to be analysed
let job = null;

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function colour(name) { return COLOURS[name] || "#555"; }
function pct(p) { return (100 * p).toFixed(1) + " %"; }

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function loadModel() {
  const r = await fetch("/api/model");
  const m = await r.json();
  const info = m.model_info || {};
  let line = `model: ${info.name || m.name} (${m.inputs})`;
  if (info.data) line += ` — trained on ${info.data}`;
  if (m.accuracy) line += ` — accuracy: ${m.accuracy}`;  // the server's text, the same as each answer's
  $("model-line").textContent = line + ` — uploads up to ${m.max_upload_mb} MB`;
}

function bars(probabilities) {
  const box = el("div", {class: "bars"});
  const top = Math.max(...Object.values(probabilities));
  for (const [name, p] of Object.entries(probabilities)) {
    const row = el("div", {class: "bar" + (p === top ? " top" : ""), "data-class": name});
    row.append(el("span", {class: "name"}, name));
    const track = el("span", {class: "track"});
    const fill = el("span", {class: "fill", style: `width:${(100 * p).toFixed(1)}%;background:${colour(name)}`});
    track.append(fill);
    row.append(track, el("span", {class: "value"}, p.toFixed(3)));
    box.append(row);
  }
  return box;
}

function card(key, a, first) {
  const box = el("article", {class: "answer", id: "answer-" + key});
  const title = a.mode === "stream" && key === "single_clip" ? "Whole file" : (TITLES[key] || key);
  const windows = a.mode === "stream" && a.timeline ? ` — ${a.timeline.times.length} windows` : "";
  box.append(el("h2", {}, title + windows));
  const label = el("p", {class: "label", style: `color:${colour(a.label)}`}, a.label);
  if (first) label.id = "label";
  box.append(label);
  box.append(el("p", {class: "confidence"}, `probability ${pct(a.confidence)} (calibrated when the model is)`));
  box.append(bars(a.probabilities));
  const facts = el("dl");
  const add = (k, v) => { if (v) { facts.append(el("dt", {}, k), el("dd", {}, v)); } };
  add("answered from", a.branch);
  add("protocol", a.protocol === "speaker_adapted" ? "speaker adapted" : "single clip");
  if (a.enrolment) add("enrolment", `${a.enrolment.clips} clip(s)` +
                       (a.enrolment.skipped.length ? `, ${a.enrolment.skipped.length} skipped` : ""));
  add("model", a.model.name + (a.model.used && a.model.used !== a.model.name ? ` (answered by ${a.model.used})` : ""));
  add("model accuracy", a.model.accuracy || "not in this model's card");
  add("trained on", a.model.data);
  add("mode", a.mode === "stream" ? "timeline (sliding windows), aggregated" : "one clip");
  add("time", a.seconds != null ? `${a.seconds.toFixed(2)} s` : "");
  box.append(facts);
  const notes = [...a.notes];
  if (a.model.warning) notes.unshift(a.model.warning);
  if (a.enrolment) for (const s of a.enrolment.skipped) notes.push(`enrolment clip skipped: ${s.reason}`);
  if (notes.length) {
    const list = el("ul", {class: "notes"});
    for (const n of notes) list.append(el("li", {}, n));
    box.append(list);
  }
  return box;
}

function drawTimeline(t, video) {
  const svg = $("chart");
  const W = 900, H = 220, L = 36, R = 8, T = 8, B = 24;
  const end = Math.max(t.times[t.times.length - 1] + (t.window_s || 0) / 2, video.duration || 0, 1e-3);
  const x = (s) => L + (W - L - R) * s / end;
  const y = (p) => T + (H - T - B) * (1 - p);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs) => { const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); svg.append(n); return n; };
  make("rect", {x: L, y: T, width: W - L - R, height: H - T - B, class: "plot"});
  for (const p of [0, 0.5, 1]) {
    make("line", {x1: L, x2: W - R, y1: y(p), y2: y(p), class: "grid"});
    make("text", {x: L - 4, y: y(p) + 4, "text-anchor": "end", class: "tick"}).textContent = p.toFixed(1);
  }
  const step = end > 60 ? 10 : end > 20 ? 5 : end > 8 ? 2 : 1;
  for (let s = 0; s <= end; s += step) {
    make("text", {x: x(s), y: H - 6, "text-anchor": "middle", class: "tick"}).textContent = s + " s";
  }
  $("legend").replaceChildren();
  for (const [name, values] of Object.entries(t.series)) {
    const points = t.times.map((s, i) => values[i] == null ? null : `${x(s).toFixed(1)},${y(values[i]).toFixed(1)}`)
      .filter(Boolean).join(" ");
    make("polyline", {points, stroke: colour(name), class: "series", "data-class": name});
    const key = el("span", {class: "key"}, name);
    key.style.setProperty("--c", colour(name));
    $("legend").append(key);
  }
  const head = make("line", {x1: L, x2: L, y1: T, y2: H - B, class: "playhead", id: "playhead"});
  video.ontimeupdate = () => { const px = x(Math.min(video.currentTime, end));
    head.setAttribute("x1", px); head.setAttribute("x2", px); };
  svg.onclick = (event) => {
    const box = svg.getBoundingClientRect();
    const px = (event.clientX - box.left) * W / box.width;
    video.currentTime = Math.max(0, Math.min(end, (px - L) / (W - L - R) * end));
  };
  $("timeline").hidden = false;
}

function downloads(status) {
  const p = $("downloads");
  p.replaceChildren(el("span", {}, "Download: "));
  const names = ["result.json", "result.csv"];
  if (status.answers.speaker_adapted) names.push("adapted.json", "adapted.csv");
  if (status.video === "ready") names.push("annotated.mp4");
  for (const name of names) {
    p.append(el("a", {href: `/api/jobs/${status.id}/${name}`, download: "", class: "download"}, name), " ");
  }
}

function showResult(status) {
  const answers = $("answers");
  answers.replaceChildren();
  const keys = Object.keys(status.answers);
  answers.className = keys.length > 1 ? "side-by-side" : "";
  keys.forEach((key, i) => answers.append(card(key, status.answers[key], i === 0)));
  const video = $("video");
  $("media").hidden = false;
  video.src = `/api/jobs/${status.id}/input`;
  const timeline = status.answers.single_clip.timeline;
  $("timeline").hidden = true;
  if (timeline) {
    if (video.readyState >= 1) drawTimeline(timeline, video);
    else { drawTimeline(timeline, video); video.onloadedmetadata = () => drawTimeline(timeline, video); }
  }
  downloads(status);
  $("result").hidden = false;
}

function swapToAnnotated(status) {
  const video = $("video");
  const at = video.currentTime;
  video.src = `/api/jobs/${status.id}/annotated.mp4`;
  video.onloadeddata = () => { video.currentTime = at; video.onloadeddata = null; };
  video.dataset.annotated = "1";
  downloads(status);
}

async function poll(id) {
  const r = await fetch(`/api/jobs/${id}?wait=1`);  // the reply comes as soon as the job is answered
  const status = await r.json();
  if (!r.ok) { showError(status.detail || r.statusText); $("status").textContent = ""; return; }
  if (status.state === "queued") {
    $("status").textContent = status.position ? `waiting: ${status.position} upload(s) before yours…` : "waiting…";
  } else if (status.state === "running") {
    $("status").textContent = `analysing ${status.name}…` +
      (status.progress != null ? ` ${status.progress.toFixed(1)} s of it so far` : "");
  } else if (status.state === "failed") {
    $("status").textContent = "";
    showError(status.error);
    $("go").disabled = false;
    return;
  } else if (status.state === "done") {
    if (job !== "shown:" + id) { showResult(status); job = "shown:" + id; $("go").disabled = false; }
    const waited = status.waited != null ? ` in ${status.waited.toFixed(2)} s` : "";
    if (status.video === "drawing") $("status").textContent = `answered${waited}; drawing the annotated video…`;
    else $("status").textContent = `answered${waited}` + (status.video === "failed" ? ` (${status.error})` : "");
    if (status.video === "ready" && !$("video").dataset.annotated) swapToAnnotated(status);
    if (status.video !== "drawing") return;
  }
  setTimeout(() => poll(id), status.state === "done" ? 400 : 20);
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const file = $("file").files[0] || recorded;
  if (!file) { showError("choose a video or audio file first"); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  if ($("adapt").checked) for (const f of $("enrol").files) form.append("enrol", f, f.name);
  form.append("annotate", $("annotate").checked ? "true" : "false");
  $("go").disabled = true;
  $("result").hidden = true;
  delete $("video").dataset.annotated;
  $("status").textContent = `uploading ${file.name}…`;
  const r = await fetch("/api/jobs", {method: "POST", body: form});
  const reply = await r.json().catch(() => ({detail: r.statusText}));
  if (!r.ok) {
    $("status").textContent = "";
    showError(typeof reply.detail === "string" ? reply.detail : JSON.stringify(reply.detail));
    $("go").disabled = false;
    return;
  }
  job = reply.id;
  poll(reply.id);
}

async function recordWebcam() {
  showError("");
  try {
    const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
    const recorder = new MediaRecorder(stream, {mimeType: "video/webm"});
    const chunks = [];
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((track) => track.stop());
      recorded = new File(chunks, "webcam.webm", {type: "video/webm"});
      $("file").value = "";
      $("status").textContent = "recorded 4 s from the webcam: press Analyse";
    };
    $("status").textContent = "recording 4 s…";
    recorder.start();
    setTimeout(() => recorder.stop(), 4000);
  } catch (err) {
    showError(`webcam: ${err.message || err}`);
  }
}

$("upload").addEventListener("submit", submit);
$("webcam").addEventListener("click", recordWebcam);
$("file").addEventListener("change", () => { recorded = null; });
$("adapt").addEventListener("change", () => { $("enrol-box").hidden = !$("adapt").checked; });
loadModel().catch((err) => showError(`cannot reach the server: ${err}`));
