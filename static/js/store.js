// The live catalog: one Phoenix channel per product on the page, kept in step with the store.
// The official Phoenix client reconnects with backoff and rejoins every channel; each join reply
// carries the product's current state, so a page that was disconnected re-syncs without a reload.
import { Socket } from "/static/vendor/phoenix/phoenix.mjs";

const RECONNECT_MS = [100, 250, 500, 1000, 2000, 5000];

const socket = new Socket("/product_socket", {
  reconnectAfterMs: (tries) => RECONNECT_MS[tries - 1] ?? 5000,
  rejoinAfterMs: (tries) => RECONNECT_MS[tries - 1] ?? 5000,
});

function sizesElement(productId) {
  return document.querySelector(`[data-sizes-for="${productId}"]`);
}

function setLevel(itemId, level) {
  document.querySelectorAll(`.size-container__entry[value="${itemId}"]`).forEach((button) => {
    button.className = `size-container__entry size-container__entry--level-${level}`;
    button.disabled = level === "out";
  });
}

// The join reply, `released` and `release_scheduled` all carry the product's size selector.
function applyState(productId, state) {
  const sizes = sizesElement(productId);
  if (sizes) sizes.innerHTML = state.size_html;
}

// A live countdown on every product with a release time; the `released` push replaces it.
function tickCountdowns() {
  document.querySelectorAll("[data-release-at]").forEach((soon) => {
    const left = Math.max(0, Math.round((Date.parse(soon.dataset.releaseAt) - Date.now()) / 1000));
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    const text = left > 0 ? `on sale in ${h ? `${h}:` : ""}${h ? String(m).padStart(2, "0") : m}:${String(s).padStart(2, "0")}` : "on sale now";
    const countdown = soon.querySelector(".product-soon__countdown");
    if (countdown && countdown.textContent !== text) countdown.textContent = text;
  });
}
setInterval(tickCountdowns, 1000);
tickCountdowns();

const channels = {};

document.querySelectorAll(".product-listing[data-product-id]").forEach((listing) => {
  const productId = listing.dataset.productId;
  const channel = socket.channel(`product:${productId}`, {});
  channel.on("released", (state) => applyState(productId, state));
  channel.on("stock_change", ({ item_id, level }) => setLevel(item_id, level));
  channel.on("release_scheduled", (state) => { applyState(productId, state); tickCountdowns(); });
  // The join push is sent again on every rejoin, so this runs after each reconnect too.
  channel.join().receive("ok", (state) => { applyState(productId, state); tickCountdowns(); });
  channels[productId] = channel;
});

socket.connect();
window.sneakers23 = { socket, channels };
