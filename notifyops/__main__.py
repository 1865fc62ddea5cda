"""`python -m notifyops` is the `notifyops` command."""

from notifyops.cli import entry_point

entry_point()
