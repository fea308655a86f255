"""Shared rich consoles and the one-line error format of the CLI."""

from __future__ import annotations

from rich.console import Console

console = Console()
error_console = Console(stderr=True)


def print_error(message: str) -> None:
    """Print a user error as a single line (no markup interpretation of file names)."""
    error_console.print(f"yt8m: error: {message}", markup=False, highlight=False, soft_wrap=True)


def print_warning(message: str) -> None:
    error_console.print(f"yt8m: warning: {message}", markup=False, highlight=False, soft_wrap=True)
