// The admin dashboard: Phoenix Presence for the shoppers online (as the original's chapter 10),
// and a `drop` push every second for stock, sales, refusals and the nodes. Actions are HTTP posts
// carrying the session's CSRF token; their results go to the audit list.
import { Presence, Socket } from "/static/vendor/phoenix/phoenix.mjs";

const root = document.querySelector("[data-dashboard]");
const RECONNECT_MS = [100, 250, 500, 1000, 2000, 5000];
const socket = new Socket("/admin/socket", {
  params: { token: root.dataset.socketToken },
  reconnectAfterMs: (tries) => RECONNECT_MS[tries - 1] ?? 5000,
  rejoinAfterMs: (tries) => RECONNECT_MS[tries - 1] ?? 5000,
});
const channel = socket.channel("admin:dashboard", {});
const presence = new Presence(channel);
const status = root.querySelector("[data-connection]");
let lastDrop = null;

function setText(selector, text) {
  root.querySelectorAll(selector).forEach((element) => {
    if (element.textContent !== String(text)) element.textContent = String(text);
  });
}

// A figure and its noun, which agree: "1 shopper", "2 shoppers".
function setCount(name, count) {
  setText(`[data-${name}]`, count.toLocaleString());
  root.querySelectorAll(`[data-unit-of="${name}"]`).forEach((unit) => {
    const word = count === 1 ? unit.dataset.one : unit.dataset.many;
    if (unit.textContent !== word) unit.textContent = word;
  });
}

// Times in the staff's own time zone, readable; the full timestamp on hover.
const LOCAL_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
function localTime(iso) {
  const time = document.createElement("time");
  time.dateTime = iso;
  time.textContent = LOCAL_TIME.format(new Date(iso));
  time.title = new Date(iso).toString();
  return time;
}
function localTimes(within) {
  within.querySelectorAll("time[datetime]").forEach((time) => time.replaceWith(localTime(time.dateTime)));
}
localTimes(root);

function rows(body, cells) {
  body.replaceChildren(...cells.map((values) => {
    const row = document.createElement("tr");
    row.append(...values.map((value) => {
      const cell = document.createElement("td");
      if (value instanceof Node) cell.append(value);
      else cell.textContent = value;
      return cell;
    }));
    return row;
  }));
}

// Who is online, from the presence list: unique shoppers, per page and per node, and the sizes in
// the carts of the shoppers online (a shopper's tabs share one cart: counted once).
function showPresence() {
  const pages = new Map(), nodes = new Map(), inCart = new Map();
  let shoppers = 0, tabs = 0, accounts = 0;
  presence.list((shopper, { metas }) => {
    shoppers += 1;
    if (shopper.startsWith("account-")) accounts += 1; // (signed in, with a confirmed address)
    tabs += metas.length;
    new Set(metas.map((meta) => meta.page)).forEach((page) => pages.set(page, (pages.get(page) || 0) + 1));
    new Set(metas.map((meta) => meta.node)).forEach((node) => nodes.set(node, (nodes.get(node) || 0) + 1));
    new Set(metas.flatMap((meta) => meta.items)).forEach((item) => inCart.set(String(item), (inCart.get(String(item)) || 0) + 1));
  });
  setCount("shoppers-online", shoppers);
  setCount("accounts-online", accounts);
  setCount("tabs-open", tabs);
  rows(root.querySelector("[data-pages]"), [...pages].sort((a, b) => b[1] - a[1]));
  root.querySelectorAll("[data-in-cart]").forEach((element) => {
    const count = String(inCart.get(element.dataset.inCart) || 0);
    if (element.textContent !== count) element.textContent = count;
  });
  root.querySelectorAll("[data-glance-in-cart]").forEach((element) => {
    const sizes = [...root.querySelectorAll(`[data-product="${element.dataset.glanceInCart}"] [data-in-cart]`)];
    setText(`[data-glance-in-cart="${element.dataset.glanceInCart}"]`,
      sizes.reduce((sum, size) => sum + (inCart.get(size.dataset.inCart) || 0), 0).toLocaleString());
  });
  showNodes(nodes);
}

let shoppersByNode = new Map();
function showNodes(nodes) {
  if (nodes) shoppersByNode = nodes;
  const figures = new Map((lastDrop?.nodes || []).map((node) => [node.node, node]));
  const ids = [...new Set([...figures.keys(), ...shoppersByNode.keys()])].sort();
  rows(root.querySelector("[data-nodes]"), ids.map((id) => {
    const node = figures.get(id) || {};
    const lag = node.lag_ms == null ? "–" : `${Math.round(node.lag_ms)} ms`;
    return [id.slice(0, 12), shoppersByNode.get(id) || 0, node.sockets ?? "–", node.reporting === false ? `${lag} (not reporting)` : lag];
  }));
}

function showRelease(element, product) {
  const now = product.released ? "released" : product.release_at || "";
  if (!element || element.dataset.shows === now) return;
  element.dataset.shows = now;
  if (product.released) element.textContent = "released";
  else if (product.release_at) element.replaceChildren("on sale at ", localTime(product.release_at));
  else element.textContent = "not released";
}

function showDrop(drop) {
  lastDrop = drop;
  for (const product of drop.products) {
    showRelease(root.querySelector(`[data-release-status="${product.id}"]`), product);
    setText(`[data-sign-in-status="${product.id}"]`,
      product.sign_in_required ? "sold only to signed-in shoppers" : "sold to guests too");
    setText(`[data-drop-mode-status="${product.id}"]`, product.drop_mode_text);
    const modeChoice = root.querySelector(`[data-drop-mode-of="${product.id}"]`);
    if (modeChoice) {
      modeChoice.disabled = product.released;
      if (document.activeElement !== modeChoice && modeChoice.dataset.shows !== product.drop_mode) {
        modeChoice.value = product.drop_mode; // (not while the staff are choosing)
        modeChoice.dataset.shows = product.drop_mode;
      }
    }
    showRelease(root.querySelector(`[data-glance-status="${product.id}"]`), product);
    root.querySelectorAll(`[data-product-id="${product.id}"]`).forEach((button) => { button.disabled = product.released; });
    for (const item of product.items) setText(`[data-available="${item.id}"]`, item.available);
    showDraw(product);
    const queue = root.querySelector(`[data-queue-of="${product.id}"]`);
    if (queue) {
      queue.hidden = product.drop_mode !== "queue";
      if (product.queue) setText(`[data-queue-status="${product.id}"]`, product.queue);
    }
    setText(`[data-glance-available="${product.id}"]`, product.items.reduce((sum, item) => sum + item.available, 0).toLocaleString());
    setText(`[data-glance-out="${product.id}"]`, `${product.items.filter((item) => item.available <= 0).length} of ${product.items.length}`);
  }
  if (drop.accounts) {
    setCount("accounts-total", drop.accounts.accounts);
    setText("[data-accounts-unverified]", `${Math.round(drop.accounts.unverified_share * 100)}%`);
    setText("[data-signed-up-last-minute]", drop.accounts.signed_up_last_minute.toLocaleString());
  }
  const perSecond = drop.activity.sold_per_second || [];
  setCount("sold-last-minute", drop.activity.sold);
  setText("[data-sold-per-second]", (perSecond.slice(-5).reduce((a, b) => a + b, 0) / 5).toFixed(1));
  drawSales(perSecond);
  rows(root.querySelector("[data-refusals]"), Object.entries(drop.activity.refusals || {}));
  showNodes();
}

// A draw's entries per size, and where its close is (counted from the database every few seconds).
function showDraw(product) {
  const status = root.querySelector(`[data-draw-status="${product.id}"]`);
  const isDraw = product.drop_mode === "draw";
  if (status) status.hidden = !isDraw;
  if (isDraw) setText(`[data-draw-status="${product.id}"]`, product.draw ? product.draw.text : "draw: counting its entries…");
  for (const item of product.items) {
    const entries = isDraw ? (product.draw ? (product.draw.per_size[item.id] || 0).toLocaleString() : "…") : "not a draw";
    setText(`[data-draw-entries="${item.id}"]`, entries);
  }
}

// Pairs sold each second of the last minute: bars on a time axis (seconds ago) and a count axis
// whose top is a round number at or above the busiest second.
const SVG = "http://www.w3.org/2000/svg";
const CHART = { width: 360, height: 140, left: 40, bottom: 20, top: 8, right: 8 };
function svg(tag, attributes, text) {
  const element = document.createElementNS(SVG, tag);
  Object.entries(attributes).forEach(([name, value]) => element.setAttribute(name, value));
  if (text !== undefined) element.textContent = text;
  return element;
}
function roundUp(value) {
  const step = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * step).find((top) => top >= value);
}
function drawSales(perSecond) {
  const chart = root.querySelector("[data-sales-chart]");
  const { width, height, left, bottom, top, right } = CHART;
  const plotW = width - left - right, plotH = height - top - bottom;
  const most = roundUp(Math.max(1, ...perSecond));
  const y = (value) => top + plotH - (plotH * value) / most;
  const parts = [];
  for (const tick of [0, most / 2, most]) {
    parts.push(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "admin__chart-grid" }));
    parts.push(svg("text", { x: left - 4, y: y(tick) + 4, "text-anchor": "end", class: "admin__chart-label" },
      tick.toLocaleString()));
  }
  const slot = plotW / Math.max(60, perSecond.length);
  perSecond.forEach((sold, index) => {
    const x = left + plotW - slot * (perSecond.length - index);
    const bar = svg("rect", { x: x + 0.5, y: y(sold), width: Math.max(1, slot - 1), height: top + plotH - y(sold), class: "admin__chart-bar" });
    bar.append(svg("title", {}, `${sold} sold, ${perSecond.length - index} s ago`));
    parts.push(bar);
  });
  for (const ago of [60, 30, 0]) {
    parts.push(svg("text", { x: left + plotW - slot * ago, y: height - 4, "text-anchor": ago === 60 ? "start" : ago ? "middle" : "end", class: "admin__chart-label" },
      ago ? `${ago} s ago` : "now"));
  }
  parts.push(svg("line", { x1: left, x2: left, y1: top, y2: top + plotH, class: "admin__chart-axis" }));
  parts.push(svg("line", { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, class: "admin__chart-axis" }));
  chart.replaceChildren(...parts);
}
drawSales([]);

presence.onSync(showPresence);
channel.on("drop", showDrop);
channel.join()
  .receive("ok", () => { status.textContent = "live"; status.classList.add("admin__status--live"); })
  .receive("error", (error) => { status.textContent = `not connected: ${error.reason}`; });
socket.onError(() => { status.textContent = "reconnecting…"; status.classList.remove("admin__status--live"); });

// --- actions ---

const message = root.querySelector("[data-action-message]");
function say(text, ok) {
  message.hidden = false;
  message.textContent = text;
  message.className = `flash ${ok ? "flash--ok" : "flash--error"}`;
}

async function showAudit() {
  const response = await fetch("/admin/audit", { credentials: "same-origin" });
  if (!response.ok) return;
  const entries = await response.json();
  const body = root.querySelector("[data-audit]");
  rows(body, entries.map((entry) => [localTime(entry.at), entry.who, entry.action, entry.target,
    entry.ok ? entry.result : `failed: ${entry.result}`]));
  [...body.children].forEach((row, index) => row.classList.toggle("admin__failed", !entries[index].ok));
}

async function act(body) {
  const response = await fetch("/admin/actions", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
  say(answer.message, response.ok);
  showAudit();
}

root.addEventListener("click", (event) => {
  const button = event.target.closest("[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  if (action === "restock") {
    const count = root.querySelector(`[data-restock-count="${button.dataset.itemId}"]`).value;
    act({ action, item_id: Number(button.dataset.itemId), count: Number(count) });
  } else if (action === "set_drop_mode") {
    const mode = root.querySelector(`[data-drop-mode-of="${button.dataset.productId}"]`).value;
    act({ action, product_id: Number(button.dataset.productId), mode });
  } else if (action === "set_queue_pace") {
    const pace = root.querySelector(`[data-queue-pace="${button.dataset.settingOf}"]`).value.trim();
    act({ action, product_id: Number(button.dataset.settingOf), per_minute: pace === "" ? "default" : pace });
  } else if (action === "schedule") {
    const local = root.querySelector(`[data-schedule-at="${button.dataset.productId}"]`).value;
    if (!local) { say("Pick a release time first", false); return; }
    act({ action, product_id: Number(button.dataset.productId), at: new Date(local).toISOString() });
  } else {
    // (a release's buttons carry data-product-id, and go off once it is out; a setting's do not)
    act({ action, product_id: Number(button.dataset.productId ?? button.dataset.settingOf) });
  }
});
setInterval(showAudit, 10000); // (another admin's actions)

socket.connect();
window.sneakers23Admin = { socket, channel, presence };
