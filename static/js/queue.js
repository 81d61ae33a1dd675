// A product sold through a queue: the shopper's place in its waiting room, taken with the TAKE MY
// PLACE button (the queue's topic `queue:{product}` joined on the page's socket, serve/queue.py,
// with a fresh proof of work), then followed on every visit, and told in words as the line moves.
// The size selector (with this block in it) is rendered again by every join reply and release push
// (store.js), so what was last told is kept here and shown again each time.
import { payload, solve } from "/static/js/work.js";

const held = new Map(); // product -> { view, at, said, offer }
const SIGN_IN = "Sign in with a confirmed email address to take your place in the queue.";
const TRY_AGAIN_MS = 3000;

function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function about(seconds) {
  if (seconds < 60) return "less than a minute";
  const minutes = Math.round(seconds / 60);
  return `about ${minutes} minute${minutes === 1 ? "" : "s"}`;
}

function words(place, at) {
  switch (place.stage) {
    case "pre_queue":
      return "You are in the queue. At the release everyone in it is put in a random order, so coming early gains nothing"
        + (place.waiting ? ` (${place.waiting} waiting).` : ".");
    case "queue":
      if (place.moving) return "The line is moving…";
      if (place.sold_out) {
        return "Sold out for now: every pair left is bought or held by shoppers whose turn it is. You keep your place "
          + `(number ${place.position}): a pair given back moves the line again.`;
      }
      return `You are number ${place.position} in line: ${place.ahead} ahead of you`
        + (place.wait_s == null ? "; the line is paused for now." : `, ${about(place.wait_s)} to wait.`);
    case "admitted": {
      const left = (place.left_s || 0) - (Date.now() - at) / 1000;
      return left > 0 ? `It is your turn: buy your pair within ${clock(left)}.` : "Your turn has ended.";
    }
    case "bought":
      return "You bought your pair with your turn: it is in your orders.";
    case "expired":
      return "Your turn ended before you bought a pair.";
    case "removed":
      return "Your place was taken out of the queue.";
    default:
      return "";
  }
}

function show(product) {
  const block = document.querySelector(`[data-queue-for="${product}"]`);
  const kept = held.get(product);
  if (!block || !kept) return;
  const status = block.querySelector("[data-queue-status]");
  const text = kept.said || words(kept.view, kept.at);
  if (status && status.textContent !== text) status.textContent = text;
  const button = block.querySelector("[data-queue-join]");
  if (button) {
    const busy = Boolean(kept.busy);
    if (button.hidden !== !kept.offer) {
      if (!kept.offer && document.activeElement === button && status) status.focus(); // (the focus stays on the block)
      button.hidden = !kept.offer;
    }
    button.setAttribute("aria-disabled", String(busy));
  }
}

function keep(product, state) {
  held.set(product, { view: {}, at: Date.now(), said: null, offer: false, busy: false, ...state });
  show(product);
}

async function readQueue(product) {
  const answer = await fetch(`/api/products/${product}/queue?record=0`, { credentials: "same-origin" });
  return answer.ok ? answer.json() : null;
}

// Follows the shopper's place; `taking`: it has none yet, so the join takes it, with a fresh proof
// of work when the store asks for one (each try a new one: a solution takes one place, once).
async function follow(socket, product, taking, tries = 3) {
  let altcha = null;
  if (taking) {
    const queue = await readQueue(product).catch(() => null);
    if (!queue || (!queue.place && !queue.may_join)) {
      keep(product, queue ? { said: SIGN_IN, offer: true } : { said: "The store did not answer: try again.", offer: true });
      return;
    }
    if (queue.place) taking = false; // (taken meanwhile, from another tab)
    else if (queue.work_challenge) {
      keep(product, { said: "Checking that you are a person, then taking your place in the queue…" });
      const work = queue.work_challenge;
      const started = performance.now();
      const number = await solve(work);
      if (number !== null) altcha = payload(work, number, Math.round(performance.now() - started));
    }
  }
  const channel = socket.channel(`queue:${product}`, altcha ? { altcha } : {});
  channel.on("place", (view) => keep(product, { view }));
  channel.join()
    .receive("ok", (view) => keep(product, { view }))
    .receive("error", (refused) => {
      channel.leave(); // (each try is a join of its own)
      const passing = ["joining", "unavailable", "error", "proof_of_work"].includes(refused.reason);
      if (refused.reason === "sign_in_required") {
        keep(product, { said: SIGN_IN, offer: true });
      } else if (passing && tries > 1) {
        keep(product, { said: "Taking your place in the queue: trying again…" });
        setTimeout(() => follow(socket, product, taking, tries - 1), refused.reason === "proof_of_work" ? 0 : TRY_AGAIN_MS);
      } else {
        keep(product, { said: `${refused.message || "The queue could not be joined"}.`, offer: taking });
      }
    });
}

// A block of the page: the shopper's place followed if it has one, else the button offered.
export async function followQueue(socket, block) {
  const product = block.dataset.queueFor;
  if (held.has(product)) {
    show(product);
    return;
  }
  keep(product, { said: "" });
  const queue = await readQueue(product).catch(() => null);
  if (queue && queue.place) follow(socket, product, false);
  else keep(product, { said: "", offer: true });
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-queue-join]");
  if (!button || button.getAttribute("aria-disabled") === "true") return;
  const block = button.closest("[data-queue-for]");
  const product = block.dataset.queueFor;
  // (the button stays where the focus is, marked busy, until the place is taken or refused)
  keep(product, { said: "Taking your place in the queue…", offer: true, busy: true });
  follow(window.sneakers23.socket, product, true);
});

// A turn's time left, counted down every second.
setInterval(() => {
  for (const [product, kept] of held) {
    if (kept.view.stage === "admitted") show(product);
  }
}, 1000);
