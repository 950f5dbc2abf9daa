// nexus-writer's page: sessions and scans pushed by server-sent events (/events), the
// selected scan's default plot read from its file (/api/plot), the file's tree through
// h5grove's API (/h5grove/meta/).  No framework; uPlot draws the curves.
"use strict";

const $ = (sel) => document.querySelector(sel);
const view = {
  snapshot: null,
  selected: null,      // {session, key, file, entry}
  pending: null,       // a scan named in the address, selected once it is listed
  nxdata: "",
  file: null,
  plot: null,          // uPlot instance
  plotKey: "",         // what the uPlot instance shows (kind + series names)
  loading: false,      // a plot request in flight
  again: false,        // another one asked meanwhile
  lastCount: null,     // written points of the selected scan at the last plot
  updates: 0,
};
window.nxw = view;  // for tests and curious users

function text(v) { return v === null || v === undefined ? "" : String(v); }
function el(tag, attrs, children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children || []) e.append(c);
  return e;
}
function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}
function q(params) { return new URLSearchParams(params).toString(); }

// -- live status ----------------------------------------------------------------------
function connect() {
  const source = new EventSource("events");
  source.addEventListener("open", () => { $("#conn").dataset.state = "open"; $("#conn").textContent = "live"; });
  source.addEventListener("error", () => { $("#conn").dataset.state = "error"; $("#conn").textContent = "reconnecting…"; });
  source.addEventListener("snapshot", (ev) => render(JSON.parse(ev.data)));
}

function fillSelect(select, values) {
  const current = select.value;
  const have = new Set([...select.options].map((o) => o.value));
  for (const v of values) if (!have.has(v)) select.append(el("option", {value: v, text: v}));
  select.value = current;
}

function render(snap) {
  view.snapshot = snap;
  fillSelect($("#filter-session"), snap.sessions.map((s) => s.session));
  const fSession = $("#filter-session").value, fState = $("#filter-state").value;

  const sbody = $("#sessions tbody");
  sbody.replaceChildren(...snap.sessions.filter((s) => !fSession || s.session === fSession).map((s) =>
    el("tr", {"data-session": s.session}, [
      el("td", {text: s.session}), el("td", {text: text(s.host)}), el("td", {text: text(s.pid)}),
      el("td", {text: age(s.heartbeat_age)}),
      el("td", {class: "state-" + s.state, text: s.state + (s.error ? " (" + s.error + ")" : "")}),
      el("td", {text: s.lease ? (typeof s.lease === "object" ? JSON.stringify(s.lease) : text(s.lease)) : "-"}),
      el("td", {text: text(s.restarts)}),
    ])));

  const rows = snap.scans.filter((s) => (!fSession || s.session === fSession) && (!fState || s.state === fState));
  const tbody = $("#scans tbody");
  tbody.replaceChildren(...rows.slice().reverse().map((s) => {
    const detail = Object.entries(s.channels).map(([n, c]) => `${n}: ${c.written}/${c.published}`).join("\n");
    const selected = view.selected && view.selected.key === s.key && view.selected.session === s.session;
    const tr = el("tr", {class: "scan" + (selected ? " selected" : ""), "data-key": s.key,
                         "data-session": s.session, "data-state": s.state}, [
      el("td", {text: s.session}), el("td", {text: text(s.scan)}), el("td", {text: s.title}),
      el("td", {class: "state state-" + s.state, text: s.state}),
      el("td", {class: "points", title: detail, "data-written": s.written,
                text: `${s.written} / ${s.published} (${Object.keys(s.channels).length} ch)`}),
      el("td", {class: "file", title: s.file || "", text: (s.file ? s.file.split("/").pop() : "-") + " :: " + s.entries.join(",")}),
      el("td", {text: s.duration === null ? "-" : s.duration.toFixed(1) + " s"}),
      el("td", {class: "reason", text: text(s.reason)}),
    ]);
    tr.addEventListener("click", () => select(s));
    return tr;
  }));

  if (view.pending) {
    const s = snap.scans.find((x) => x.key === view.pending.key && x.session === view.pending.session);
    if (s) { view.pending = null; select(s); return; }
  }
  if (view.selected) {
    const s = snap.scans.find((x) => x.key === view.selected.key && x.session === view.selected.session);
    if (s) {
      $("#scan-title").textContent = `Scan ${s.scan} (${s.session}): ${s.title} — ${s.state}`;
      $("#channels tbody").replaceChildren(...Object.entries(s.channels).map(([n, c]) =>
        el("tr", {"data-channel": n, class: c.written < c.published ? "behind" : ""}, [
          el("td", {text: n}), el("td", {text: text(c.written)}), el("td", {text: text(c.published)})])));
      if (s.file && s.entries.length && (s.written !== view.lastCount || !view.plot)) {
        view.selected.file = s.file; view.selected.entry = s.entries[0];
        loadPlot();
      }
    }
  }
}

// -- the scan view ------------------------------------------------------------------------
function select(scan) {
  view.selected = {session: scan.session, key: scan.key, file: scan.file, entry: scan.entries[0]};
  view.nxdata = ""; view.lastCount = null;
  history.replaceState(null, "", "#" + q({session: scan.session, scan: scan.key}));
  $("#scan-view").hidden = false;
  $("#scan-title").textContent = `Scan ${scan.scan} (${scan.session}): ${scan.title} — ${scan.state}`;
  resetPlot();
  if (scan.file) openFile(scan.file);
  if (view.snapshot) render(view.snapshot);
}

function resetPlot() {
  if (view.plot) { view.plot.destroy(); view.plot = null; }
  view.plotKey = "";
  $("#plot").replaceChildren();
  $("#plot-error").textContent = "";
}

async function loadPlot() {
  if (view.loading) { view.again = true; return; }
  const sel = view.selected;
  if (!sel || !sel.file || !sel.entry) return;
  view.loading = true;
  try {
    const count = (view.snapshot.scans.find((x) => x.key === sel.key) || {}).written;
    const r = await fetch("api/plot?" + q({file: sel.file, entry: sel.entry, nxdata: view.nxdata}));
    const data = await r.json();
    if (view.selected !== sel) return;
    if (!r.ok) { $("#plot-error").textContent = data.message; return; }
    $("#plot-error").textContent = "";
    view.lastCount = count;
    draw(data);
  } catch (e) {
    $("#plot-error").textContent = String(e);
  } finally {
    view.loading = false;
    if (view.again) { view.again = false; setTimeout(loadPlot, 200); }
  }
}

function draw(data) {
  const choices = $("#nxdata");
  if ([...choices.options].map((o) => o.value).join() !== data.choices.join()) {
    choices.replaceChildren(...data.choices.map((c) => el("option", {value: c, text: c})));
  }
  choices.value = data.nxdata;
  $("#grove-link").href = "h5grove/meta/?" + q({file: view.selected.file, path: `/${data.entry}/${data.nxdata}`});
  const plotDiv = $("#plot");
  let points;
  if (data.kind === "image") {
    points = data.point !== undefined ? data.point + 1 : data.pixels.filter((v) => v !== null).length;
    drawImage(data);
    $("#plot-info").textContent = `${data.title}: ${data.width} x ${data.height}` +
      (data.stride > 1 ? ` (1 pixel in ${data.stride})` : "") + `, ${data.min} to ${data.max}`;
  } else {
    const names = Object.keys(data.series);
    const key = data.kind + ":" + data.x_label + ":" + names.join(",");
    const series = [data.x, ...names.map((n) => data.series[n])];
    if (view.plot && view.plotKey === key) {
      view.plot.setData(series);
    } else {
      resetPlot();
      const colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"];
      view.plot = new uPlot({
        width: Math.max(400, plotDiv.clientWidth - 10), height: 300,
        scales: {x: {time: false}},
        axes: [{label: data.kind === "spectrum" ? "channel" : data.x_label}, {size: 80}],
        // auxiliary signals far from the signal's magnitude (timers next to counts)
        // start hidden: a click on their legend shows them
        series: [{label: data.kind === "spectrum" ? "channel" : data.x_label},
                 ...names.map((n, i) => ({label: n, stroke: colors[i % colors.length], spanGaps: false,
                                          show: i === 0 || comparable(data.series[names[0]], data.series[n])}))],
      }, series, plotDiv);
      view.plotKey = key;
    }
    points = data.kind === "spectrum" ? data.point + 1 : data.points;
    $("#plot-info").textContent = data.kind === "spectrum" ? `${data.signal}: spectrum of point ${data.point}`
      : `${names.join(", ")} vs ${data.x_label}: ${data.points} points`;
  }
  view.updates += 1;
  plotDiv.dataset.points = points;
  plotDiv.dataset.updates = view.updates;
  plotDiv.dataset.kind = data.kind;
}

function magnitude(values) {
  let m = 0;
  for (const v of values) if (v !== null && Math.abs(v) > m) m = Math.abs(v);
  return m;
}

function comparable(signal, other) {
  const a = magnitude(signal), b = magnitude(other);
  return a === 0 || b === 0 || (Math.max(a, b) / Math.min(a, b)) < 1000;
}

function color(t) {  // a viridis-like ramp, t in [0, 1]
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(0.9999, Math.max(0, t)) * (stops.length - 1), i = Math.floor(x), f = x - i;
  return stops[i].map((c, k) => Math.round(c + f * (stops[i + 1][k] - c)));
}

function drawImage(data) {
  if (view.plot) { view.plot.destroy(); view.plot = null; view.plotKey = ""; }
  let canvas = $("#plot canvas.image");
  if (!canvas) { $("#plot").replaceChildren(); canvas = el("canvas", {class: "image"}); $("#plot").append(canvas); }
  canvas.width = Math.max(1, data.width); canvas.height = Math.max(1, data.height);
  const scale = Math.max(1, Math.floor(300 / Math.max(1, data.height)));
  canvas.style.width = data.width * scale + "px"; canvas.style.height = data.height * scale + "px";
  canvas.style.imageRendering = "pixelated";
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(canvas.width, canvas.height);
  const span = data.max - data.min || 1;
  data.pixels.forEach((v, i) => {
    const [r, g, b] = v === null ? [255, 255, 255] : color((v - data.min) / span);
    img.data.set([r, g, b, 255], 4 * i);
  });
  ctx.putImageData(img, 0, 0);
}

// -- the file's tree (h5grove) ------------------------------------------------------------
async function meta(file, path) {
  const r = await fetch("h5grove/meta/?" + q({file, path}));
  const body = await r.json();
  if (!r.ok) throw new Error(`${r.status}: ${body.message}`);
  return body;
}

async function openFile(file) {
  view.file = file;
  $("#file-view").hidden = false;
  $("#file-name").textContent = file;
  $("#file-error").textContent = "";
  $("#node-info").textContent = "";
  const tree = $("#tree");
  tree.replaceChildren();
  try {
    const root = await meta(file, "/");
    tree.append(el("ul", {}, [node(file, "/", root)]));
    tree.querySelector("li > span").click();
  } catch (e) {
    $("#file-error").textContent = "refused or unreadable: " + e.message;
  }
}

function node(file, path, info) {
  const label = el("span", {class: info.kind, "data-path": path, text: info.name || "/"});
  const li = el("li", {}, [label]);
  label.addEventListener("click", async () => {
    try {
      const full = await meta(file, path);
      $("#node-info").textContent = describe(path, full);
      if (full.kind !== "group") return;
      const open = li.querySelector("ul");
      if (open) { open.remove(); label.classList.remove("open"); return; }
      label.classList.add("open");
      const children = full.children.slice().sort((a, b) => a.name.localeCompare(b.name, undefined, {numeric: true}));
      li.append(el("ul", {}, children.map((c) => node(file, (path === "/" ? "" : path) + "/" + c.name, c))));
    } catch (e) {
      $("#node-info").textContent = e.message;
    }
  });
  return li;
}

function describe(path, m) {
  const lines = [`${path} (${m.kind})`];
  if (m.shape) lines.push(`shape: [${m.shape.join(", ")}]  type: ${JSON.stringify(m.type)}`);
  if (m.target_path) lines.push(`-> ${m.target_file || ""}::${m.target_path}`);
  for (const a of m.attributes || []) lines.push(`@${a.name}`);
  return lines.join("\n");
}

// -- start ---------------------------------------------------------------------------------
$("#filter-session").addEventListener("change", () => view.snapshot && render(view.snapshot));
$("#filter-state").addEventListener("change", () => view.snapshot && render(view.snapshot));
$("#nxdata").addEventListener("change", () => { view.nxdata = $("#nxdata").value; resetPlot(); loadPlot(); });
const start = new URLSearchParams(location.hash.slice(1));
if (start.get("file")) openFile(start.get("file"));
if (start.get("scan")) view.pending = {session: start.get("session"), key: start.get("scan")};
connect();
