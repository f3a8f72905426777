"""Errors and warnings meant for the user: the CLI prints them as one line, without a traceback.

Messages name settings as flags (`unknown --model 'x'`), the way the command line reads them. Called from
Python, the same message names them as arguments (`unknown model='x'`): CifarlabError's text is rewritten
unless `cli_messages()` is active, which cifarlab.cli.main enters for the whole command. One mechanism, so
no message is written twice."""
from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterable, Iterator

_speaking_flags = False  # True while the command line runs (cli_messages)

# A shell command quoted in a message ("continue with cifarlab train --resume DIR") stays as typed: `cifarlab
# COMMAND` and what follows it as arguments (flags with their values, PLACEHOLDERS, paths and numbers).
_WORD = r"[^\s;,()`'\"]"
_COMMAND = re.compile(rf"\bcifarlab [a-z][a-z-]*(?: (?:--[a-z][\w-]*(?:[ =](?!-){_WORD}+)?|[A-Z][A-Z0-9_|]*\b"
                      rf"|{_WORD}*[/.:*\d]{_WORD}*))+")
# --some-flag, with the value that follows it: a quoted text, a number or an upper-case placeholder (FILE).
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)"
                   r"(?: ('[^']*'|\"[^\"]*\"|-?\d[\w.+:-]*|[A-Z][A-Z0-9_]*(?:\|[A-Z][A-Z0-9_]*)*)(?=[\s;,)]|$))?")


@contextlib.contextmanager
def cli_messages() -> Iterator[None]:
    """While active, CifarlabError messages name settings as --flags (the command line's words)."""
    previous = speaking_flags()
    speak_flags(True)
    try:
        yield
    finally:
        speak_flags(previous)


def speaking_flags() -> bool:
    """Whether messages name settings as --flags."""
    return _speaking_flags


def speak_flags(on: bool) -> None:
    """Set for this process: the worker processes of a command take on the command's words."""
    global _speaking_flags
    _speaking_flags = on


def python_words(message: str) -> str:
    """`message` with its --flags as Python arguments: "unknown --model 'x'" -> "unknown model='x'",
    "--epochs must be > 0" -> "epochs must be > 0"; quoted cifarlab commands are left as they are."""
    def argument(m: re.Match) -> str:
        name = m.group(1).replace("-", "_")
        return f"{name}={m.group(2)}" if m.group(2) else name

    parts, end = [], 0
    for command in _COMMAND.finditer(message):
        parts += [_FLAG.sub(argument, message[end:command.start()]), command.group()]
        end = command.end()
    return "".join(parts) + _FLAG.sub(argument, message[end:])


def did_you_mean(name: object, choices: Iterable[str], prefix: str = "") -> str:
    """" (did you mean resnet20?)" for the closest of `choices` to a mistyped `name`, else ""."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


class CifarlabError(Exception):
    """Something the user can fix (a bad flag, a missing file, bad data). Shown as one line."""

    def __str__(self) -> str:
        text = super().__str__()
        return text if _speaking_flags else python_words(text)


class TrainingDiverged(CifarlabError):
    """The training loss became NaN or infinite (usually: the learning rate is too high)."""


class DataError(CifarlabError):
    """The data source is missing, incomplete or unreadable."""


class DataWarning(UserWarning):
    """The data was usable but was changed on the way in (resized, converted to RGB, ...)."""
