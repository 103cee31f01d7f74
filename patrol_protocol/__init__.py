"""patrol_protocol."""
