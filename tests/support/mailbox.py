"""A real SMTP server for the tests (aiosmtpd, on a free loopback port): the store's letters arrive
here, and the tests follow the links in them."""

from __future__ import annotations

import email
import re
import threading
from email import policy
from email.message import EmailMessage

from harness.waiting import wait_for

LINK = re.compile(r"https?://\S+\?token=[A-Za-z0-9_-]+")


class Mailbox:
    def __init__(self):
        self.letters: list[EmailMessage] = []
        self._lock = threading.Lock()
        self.url = ""

    async def handle_DATA(self, _server, _session, envelope):  # (aiosmtpd's handler hook)
        letter = email.message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.letters.append(letter)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [letter for letter in self.letters if letter["To"].casefold() == address.casefold()]

    def wait_for_letter(self, address: str, subject: str, count: int = 1, timeout: float = 30) -> EmailMessage:
        """The `count`-th letter to `address` whose subject holds `subject`."""
        def arrived():
            found = [letter for letter in self.to(address) if subject in letter["Subject"]]
            return found[count - 1] if len(found) >= count else None

        return wait_for(arrived, timeout=timeout, what=f"letter {count} '{subject}' to {address}")


def link_in(letter: EmailMessage) -> str:
    found = LINK.search(letter.get_content())
    assert found, letter.get_content()
    return found.group(0)
