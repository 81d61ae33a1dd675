// A product sold by draw: the shopper's entry (made with the ENTER THE DRAW button), and how it went
// after the close, from the store's JSON. The product's size selector is rendered again by every
// join reply and release push (store.js), so this listens on the document and reads again then.
import { payload, solve } from "/static/js/work.js";

const panel = document.querySelector("[data-form-token]");
// Each block's proof of work for its entry (a bot pays per entry): solved in the background from
// the challenge the draw's JSON carries, while the shopper chooses a size.
const proofs = new Map();
// After the close, the page reads its entry's outcome when the draw's end is pushed (store.js); it
// asks again this often only in case that push was missed.
const ASK_AGAIN_MS = 15000;
const rechecks = new Map(); // product -> its slow recheck's timer
// Products whose draw this page entered and whose outcome it has not shown yet: only these read
// when the end is pushed (every page of the product gets the push, entrant or not).
const awaiting = new Set();
const known = new Set(); // products whose draw this page has read (whether it entered or not)
const reads = new Map(); // product -> the number of its latest read (an older answer is not shown)

function blocksOf(product) {
  return document.querySelectorAll(`[data-draw-for="${product}"]`);
}

function readAgainLater(product) {
  if (rechecks.has(product)) return;
  rechecks.set(product, setTimeout(() => { rechecks.delete(product); blocksOf(product).forEach(readDraw); }, ASK_AGAIN_MS));
}

function say(block, text) {
  const status = block.querySelector("[data-draw-status]");
  if (status) status.textContent = text;
}

const TOLD = {
  entered: (entry) => `You are in the draw with size ${entry.size}.`,
  won: (entry) => `You were drawn for size ${entry.size}: your pair is being bought for you.`,
  bought: (entry) => `You won size ${entry.size}: your pair is in your orders.`,
  lost: (entry) => `The draw has closed: your entry (size ${entry.size}) was not drawn this time.`,
  failed: (entry) => `You were drawn for size ${entry.size}, but your pair could not be bought (${entry.note}).`,
  removed: (entry) => `Your entry was taken out before the draw (${entry.note}).`,
};

const FRESH_FOR_MS = 8 * 60 * 1000; // a challenge expires 10 minutes after it was made (serve/proof_of_work.py)

function prove(block, challenge) {
  const started = performance.now();
  const solved = solve(challenge).then(
    (number) => (number === null ? null : payload(challenge, number, Math.round(performance.now() - started))));
  proofs.set(block.dataset.drawFor, { solved, at: Date.now() });
}

// The block's proof of work, fresh: asked for (with the draw) when there is none or it is old.
async function freshProof(block) {
  const product = block.dataset.drawFor;
  const held = proofs.get(product);
  if (!held || Date.now() - held.at > FRESH_FOR_MS) {
    proofs.delete(product);
    await readDraw(block);
  }
  const proof = proofs.get(product);
  proofs.delete(product); // (used once: the next try gets a new challenge)
  return proof ? proof.solved : null;
}

function show(block, draw) {
  const entry = draw.entry;
  if (draw.work_challenge && !proofs.has(block.dataset.drawFor)) prove(block, draw.work_challenge);
  if (entry) {
    say(block, TOLD[entry.outcome] ? TOLD[entry.outcome](entry) : "");
    const choose = block.querySelector("[data-draw-size]");
    if (choose) choose.value = String(entry.item_id);
    block.querySelectorAll("[data-draw-size], [data-draw-enter]").forEach((control) => { control.disabled = true; });
  } else if (draw.closed) {
    say(block, "The draw has closed.");
  }
  // Released (the close), and its pairs still being given: the end's push brings the outcome; a
  // slow recheck in case it was missed, dropped once the outcome is in.
  const product = block.dataset.drawFor;
  if (!entry || draw.finished) {
    awaiting.delete(product);
    clearTimeout(rechecks.get(product));
    rechecks.delete(product);
  } else {
    awaiting.add(product);
    if (draw.closed || block.hasAttribute("data-draw-closed")) readAgainLater(product);
  }
  const about = block.querySelector(".draw__commitment");
  if (about && !about.dataset.shown) {
    about.dataset.shown = "1";
    about.append(` Commitment (SHA-256 of the seed): ${draw.commitment}.`);
  }
}

// The draw's end, pushed on the product's channel: each page reads its outcome once, at a random
// moment within the spread the store says (a big draw's pages do not all ask at once).
export function drawFinished(productId, spreadS) {
  const product = String(productId);
  if (known.has(product) && !awaiting.has(product)) return; // (a page with no entry in it has nothing to learn)
  const wait = Math.random() * Math.max(0, Number(spreadS) || 0) * 1000;
  setTimeout(() => blocksOf(product).forEach(readDraw), wait); // (the blocks as they are then)
}

export async function readDraw(block) {
  const product = block.dataset.drawFor;
  const number = (reads.get(product) || 0) + 1;
  reads.set(product, number);
  try {
    const answer = await fetch(`/api/products/${product}/draw?record=0`, { credentials: "same-origin" });
    if (answer.ok) {
      const draw = await answer.json();
      if (reads.get(product) !== number) { // (a later read is under way or done: its answer is newer)
        if (draw.work_challenge && !proofs.has(product) && !awaiting.has(product)) prove(block, draw.work_challenge);
        return;
      }
      known.add(product);
      show(block, draw);
      return;
    }
  } catch (_offline) {
    // (as a refusal: asked again below, or at the next join reply)
  }
  // A busy store at a big draw's end: asked again, by an entrant's page or one that never read it.
  if (reads.get(product) === number && (awaiting.has(product) || !known.has(product))) readAgainLater(product);
}

async function enter(block, again = true) {
  const size = block.querySelector("[data-draw-size]");
  const product = block.dataset.drawFor;
  say(block, "Checking that you are a person, then entering the draw…");
  try {
    const altcha = await freshProof(block);
    const answer = await fetch(`/api/products/${product}/draw/${size.value}`, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": panel ? panel.dataset.formToken : "", "Content-Type": "application/json" },
      body: JSON.stringify({ altcha }),
    });
    const said = await answer.json();
    if (answer.ok) {
      awaiting.add(product); // (entered: its outcome is awaited, even if the read below fails)
      readDraw(block);
    } else if (said.error === "proof_of_work" && again) {
      enter(block, false); // (its check had expired, or was used: once more, with a new one)
    } else if (answer.status === 401 || said.error === "sign_in_required") {
      say(block, "Sign in with a confirmed email address to enter the draw.");
    } else {
      const message = said.message || "the entry could not be made: try again";
      say(block, message.charAt(0).toUpperCase() + message.slice(1) + ".");
    }
  } catch (_offline) {
    say(block, "The store did not answer: try again");
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-draw-enter]");
  if (button && !button.disabled) enter(button.closest("[data-draw-for]"));
});

// (Each block is read when store.js renders it: from the join reply, at once on opening the page.)
