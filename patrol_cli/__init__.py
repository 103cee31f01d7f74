"""patrol_cli."""
