"""Runbook actions: what an operator does to resolve what the monitoring found.

purge (stale queued rows become `purged`), redrive (failed rows back in the queue, recorded under a
redrive id), decide (an `unknown` row recorded as sent or not sent, without sending), acknowledge
(receipts of ours matching no row, looked into: no longer data loss), suppressions (mute,
unmute, list), inbox (the in-app feed a web portal reads) and indexes (declared indexes missing
or invalid on a database). Every action that changes data takes
an `Actor` and leaves an `operator_actions` row (audit_trail): who, when, filters, counts.
Nothing is deleted; statuses move forward only.
"""
