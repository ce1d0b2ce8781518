"""Re-verify an exported artifact the way a user would meet it: loaded by its runtime in a fresh
Python process that has run nothing else, scored on the test split and timed against the run's
fp32 reference artifact.

`verify_in_fresh_process` runs ``python -m evoforge.compression.verify`` with the job as JSON on
stdin and reads the result as JSON from its stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evoforge.errors import EvaluationError

TIMEOUT_S = 1800.0


def verify_in_fresh_process(job: Mapping[str, Any], timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """`verify_artifact` (``job`` holds its arguments) in a new interpreter; raises
    `EvaluationError` with the child's last error line when it fails or runs past ``timeout_s``."""
    try:
        proc = subprocess.run([sys.executable, "-m", "evoforge.compression.verify"], input=json.dumps(dict(job)),
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EvaluationError(f"re-verifying {job['path']} took longer than {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise EvaluationError(f"re-verifying {job['path']} in a fresh process failed: {lines[-1] if lines else proc.returncode}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def verify_artifact(runtime: str, path: str, reference_runtime: str, reference_path: str, task: Mapping[str, Any],
                    root: str, repeats: int, threads: int = 1) -> dict[str, Any]:
    """Load ``path`` with ``runtime`` (no model code involved): its quality on the task's test
    split, the number of test examples, and its latency ratios with ``threads`` threads against
    the fp32 reference at batch 1 and at the task's latency batch."""
    from evoforge.compression.measure import measure_latency
    from evoforge.runtimes import get_runtime
    from evoforge.workload import task as tasks
    from evoforge.workload.inputs import ExportedModel, to_tensors

    spec_task = tasks.Task.from_dict(dict(task))
    splits = tasks.load_splits(spec_task, Path(root))
    module = get_runtime(runtime).load(path)
    test = tasks.quality(spec_task, ExportedModel(module, splits.input_spec), splits.test, root=Path(root))
    inputs = splits.input_spec.flatten(to_tensors(tasks.example_input(splits, spec_task.latency_batch)))
    timed = get_runtime(runtime).load(path, threads=threads)
    reference = get_runtime(reference_runtime).load(reference_path, threads=threads)
    latency = measure_latency(timed, reference, inputs, repeats=repeats, threads=threads)
    return {
        "test": test,
        "test_examples": len(splits.test),
        "latency": {"ratio_b1": latency.b1.ratio, "ratio_batch": latency.batch.ratio, "batch_ms": latency.batch.candidate_ms},
    }


def main() -> None:
    print(json.dumps(verify_artifact(**json.load(sys.stdin))))


if __name__ == "__main__":
    main()
