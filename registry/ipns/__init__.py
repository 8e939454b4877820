"""ipns."""
