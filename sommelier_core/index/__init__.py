"""The two indexes (paper §5.2–5.3): semantic candidate lists and per-device resource figures."""
