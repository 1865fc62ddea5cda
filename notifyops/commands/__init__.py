"""The command groups of `notifyops`."""
