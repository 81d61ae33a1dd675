// A product sold through a queue: the shopper's place in its waiting room, taken by joining the
// topic `queue:{product}` on the page's socket (serve/queue.py), and told in words as the line
// moves. The size selector (with this block in it) is rendered again by every join reply and
// release push (store.js), so the last place told is kept here and shown again each time.
const held = new Map(); // product -> { view, at, said }

const SIGN_IN = "Sign in with a confirmed email address to take your place in the queue.";

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
        return `Sold out for now: every pair left is bought or held by shoppers whose turn it is. You keep your place `
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
  const status = document.querySelector(`[data-queue-for="${product}"] [data-queue-status]`);
  const kept = held.get(product);
  if (!status || !kept) return;
  const text = kept.said || words(kept.view, kept.at);
  if (status.textContent !== text) status.textContent = text;
}

function told(product, view) {
  held.set(product, { view, at: Date.now(), said: null });
  show(product);
}

// Joins the block's queue (once a page) and shows what is known of the shopper's place.
export function followQueue(socket, block) {
  const product = block.dataset.queueFor;
  if (!held.has(product)) {
    held.set(product, { view: {}, at: Date.now(), said: "Taking your place in the queue…" });
    const channel = socket.channel(`queue:${product}`, {});
    channel.on("place", (view) => told(product, view));
    channel.join()
      .receive("ok", (view) => told(product, view))
      .receive("error", (refused) => {
        held.set(product, { view: {}, at: Date.now(),
          said: refused.reason === "sign_in_required" ? SIGN_IN : `${refused.message || "The queue could not be joined"}.` });
        show(product);
        channel.leave(); // (no retries: a refusal stands until the page is loaded again)
      });
  }
  show(product);
}

// A turn's time left, counted down every second.
setInterval(() => {
  for (const [product, kept] of held) {
    if (kept.view.stage === "admitted") show(product);
  }
}, 1000);
