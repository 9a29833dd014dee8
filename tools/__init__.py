"""Development tools (never deployed)."""
