"""patrol_sim."""
