"""Compile GEVO-ML variants with IREE and run them in a sandboxed worker process.

A mutated program can make ``iree-compile`` loop, crash the runtime or hang it, so compilation
runs ``iree-compile`` as a subprocess with a timeout and execution runs in a `Worker` child
process (spawn start method) that is killed on timeout and restarted after a crash. Problems
come back as a `Failure` (kind and one-line reason); the caller survives all of them.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evoforge.errors import EvaluationError
from evoforge.execute.base import UNGUARDED_SCRIPT_EXIT, describe_exit, exit_with_parent

if TYPE_CHECKING:
    from evoforge.mlir.edits import Edit
    from evoforge.mlir.program import Program

FailureKind = Literal["edit", "compile", "compile_timeout", "runtime", "crash", "timeout", "nonfinite"]

HOST_CPU_FLAGS = ("--iree-llvmcpu-target-cpu=host",)
_DRIVERS = {"llvm-cpu": "local-task", "vmvx": "local-task", "cuda": "cuda", "rocm": "hip", "vulkan-spirv": "vulkan"}


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a variant is invalid: ``kind`` (edit = did not apply or verify, compile,
    compile_timeout, runtime = the program raised, crash = the worker died, ``signal`` set
    when it was killed by one, timeout = the worker hung and was killed, nonfinite = NaN/inf
    output) and a one-line ``message``."""

    kind: FailureKind
    message: str
    signal: int | None = None


class VariantFailure(EvaluationError):
    """Raised by the compile/run helpers; ``failure`` holds the structured reason."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.kind}: {failure.message}")
        self.failure = failure


def default_driver(target: str) -> str:
    """The IREE runtime driver for a compile target backend."""
    return _DRIVERS.get(target, "local-task")


def compile_program(
    text: str | bytes,
    *,
    input_type: str = "auto",
    target: str = "llvm-cpu",
    extra_flags: Sequence[str] = (),
    timeout_s: float = 120.0,
) -> bytes:
    """Compile MLIR (text or bytecode) to a vmfb with ``iree-compile`` in a subprocess.

    ``llvm-cpu`` compiles for the host CPU (``--iree-llvmcpu-target-cpu=host``); other targets
    (e.g. ``cuda`` with ``--iree-cuda-target=sm_90`` in ``extra_flags``) pass flags through.
    Raises `VariantFailure` (kind compile or compile_timeout).
    """
    from iree.compiler.tools.binaries import find_tool

    flags = [f"--iree-hal-target-backends={target}", f"--iree-input-type={input_type}",
             "--iree-global-opt-enable-warn-on-uninitialized-values=false"]
    if target == "llvm-cpu":
        flags += HOST_CPU_FLAGS
    data = text.encode() if isinstance(text, str) else text
    try:
        proc = subprocess.run([find_tool("iree-compile"), "-", *flags, *extra_flags, "-o", "-"],
                              input=data, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise VariantFailure(Failure("compile_timeout", f"iree-compile ran longer than {timeout_s:g} s")) from None
    if proc.returncode != 0:
        raise VariantFailure(Failure("compile", _first_error(proc.stderr.decode(errors="replace"))))
    return proc.stdout


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    return ((errors or lines or ["iree-compile failed without a message"])[0])[:400]


# -------------------------------------------------------------------------------------- worker


def _worker_main(conn: Any, parent_pid: int) -> None:
    exit_with_parent(parent_pid)  # a program that hangs must not outlive the worker that ran it
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        fn, args = msg
        try:
            conn.send(("ok", fn(*args)))
        except Exception as exc:  # every program error goes back as a result
            conn.send(("error", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"))


class Worker:
    """A long-lived child process that runs picklable module-level functions.

    `call` returns the function's result or raises `VariantFailure`: ``runtime`` when the
    function raised, ``crash`` when the child died (it is restarted on the next call),
    ``timeout`` when it did not answer in time (it is killed). Not thread-safe.
    """

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_main, args=(child, os.getpid()), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float) -> Any:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((fn, args))
            ready = self._conn.poll(timeout_s)
        except (BrokenPipeError, EOFError, ConnectionResetError):
            ready = True
        if not ready:
            self.close(kill=True)
            raise VariantFailure(Failure("timeout", f"no answer within {timeout_s:g} s; worker killed"))
        try:
            status, payload = self._conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            self._proc.join(5)
            code = self._proc.exitcode
            self.close(kill=True)
            if code == UNGUARDED_SCRIPT_EXIT:
                raise EvaluationError(f"an IREE worker died while starting: {describe_exit(code)}") from None
            sig = -code if code is not None and code < 0 else None
            raise VariantFailure(Failure("crash", f"worker died ({describe_exit(code)})", signal=sig)) from None
        if status == "error":
            raise VariantFailure(Failure("runtime", payload))
        return payload

    def close(self, *, kill: bool = False) -> None:
        """Stop the child (politely unless ``kill``)."""
        if self._proc is None:
            return
        if not kill and self._proc.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------- functions run in a worker


def _load(vmfb: bytes, driver: str, function: str) -> Callable[..., Any]:
    import iree.runtime as rt

    module = rt.load_vm_flatbuffer(vmfb, driver=driver)
    return getattr(module, function)  # type: ignore[no-any-return]


def _to_host(result: Any) -> list[np.ndarray]:
    items = result if isinstance(result, (list, tuple)) else [result]
    return [np.array(r.to_host() if hasattr(r, "to_host") else r) for r in items]


def run_batches(vmfb: bytes, driver: str, function: str, batches: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    """(In a worker.) Load ``vmfb`` and call ``function`` once per batch of positional inputs."""
    f = _load(vmfb, driver, function)
    return [_to_host(f(*inputs)) for inputs in batches]


def time_round_robin(vmfbs: Sequence[bytes], driver: str, function: str, inputs: Sequence[np.ndarray],
                     repeats: int) -> list[list[float]]:
    """(In a worker.) After one warm-up call each, ``repeats`` rounds of one timed call per
    module, rotating which goes first every round; returns each module's list of seconds."""
    fns = [_load(v, driver, function) for v in vmfbs]
    for fn in fns:
        _to_host(fn(*inputs))
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for i in [(r + k) % len(fns) for k in range(len(fns))]:
            t0 = time.perf_counter()
            _to_host(fns[i](*inputs))
            times[i].append(time.perf_counter() - t0)
    return times


def time_interleaved(
    vmfb: bytes, base_vmfb: bytes, driver: str, function: str, inputs: Sequence[np.ndarray], repeats: int
) -> tuple[list[float], list[float]]:
    """(In a worker.) `time_round_robin` of a variant and the baseline (the order flips every
    round); returns both lists of seconds."""
    tf, tg = time_round_robin([vmfb, base_vmfb], driver, function, inputs, repeats)
    return tf, tg


# ------------------------------------------------------------------------------- public helpers


def paired_ratio(times_s: Sequence[float], baseline_s: Sequence[float]) -> float:
    """The median over rounds of a round's time over the baseline's time in the same round (the
    lists hold one time per round, in round order, at least one)."""
    if len(times_s) != len(baseline_s) or not times_s:
        raise ValueError(f"need as many timings as baseline timings, at least one; got {len(times_s)} and {len(baseline_s)}")
    return statistics.median(t / b for t, b in zip(times_s, baseline_s))


@dataclasses.dataclass(frozen=True)
class RuntimeComparison:
    """Median seconds per call of a variant and of the baseline, measured interleaved in one
    process, and their ratio (variant / baseline; below 1 is faster). Built `from_rounds`, the ratio
    is the median over rounds of the two calls' ratio within a round, which run back to back: a load
    burst that slows both calls of some rounds leaves it alone, where it can move the ratio of the two
    medians far (an identical program timed 0.60 against itself that way while a test suite ran).
    Without rounds (``paired_ratio`` None) it is the ratio of the medians."""

    variant_s: float
    baseline_s: float
    paired_ratio: float | None = None

    @classmethod
    def from_rounds(cls, variant_s: Sequence[float], baseline_s: Sequence[float]) -> RuntimeComparison:
        """From the seconds of each round's variant call and baseline call (same length, same order)."""
        ratio = paired_ratio(variant_s, baseline_s)
        return cls(statistics.median(variant_s), statistics.median(baseline_s), ratio)

    @property
    def ratio(self) -> float:
        return self.paired_ratio if self.paired_ratio is not None else self.variant_s / self.baseline_s


def run_program(
    vmfb: bytes, batches: Sequence[Sequence[np.ndarray]], *, worker: Worker, driver: str = "local-task",
    function: str = "main", timeout_s: float = 60.0, check_finite: bool = True,
) -> list[list[np.ndarray]]:
    """Run ``vmfb`` on each batch in ``worker``; raises `VariantFailure` (runtime, crash,
    timeout, or nonfinite when ``check_finite`` and an output holds NaN/inf)."""
    outputs: list[list[np.ndarray]] = worker.call(run_batches, vmfb, driver, function, list(batches), timeout_s=timeout_s)
    if check_finite:
        for outs in outputs:
            for o in outs:
                if o.dtype.kind == "f" and not np.all(np.isfinite(o)):
                    raise VariantFailure(Failure("nonfinite", "output contains NaN or infinite values"))
    return outputs


def measure_runtime(
    vmfb: bytes, original_vmfb: bytes, batch: Sequence[np.ndarray], repeats: int = 20, *, worker: Worker,
    driver: str = "local-task", function: str = "main", timeout_s: float = 60.0,
) -> RuntimeComparison:
    """Interleaved runtimes of a variant and the original on one batch (see `time_interleaved`),
    compared round by round (`RuntimeComparison.from_rounds`); raises `VariantFailure` like
    `run_program`."""
    tf, tg = worker.call(time_interleaved, vmfb, original_vmfb, driver, function, list(batch), repeats, timeout_s=timeout_s)
    return RuntimeComparison.from_rounds(tf, tg)


@dataclasses.dataclass(frozen=True)
class VariantResult:
    """Outcome of `evaluate_variant`: on success ``outputs`` (per batch, per result), the
    ``vmfb`` and, when a baseline was given, ``runtime``; otherwise ``failure``.
    ``compile_s`` and ``run_s`` are wall seconds spent (0 when not reached)."""

    outputs: list[list[np.ndarray]] | None
    vmfb: bytes | None
    runtime: RuntimeComparison | None
    failure: Failure | None
    compile_s: float = 0.0
    run_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None


def evaluate_variant(
    program: Program,
    edits: Sequence[Edit],
    batches: Sequence[Sequence[np.ndarray]],
    *,
    worker: Worker,
    baseline_vmfb: bytes | None = None,
    timing_batch: Sequence[np.ndarray] | None = None,
    repeats: int = 20,
    target: str = "llvm-cpu",
    extra_flags: Sequence[str] = (),
    driver: str | None = None,
    compile_timeout_s: float = 120.0,
    run_timeout_s: float = 60.0,
) -> VariantResult:
    """Replay ``edits`` on ``program`` (a `Program`), compile, run every batch in ``worker``
    and, with ``baseline_vmfb``, time the variant against it on ``timing_batch`` (default:
    the first batch). Never raises for a bad variant: the reason is in ``failure``."""
    from evoforge.mlir.edits import EditError
    from evoforge.mlir.mutate import apply_edits

    drv = driver or default_driver(target)
    try:
        text = apply_edits(program, edits)
    except EditError as exc:
        return VariantResult(None, None, None, Failure("edit", str(exc)))
    t0 = time.perf_counter()
    try:
        vmfb = compile_program(text, input_type=program.input_type, target=target, extra_flags=extra_flags,
                               timeout_s=compile_timeout_s)
    except VariantFailure as exc:
        return VariantResult(None, None, None, exc.failure, compile_s=time.perf_counter() - t0)
    t1 = time.perf_counter()
    try:
        outputs = run_program(vmfb, batches, worker=worker, driver=drv, function=program.entry, timeout_s=run_timeout_s)
        runtime = None
        if baseline_vmfb is not None:
            runtime = measure_runtime(vmfb, baseline_vmfb, timing_batch or batches[0], repeats, worker=worker,
                                      driver=drv, function=program.entry, timeout_s=run_timeout_s)
    except VariantFailure as exc:
        return VariantResult(None, vmfb, None, exc.failure, t1 - t0, time.perf_counter() - t1)
    return VariantResult(outputs, vmfb, runtime, None, t1 - t0, time.perf_counter() - t1)
