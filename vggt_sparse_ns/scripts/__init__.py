"""Command-line entry points (kept light: each command imports its machinery only when it runs)."""
