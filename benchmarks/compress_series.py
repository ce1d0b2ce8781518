"""series-regression compression benchmark.

Target on the test split: a front member with >= 70% size reduction at <= 5% RMSE increase.

    python benchmarks/compress_series.py [--budget 15m] [--workers 2]
"""

from _compress_common import run_benchmark

if __name__ == "__main__":
    run_benchmark(
        "series-regression",
        "15m",
        [{"name": "size -70% at <=5% RMSE", "objective": "size_ratio", "max_ratio": 0.30, "max_drop": 5.0}],
        metric="rmse",
        relative=True,
    )
