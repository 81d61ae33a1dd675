"""Letters to shoppers (verification and password-reset links), sent off the request that asks for
them: a sign-up or a reset request is answered at once, and takes as long whether or not a letter
leaves (a reset asked for an unknown address sends none).

A `Postbox` holds a bounded queue and one thread that sends, trying a letter again with backoff
while the mail server is away (a letter that still fails is logged, and the shopper can ask for
another link). Where the letters go:
- SMTP (`SNEAKERS23_SMTP_URL`): smtp://host:port, with STARTTLS when the server offers it;
  smtps://host:port for TLS from the start; user:password@ when the server wants a login;
- otherwise a file of letters (the console backend): the store says where at its start, so that
  a new shopper on a developer's machine can follow the link.
"""

from __future__ import annotations

import logging
import os
import queue
import smtplib
import ssl
import threading
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import unquote, urlsplit

from tenacity import Retrying, retry_if_exception, stop_after_attempt

from sneakers23.domain.accounts import Delivery, Letter
from sneakers23.retries import backoff

log = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 10.0
QUEUED_LETTERS = 1_000  # past it a letter is dropped (and logged): a flood of sign-ups holds no memory
SEND_ATTEMPTS = 5


class Carrier(Protocol):
    def send(self, letter: Letter) -> None: ...


class SmtpCarrier:
    """One SMTP connection per letter: letters are few (a sign-up, a reset), and a connection kept
    open would be closed by the server between them anyway."""

    def __init__(self, url: str, sender: str):
        self.sender = sender
        self.tls, self.host, self.port, self.login = smtp_address(url)

    def send(self, letter: Letter) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, letter.to, letter.subject
        message["Date"], message["Message-ID"] = formatdate(localtime=False), make_msgid(domain="sneakers23")
        message.set_content(letter.text)
        context = ssl.create_default_context()
        if self.tls:
            connection = smtplib.SMTP_SSL(self.host, self.port, timeout=SMTP_TIMEOUT_S, context=context)
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_S)
        with connection:
            connection.ehlo()
            if not self.tls and connection.has_extn("starttls"):
                connection.starttls(context=context)
                connection.ehlo()
            elif not self.tls and self.login is not None:  # (a login, and the letters' links, never in clear)
                raise smtplib.SMTPNotSupportedError("the mail server offers no STARTTLS: the login is not sent in clear")
            if self.login is not None:
                connection.login(*self.login)
            connection.send_message(message)


class FileCarrier:
    """The console backend: each letter appended to a file, for whoever runs the store to read."""

    def __init__(self, path: Path):
        self.path = path

    def send(self, letter: Letter) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        # Readable by whoever runs the store alone: its links open accounts.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(descriptor, "a", encoding="utf-8") as out:
            out.write(f"--- {stamp}\nTo: {letter.to}\nSubject: {letter.subject}\n\n{letter.text}\n")
        log.warning("a letter to a shopper was written to %s (no SNEAKERS23_SMTP_URL is set)", self.path)


class Postbox:
    """Letters posted here are sent by a thread of the postbox's own, in order, each tried again
    with backoff when the carrier fails for a while. A caller that must know whether a letter left
    (a draw's, posted again when it did not) gives it a receipt, called once with its Delivery:
    sent, refused for good, or unreached (the server away past the tries)."""

    def __init__(self, carrier: Carrier, attempts: int = SEND_ATTEMPTS, first_delay_s: float = 1.0,
                 on_sent: Callable[[Letter], None] = lambda _letter: None):
        self.carrier = carrier
        self._on_sent = on_sent
        self._letters: queue.Queue[tuple[Letter, Callable[[Delivery], None] | None] | None] = queue.Queue(QUEUED_LETTERS)
        self._retrying = Retrying(retry=retry_if_exception(_for_a_while),
                                  stop=stop_after_attempt(attempts), wait=backoff(first_delay_s, 60.0), reraise=True)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def post(self, letter: Letter, on_done: Callable[[Delivery], None] | None = None) -> bool:
        """Queues the letter (False: dropped, the queue is full); `on_done(delivery)` is called once
        it is sent or given up on."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_all, name="sneakers23-postbox", daemon=True)
                self._thread.start()
        try:
            self._letters.put_nowait((letter, on_done))
            return True
        except queue.Full:
            log.error("a letter to a shopper was dropped: %d letters wait already", QUEUED_LETTERS)
            return False

    def room(self) -> int:
        """How many more letters it takes now (a caller with many to post posts no more)."""
        return max(0, QUEUED_LETTERS - self._letters.qsize())

    def close(self, wait_s: float = 5.0) -> None:
        """Send what is queued (for at most `wait_s`), then stop."""
        if self._thread is not None:
            try:
                self._letters.put(None, timeout=wait_s)
            except queue.Full:
                return  # (the thread is a daemon: it ends with the process)
            self._thread.join(wait_s)

    def _send_all(self) -> None:
        while (posted := self._letters.get()) is not None:
            letter, receipt = posted
            try:
                self._retrying(self.carrier.send, letter)
                delivery = Delivery.SENT
            except Exception as error:  # (the thread goes on with the next letter)
                delivery = Delivery.UNREACHED if _for_a_while(error) else Delivery.REFUSED
                log.error("a letter to a shopper could not be sent (%s: %s); they can ask for another link",
                          type(error).__name__, error)
            try:
                if delivery is Delivery.SENT:
                    self._on_sent(letter)
                if receipt is not None:
                    receipt(delivery)
            except Exception:  # (a receipt's own failure is its caller's: logged, the thread goes on)
                log.exception("a letter's receipt failed")


def _for_a_while(error: BaseException) -> bool:
    """A failure worth trying again: the server away or busy (4xx), not a refusal that would come
    back the same (a 5xx, a bad login, an address refused, no STARTTLS)."""
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    if isinstance(error, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return True
    return isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException)


def smtp_address(url: str) -> tuple[bool, str, int, tuple[str, str] | None]:
    """(TLS from the start, host, port, login) of an SMTP URL; ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"it is smtp://host:port or smtps://host:port, not {url.partition(':')[0][:16]}:…")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("its port is not one") from None
    tls = parts.scheme == "smtps"
    login = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
    return tls, parts.hostname, port or (465 if tls else 25), login


def carrier_for(smtp_url: str | None, sender: str, mail_file: Path) -> Carrier:
    return SmtpCarrier(smtp_url, sender) if smtp_url else FileCarrier(mail_file)
