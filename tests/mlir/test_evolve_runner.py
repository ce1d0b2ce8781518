"""Sandboxed compile and run: failures come back as structured results, the caller survives."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.mlir.iree_runner import RuntimeComparison, VariantFailure, Worker, compile_program, measure_runtime, run_program
from tests.mlir.evolve_helpers import die_by_segfault
from tests.support.processes import child_outlives_killed_parent

pytestmark = pytest.mark.iree

BAD = """
func.func @hang(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %c0 = arith.constant 0 : index
  %one = arith.constant 1 : i64
  %z = arith.constant 0 : i64
  %x = tensor.extract %arg0[%c0] : tensor<4xf32>
  %r = scf.while (%i = %z) : (i64) -> i64 {
    %ok = arith.cmpf oeq, %x, %x : f32
    scf.condition(%ok) %i : i64
  } do {
  ^bb0(%i: i64):
    %n = arith.addi %i, %one : i64
    scf.yield %n : i64
  }
  %f = arith.sitofp %r : i64 to f32
  %t = tensor.from_elements %f, %f, %f, %f : tensor<4xf32>
  return %t : tensor<4xf32>
}
func.func @out_of_bounds(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %c0 = arith.constant 0 : index
  %x = tensor.extract %arg0[%c0] : tensor<4xf32>
  %i = arith.fptosi %x : f32 to i64
  %idx = arith.index_cast %i : i64 to index
  %y = tensor.extract %arg0[%idx] : tensor<4xf32>
  %t = tensor.from_elements %y, %y, %y, %y : tensor<4xf32>
  return %t : tensor<4xf32>
}
func.func @nan(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %d = arith.subf %arg0, %arg0 : tensor<4xf32>
  %n = arith.divf %d, %d : tensor<4xf32>
  return %n : tensor<4xf32>
}
func.func @double(%arg0: tensor<4xf32>) -> tensor<4xf32> {
  %d = arith.addf %arg0, %arg0 : tensor<4xf32>
  return %d : tensor<4xf32>
}
"""


@pytest.fixture(scope="module")
def bad_vmfb():
    return compile_program(BAD, timeout_s=120)


def _failure(fn, *args, **kwargs):
    with pytest.raises(VariantFailure) as info:
        fn(*args, **kwargs)
    return info.value.failure


def test_runtime_errors_hangs_and_nonfinite_are_failures(bad_vmfb, worker):
    x = np.ones(4, np.float32)
    assert np.array_equal(run_program(bad_vmfb, [[x]], worker=worker, function="double")[0][0], 2 * x)
    f = _failure(run_program, bad_vmfb, [[np.full(4, 1e15, np.float32)]], worker=worker, function="out_of_bounds")
    assert f.kind == "runtime" and "OUT_OF_RANGE" in f.message
    f = _failure(run_program, bad_vmfb, [[x]], worker=worker, function="nan")
    assert f.kind == "nonfinite"
    f = _failure(run_program, bad_vmfb, [[x]], worker=worker, function="hang", timeout_s=2)
    assert f.kind == "timeout"
    # the killed worker is replaced on the next call
    assert np.array_equal(run_program(bad_vmfb, [[x]], worker=worker, function="double")[0][0], 2 * x)


def test_worker_crash_is_reported_with_its_signal():
    with Worker() as w:
        f = _failure(w.call, die_by_segfault, timeout_s=60)
        assert f.kind == "crash" and f.signal == 11
        assert w.call(int, "7", timeout_s=60) == 7


def test_a_sandbox_that_imported_an_unguarded_script_stops_the_caller_with_the_cause():
    """A child that exits with the unguarded-script code is not a variant's crash: every variant
    would crash alike, so the call raises, naming the fix."""
    import sys

    from evoforge.errors import EvaluationError
    from evoforge.execute.base import UNGUARDED_SCRIPT_EXIT

    with Worker() as w, pytest.raises(EvaluationError, match="if __name__ == "):
        w.call(sys.exit, UNGUARDED_SCRIPT_EXIT, timeout_s=60)


_SANDBOX_DRIVER = """
import threading, time
from evoforge.mlir.iree_runner import Worker

if __name__ == "__main__":
    worker = Worker()
    threading.Thread(target=lambda: worker.call(time.sleep, 120, timeout_s=600), daemon=True).start()
    while worker._proc is None or worker._proc.pid is None:
        time.sleep(0.05)
    print(worker._proc.pid, flush=True)
    time.sleep(300)
"""


def test_the_sandbox_ends_when_its_parent_is_killed(tmp_path):
    """A program that hangs must not outlive the evaluation worker that ran it."""
    assert not child_outlives_killed_parent(_SANDBOX_DRIVER, tmp_path)


def test_compile_failure_is_structured():
    f = _failure(compile_program, "func.func @main(%a: tensor<4xf32>) -> tensor<4xf32> { return %b }")
    assert f.kind == "compile" and "error" in f.message
    f = _failure(compile_program, BAD, timeout_s=0.01)
    assert f.kind == "compile_timeout"


def test_measure_runtime_interleaves_against_baseline(bad_vmfb, worker):
    cmp = measure_runtime(bad_vmfb, bad_vmfb, [np.ones(4, np.float32)], repeats=5, worker=worker, function="double")
    assert cmp.variant_s > 0 and cmp.baseline_s > 0
    assert 0.05 < cmp.ratio < 20 and cmp.paired_ratio == cmp.ratio


def test_the_ratio_compares_the_calls_of_each_round_so_a_load_burst_over_both_cancels():
    """Rounds 3-4 ran in a burst that slowed both calls, round 5's only the baseline's: the medians
    of the two lists say the variant is twice as fast, the rounds say it is as fast."""
    cmp = RuntimeComparison.from_rounds([1.0, 1.0, 2.0, 2.0, 1.0], [1.0, 1.0, 2.0, 2.0, 2.0])
    assert (cmp.variant_s, cmp.baseline_s) == (1.0, 2.0)
    assert cmp.ratio == 1.0 and cmp.variant_s / cmp.baseline_s == 0.5
    assert RuntimeComparison(variant_s=1.0, baseline_s=4.0).ratio == 0.25  # no rounds: the ratio of the medians
    with pytest.raises(ValueError, match="got 2 and 1"):
        RuntimeComparison.from_rounds([1.0, 1.0], [1.0])
