"""PETRA: evolve compression pipelines (prune, low-rank, int8 quantization, fine-tune) of PyTorch models.

Importing this package does not import torch; the stage, training and measurement modules do.
"""
