"""Segment equivalence (paper §4.2): interchangeable model segments and the models they synthesize.

- `sequences`: operator sequences of an ONNX graph, parallel regions collapsed into composite tokens;
- `lcs`: candidate segments = common runs of two models' sequence sets (O(N²) dynamic programming);
- `error_bound`: the layer-wise output-difference bound through a segment pair;
- `noise_effect`: the whole-model effect by noise injection, dropping segments until within ε;
- `synthesis`: model N with segment S_N replaced by S_M, as a runnable ONNX file;
- `analysis`: the steps above for one (reference, candidate) pair, as one typed record;
- `candidates`: the compare stage's per-model record and the synthesized-candidates table (their hits
  in query answers are `sommelier_core.querying.synthesized`).
"""
