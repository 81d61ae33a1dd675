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

function rows(body, cells) {
  body.replaceChildren(...cells.map((values) => {
    const row = document.createElement("tr");
    row.append(...values.map((value) => {
      const cell = document.createElement("td");
      cell.textContent = value;
      return cell;
    }));
    return row;
  }));
}

// Who is online, from the presence list: unique shoppers, per page and per node, and the sizes in
// the carts of the shoppers online (a shopper's tabs share one cart: counted once).
function showPresence() {
  const pages = new Map(), nodes = new Map(), inCart = new Map();
  let shoppers = 0, tabs = 0;
  presence.list((shopper, { metas }) => {
    shoppers += 1;
    tabs += metas.length;
    new Set(metas.map((meta) => meta.page)).forEach((page) => pages.set(page, (pages.get(page) || 0) + 1));
    new Set(metas.map((meta) => meta.node)).forEach((node) => nodes.set(node, (nodes.get(node) || 0) + 1));
    new Set(metas.flatMap((meta) => meta.items)).forEach((item) => inCart.set(String(item), (inCart.get(String(item)) || 0) + 1));
  });
  setText("[data-shoppers-online]", shoppers);
  setText("[data-tabs-open]", tabs);
  rows(root.querySelector("[data-pages]"), [...pages].sort((a, b) => b[1] - a[1]));
  root.querySelectorAll("[data-in-cart]").forEach((element) => {
    const count = String(inCart.get(element.dataset.inCart) || 0);
    if (element.textContent !== count) element.textContent = count;
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

function showDrop(drop) {
  lastDrop = drop;
  for (const product of drop.products) {
    const statusText = product.released ? "released" : product.release_at ? `on sale at ${product.release_at}` : "not released";
    setText(`[data-release-status="${product.id}"]`, statusText);
    root.querySelectorAll(`[data-product-id="${product.id}"]`).forEach((button) => { button.disabled = product.released; });
    for (const item of product.items) setText(`[data-available="${item.id}"]`, item.available);
  }
  const perSecond = drop.activity.sold_per_second || [];
  setText("[data-sold-last-minute]", drop.activity.sold);
  setText("[data-sold-per-second]", (perSecond.slice(-5).reduce((a, b) => a + b, 0) / 5).toFixed(1));
  const most = Math.max(1, ...perSecond);
  root.querySelector("[data-sales-spark]").replaceChildren(...perSecond.map((sold) => {
    const bar = document.createElement("span");
    bar.style.height = `${(100 * sold) / most}%`;
    bar.title = `${sold}`;
    return bar;
  }));
  rows(root.querySelector("[data-refusals]"), Object.entries(drop.activity.refusals || {}));
  showNodes();
}

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
  rows(body, entries.map((entry) => [entry.at, entry.who, entry.action, entry.target, entry.result]));
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
  } else if (action === "schedule") {
    const local = root.querySelector(`[data-schedule-at="${button.dataset.productId}"]`).value;
    if (!local) { say("Pick a release time first", false); return; }
    act({ action, product_id: Number(button.dataset.productId), at: new Date(local).toISOString() });
  } else {
    act({ action, product_id: Number(button.dataset.productId) });
  }
});
setInterval(showAudit, 10000); // (another admin's actions)

socket.connect();
window.sneakers23Admin = { socket, channel, presence };
