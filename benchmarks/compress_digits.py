"""digits-cnn compression benchmark (30-minute budget, 2 workers).

Targets on the test split: a front member with >= 85% size reduction at <= 1 accuracy point
drop, and one with >= 50% latency reduction at batch 64 at <= 1 point drop.

    python benchmarks/compress_digits.py [--budget 30m] [--workers 2]
"""

from _compress_common import run_benchmark

if __name__ == "__main__":
    run_benchmark(
        "digits-cnn",
        "30m",
        [
            {"name": "size -85% at <=1pt", "objective": "size_ratio", "max_ratio": 0.15, "max_drop": 1.0},
            {"name": "latency@64 -50% at <=1pt", "objective": "latency_ratio", "max_ratio": 0.5, "max_drop": 1.0},
        ],
        metric="accuracy",
        relative=False,
    )
