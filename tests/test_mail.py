"""Letters to shoppers (sneakers23/mail.py): sent over real SMTP (aiosmtpd) off the caller's path,
tried again while the server is away, or written to the file of letters."""

from __future__ import annotations


import pytest
from aiosmtpd.controller import Controller

from sneakers23.command_line import one_line
from sneakers23.domain.accounts import Delivery, Letter, verify_letter
from sneakers23.mail import FileCarrier, Postbox, SmtpCarrier, smtp_address
from sneakers23.settings import Settings
from harness.ports import free_port
from harness.waiting import wait_for
from tests.support.mailbox import Mailbox, link_in

LETTER = verify_letter("ada@example.com", "http://shop.example/account/verify?token=abc_DEF-123")


@pytest.fixture
def smtp_server():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.url = f"smtp://127.0.0.1:{controller.port}"
    yield box, controller
    controller.stop()


def test_a_posted_letter_arrives_over_smtp_with_its_link(smtp_server):
    box, _controller = smtp_server
    sent = []
    postbox = Postbox(SmtpCarrier(box.url, "Sneakers23 <shop@example.com>"), on_sent=sent.append)
    postbox.post(LETTER)  # (the caller does not wait: the postbox's thread sends it)
    letter = box.wait_for_letter("ada@example.com", "Confirm your email")
    assert letter["From"] == "Sneakers23 <shop@example.com>" and letter["Message-ID"]
    assert link_in(letter) == "http://shop.example/account/verify?token=abc_DEF-123"
    wait_for(lambda: sent == [LETTER], what="the postbox's receipt")
    postbox.close()


def test_a_letter_waits_while_the_server_is_away_and_goes_when_it_is_back():
    box = Mailbox()
    port = free_port()
    smtp = SmtpCarrier(f"smtp://127.0.0.1:{port}", "shop@example.com")
    tries = []

    class Counted:
        def send(self, letter):
            tries.append(letter)
            smtp.send(letter)

    postbox = Postbox(Counted(), attempts=8, first_delay_s=0.2)
    postbox.post(LETTER)  # nobody listens yet: connection refused, tried again with backoff
    wait_for(lambda: len(tries) >= 2, what="a second try")
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert box.wait_for_letter("ada@example.com", "Confirm", timeout=30)
    finally:
        postbox.close()
        controller.stop()


def test_without_smtp_letters_go_to_the_file_of_letters(tmp_path):
    path = tmp_path / "letters.log"
    postbox = Postbox(FileCarrier(path))
    postbox.post(Letter("bo@example.com", "Reset your password", "the link: http://x/?token=t1\n"))
    postbox.post(LETTER)
    postbox.close()
    written = path.read_text()
    assert "To: bo@example.com" in written and "http://x/?token=t1" in written and "token=abc_DEF-123" in written


@pytest.mark.parametrize("url, says", [
    ("http://mail.example", "smtp://host:port"),
    ("smtp://", "smtp://host:port"),
    ("smtp://mail.example:99999", "port is not one"),
])
def test_a_bad_smtp_url_is_refused_in_a_sentence_without_its_password(url, says):
    with pytest.raises(ValueError, match=says):
        smtp_address(url)
    with pytest.raises(ValueError) as refused:
        Settings(smtp_url=url.replace("://", "://user:hunter2@", 1) if "//" in url and url != "smtp://" else url)
    said = one_line(refused.value)  # (the CLI's line)
    assert said.startswith("SNEAKERS23_SMTP_URL: ") and says in said and "hunter2" not in said


def test_an_smtp_url_gives_tls_host_port_and_login():
    assert smtp_address("smtps://u%40x:p%3Aw@mail.example") == (True, "mail.example", 465, ("u@x", "p:w"))
    assert smtp_address("smtp://mail.example:2525") == (False, "mail.example", 2525, None)


def test_a_refusal_that_would_come_back_the_same_is_not_tried_again_and_the_next_letter_goes():
    import smtplib

    tries = []

    class Refusing:
        def send(self, letter):
            tries.append(letter)
            if letter.to == "nobody@example.com":
                raise smtplib.SMTPRecipientsRefused({letter.to: (550, b"no such user")})

    sent, receipts = [], []
    postbox = Postbox(Refusing(), attempts=5, first_delay_s=0.01, on_sent=sent.append)
    assert postbox.post(Letter("nobody@example.com", "s", "t"), lambda done: receipts.append(("nobody", done)))
    postbox.post(LETTER, lambda done: receipts.append(("ada", done)))
    wait_for(lambda: sent == [LETTER] and len(receipts) == 2, what="the next letter, and both receipts")
    assert [letter.to for letter in tries] == ["nobody@example.com", "ada@example.com"]
    assert receipts == [("nobody", Delivery.REFUSED), ("ada", Delivery.SENT)]
    postbox.close()


def test_a_login_is_never_sent_to_a_server_without_starttls(smtp_server):
    import smtplib

    box, controller = smtp_server
    carrier = SmtpCarrier(f"smtp://user:pw@127.0.0.1:{controller.port}", "shop@example.com")
    with pytest.raises(smtplib.SMTPNotSupportedError, match="STARTTLS"):
        carrier.send(LETTER)
    assert box.to("ada@example.com") == []


def test_the_file_of_letters_is_its_owners_alone(tmp_path):
    path = tmp_path / "letters.log"
    FileCarrier(path).send(LETTER)
    assert path.stat().st_mode & 0o777 == 0o600
