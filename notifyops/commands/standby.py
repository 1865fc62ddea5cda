"""`notifyops standby`: a process with Prefect and the flows loaded; commands run in its forks."""

from __future__ import annotations

import os
import sys


def standby() -> None:
    """Keep Prefect, the flows and the library loaded; commands then start in a fraction of a
    second.

    Every `notifyops` command started afterwards in the same environment (same PREFECT_*
    settings, NOTIFY_TEMPLATES_DIR and Python) runs in a fork of this process instead of loading
    everything itself (2-4 s): a `send` is then an ordinary flow run, shown in the UI, that starts
    at once. Other commands, and every command when no standby runs, run as before. It restarts
    itself when the code, the templates or the installed packages change. The socket is
    NOTIFY_STANDBY_SOCKET (default: one per user and Python in the temp directory);
    NOTIFY_STANDBY=off makes commands ignore it.
    Run it in the background (`notifyops standby &`) or as a service; Ctrl-C stops it.
    """
    # the standby must not have loaded the command line's console (it belongs to the terminal of
    # each command): start it afresh through the launcher, which loads nothing else
    os.execv(sys.executable, [sys.executable, "-m", "notifyops", "standby"])
