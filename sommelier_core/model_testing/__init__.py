"""Model testing with equivalent variants (paper §2 (iii), §6 "DNN testing").

A model under test gets N functionally equivalent variants from a query (`FIND N MODELS LIKE m WITHIN ε`);
inputs on which the variants disagree with it are the suspicious ones (corrupted, out of distribution,
near a decision boundary) — a detector built by a query instead of by hand for every model.

- `variants`: `DisagreementTester` — the variants, their outputs, and each input's disagreement scores.
"""

from sommelier_core.model_testing.variants import DisagreementScores, DisagreementTester, pick_variants

__all__ = ["DisagreementScores", "DisagreementTester", "pick_variants"]
