"""Pure content stages: bytes in, articles and feeds out (no I/O)."""
