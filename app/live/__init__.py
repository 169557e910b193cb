"""Live feedback while a test is typed: the session's state, its metrics so far and the hint rules (no I/O)."""
