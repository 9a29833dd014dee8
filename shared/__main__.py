"""`python -m shared`: the operator CLI."""

from shared.cli import run

run()
