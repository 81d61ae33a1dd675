"""The proof of work of the sign-up and sign-in forms (serve/proof_of_work.py)."""

from __future__ import annotations

import base64
import json

import altcha

from sneakers23.serve.proof_of_work import ProofsOfWork

KEY = "k" * 40


def solution(work: ProofsOfWork, **changed) -> str:
    challenge = json.loads(work.challenge())
    found = altcha.solve_challenge_v1(challenge["challenge"], challenge["salt"], challenge["algorithm"],
                                      challenge["maxnumber"])
    payload = {key: challenge[key] for key in ("algorithm", "challenge", "salt", "signature")}
    return base64.b64encode(json.dumps({**payload, "number": found.number, **changed}).encode()).decode()


def test_a_solution_is_taken_once():
    work = ProofsOfWork(KEY, 500)
    solved = solution(work)
    assert work.refusal(solved) is None
    assert "used already" in work.refusal(solved)
    assert work.refusal(solution(work)) is None  # (a new challenge, a new solution)


def test_a_wrong_number_another_stores_challenge_and_junk_are_refused():
    work = ProofsOfWork(KEY, 500)
    assert "not valid" in work.refusal(solution(work, number=501))
    assert "not valid" in work.refusal(solution(ProofsOfWork("x" * 40, 500)))
    for junk in ("", None, 7, "!!!", "e30=", "x" * 5_000):
        assert work.refusal(junk)
    assert ProofsOfWork(KEY, 0).refusal(None) is None  # (off)


def test_a_draw_entrys_proof_of_work_is_no_forms_and_its_challenge_is_given_back_to_keep():
    forms, entries = ProofsOfWork(KEY, 500), ProofsOfWork(KEY, 500, purpose="entry")
    assert "not valid" in entries.refusal(solution(forms))
    assert "not valid" in forms.refusal(solution(entries))
    solved = solution(entries)
    refusal, challenge = entries.taken(solved)
    assert refusal is None and challenge == json.loads(base64.b64decode(solved))["challenge"] and len(challenge) == 64
    assert entries.taken(solved)[0].startswith("this check was used already")
    assert ProofsOfWork(KEY, 0, purpose="entry").taken(None) == (None, None)  # (off: nothing to keep)
