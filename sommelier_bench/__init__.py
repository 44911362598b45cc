"""Benchmark workloads and test oracles: synthetic repositories, reference architectures, brute-force answers.

Apart from the runtime packages: nothing in `sommelier_core` imports it.
"""
