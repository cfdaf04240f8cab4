"""Setting checks the stages share: a value out of its range or not one of its choices raises one
line naming the setting, what is accepted and what was given."""
from __future__ import annotations

__all__ = ["one_of", "within"]


def within(error: type, name: str, value, lo, hi, unit: str = "") -> None:
    """Raise ``error`` unless ``lo <= value <= hi`` (``unit`` follows the range: " frames")."""
    if not lo <= value <= hi:
        raise error(f"{name} must be within {lo}..{hi}{unit}, got {value}")


def one_of(error: type, name: str, value, choices) -> None:
    """Raise ``error`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise error(f"{name} must be one of {', '.join(choices)}, got '{value}'")
