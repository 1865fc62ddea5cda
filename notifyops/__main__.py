"""`python -m notifyops` is the `notifyops` command."""

from notifyops.launch import entry_point

entry_point()
