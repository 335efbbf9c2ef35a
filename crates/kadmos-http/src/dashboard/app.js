// The kadmos dashboard: reads the daemon's JSON routes every few seconds and redraws in place.
// Plain DOM and SVG, no framework: the page is compiled into the binary and has no build step.
"use strict";

const REFRESH_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
// Script errors are listed in the page too, so a headless browser's DOM dump shows them.
const pageErrors = [];

window.addEventListener("error", (event) => noteError(String(event.message || event)));
window.addEventListener("unhandledrejection", (event) => noteError(String(event.reason)));
const consoleError = console.error.bind(console);
console.error = (...args) => {
  noteError(args.map(String).join(" "));
  consoleError(...args);
};

function noteError(message) {
  pageErrors.push(message);
  document.body.dataset.errors = String(pageErrors.length);
  setStatus("error: " + message, true);
}

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

async function getJson(path) {
  const answer = await fetch(path, { headers: { accept: "application/json" } });
  if (!answer.ok) {
    throw new Error(path + " answered " + answer.status);
  }
  return answer.json();
}

function svgElement(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  if (parent) {
    parent.appendChild(element);
  }
  return element;
}

function describeContact(contact, replacement) {
  const seen = contact.last_response_secs_ago === null ? "never answered" : "last seen " + contact.last_response_secs_ago + " s ago";
  const rtt = typeof contact.round_trip_us === "number" ? "rtt " + (contact.round_trip_us / 1000).toFixed(2) + " ms" : "rtt unknown";
  return (replacement ? "replacement " : "") + contact.id + "\n" + contact.addr + "\n" + contact.status + ", " + seen + ", " + rtt + ", " + contact.failures + " failures";
}

// One family's table: a row of slots per bucket (wrapped every PER_LINE slots), contacts
// coloured by status, then the replacement cache as rings.
function drawFamily(network, family) {
  const PER_LINE = 32, STEP = 12, LABEL = 92, LINE = 14;
  const wrapper = document.createElement("div");
  wrapper.className = "family";
  const title = document.createElement("h3");
  title.textContent = network + " " + family.family + ": " + family.size + " contacts in " + family.buckets.length + " buckets";
  wrapper.appendChild(title);
  let height = 4;
  const rows = family.buckets.map((bucket) => {
    const slots = Math.max(bucket.capacity, bucket.contacts.length) + bucket.replacement_contacts.length;
    const lines = Math.max(1, Math.ceil(slots / PER_LINE));
    const row = { bucket, top: height, lines };
    height += lines * LINE + 4;
    return row;
  });
  const svg = svgElement("svg", { viewBox: "0 0 " + (LABEL + PER_LINE * STEP) + " " + height, "data-family": family.family });
  for (const { bucket, top } of rows) {
    const label = svgElement("text", { x: 0, y: top + 10, class: "bucket-label" }, svg);
    label.textContent = "depth " + bucket.prefix_len + "  " + bucket.contacts.length + "/" + bucket.capacity;
    const place = (index) => ({
      cx: LABEL + (index % PER_LINE) * STEP + 6,
      cy: top + Math.floor(index / PER_LINE) * LINE + 7,
    });
    let index = 0;
    for (const contact of bucket.contacts) {
      const circle = svgElement("circle", { ...place(index++), r: 5, class: "contact " + contact.status, "data-id": contact.id }, svg);
      svgElement("title", {}, circle).textContent = describeContact(contact, false);
    }
    for (; index < bucket.capacity; index++) {
      svgElement("circle", { ...place(index), r: 3, class: "slot" }, svg);
    }
    for (const contact of bucket.replacement_contacts) {
      const circle = svgElement("circle", { ...place(index++), r: 4, class: "replacement", "data-id": contact.id }, svg);
      svgElement("title", {}, circle).textContent = describeContact(contact, true);
    }
  }
  wrapper.appendChild(svg);
  return wrapper;
}

function drawTables(tables) {
  const list = document.getElementById("table-list");
  const drawn = [];
  for (const network of ["mainline", "opendht"]) {
    const table = tables[network];
    if (!table) continue;
    for (const family of [table.ipv4, table.ipv6]) {
      if (family) drawn.push(drawFamily(network, family));
    }
  }
  if (drawn.length === 0) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = "no routing table";
    drawn.push(empty);
  }
  list.replaceChildren(...drawn);
}

// A line chart of several series of [unix seconds, value] over the same time axis.
function drawChart(id, series, unit) {
  const svg = document.getElementById(id);
  const W = 600, H = 160, LEFT = 48, BOTTOM = 18;
  const points = series.flatMap((s) => s.points);
  svg.replaceChildren();
  svgElement("line", { x1: LEFT, y1: H - BOTTOM, x2: W, y2: H - BOTTOM, class: "axis" }, svg);
  svgElement("line", { x1: LEFT, y1: 0, x2: LEFT, y2: H - BOTTOM, class: "axis" }, svg);
  if (points.length < 2) {
    svgElement("text", { x: LEFT + 8, y: 40, class: "axis-label" }, svg).textContent = "collecting samples (one every 10 s)…";
    return;
  }
  const t0 = Math.min(...points.map((p) => p[0])), t1 = Math.max(...points.map((p) => p[0]));
  const top = Math.max(1, ...points.map((p) => p[1]));
  const x = (t) => LEFT + ((t - t0) / Math.max(1, t1 - t0)) * (W - LEFT - 4);
  const y = (v) => H - BOTTOM - (v / top) * (H - BOTTOM - 8);
  svgElement("text", { x: 2, y: 12, class: "axis-label" }, svg).textContent = formatNumber(top) + unit;
  svgElement("text", { x: 2, y: H - BOTTOM, class: "axis-label" }, svg).textContent = "0";
  svgElement("text", { x: LEFT, y: H - 4, class: "axis-label" }, svg).textContent = Math.round((t1 - t0) / 60) + " min ago";
  svgElement("text", { x: W - 24, y: H - 4, class: "axis-label" }, svg).textContent = "now";
  let legendX = LEFT + 90;
  for (const s of series) {
    if (s.points.length > 0) {
      const path = s.points.map((p, i) => (i === 0 ? "M" : "L") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join(" ");
      svgElement("path", { d: path, class: s.cls }, svg);
    }
    const legend = svgElement("text", { x: legendX, y: H - 4, class: "axis-label " + s.cls }, svg);
    legend.textContent = "— " + s.name;
    legendX += 90;
  }
}

function formatNumber(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n * 10) / 10);
}

// Per-interval rates from samples of running totals.
function rates(samples, value) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i].unix_secs - samples[i - 1].unix_secs;
    const rate = value(samples[i], samples[i - 1], dt);
    if (dt > 0 && rate !== null) out.push([samples[i].unix_secs, rate]);
  }
  return out;
}

function networkSum(sample, field) {
  return ["mainline", "opendht"].reduce((sum, n) => sum + (sample[n] ? sample[n][field] : 0), 0);
}

function drawHistory(samples) {
  const traffic = (field) => rates(samples, (now, before, dt) => (networkSum(now, field) - networkSum(before, field)) / dt);
  drawChart("traffic-chart", [
    { name: "in", cls: "line-in", points: traffic("bytes_received") },
    { name: "out", cls: "line-out", points: traffic("bytes_sent") },
  ], " B/s");
  const latency = rates(samples, (now, before) => {
    const lookups = now.lookups - before.lookups;
    return lookups > 0 ? ((now.lookup_secs - before.lookup_secs) / lookups) * 1000 : null;
  });
  drawChart("latency-chart", [{ name: "lookups", cls: "line-latency", points: latency }], " ms");
  const contacts = (field) => samples.map((s) => [s.unix_secs, networkSum(s, field)]);
  drawChart("contacts-chart", [
    { name: "good", cls: "line-good", points: contacts("contacts_good") },
    { name: "dubious", cls: "line-dubious", points: contacts("contacts_dubious") },
  ], "");
}

function drawStats(stats) {
  const rows = [];
  const m = stats.mainline, o = stats.opendht;
  if (m) {
    rows.push(["Mainline peers stored", m.stored_peers], ["Mainline torrents", m.stored_infohashes]);
    rows.push(["BEP 44 items stored", m.stored_items], ["items kept alive", m.kept_items]);
  }
  if (o) {
    rows.push(["OpenDHT values stored", o.stored_values], ["OpenDHT keys", o.stored_keys]);
    rows.push(["OpenDHT bytes stored", o.remote_bytes + o.local_bytes], ["permanent puts", o.permanent_puts]);
  }
  if (stats.advertisements) {
    const rounds = stats.advertisements.reduce((sum, a) => sum + a.rounds, 0);
    rows.push(["quests: torrents advertised", stats.advertisements.length], ["quests: announce rounds", rounds]);
  }
  rows.push(["open listen streams", stats.gateway.open_listen_streams], ["gateway requests", stats.gateway.requests]);
  const body = document.querySelector("#store-table tbody");
  body.replaceChildren(...rows.map(([name, value]) => {
    const tr = document.createElement("tr");
    const label = document.createElement("td");
    label.textContent = name;
    const number = document.createElement("td");
    number.className = "n";
    number.textContent = String(value);
    tr.append(label, number);
    return tr;
  }));
  const parts = [];
  if (m) parts.push("Mainline " + m.node_id.slice(0, 12) + "… on " + m.local_addrs.join(", "));
  if (o) parts.push("OpenDHT " + o.node_id.slice(0, 12) + "… on " + o.local_addrs.join(", "));
  parts.push("pid " + stats.pid + ", up " + stats.uptime_secs + " s");
  document.getElementById("summary").textContent = parts.join(" · ");
  document.getElementById("listen").hidden = !o;
}

async function refresh() {
  try {
    const [tables, stats, history] = await Promise.all([
      getJson("/daemon/routing-table"),
      getJson("/daemon/stats"),
      getJson("/daemon/history"),
    ]);
    drawTables(tables);
    drawStats(stats);
    drawHistory(history);
    document.body.dataset.loaded = "1";
    if (pageErrors.length === 0) setStatus("updated " + new Date().toLocaleTimeString(), false);
  } catch (error) {
    // The daemon may be restarting: say so and try again at the next tick.
    setStatus("cannot reach the daemon (" + error.message + ")", true);
  }
}

// The listen box: the gateway's listen route as Server-Sent Events.
let listening = null;

function stopListening() {
  if (listening) listening.close();
  listening = null;
  document.getElementById("listen-stop").disabled = true;
}

function addListenEvent(text) {
  const list = document.getElementById("listen-events");
  const item = document.createElement("li");
  item.textContent = new Date().toLocaleTimeString() + "  " + text;
  list.prepend(item);
}

function decodeData(value) {
  try {
    return atob(value.data || "");
  } catch (error) {
    return "(binary)";
  }
}

document.getElementById("listen-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("listen-key").value.trim();
  if (!key) return;
  stopListening();
  document.getElementById("listen-events").replaceChildren();
  listening = new EventSource("/key/" + encodeURIComponent(key) + "/listen");
  document.getElementById("listen-stop").disabled = false;
  addListenEvent("listening to " + key);
  listening.addEventListener("value", (e) => {
    const value = JSON.parse(e.data);
    addListenEvent("value " + value.id + ": " + decodeData(value));
  });
  listening.addEventListener("expired", (e) => addListenEvent("expired " + JSON.parse(e.data).id));
  listening.onerror = () => addListenEvent("connection lost; the browser retries");
});
document.getElementById("listen-stop").addEventListener("click", () => {
  stopListening();
  addListenEvent("stopped");
});

refresh();
setInterval(refresh, REFRESH_MS);
