"""What every `sneakers23` command group shares: one-line errors, and progress for long work."""

from __future__ import annotations

import sys
import time

import click

from sneakers23.errors import Sneakers23Error

PROG = "sneakers23"


def one_line(error: Exception) -> str:
    """A setting's validation error as the line a person needs: which setting, and why."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError) and error.errors():
        first = error.errors()[0]
        name = "SNEAKERS23_" + str(first["loc"][0]).upper() if first.get("loc") else "a setting"
        message = first["msg"].removeprefix("Value error, ")
        return message if name in message else f"{name}: {message}"
    return str(error)


class Commands(click.Group):
    """Every failure ends as one line on stderr and a non-zero exit, never a traceback."""

    def main(self, args=None, prog_name=PROG, **extra):
        try:
            return super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo(f"{PROG}: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as error:  # bad usage: unknown option, non-numeric id, …
            click.echo(f"{PROG}: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except (Sneakers23Error, ValueError) as error:
            click.echo(f"{PROG}: {one_line(error)}", err=True)
            sys.exit(1)


class Progress:
    """A bar on a terminal; elsewhere (a Ray job's log), one line a second, unless `lines` is off."""

    def __init__(self, total: int, label: str, lines: bool = True):
        self.total, self.done, self.label = total, 0, label
        self._bar = click.progressbar(length=total, label=label, file=sys.stderr) if sys.stderr.isatty() else None
        self._lines = lines
        self._printed, self._printed_done, self._note = 0.0, None, ""
        if self._bar:
            self._bar.__enter__()

    def advance(self, count: int = 1, note: str = "") -> None:
        self.done += count
        self._note = note
        if self._bar:
            self._bar.update(count)
        elif self._lines and time.monotonic() - self._printed >= 1.0:
            self._line()

    def _line(self) -> None:
        self._printed, self._printed_done = time.monotonic(), self.done
        click.echo(f"{self.label}: {self.done}/{self.total} {self._note}".rstrip(), err=True)

    def close(self) -> None:
        if self._bar:
            self._bar.__exit__(None, None, None)
        elif self._lines and self._printed_done != self.done:  # (the last count, whenever it came)
            self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
