"""Real architectures: resnet18-img32 (torchvision's ResNet-18 on generated 3x32x32 colour digits)
and bert-tokens (a small BERT from a transformers config on generated token sequences), 30
minutes each on 2 workers.

Targets on the test split, for each task: a front member with >= 85% size reduction at <= 1
accuracy point drop, one with >= 50% latency reduction at <= 1 point, and no failed candidate.

    python benchmarks/compress_real.py [--tasks resnet18-img32,bert-tokens] [--budget 30m] [--workers 2]
"""

from _compress_common import benchmark_args, run_benchmark

TARGETS = [
    {"name": "size -85% at <=1pt", "objective": "size_ratio", "max_ratio": 0.15, "max_drop": 1.0},
    {"name": "latency@B -50% at <=1pt", "objective": "latency_ratio", "max_ratio": 0.5, "max_drop": 1.0},
]

if __name__ == "__main__":
    parser = benchmark_args("30m")
    parser.add_argument("--tasks", default="resnet18-img32,bert-tokens")
    args = parser.parse_args()
    results = []
    prefix = args.run
    for task in args.tasks.split(","):
        args.run = f"{prefix}-{task}" if prefix else None
        results.append(run_benchmark(task, "30m", TARGETS, metric="accuracy", relative=False, args=args))
    for r in results:
        met = all(t["met"] for t in r["targets"].values()) and r["failed"] == 0
        print(f"{r['task']}: {'ALL TARGETS MET' if met else 'targets missed'}; {r['evaluations']} evaluations, {r['failed']} failed")
