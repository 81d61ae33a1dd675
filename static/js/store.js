// The live catalog: one Phoenix channel per product on the page, kept in step with the store, and
// the shopper's cart.
// The official Phoenix client reconnects with backoff and rejoins every channel; each join reply
// carries the product's current state, so a page that was disconnected re-syncs without a reload.
import { Socket } from "/static/vendor/phoenix/phoenix.mjs";
import { drawFinished, readDraw } from "/static/js/draws.js";
import { followQueue } from "/static/js/queue.js";

const RECONNECT_MS = [100, 250, 500, 1000, 2000, 5000];

const socket = new Socket("/product_socket", {
  reconnectAfterMs: (tries) => RECONNECT_MS[tries - 1] ?? 5000,
  rejoinAfterMs: (tries) => RECONNECT_MS[tries - 1] ?? 5000,
});

function sizesElement(productId) {
  return document.querySelector(`[data-sizes-for="${productId}"]`);
}

// What each level says in words (the legend carries them, from the server's one table).
const legend = document.querySelector("[data-level-words]");
const LEVEL_WORDS = legend ? JSON.parse(legend.dataset.levelWords) : {};
const LEVEL_MARKS = legend ? JSON.parse(legend.dataset.levelMarks) : {};
const LEVEL_CLASS = "size-container__entry--level-";

function productName(productId) {
  const name = document.querySelector(`.product-listing[data-product-id="${productId}"] .product-listing__name`);
  return name ? name.textContent : "";
}

// Live changes said politely to screen readers, a burst at a time: a drop changes many sizes within
// a second, and a screen reader must not be flooded with them. What matters most is said first (a
// size in the cart sold out, a release, a sell-out), and past three, the rest is counted.
const ANNOUNCE_AFTER_MS = 1000;
const SAY_AT_MOST = 3;
const FIRST = { cart: 0, release: 1, "sold out": 2, count: 3, level: 4 };
const announcer = document.querySelector("[data-announcer]");
let toAnnounce = [];
let announcing = null;

function announce(text, kind) {
  if (!announcer || toAnnounce.some((pending) => pending.text === text)) return;
  toAnnounce.push({ text, rank: FIRST[kind] ?? FIRST.level });
  announcing = announcing || setTimeout(() => {
    const texts = toAnnounce.sort((a, b) => a.rank - b.rank).map((pending) => pending.text);
    const said = texts.length <= SAY_AT_MOST ? texts
      : [...texts.slice(0, SAY_AT_MOST - 1), `and ${texts.length - SAY_AT_MOST + 1} more changes`];
    announcer.textContent = `${said.join(". ")}.`;
    toAnnounce = [];
    announcing = null;
  }, ANNOUNCE_AFTER_MS);
}

// A size's accessible name: its level in words, and whether the shopper's cart holds it.
function nameSize(button, level) {
  const inCart = button.classList.contains("size-container__entry--in-cart") ? ", in cart" : "";
  button.setAttribute("aria-label", `Size ${button.dataset.size}, ${LEVEL_WORDS[level] || level}${inCart}`);
}

function levelOf(button) {
  const found = [...button.classList].find((name) => name.startsWith(LEVEL_CLASS));
  return found ? found.slice(LEVEL_CLASS.length) : null;
}

// A size about to be disabled hands its focus to the next size on sale (or the one before), so
// that a keyboard user is not dropped to the top of the page mid-drop.
function handFocusOn(button) {
  if (document.activeElement !== button) return;
  const sizes = [...button.parentElement.querySelectorAll(".size-container__entry:not([disabled])")];
  const at = sizes.indexOf(button);
  const next = sizes[at + 1] || sizes[at - 1];
  if (next) next.focus();
}

function setLevel(productId, itemId, level) {
  document.querySelectorAll(`.size-container__entry[value="${itemId}"]`).forEach((button) => {
    const was = levelOf(button);
    if (was) button.classList.remove(LEVEL_CLASS + was);
    button.classList.add(LEVEL_CLASS + level);
    if (level === "out") handFocusOn(button);
    button.disabled = level === "out";
    const mark = button.querySelector(".size-container__mark");
    if (mark) mark.textContent = LEVEL_MARKS[level] ?? "";
    nameSize(button, level);
    // (A size in the cart that sells out is said once, as the cart's: renderCart.)
    const inCart = button.classList.contains("size-container__entry--in-cart");
    if (was !== level && !(inCart && level === "out")) {
      announce(`${productName(productId)} size ${button.dataset.size}: ${LEVEL_WORDS[level] || level}`,
        level === "out" ? "sold out" : "level");
    }
  });
}

// The join reply, `released` and `release_scheduled` all carry the product's size selector. A size
// that had the focus keeps it (or the first size on sale takes it), and the cart's marks stay.
function applyState(productId, state) {
  const sizes = sizesElement(productId);
  if (!sizes) return;
  const focused = sizes.contains(document.activeElement) ? document.activeElement.value : null;
  sizes.innerHTML = state.size_html;
  markInCart(sizes);
  sizes.querySelectorAll("[data-draw-for]").forEach(readDraw); // (a draw: the shopper's entry, read again)
  sizes.querySelectorAll("[data-queue-for]").forEach((block) => followQueue(socket, block)); // (a queue: its place)
  if (focused !== null) {
    const again = sizes.querySelector(`.size-container__entry[value="${focused}"]:not([disabled])`)
      || sizes.querySelector(".size-container__entry:not([disabled])");
    if (again) again.focus();
  }
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
  channel.on("released", (state) => {
    applyState(productId, state);
    const drawn = sizesElement(productId) && sizesElement(productId).querySelector("[data-draw-for]");
    announce(drawn ? `The draw for ${productName(productId)} has closed` : `${productName(productId)} is on sale`, "release");
  });
  channel.on("stock_change", ({ item_id, level }) => setLevel(productId, item_id, level));
  channel.on("release_scheduled", (state) => { applyState(productId, state); tickCountdowns(); });
  channel.on("draw_finished", ({ spread_s }) => drawFinished(productId, spread_s));
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
let cartShown = false;

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

function markInCart(within) {
  const inCart = new Set(shown.items.map((item) => String(item.item_id)));
  within.querySelectorAll(".size-container__entry").forEach((button) => {
    button.classList.toggle("size-container__entry--in-cart", inCart.has(button.value));
    nameSize(button, levelOf(button));
  });
}

function renderCart(view) {
  if (!view || view.version < shown.version) return;
  const before = shown;
  shown = view;
  // The checkout says which cart it is to show, so a node whose copy is a moment behind waits for it.
  // (An emptied cart is not kept in memory: its page asks for no version.)
  panel.querySelector(".cart__checkout").href =
    view.count > 0 && view.version > 0 ? `/checkout?cart=${view.version}` : "/checkout";
  panel.querySelector("[data-cart-count]").textContent = String(view.count);
  panel.querySelector("[data-cart-subtotal]").textContent = `$${view.subtotal_usd}`;
  const list = panel.querySelector("[data-cart-items]");
  // The cart is drawn anew: a × that had the focus gives it back to the same line's ×, else to the
  // next line's, else to the cart's title.
  const removes = [...list.querySelectorAll("[data-cart-remove]")];
  const focused = removes.indexOf(document.activeElement);
  const focusedItem = focused >= 0 ? removes[focused].dataset.cartRemove : null;
  list.replaceChildren(...view.items.map((item) => {
    const line = cell("li", `cart__item${item.out_of_stock ? " cart__item--out" : ""}`, "");
    line.dataset.itemId = item.item_id;
    const remove = cell("button", "cart__remove", "×");
    remove.type = "button";
    remove.dataset.cartRemove = item.item_id;
    remove.setAttribute("aria-label", `Remove ${item.name} size ${item.size}`);
    line.append(remove, cell("span", "cart__brand", item.brand), cell("strong", "cart__name", item.name),
      cell("span", "cart__size", `Size ${item.size}`), cell("span", "cart__price", `$${item.price_usd}`));
    if (item.out_of_stock) line.append(cell("span", "cart__sold-out", "sold out"));
    return line;
  }));
  if (focusedItem !== null) {
    const again = list.querySelector(`[data-cart-remove="${focusedItem}"]`)
      || list.querySelectorAll("[data-cart-remove]")[Math.min(focused, view.items.length - 1)]
      || panel.querySelector(".cart__title");
    again.focus();
  }
  markInCart(document);
  if (!cartShown) { cartShown = true; return; }  // (the page's first cart: nothing changed)
  const wasOut = new Set(before.items.filter((item) => item.out_of_stock).map((item) => item.item_id));
  view.items.filter((item) => item.out_of_stock && !wasOut.has(item.item_id))
    .forEach((item) => announce(`${item.name} size ${item.size} in your cart sold out`, "cart"));
  if (view.count !== (before.count ?? before.items.length)) {
    announce(`Cart: ${view.count} ${view.count === 1 ? "pair" : "pairs"}`, "count");
  }
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
