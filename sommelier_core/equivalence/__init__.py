"""Functional equivalence of whole models (paper §4.1): outputs, comparisons, cushions, peers and bounds."""
