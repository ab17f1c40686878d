"""The command language's one base exception: it carries the SMS reply that explains the problem."""

from __future__ import annotations

from bridge.commands.help import quote


class CommandError(Exception):
    """A command cannot be carried out; ``reply`` is the SMS text telling the sender why.

    ``word`` is the command word it concerns (``"UC"``), or ``""`` when the word itself was not understood.
    """

    def __init__(self, reply: str, word: str = "") -> None:
        super().__init__(reply)
        self.reply = reply
        self.word = word


class ParseError(CommandError):
    """The text is not a well-formed command (found without looking at the database)."""


class NestingError(CommandError):
    """Groups nest deeper than flattening follows; the reply names the outermost group and the limit.

    The word is left to the caller (``IC``, ``CC3``...), which prefixes the reply; the conference service
    (dial-in launch, portal) shows it as it is.
    """

    def __init__(self, group: str, limit: int) -> None:
        super().__init__(f"groups nested more than {limit} deep in {quote(group)} (at most {limit} levels)")
        self.group = group
        self.limit = limit
