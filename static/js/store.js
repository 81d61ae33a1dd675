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

function showReleased(productId, sizeHtml) {
  document.querySelectorAll(`.product-soon-${productId}`).forEach((soon) => {
    soon.outerHTML = sizeHtml;
  });
}

function applyState(productId, state) {
  const sizes = sizesElement(productId);
  if (sizes) sizes.innerHTML = state.size_html;
}

export const channels = {};

document.querySelectorAll(".product-listing[data-product-id]").forEach((listing) => {
  const productId = listing.dataset.productId;
  const channel = socket.channel(`product:${productId}`, {});
  channel.on("released", ({ size_html }) => showReleased(productId, size_html));
  channel.on("stock_change", ({ item_id, level }) => setLevel(item_id, level));
  // The join push is sent again on every rejoin, so this runs after each reconnect too.
  channel.join().receive("ok", (state) => applyState(productId, state));
  channels[productId] = channel;
});

socket.connect();
window.sneakers23 = { socket, channels };
