"""A proof of work on the sign-up and sign-in forms (ALTCHA's scheme, by its Python library): the
page carries a challenge signed by the store (SHA-256 of a salt and a secret number up to
`proof_of_work_max_number`, with an expiry); the shopper's browser finds the number by trying them
(static/js/work.js, about a second at the default), and the form posts it. The store checks it with
one hash and one HMAC (about 55 µs here), and takes each solution once. A person waits a second;
a script making a thousand accounts pays a thousand seconds of CPU.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone

import altcha

FIELD = "altcha"  # the form's field (ALTCHA's name for it)
LIFETIME_S = 600  # a form left open longer asks for a new one
SOLUTIONS_KEPT = 100_000  # the solutions taken, per replica, until they expire (the oldest go first)
MAX_PAYLOAD_CHARS = 1_024


class ProofsOfWork:
    def __init__(self, secret_key: str, max_number: int, purpose: str = ""):
        """`purpose`: a proof of work for one door (a draw's entry) signs its challenges with a key
        of its own, so a form's solution is no entry's, and the other way round."""
        self.max_number = max_number
        label = b"sneakers23-proof-of-work" + (f":{purpose}".encode() if purpose else b"")
        self._key = hmac.new(secret_key.encode(), label, hashlib.sha256).hexdigest()
        self._used: OrderedDict[str, float] = OrderedDict()  # challenge -> when it expires

    @property
    def on(self) -> bool:
        return self.max_number > 0

    def challenge(self) -> str:
        """The challenge a form carries, as JSON (algorithm, challenge, salt, signature, maxnumber)."""
        made = altcha.create_challenge_v1(
            hmac_key=self._key, max_number=self.max_number,
            expires=datetime.now(timezone.utc) + timedelta(seconds=LIFETIME_S))
        return json.dumps({"algorithm": made.algorithm, "challenge": made.challenge, "salt": made.salt,
                           "signature": made.signature, "maxnumber": made.max_number})

    def refusal(self, payload: object) -> str | None:
        """Why a form's proof of work is not taken, in a sentence for the shopper; None when it is
        (it is then used up)."""
        return self.taken(payload)[0]

    def taken(self, payload: object) -> tuple[str | None, str | None]:
        """(why the proof of work is not taken, None), or (None, its challenge) when it is: used up
        on this replica, and the challenge for the caller to keep where every replica sees it (a
        draw's entry keeps it in the database). (None, None) with the proof of work off."""
        if not self.on:
            return None, None
        if not isinstance(payload, str) or not payload:
            return ("the check that you are a person did not run: let the page finish it (it needs "
                    "JavaScript), then send the form again"), None
        if len(payload) > MAX_PAYLOAD_CHARS:
            return "the check that you are a person is not valid: reload the page and try again", None
        try:
            good, _error = altcha.verify_solution_v1(payload, self._key, check_expires=True)
            challenge = altcha.PayloadV1.from_base64(payload).challenge if good else ""  # (parsed once more: cheap)
        except Exception:  # (whatever a stranger's payload makes the library raise)
            good, challenge = False, ""
        if not good:
            return "the check that you are a person is not valid or has expired: reload the page and try again", None
        now = time.monotonic()
        while self._used and next(iter(self._used.values())) <= now:
            self._used.popitem(last=False)
        if challenge in self._used:
            return "this check was used already: reload the page and try again", None
        self._used[challenge] = now + LIFETIME_S
        while len(self._used) > SOLUTIONS_KEPT:
            self._used.popitem(last=False)
        return None, challenge
