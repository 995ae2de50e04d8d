"""The command groups of ``fluidv``: their lists show each command's first sentence whole."""

from __future__ import annotations

import inspect

import click


def first_sentence(text: str) -> str:
    """The first sentence of ``text``'s first paragraph, on one line."""
    words: list[str] = []
    for word in inspect.cleandoc(text).split("\n\n", 1)[0].split():
        words.append(word)
        if word.endswith("."):
            break
    return " ".join(words)


class Group(click.Group):
    """A click group whose ``--help`` lists each command with its whole first sentence
    (click's own cuts it to the terminal's width with "...")."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.short_help or first_sentence(command.help or "")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
