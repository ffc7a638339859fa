"""Where raymix's progress lines go: a live display on a terminal, plain lines elsewhere.

On a terminal (rich): each line is printed above a live status line, a spinner with what is
going on now (the last message) and the seconds since the start; the status disappears when
the command ends. Not on a terminal (a pipe, a log file, a CI job): one plain line per
message, ``HH:MM:SS [elapsed] message``, flushed at once, so a log shows when each step
happened. ``quiet`` prints nothing. Results (tables, paths) are the command's own ``print``.

::

    with Progress(quiet=args.quiet) as say:
        fit(recipe, progress=say)
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import IO, Any, NoReturn


def plain_line(message: str, now: float, elapsed: float) -> str:
    """One progress line for a log: local wall-clock time, seconds since the start, message."""
    return f"{time.strftime('%H:%M:%S', time.localtime(now))} [{elapsed:6.1f}s] {message}"


class Progress:
    """A callable taking progress messages (what ``progress=`` arguments expect); a context
    manager that starts and stops the live display. ``live`` forces the terminal display on
    or off (default: whether ``stream`` is a terminal)."""

    def __init__(self, *, quiet: bool = False, stream: IO[str] | None = None, live=None):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.live = bool(self.stream.isatty()) if live is None else live
        self.start = time.perf_counter()
        self._console: Any = None  # a rich Console and Status once live
        self._status: Any = None

    def __enter__(self) -> Progress:
        if self.live and not self.quiet:
            from rich.console import Console

            self._console = Console(file=self.stream, force_terminal=True, highlight=False)
            self._status = self._console.status("starting", spinner="dots")
            self._status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        if self._console is None:
            print(plain_line(message, time.time(), elapsed), file=self.stream, flush=True)
            return
        from rich.markup import escape

        self._console.print(f"[dim]{elapsed:6.1f}s[/dim] {escape(message)}")
        if self._status is not None:
            self._status.update(_Now(message, self.start))


class _Now:
    """The live status's text: the last message and the seconds since the start, drawn anew
    at every refresh (so the clock runs between messages)."""

    def __init__(self, message: str, start: float):
        self.message, self.start = message, start

    def __rich__(self):
        from rich.text import Text

        running = time.perf_counter() - self.start
        return Text.assemble(self.message, (f"  (running {running:.0f} s)", "dim"))


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``raymix: error: ...``, exit 2),
    like every other raymix error; ``--help`` still prints the usage. Its sub-command
    parsers are of the same class (argparse makes them so)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"raymix: error: {message} (see: {self.prog} --help)\n")
