"""Kept for imports written before the move: the code lives in :mod:`remaster.headless.cli`."""
from .headless.cli import *  # noqa: F401,F403
from .headless import cli as _impl

globals().update({k: v for k, v in vars(_impl).items() if not k.startswith("__")})
