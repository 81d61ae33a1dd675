// The proof of work of the sign-up and sign-in forms, and of a draw's entry (draws.js) (ALTCHA's
// scheme; serve/proof_of_work.py): find the number whose SHA-256 with the challenge's salt is the
// challenge, then let the form go. About a second in a browser at the store's default difficulty.
const form = document.querySelector("form[data-work-challenge]");

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export async function solve(challenge) {
  const batch = 500; // hashes at once: the browser runs them together
  for (let start = 0; start <= challenge.maxnumber; start += batch) {
    const numbers = [];
    for (let n = start; n < start + batch && n <= challenge.maxnumber; n++) numbers.push(n);
    const hashes = await Promise.all(numbers.map((n) => sha256Hex(challenge.salt + n)));
    const found = hashes.indexOf(challenge.challenge);
    if (found >= 0) return numbers[found];
  }
  return null;
}

// The payload the store checks: the challenge, signed, and the number found.
export function payload(challenge, number, took) {
  return btoa(JSON.stringify({
    algorithm: challenge.algorithm, challenge: challenge.challenge, number, salt: challenge.salt,
    signature: challenge.signature, took,
  }));
}

if (form) {
  const challenge = JSON.parse(form.dataset.workChallenge);
  const field = form.querySelector('input[name="altcha"]');
  const status = form.querySelector("[data-work-status]");
  const submit = form.querySelector('button[type="submit"]');
  submit.disabled = true;
  const started = performance.now();
  solve(challenge).then((number) => {
    if (number === null) {
      status.textContent = "The check that you are a person failed: reload the page.";
      return;
    }
    field.value = payload(challenge, number, Math.round(performance.now() - started));
    status.textContent = "Checked: you can send the form.";
    form.dataset.workDone = "true";
    submit.disabled = false;
  });
}
