"""The workload layer both domains share: models, data, inputs, metrics, training and tasks.

- `inputs`: model inputs of any structure (tensor, tuple, dict), `call_model`, `InputSpec`;
- `data`: `Split` / `Splits` over arrays, tensors, Datasets and DataLoaders, read in batches;
- `datasets`: bundled and generated datasets; `models`: built-in models;
- `metrics`: label metrics with directions; `recipe` and `training`: the training recipe, losses,
  optimizers and the train loop;
- `task`: `Task` (model + data + quality measure), its loaders, and `materialize` / fingerprints
  that make a run self-contained;
- `callables`: ``pkg.module:function`` specs and the one place objects are stored in a run.

Submodules import torch; import them directly (this package's own import is light).
"""
