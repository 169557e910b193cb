"""The subcommand registry: a `Command` names a subcommand, its help and the functions that define its arguments
and run it, as "module:function" strings; the module is imported only when that subcommand is parsed or its help
shown, so `keyscope token` never loads Ray, pyarrow or chDB, and Ray's environment is set before anything does.

A command either has `arguments` and `run` (a leaf: `add_arguments(parser)`, `run(settings, args) -> int`, the
contract every job module and benchmark follows) or `children` (a group: `keyscope archive run`,
`keyscope bench storage`).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config import Settings

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[Settings, argparse.Namespace], int]


def resolve(target: str) -> Any:
    """The object a "module:name" string names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Command:
    """One subcommand of `keyscope`, defined where it runs (see the module docstring)."""

    name: str
    help: str
    arguments: str = ""  # "module:add_arguments"
    run: str = ""  # "module:run"
    children: tuple[Command, ...] = ()
    description: str | None = None  # default: the arguments module's DESCRIPTION, else the help
    metavar: str = "ACTION"  # a group's word for its children in the usage line

    def __post_init__(self) -> None:
        if bool(self.children) == bool(self.arguments and self.run):
            raise ValueError(f"command {self.name!r} needs either arguments and run, or children")

    def register(self, subparsers: Any) -> None:
        """Add this command to `subparsers` (an argparse subparsers action of LazyParser parsers)."""
        subparsers.add_parser(self.name, help=self.help, command=self)

    def define(self, parser: argparse.ArgumentParser) -> None:
        """Give `parser` this command's arguments (a leaf) or subcommands (a group)."""
        if self.children:
            parser.description = self.description or self.help
            sub = parser.add_subparsers(dest=f"{self.name}_command", required=True, metavar=self.metavar)
            for child in self.children:
                child.register(sub)
            return
        add_arguments = resolve(self.arguments)
        module = importlib.import_module(self.arguments.partition(":")[0])
        parser.description = self.description or getattr(module, "DESCRIPTION", None) or self.help
        add_arguments(parser)
        parser.set_defaults(command_run=self.run)


def defined_in(module: str, name: str = "") -> dict[str, str]:
    """The arguments and run of a command defined in `module`: `add_arguments` and `run` (the contract every job
    module follows), or `add_<name>_arguments` and `run_<name>` where one module defines several commands."""
    if not name:
        return {"arguments": f"{module}:add_arguments", "run": f"{module}:run"}
    return {"arguments": f"{module}:add_{name}_arguments", "run": f"{module}:run_{name}"}


class LazyParser(argparse.ArgumentParser):
    """An argument parser that asks its `Command` for its arguments the first time it parses or shows help."""

    def __init__(self, *args: Any, command: Command | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._command = command

    def _define(self) -> None:
        command, self._command = self._command, None
        if command is not None:
            command.define(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        self._define()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._define()
        return super().format_help()

    def format_usage(self) -> str:
        self._define()
        return super().format_usage()
