"""Supervisor web console (issue 7): server-rendered pages under ``/console``."""
