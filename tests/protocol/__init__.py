"""Tests of patrol_protocol (a package, so module names never clash with other test dirs)."""
