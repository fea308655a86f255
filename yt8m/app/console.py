"""Shared rich consoles and the one-line error format of the CLI.

On a terminal rich wraps to the terminal's width. A pipe or a log file has no width: rich would
assume 80 columns and hard-wrap paths and messages there, which breaks `grep` and scripts, so
off a terminal the consoles never wrap text and lay tables out at their natural width.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

from rich.console import Console, ConsoleDimensions
from typer import rich_utils
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

PIPE_WIDTH = 100_000  # columns assumed off a terminal: wider than any path or table row
HELP_PIPE_WIDTH = 100  # help panels off a terminal: wide enough that no option name is cut


class _Console(Console):
    """A rich Console that does not hard-wrap when its output is not a terminal.

    Decided at each print (not at import) because tests and callers may redirect `sys.stdout`.
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)

    @property
    def soft_wrap(self) -> bool:
        return self._soft_wrap or not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap = value


console: Console = _Console()
error_console: Console = _Console(stderr=True)


def print_error(message: str) -> None:
    """Print a user error as a single line (no markup interpretation of file names)."""
    error_console.print(f"yt8m: error: {message}", markup=False, highlight=False, soft_wrap=True)


def print_warning(message: str) -> None:
    """Print a warning as a single line on stderr."""
    error_console.print(f"yt8m: warning: {message}", markup=False, highlight=False, soft_wrap=True)


# --- Help text: conventional metavars -----------------------------------------------------------
# typer >= 0.2x prints Python type names in help (`--resume <bool>`, `<list[str]>`, `{inputs}...`).
# The classes below restore what click CLIs show: no metavar on flags, `N` / `NUM` / `TEXT` /
# `FILE` / `DIR` / `PATH` / `[a|b]` on options, `INPUTS...` (upper-case name) for arguments.

_TYPE_METAVARS: dict[type, str] = {int: "N", float: "NUM", str: "TEXT", bool: "BOOL"}
_PATH_METAVARS = {"file": "FILE", "dir": "DIR", "path": "PATH"}


def _value_metavar(param: TyperOption | TyperArgument, ctx: Any) -> str:
    """The conventional metavar of one value of `param` (lists: of one element)."""
    descriptor = param.type_descriptor
    if descriptor.is_choice:
        choices = [str(getattr(choice, "value", choice)) for choice in descriptor.choices or ()]
        return "[" + "|".join(choices) + "]"
    if descriptor.is_path or descriptor.is_file:
        return _PATH_METAVARS.get(descriptor.path_type, "PATH")
    annotation = descriptor.annotation
    if descriptor.is_list or descriptor.is_tuple:
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        annotation = args[0] if args else str
    return _TYPE_METAVARS.get(annotation, "PATH" if annotation is Path else "VALUE")


class ConventionalOption(TyperOption):
    """A typer option whose help shows no metavar for flags and `N`, `FILE`... for values."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count:
            return None
        return _value_metavar(self, ctx)


class ConventionalArgument(TyperArgument):
    """A typer argument shown as `NAME` / `NAME...` (required) or `[NAME]...` (optional)."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar if self.metavar is not None else (self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name column already says it

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 and self.metavar is None else "")


_CONVENTIONAL = {TyperOption: ConventionalOption, TyperArgument: ConventionalArgument}
# Older typer (< 0.2x, on click) already prints click's metavars and has no `display_type_rich`.
_TYPER_PRINTS_TYPE_NAMES = hasattr(TyperOption, "display_type_rich")


def _conventional(params: list[Any]) -> list[Any]:
    """Give typer's parameters the conventional help display, in place (same state, subclass)."""
    if not _TYPER_PRINTS_TYPE_NAMES:
        return params
    for param in params:
        replacement = _CONVENTIONAL.get(type(param))
        if replacement is not None:
            param.__class__ = replacement
    return params


@contextlib.contextmanager
def _help_width() -> Iterator[None]:
    """Lay help panels out at `HELP_PIPE_WIDTH` columns when stdout is not a terminal.

    typer's help is boxed panels, which need a width; off a terminal it assumes 80 columns and
    cuts long option names. `TERMINAL_WIDTH` (typer's own setting) still wins.
    """
    saved = rich_utils.MAX_WIDTH
    if saved is None and not os.environ.get("TERMINAL_WIDTH") and not sys.stdout.isatty():
        rich_utils.MAX_WIDTH = HELP_PIPE_WIDTH
    try:
        yield
    finally:
        rich_utils.MAX_WIDTH = saved


class ConventionalCommand(TyperCommand):
    """A typer command whose help uses conventional metavars (see `ConventionalOption`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _conventional(super().get_params(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _help_width():
            super().format_help(ctx, formatter)


class ConventionalGroup(TyperGroup):
    """The root group: every command under it (nested groups too) shows conventional metavars.

    typer builds the tree bottom-up and hands the finished commands to this constructor, so the
    whole CLI is converted here, once per build, whatever class each command was declared with.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _conventional_tree(self)

    def get_params(self, ctx: Any) -> list[Any]:
        return _conventional(super().get_params(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _help_width():
            super().format_help(ctx, formatter)


def _conventional_tree(group: TyperGroup) -> None:
    if not _TYPER_PRINTS_TYPE_NAMES:
        return
    for command in group.commands.values():
        if type(command) is TyperCommand:
            command.__class__ = ConventionalCommand
        elif type(command) is TyperGroup:
            command.__class__ = ConventionalGroup
            _conventional_tree(command)
        _conventional(command.params)
