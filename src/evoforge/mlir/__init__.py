"""GEVO-ML: evolutionary edits of a model's compiled MLIR program, compiled and run with IREE.

Modules (import them directly; this package import stays free of IREE and torch):

- `program`: `Program` (pristine MLIR with a stable UID on every op) and its loaders.
- `edits`: the edits as pure data, `EditListGenome` (genome type ``"mlir-edits"``) and `crossover`.
- `mutate`: `random_edit`, `apply_edits` (replay with use-def and shape repair).
- `narrow`: the type-changing resize (per-op rules that carry a smaller shape forward).
- `iree_runner`: compile with a timeout, run in a sandboxed worker process, time against a baseline.
- `describe`: words and a unified diff for an edit list.
- `train_program`: exported 2fcNet training-step and predict programs, and running them.
"""
