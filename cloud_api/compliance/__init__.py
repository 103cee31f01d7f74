"""Compliance engine (issue 6): post targets, shifts, explained shift scores, rule breaches.

Pure scoring lives in ``targets``, ``shifts``, ``engine``, ``rules`` and
``explain`` (values in, values out, no I/O); ``store`` reads inputs from and
writes scores to the relational store; ``types`` holds the shared value types
the workflow side imports. See docs/scoring.md.
"""
