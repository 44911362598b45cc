"""Profiling (paper §5.3, §5.5): what a model costs — static figures, measured latency, operator tables, estimates."""
