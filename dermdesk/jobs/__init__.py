"""Background jobs: spawned worker processes, progress, cancel, resume."""
