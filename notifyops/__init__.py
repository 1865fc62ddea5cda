"""notifyops: the command line on top of flows/, tasks/ and the notify library."""
