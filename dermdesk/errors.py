"""One line for the user, whatever went wrong (the traceback goes to a log, not to them)."""

from __future__ import annotations

MAX_LINE = 200  # characters a one-line error may take


def one_line(error: BaseException | str, limit: int = MAX_LINE) -> str:
    """The first line of an error's message, at most ``limit`` characters.

    Messages dermdesk writes are meant for the user and keep their text; an exception
    without a message is named by its type. Long lines are cut at a word."""
    text = str(error).strip()
    if isinstance(error, BaseException):
        if not text:
            text = type(error).__name__
        elif not _ours(error):
            text = f"{type(error).__name__}: {text}"
    first = text.splitlines()[0].strip() if text else "unknown error"
    if len(first) <= limit:
        return first
    cut = first[: limit - 1].rsplit(" ", 1)[0]
    return cut + "…"


def _ours(error: BaseException) -> bool:
    """dermdesk's own error types carry a sentence for the user already."""
    return type(error).__module__.startswith("dermdesk") or isinstance(error, ValueError)
