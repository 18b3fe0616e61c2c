"""Argument types and the one-line-error parser shared by the command line."""

import argparse


class UsageError(ValueError):
    """A user error, reported as one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def number_type(cast, expected: str, is_valid, rule: str):
    """An argparse type: ``cast`` the text, then require ``is_valid(value)`` ("must be RULE")."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not is_valid(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


positive_int = number_type(int, "a positive integer", lambda v: v >= 1, "at least 1")
positive_float = number_type(float, "a positive number", lambda v: v > 0, "positive")
non_negative_int = number_type(int, "an integer", lambda v: v >= 0, "at least 0")
non_negative_float = number_type(float, "a number", lambda v: v >= 0, "at least 0")
