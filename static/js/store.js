// The live catalog: one Phoenix channel per product on the page, kept in step with the store, and
// the shopper's cart.
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

// The cart: its own channel, `cart:{shopper id}`, joined with the signed token the page carries.
// Every tab of the shopper, on any node, gets the same `cart` pushes; replies and pushes carry the
// cart's version, and a tab shows the newest it has seen (a reply may overtake its own push).
const panel = document.querySelector("[data-cart]");
let cart = null;
let shown = { version: -1, items: [] };

function showMessage(text) {
  const message = panel.querySelector("[data-cart-message]");
  message.textContent = text || "";
  message.hidden = !text;
}

function cell(tag, className, text) {
  const element = document.createElement(tag);
  element.className = className;
  element.textContent = text;
  return element;
}

function renderCart(view) {
  if (!view || view.version < shown.version) return;
  shown = view;
  panel.querySelector("[data-cart-count]").textContent = String(view.count);
  panel.querySelector("[data-cart-subtotal]").textContent = `$${view.subtotal_usd}`;
  const list = panel.querySelector("[data-cart-items]");
  list.replaceChildren(...view.items.map((item) => {
    const line = cell("li", `cart__item${item.out_of_stock ? " cart__item--out" : ""}`, "");
    line.dataset.itemId = item.item_id;
    const remove = cell("button", "cart__remove", "×");
    remove.type = "button";
    remove.dataset.cartRemove = item.item_id;
    remove.setAttribute("aria-label", `Remove ${item.name} size ${item.size}`);
    line.append(remove, cell("span", "cart__brand", item.brand), cell("strong", "cart__name", item.name),
      cell("span", "cart__size", `Size ${item.size}`), cell("span", "cart__price", `$${item.price_usd}`));
    return line;
  }));
  const inCart = new Set(view.items.map((item) => String(item.item_id)));
  document.querySelectorAll(".size-container__entry").forEach((button) => {
    button.classList.toggle("size-container__entry--in-cart", inCart.has(button.value));
  });
}

function change(event, itemId) {
  if (!cart) return;
  showMessage("");
  cart.push(event, { item_id: Number(itemId) })
    .receive("ok", renderCart)
    .receive("error", (error) => showMessage(error.message || error.reason))
    .receive("timeout", () => showMessage("The store did not answer: try again"));
}

if (panel && panel.dataset.cartId) {
  cart = socket.channel(`cart:${panel.dataset.cartId}`, { token: panel.dataset.cartToken, page: location.pathname });
  cart.on("cart", renderCart);
  // Joined again after every reconnect: the reply is the cart as it is now. An empty cart comes
  // without its version (the store's memory keeps no empty cart): it replaces whatever was shown.
  cart.join()
    .receive("ok", (view) => {
      showMessage("");
      if (view.count === 0) shown = { version: -1, items: [] };
      renderCart(view);
    })
    .receive("error", (error) => {
      showMessage(error.message || error.reason);
      if (error.reason === "invalid_token" || error.reason === "expired_token") cart.leave();
    });
  document.addEventListener("click", (event) => {
    const size = event.target.closest(".size-container__entry");
    if (size && !size.disabled) change("add_item", size.value);
    const remove = event.target.closest("[data-cart-remove]");
    if (remove) change("remove_item", remove.dataset.cartRemove);
  });
}

// A page without the cart panel (checkout, orders) still joins the shopper's cart channel with the
// page it shows: the tab counts as the shopper's on the admin dashboard (presence).
const tabMark = document.querySelector("[data-shopper-tab]");
if (!cart && tabMark) {
  cart = socket.channel(`cart:${tabMark.dataset.tabId}`, { token: tabMark.dataset.tabToken, page: location.pathname });
  cart.join();
}

socket.connect();
window.sneakers23 = { socket, channels, cart: () => cart, shownCart: () => shown };
