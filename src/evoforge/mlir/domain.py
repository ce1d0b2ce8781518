"""The GEVO-ML domain: genomes are edit lists over a pristine MLIR program; evaluation replays
them, compiles with IREE, runs the validation inputs in a sandboxed runtime process, and times the
variant against the original program, interleaved, under the host-wide measurement lock."""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from evoforge.errors import ConfigError
from evoforge.genome import Genome
from evoforge.layout import KEEP_ARTIFACTS, RunLayout
from evoforge.machine import MACHINE_METRIC, machine_name, machines_note
from evoforge.mlir.batch_check import COUPLING_LIMIT, batch_coupling, can_check, mixed_batches
from evoforge.mlir.edits import (  # (importing it registers the genome type)
    EDIT_KINDS,
    TORCH_ONLY_KINDS,
    EditListGenome,
    check_crossover_cut,
    check_edit_kinds,
    check_target_weighting,
    crossover,
)
from evoforge.pareto import Objective, check_limit, objective_names
from evoforge.registry import Registry
from evoforge.search.domain import Domain, EvalContext, Mutation, register_domain
from evoforge.search.evaluation import Evaluation, Status

OBJECTIVE_NAMES = ("runtime_ratio", "error", "size_ratio")
_FAILURE_STATUS = {"timeout": Status.TIMEOUT, "compile_timeout": Status.TIMEOUT, "crash": Status.CRASHED}


DIFF_LINES = 400
"""Diff lines a report shows per member."""
COMPILE_TIMEOUT_FACTOR = 5
"""A variant may compile for this many times the original program's compile time (measured when
the run prepares, ``original_compile_s`` in its config) where that exceeds ``compile_timeout_s``."""
RETIME_FACTOR = 3
"""Front members are re-timed at the end of a run with up to this many times the run's repeats..."""
RETIME_SECONDS = 20.0
"""...as far as that fits in this many seconds per member (never fewer than the run's repeats)."""
CONFIRM_BELOW = 0.97
"""A prediction variant first timed below this ratio to the original is timed a second time, and
the search sees the slower of the two timings (the first is kept as ``first_runtime_ratio``, the
second as ``second_runtime_ratio``). The search keeps the variants that timed fastest, so their
first timings are biased low (the winner's curse: on mobilenet-img32 the best variants of two runs
timed 1.16x and 1.31x faster in the search and 0.99x and 1.06x when re-timed). A second timing is not
biased by that choice, but it can land in a load spike on the original's side; taking the slower one
means a fluke must happen twice to pass (on ResNet-50 a 0.894 first timing was "confirmed" at 0.682
and re-timed at 0.89)."""


@register_domain
class EvolveDomain(Domain):
    """Configured by the objectives (``runtime_ratio`` and ``error`` by default, ``size_ratio`` optional: compiled
    module bytes), an optional error ceiling ``max_error_increase`` (accuracy points, or percent of
    output deviation when no labels exist), the edit operators to use (``edit_kinds``, default all of
    `EDIT_KINDS`) and how they draw their targets (``edit_targets``, one of `TARGET_WEIGHTINGS`),
    where crossover cuts (``crossover``, one of `CROSSOVER_CUTS`), whether prediction variants
    whose outputs depend on an example's batch-mates are rejected (``batch_check``; the original's
    own coupling is measured once, ``original_batch_coupling``), the IREE target and flags, and
    the timeouts. The program is the one prepared in the run's ``program/`` folder (see
    `evoforge.mlir.sources`)."""

    name = "evolve"
    writes_report = True
    measures_front = True
    run_defaults: ClassVar[dict[str, Any]] = {"algorithm": "nsga2", "pop_size": 16, "budget": "10m", "workers": 1, "timeout_s": 600.0}

    def __init__(
        self,
        objectives: Sequence[str] = ("runtime_ratio", "error"),
        max_error_increase: float | None = None,
        target: str = "llvm-cpu",
        extra_flags: Sequence[str] = (),
        compile_timeout_s: float = 120.0,
        run_timeout_s: float = 60.0,
        repeats: int = 15,
        original_error: float | None = None,
        driver: str | None = None,
        edit_kinds: Sequence[str] = EDIT_KINDS,
        compile_cache_mb: float = 1024.0,
        edit_targets: str = "uniform",
        keep_artifacts: str = "front",
        branch_sweep: int = 8,
        crossover: str = "halves",
        batch_check: bool = True,
        original_batch_coupling: float | None = None,
        original_compile_s: float | None = None,
    ) -> None:
        self.edit_kinds = check_edit_kinds(edit_kinds)
        if keep_artifacts not in KEEP_ARTIFACTS:  # a variant's vmfb; ResNet-50's is 90 MB
            raise ConfigError(f"keep_artifacts must be one of {', '.join(KEEP_ARTIFACTS)}, got {keep_artifacts!r}")
        self.keep_artifacts = keep_artifacts
        if not isinstance(branch_sweep, int) or branch_sweep < 0:
            raise ConfigError(f"branch_sweep must be a whole number >= 0 (0 turns the warm starts off), got {branch_sweep!r}")
        self.branch_sweep = branch_sweep
        self.crossover_cut = check_crossover_cut(crossover)
        if not isinstance(batch_check, bool):
            raise ConfigError(f"batch_check must be true or false, got {batch_check!r}")
        self.batch_check = batch_check
        self.original_batch_coupling = original_batch_coupling
        self._warm: list[Genome] | None = None
        self.edit_targets = check_target_weighting(edit_targets)
        if compile_cache_mb < 0:
            raise ConfigError(f"compile_cache_mb must be >= 0 (0 turns the cache off), got {compile_cache_mb}")
        self.compile_cache_mb = compile_cache_mb
        check_limit("max_error_increase", max_error_increase)
        self.objective_names = objective_names(objectives, OBJECTIVE_NAMES)
        self.max_error_increase = max_error_increase
        self.target = target
        self.extra_flags = list(extra_flags)
        if compile_timeout_s <= 0:
            raise ConfigError(f"compile_timeout_s must be > 0 seconds, got {compile_timeout_s!r}")
        self.compile_timeout_s = compile_timeout_s
        self.original_compile_s = original_compile_s
        self.run_timeout_s = run_timeout_s
        self.repeats = repeats
        self.original_error = original_error
        # single-threaded runtime for llvm-cpu: thread pools of two loaded modules disturb each other's timing
        self.driver = driver or ("local-sync" if target == "llvm-cpu" else None)
        self.constraints = ("error_increase_limit",) if max_error_increase is not None else ()
        self._mutations: Registry[Mutation] = Registry("mutation operator")
        for kind in self.edit_kinds:
            self._mutations.add(kind, self._mutation(kind))
        self._program: Any = None
        self._state: dict[str, Any] | None = None

    @property
    def variant_compile_timeout_s(self) -> float:
        """How long a variant may compile: ``compile_timeout_s``, or `COMPILE_TIMEOUT_FACTOR` times
        the original program's compile time when that is longer (a DenseNet-121 compiles in 35 s,
        and a loaded machine can take three times that for a valid variant)."""
        if self.original_compile_s is None:
            return self.compile_timeout_s
        return max(self.compile_timeout_s, COMPILE_TIMEOUT_FACTOR * self.original_compile_s)

    @property
    def objectives(self) -> tuple[Objective, ...]:  # type: ignore[override]
        error_ref = 1.0
        if self.original_error is not None:
            slack = (self.max_error_increase / 100.0) if self.max_error_increase is not None else 0.25
            error_ref = self.original_error + slack + 1e-9
        refs = {"runtime_ratio": 1.1, "error": error_ref, "size_ratio": 1.1}
        return tuple(Objective(n, reference=refs[n]) for n in self.objective_names)

    def config(self) -> dict[str, Any]:
        return {
            "objectives": self.objective_names,
            "max_error_increase": self.max_error_increase,
            "target": self.target,
            "extra_flags": self.extra_flags,
            "compile_timeout_s": self.compile_timeout_s,
            "run_timeout_s": self.run_timeout_s,
            "repeats": self.repeats,
            "original_error": self.original_error,
            "driver": self.driver,
            "edit_kinds": self.edit_kinds,
            "compile_cache_mb": self.compile_cache_mb,
            "edit_targets": self.edit_targets,
            "keep_artifacts": self.keep_artifacts,
            "branch_sweep": self.branch_sweep,
            "crossover": self.crossover_cut,
            "batch_check": self.batch_check,
            "original_batch_coupling": self.original_batch_coupling,
            "original_compile_s": self.original_compile_s,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EvolveDomain:
        """Runs stored before ``keep_artifacts`` kept every variant's vmfb; before ``branch_sweep``
        they had no warm starts; before ``batch_check`` no variant was checked for it."""
        return cls(**{"keep_artifacts": "all", "branch_sweep": 0, "batch_check": False, **config})

    def prunes_artifacts(self) -> bool:
        return self.keep_artifacts == "front"

    @property
    def mutations(self) -> Mapping[str, Mutation]:
        """The run's edit operators that apply to its program (torch-only ones are left out for
        a linalg program)."""
        return {k: self._mutations[k] for k in self._kinds}

    @property
    def _kinds(self) -> list[str]:
        if self.layout is None or not (self.layout.program / "program.json").exists() or self.program.level == "torch":
            return list(self.edit_kinds)
        return [k for k in self.edit_kinds if k not in TORCH_ONLY_KINDS] or list(self.edit_kinds)

    # ------------------------------------------------------------------ program and meta
    @property
    def meta(self) -> dict[str, Any]:
        from evoforge.mlir.sources import read_meta

        return read_meta(self.require_layout().program)

    @property
    def program(self) -> Any:
        if self._program is None:
            from evoforge.mlir.sources import read_prepared

            self._program = read_prepared(self.require_layout().program)
        return self._program

    # ------------------------------------------------------------------ variation
    def _mutation(self, kind: str) -> Mutation:
        def mutate(genome: Genome, rng: np.random.Generator) -> Genome:
            from evoforge.mlir.edits import EditError
            from evoforge.mlir.mutate import random_edit

            assert isinstance(genome, EditListGenome)
            kinds = [kind] + [k for k in self._kinds if k != kind]
            for k in kinds:  # fall back to another kind when this one has no valid target
                try:
                    return genome.with_edit(random_edit(self.program, rng, k, edits=genome.edits, targets=self.edit_targets,
                                                        keep_examples_apart=self.checks_batches))
                except EditError:
                    continue
            return genome

        return mutate

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
        assert isinstance(a, EditListGenome) and isinstance(b, EditListGenome)
        c1, c2 = crossover(a.edits, b.edits, rng, self.crossover_cut)
        return EditListGenome(edits=c1), EditListGenome(edits=c2)

    def sample(self, rng: np.random.Generator) -> Genome:
        """1-3 random edits of random kinds."""
        genome: Genome = EditListGenome()
        kinds = self._kinds
        for _ in range(int(rng.integers(1, 4))):
            genome = self._mutations[kinds[int(rng.integers(len(kinds)))]](genome, rng)
        return genome

    def attach(self, layout: RunLayout | None) -> None:
        super().attach(layout)
        self._warm = None  # they depend on the run's program

    def warm_starts(self) -> list[Genome]:
        """In a torch-level program with joins (residual adds) and ``branch_sweep`` > 0: the
        variants without its last 1, 2, ..., ``branch_sweep`` branches (`mutate.branch_sweep`),
        when ``delete_block`` is among the run's operators."""
        if self._warm is None:
            self._warm = []
            if (self.branch_sweep and "delete_block" in self._kinds and self.layout is not None
                    and (self.layout.program / "program.json").exists() and self.program.level == "torch"):
                from evoforge.mlir.mutate import branch_sweep

                self._warm = [EditListGenome(edits=edits) for edits in branch_sweep(self.program, self.branch_sweep)]
        return list(self._warm)

    def initial_population(self, rng: np.random.Generator, size: int) -> list[Genome]:
        """The unedited program (the reference point), the warm starts (at most half of ``size``)
        and individuals of 1-3 random edits for the rest."""
        warm = self.warm_starts()[: max(0, size // 2)]
        return [EditListGenome(), *warm] + [self.sample(rng) for _ in range(size - 1 - len(warm))]

    def describe(self, genome: Genome) -> str:
        from evoforge.mlir.describe import describe_edits

        return "; ".join(describe_edits(self.program, genome.edits)) or "original program"  # type: ignore[attr-defined]

    def baseline_objectives(self) -> dict[str, float] | None:
        """The original program: runtime and size ratio 1, its own error (once prepared)."""
        values = {"runtime_ratio": 1.0, "size_ratio": 1.0, "error": self.original_error}
        if any(values[n] is None for n in self.objective_names):
            return None
        return {n: float(values[n]) for n in self.objective_names}  # type: ignore[arg-type]

    def genome_features(self, genome: Genome) -> dict[str, str]:
        kinds = [e.KIND for e in genome.edits]  # type: ignore[attr-defined]
        count = len(kinds)
        features = {"edit kinds": " + ".join(sorted(set(kinds))) or "none",
                    "edits": str(count) if count < 4 else "4+"}
        for kind in sorted(set(kinds)):
            features[f"has {kind}"] = "yes"
        return features

    def member_details(self, genome: Genome) -> dict[str, str]:
        """The edits in words and the diff against the original (first `DIFF_LINES` lines)."""
        from evoforge.mlir.describe import describe_edits, program_diff
        from evoforge.mlir.edits import EditError

        edits = genome.edits  # type: ignore[attr-defined]
        try:
            words = describe_edits(self.program, edits)
            diff = program_diff(self.program, edits).splitlines()
        except EditError as exc:
            return {"edits": f"the edits no longer apply: {exc}"}
        if len(diff) > DIFF_LINES:
            diff = diff[:DIFF_LINES] + [f"... {len(diff) - DIFF_LINES} more lines (evoforge export writes the whole diff)"]
        return {"edits": "\n".join(words) or "none (the original program)", "diff against the original": "\n".join(diff)}

    # ------------------------------------------------------------------ preparation
    def prepare(self) -> None:
        """Compile the original program once and record its error (needs a prepared program dir)."""
        from evoforge.mlir.iree_runner import Worker, compile_program

        d = self.require_layout().program
        if not (d / "original.vmfb").exists():
            start = time.perf_counter()
            vmfb = compile_program(self.program.text, input_type=self.program.input_type, target=self.target,
                                   extra_flags=self.extra_flags, timeout_s=max(self.compile_timeout_s, 600.0))
            if self.original_compile_s is None:
                self.original_compile_s = time.perf_counter() - start
            (d / "original.vmfb").write_bytes(vmfb)
        measure_coupling = self.batch_check and self.original_batch_coupling is None and self._batches_checkable
        if self.original_error is None or measure_coupling:
            with Worker() as worker:
                state = self._load_state(worker)
                if self.original_error is None:
                    labelled = state["meta"]["mode"] == "train" or "y_val" in state["data"]
                    self.original_error = self._score(state, None, worker)["error"] if labelled else 0.0
                    unlearnt = self._unlearnt_note()
                    if unlearnt:
                        logging.getLogger("evoforge").warning("%s", unlearnt)
                if measure_coupling:
                    self.original_batch_coupling = self._coupling(state, state["original_vmfb"], worker, trusted=True)

    def _unlearnt_note(self) -> str | None:
        """A warning when the original's validation accuracy is no better than always predicting
        the most frequent validation label (None without labels or before `prepare`)."""
        from evoforge.workload.metrics import constant_prediction_scores, learnt_nothing, unlearnt_warning

        if self.original_error is None or self.layout is None or not (self.layout.program / "data.npz").exists():
            return None
        with np.load(self.layout.program / "data.npz", allow_pickle=False) as data:
            if "y_val" not in data.files:
                return None
            labels = data["y_val"]
        return unlearnt_warning("the original program", learnt_nothing(
            {"accuracy": 1.0 - self.original_error}, constant_prediction_scores(labels, "classification"), "classification",
            len(labels)))

    @property
    def _batches_checkable(self) -> bool:
        """A prediction program with more than one example per batch and an output per example
        (`evoforge.mlir.batch_check.can_check`)."""
        meta = self.meta
        return meta["mode"] == "predict" and can_check(int(meta["batch_size"]), [t.shape for t in self.program.outputs])

    @property
    def checks_batches(self) -> bool:
        """Whether variants are rejected when an example's outputs depend on its batch-mates
        (`evoforge.mlir.batch_check`): asked for, a prediction program that can be checked, and an
        original whose own outputs do not depend on them."""
        return (self.batch_check and self.original_batch_coupling is not None
                and self.original_batch_coupling <= COUPLING_LIMIT)

    def headline_notes(self, evaluations: Mapping[str, Evaluation]) -> list[str]:
        from evoforge.mlir.comparisons import LABELS, iree_behind, load_comparisons

        notes = []
        unlearnt = self._unlearnt_note()
        if unlearnt:
            notes.append("WARNING: " + unlearnt)
        compiles = [e.metrics["compile_cache_hit"] for e in evaluations.values() if "compile_cache_hit" in e.metrics]
        if compiles:
            notes.append(f"compile cache: {sum(compiles)} of {len(compiles)} compiled variants reused an identical "
                         f"program's vmfb ({100 * sum(compiles) / len(compiles):.0f}%)")
        timed_on = machines_note(e.metrics for e in evaluations.values() if e.ok)
        if timed_on:
            notes.append(timed_on)
        if self.layout is None:
            return notes
        notes += self._tuning_notes()
        meta = self.meta
        if meta.get("exporter") == "onnx":
            reason, exporter = meta.get("exporter_reason"), meta.get("onnx_exporter")
            notes.append("program exported through ONNX" + (f" by torch's {exporter} exporter" if exporter else "")
                         + (f" ({reason})" if reason else ""))
        if not self.batch_check and meta["mode"] == "predict":
            notes.append("batch check: off (--no-batch-check, or a run made before it existed), so a member's outputs may "
                         "depend on the other examples of its batch; `evoforge export` measures it (batch_coupling)")
        elif self.batch_check and self.original_batch_coupling is not None and not self.checks_batches:
            notes.append(f"batch check: off, the original program's own outputs move by {self.original_batch_coupling:.3g} of "
                         f"their range when an example's batch-mates change (limit {COUPLING_LIMIT:g})")
        elif self.checks_batches:
            checked = sum("batch_coupling" in e.metrics for e in evaluations.values())
            rejected = sum(e.metrics.get("failure_kind") == "batch_coupled" for e in evaluations.values())
            notes.append(f"batch check: {rejected} of {checked} variants checked rejected, an example's outputs "
                         "depending on the other examples of its batch")
        record = load_comparisons(self.layout.program)
        if not record:
            return notes
        ms = record["ms"]
        times = ", ".join(f"{label} {ms[key]:.3g} ms" for key, label in LABELS.items() if key in ms)
        failed = "; ".join([*(f"{LABELS[k]} failed: {v}" for k, v in record.get("errors", {}).items()),
                            *(f"{LABELS[k]} not timed: {v}" for k, v in record.get("skipped", {}).items())])
        behind = iree_behind(record)
        return [*notes, f"original program at batch {record['batch']}, 1 thread: IREE (this run's flags) {ms['iree']:.3g} ms; "
                f"{times} (vs_* columns: a variant's time over each)" + (f"; {failed}" if failed else ""),
                *([f"WARNING: {behind}"] if behind else [])]

    def _tuning_notes(self) -> list[str]:
        from evoforge.mlir.flag_tuning import DEFAULT_SET, load_tuning

        tuning = load_tuning(self.require_layout().program)
        if tuning is None or not tuning.ms:
            return []
        times = ", ".join(f"{name} {ms:.3g} ms" for name, ms in tuning.ms.items())
        rejected = "".join(f"; {name} rejected: {why}" for name, why in tuning.rejected.items())
        if tuning.chosen == DEFAULT_SET:
            return [f"compile flags: IREE's defaults kept (original program per call: {times}){rejected}"]
        return [f"compile flags: {tuning.chosen} ({' '.join(tuning.flags)}) chosen, {tuning.speedup:.2f}x faster than "
                f"IREE's defaults on the original program ({times}){rejected}"]

    @property
    def runtime_driver(self) -> str:
        from evoforge.mlir.iree_runner import default_driver

        return self.driver or default_driver(self.target)

    def _load_state(self, worker: Any) -> dict[str, Any]:
        d = self.require_layout().program
        data = dict(np.load(d / "data.npz", allow_pickle=False))
        meta = self.meta
        from evoforge.mlir.comparisons import load_comparisons

        state: dict[str, Any] = {"worker": worker, "data": data, "meta": meta, "original_vmfb": (d / "original.vmfb").read_bytes(),
                                 "comparisons": load_comparisons(d)}
        if meta["mode"] == "train":
            params = np.load(d / "params.npz", allow_pickle=False)
            state["params"] = [params[f"arr_{i}"] for i in range(len(params.files))]
            state["predict_vmfb"] = (d / "predict.vmfb").read_bytes()
        else:
            from evoforge.mlir.sources import split_inputs

            b = meta["batch_size"]
            for split in ("val", "test"):
                xs = split_inputs(data, split)
                state[f"batches_{split}"] = [[x[i : i + b] for x in xs] for i in range(0, len(xs[0]), b)]
        return state

    def setup_worker(self) -> None:
        from evoforge.mlir.iree_runner import Worker

        worker = Worker()
        atexit.register(worker.close, kill=True)
        self._state = self._load_state(worker)
        if self.meta["mode"] == "predict" and "y_val" not in self._state["data"]:
            self._state["reference_outputs"] = self._original_outputs(self._state, "val")

    def _original_outputs(self, state: dict[str, Any], split: str) -> list[list[np.ndarray]]:
        from evoforge.mlir.iree_runner import run_program

        # the original program is trusted: its runs get a set-up allowance, not the variant timeout
        return run_program(state["original_vmfb"], state[f"batches_{split}"], worker=state["worker"],
                           driver=self.runtime_driver, function=self.program.entry, timeout_s=max(60.0, self.run_timeout_s))

    # ------------------------------------------------------------------ evaluation
    def _score(self, state: dict[str, Any], outputs: list[list[np.ndarray]] | None, worker: Any, split: str = "val") -> dict[str, float]:
        """Error of ``outputs`` (None: the original program's) on ``split``: 1 - accuracy with
        labels, else the mean relative L2 deviation from the original outputs."""
        from evoforge.mlir.iree_runner import run_program

        if state["meta"]["mode"] == "train":
            from evoforge.mlir.train_program import train_and_score

            outcome = worker.call(train_and_score, state["original_vmfb"], state["predict_vmfb"], self.runtime_driver,
                                  state["params"], *self._train_args(state, split), timeout_s=self.run_timeout_s)
            return {"error": 1.0 - outcome.accuracy, "accuracy": outcome.accuracy}
        if outputs is None:
            outputs = run_program(state["original_vmfb"], state[f"batches_{split}"], worker=worker,
                                  driver=self.runtime_driver, function=self.program.entry, timeout_s=self.run_timeout_s)
        labels = state["data"].get(f"y_{split}")
        if labels is not None:
            pred = np.concatenate([o[0] for o in outputs]).reshape(len(labels), -1).argmax(axis=1)
            acc = float(np.mean(pred == labels))
            return {"error": 1.0 - acc, "accuracy": acc}
        reference = state["reference_outputs"] if split == "val" else self._original_outputs(state, split)
        devs = [float(np.linalg.norm(o[0] - r[0]) / (np.linalg.norm(r[0]) + 1e-12)) for o, r in zip(outputs, reference)]
        return {"error": float(np.mean(devs)), "deviation": float(np.mean(devs))}

    def _coupling(self, state: dict[str, Any], vmfb: bytes, worker: Any, *, plain: list[list[np.ndarray]] | None = None,
                  split: str = "val", trusted: bool = False) -> float | None:
        """`batch_coupling` of a compiled prediction module on ``split`` (``plain``: its outputs on
        that split's batches when already run); raises `VariantFailure` like `run_program`."""
        from evoforge.mlir.iree_runner import run_program

        if f"mixed_{split}" not in state:  # built once per worker, on first use
            state[f"mixed_{split}"] = mixed_batches(state[f"batches_{split}"])
        mixed, order = state[f"mixed_{split}"]
        timeout = max(60.0, self.run_timeout_s) if trusted else self.run_timeout_s
        if plain is None:
            plain = run_program(vmfb, state[f"batches_{split}"][: len(mixed)], worker=worker, driver=self.runtime_driver,
                                function=self.program.entry, timeout_s=timeout)
        shuffled = run_program(vmfb, mixed, worker=worker, driver=self.runtime_driver, function=self.program.entry,
                               timeout_s=timeout)
        return batch_coupling(plain, shuffled, order, int(state["meta"]["batch_size"]))

    def _train_args(self, state: dict[str, Any], split: str) -> tuple[Any, ...]:
        d, meta = state["data"], state["meta"]
        return (d["x_train"], d["y_train"], int(meta["steps"]), d[f"x_{split}"], d[f"y_{split}"], int(meta["batch_size"]))

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        if not isinstance(genome, EditListGenome):
            raise ConfigError(f"the evolve domain takes mlir-edits genomes, got {genome.TYPE}")
        if self._state is None:
            self.setup_worker()
        state = self._state
        assert state is not None
        if state["meta"]["mode"] == "train":
            return self._evaluate_train(genome, state, context)
        return self._evaluate_predict(genome, state, context)

    def _compile(self, genome: Any) -> tuple[bytes | None, Evaluation | None, float, bool]:
        """(vmfb, failure, seconds, cache hit) of the genome's program; identical texts come
        from the run's compile cache."""
        from evoforge.mlir.compile_cache import CompileCache, compile_key
        from evoforge.mlir.edits import EditError
        from evoforge.mlir.iree_runner import VariantFailure, compile_program
        from evoforge.mlir.mutate import apply_edits

        t = time.perf_counter()
        try:
            text = apply_edits(self.program, genome.edits)
        except EditError as exc:
            return None, _failure("edit", str(exc)), 0.0, False
        cache = None
        if self.layout is not None and self.compile_cache_mb > 0:
            cache = CompileCache(self.layout.compile_cache, int(self.compile_cache_mb * 2**20))
        key = compile_key(text, input_type=self.program.input_type, target=self.target, extra_flags=self.extra_flags)
        if cache is not None and (cached := cache.get(key)) is not None:
            return cached, None, time.perf_counter() - t, True
        try:
            vmfb = compile_program(text, input_type=self.program.input_type, target=self.target,
                                   extra_flags=self.extra_flags, timeout_s=self.variant_compile_timeout_s)
        except VariantFailure as exc:
            return None, _failure(exc.failure.kind, exc.failure.message), time.perf_counter() - t, False
        if cache is not None:
            cache.put(key, vmfb)
        return vmfb, None, time.perf_counter() - t, False

    def _evaluate_predict(self, genome: Any, state: dict[str, Any], context: EvalContext) -> Evaluation:
        from evoforge.hostlock import MeasurementLock
        from evoforge.mlir.iree_runner import RuntimeComparison, VariantFailure, measure_runtime, run_program

        vmfb, failed, compile_s, cache_hit = self._compile(genome)
        if failed is not None:
            return failed
        assert vmfb is not None
        worker = state["worker"]

        def timed() -> RuntimeComparison:
            return measure_runtime(vmfb, state["original_vmfb"], state["batches_val"][0], self.repeats, worker=worker,
                                   driver=self.runtime_driver, function=self.program.entry, timeout_s=self.run_timeout_s)

        t = time.perf_counter()
        try:
            outputs = run_program(vmfb, state["batches_val"], worker=worker, driver=self.runtime_driver,
                                  function=self.program.entry, timeout_s=self.run_timeout_s)
            checked: dict[str, float] = {}
            if self.checks_batches:
                coupling = self._coupling(state, vmfb, worker, plain=outputs)
                if coupling is not None and coupling > COUPLING_LIMIT:
                    return _failure("batch_coupled", f"an example's outputs move by {coupling:.3g} of their range when its "
                                    f"batch-mates change (limit {COUPLING_LIMIT:g})", batch_coupling=coupling)
                checked = {"batch_coupling": coupling} if coupling is not None else {}
            confirmed: dict[str, float] = {}
            with MeasurementLock():
                runtime = timed()
                if runtime.ratio < CONFIRM_BELOW:
                    second = timed()
                    confirmed = {"first_runtime_ratio": runtime.ratio, "second_runtime_ratio": second.ratio}
                    runtime = max(runtime, second, key=lambda r: r.ratio)
        except VariantFailure as exc:
            return _failure(exc.failure.kind, exc.failure.message)
        run_s = time.perf_counter() - t
        score = self._score(state, outputs, worker)
        return self._result(genome, context, vmfb, state, score, {
            "runtime_ratio": runtime.ratio, "runtime_ms": 1000 * runtime.variant_s,
            "original_runtime_ms": 1000 * runtime.baseline_s, "compile_s": compile_s, "run_s": run_s,
            "compile_cache_hit": cache_hit, **confirmed, **checked,
        })

    def _evaluate_train(self, genome: Any, state: dict[str, Any], context: EvalContext) -> Evaluation:
        from evoforge.hostlock import MeasurementLock
        from evoforge.mlir.iree_runner import VariantFailure
        from evoforge.mlir.train_program import train_and_score

        vmfb, failed, compile_s, cache_hit = self._compile(genome)
        if failed is not None:
            return failed
        assert vmfb is not None
        worker, driver = state["worker"], self.runtime_driver
        args = self._train_args(state, "val")
        times: dict[str, list[float]] = {"variant": [], "original": []}
        outcome = None
        try:
            with MeasurementLock():
                for _ in range(3):  # interleaved: variant, original, variant, ...
                    for name, module in (("variant", vmfb), ("original", state["original_vmfb"])):
                        result = worker.call(train_and_score, module, state["predict_vmfb"], driver, state["params"], *args,
                                             timeout_s=self.run_timeout_s)
                        times[name].append(result.train_s)
                        if name == "variant":
                            outcome = result
        except VariantFailure as exc:
            return _failure(exc.failure.kind, exc.failure.message)
        assert outcome is not None
        if not all(np.all(np.isfinite(p)) for p in outcome.params):
            return _failure("nonfinite", "training produced NaN or infinite parameters")
        variant_s, original_s = float(np.median(times["variant"])), float(np.median(times["original"]))
        score = {"error": 1.0 - outcome.accuracy, "accuracy": outcome.accuracy, "final_loss": outcome.losses[-1]}
        return self._result(genome, context, vmfb, state, score, {
            "runtime_ratio": variant_s / original_s, "train_ms": 1000 * variant_s, "original_train_ms": 1000 * original_s,
            "compile_s": compile_s, "compile_cache_hit": cache_hit,
        })

    def _result(self, genome: Any, context: EvalContext, vmfb: bytes, state: dict[str, Any],
                score: dict[str, float], timing: dict[str, float]) -> Evaluation:
        size_ratio = len(vmfb) / len(state["original_vmfb"])
        metrics: dict[str, Any] = {**score, **timing, "size_ratio": size_ratio, "vmfb_bytes": len(vmfb),
                                   "vmfb_sha256": hashlib.sha256(vmfb).hexdigest(), "edits": len(genome.edits),
                                   MACHINE_METRIC: machine_name()}
        if timing.get("runtime_ratio"):
            metrics["speedup"] = 1.0 / timing["runtime_ratio"]  # the paper's measure: original time / variant time
        if state.get("comparisons") and "runtime_ratio" in timing:
            from evoforge.mlir.comparisons import versus

            metrics.update(versus(timing["runtime_ratio"], state["comparisons"]))
        objectives = {n: float(metrics[n]) for n in self.objective_names}
        constraints = {}
        if self.max_error_increase is not None and self.original_error is not None:
            constraints["error_increase_limit"] = 100.0 * (score["error"] - self.original_error) - self.max_error_increase
        artifacts = {}
        if context.artifact_dir is not None:  # the MLIR is not stored: replaying the edits gives it exactly
            (context.artifact_dir / "variant.vmfb").write_bytes(vmfb)
            artifacts = {"vmfb": f"artifacts/{context.artifact_dir.name}/variant.vmfb"}
        return Evaluation(Status.OK, objectives, constraints, metrics=metrics, artifacts=artifacts)

    def explain_member(self, genome: Genome) -> list[dict[str, Any]]:
        """Each edit's share of a member: the member, then for each edit the member without it
        and that edit alone, each evaluated now as the search evaluates a variant (replayed,
        compiled, run on the validation batches, checked, timed against the original). One row per
        edit (the first row: the member) with its words and ``runtime_ratio``, ``error`` or
        ``failure`` for ``member``, ``without`` and ``alone``. An edit whose removal leaves both
        numbers unchanged (within timing noise, about 1-2% on a quiet machine) buys nothing; an
        edit that refers to what an earlier edit made cannot stand alone (an ``edit`` failure)."""
        from evoforge.mlir.describe import describe_edits

        assert isinstance(genome, EditListGenome)
        edits = genome.edits
        if not edits:
            raise ConfigError("the original program has no edits to explain; choose an edited member")
        context = EvalContext(seed=0)

        def numbers(g: EditListGenome) -> dict[str, Any]:
            ev = self.evaluate(g, context)
            if not ev.ok:
                return {"failure": ev.reason}
            return {n: ev.objectives[n] for n in ("runtime_ratio", "error") if n in ev.objectives}

        words = describe_edits(self.program, edits)
        rows = [{"edit": "the member (all its edits)", "member": numbers(genome)}]
        for i, one in enumerate(edits):
            rows.append({"edit": words[i], "without": numbers(EditListGenome(edits=edits[:i] + edits[i + 1 :])),
                         "alone": numbers(EditListGenome(edits=(one,)))})
        return rows

    timed_objectives = ("runtime_ratio",)

    def parts(self, genome: Genome) -> list[str]:
        """The member's edits in words (`evoforge minimize` removes them one at a time)."""
        from evoforge.mlir.describe import describe_edits

        assert isinstance(genome, EditListGenome)
        return describe_edits(self.program, genome.edits)

    def part_count(self, genome: Genome) -> int:
        """The member's edit count (`parts` replays the program to describe them)."""
        assert isinstance(genome, EditListGenome)
        return len(genome.edits)

    def keep_parts(self, genome: Genome, kept: Sequence[int]) -> Genome:
        assert isinstance(genome, EditListGenome)
        return EditListGenome(edits=tuple(genome.edits[i] for i in kept))

    # ------------------------------------------------------------------ final numbers and export
    def finalize(self, members: Sequence[tuple[str, Evaluation]]) -> dict[str, dict[str, Any]]:
        """Test error recomputed from each member's saved vmfb (and the original's). A prediction
        program's members are also re-timed against the original on the first test batch
        (``runtime_ratio``; `_retime`): the search picked them by their own noisy timing, which
        flatters the apparent best (the winner's curse)."""
        from evoforge.mlir.iree_runner import Worker

        with Worker() as worker:
            state = self._load_state(worker)
            predict = state["meta"]["mode"] == "predict"
            if predict and "y_val" not in state["data"]:
                state["reference_outputs"] = self._original_outputs(state, "val")
            out: dict[str, dict[str, Any]] = {"baseline": self._score_file(state, state["original_vmfb"], worker, trusted=True)}
            if predict:
                out["baseline"]["runtime_ratio"] = 1.0
            for key, evaluation in members:
                path = self.require_layout().resolve(evaluation.artifacts.get("vmfb", ""))
                if evaluation.artifacts.get("vmfb") and path.exists():
                    try:
                        vmfb = path.read_bytes()
                        out[key] = self._score_file(state, vmfb, worker)
                        if predict:
                            out[key]["runtime_ratio"] = self._retime(state, vmfb, worker, evaluation)
                    except Exception as exc:  # noqa: BLE001 - reported, not fatal
                        out[key] = {"error": float("nan"), "failure": str(exc)}
        return out

    def _retime_repeats(self, metrics: Mapping[str, Any]) -> int:
        """How many rounds `_retime` times an evaluation with these metrics for."""
        round_s = _round_s(metrics)
        repeats = RETIME_FACTOR * self.repeats
        return max(self.repeats, min(repeats, int(RETIME_SECONDS / round_s))) if round_s > 0 else repeats

    def finalize_seconds(self, members: Sequence[tuple[str, Evaluation]]) -> float:
        """Per member: a training program's training time (its test score trains it again); a
        prediction program's validation run and timing (the test split is run the same way) and
        `_retime`'s rounds."""
        total = 0.0
        for _, e in members:
            m = e.metrics
            if "train_ms" in m:
                total += float(m["train_ms"]) / 1000
            else:
                total += float(m.get("run_s") or 0.0) + self._retime_repeats(m) * _round_s(m)
        return total

    def _retime(self, state: dict[str, Any], vmfb: bytes, worker: Any, evaluation: Evaluation) -> float:
        """Variant / original runtime on the first test batch, interleaved, with ``RETIME_FACTOR``
        times the run's repeats, or as many as fit in ``RETIME_SECONDS`` at the runtimes the
        search measured (but at least the run's repeats)."""
        from evoforge.hostlock import MeasurementLock
        from evoforge.mlir.iree_runner import measure_runtime

        repeats = self._retime_repeats(evaluation.metrics)
        with MeasurementLock():
            timing = measure_runtime(vmfb, state["original_vmfb"], state["batches_test"][0], repeats,
                                     worker=worker, driver=self.runtime_driver, function=self.program.entry,
                                     timeout_s=RETIME_FACTOR * self.run_timeout_s)
        return timing.ratio

    def _score_file(self, state: dict[str, Any], vmfb: bytes, worker: Any, *, trusted: bool = False) -> dict[str, float]:
        """Held-out error of a compiled module; ``trusted`` (the original) gets the set-up allowance."""
        timeout = max(60.0, self.run_timeout_s) if trusted else self.run_timeout_s
        from evoforge.mlir.iree_runner import run_program
        from evoforge.mlir.train_program import train_and_score

        if state["meta"]["mode"] == "train":
            outcome = worker.call(train_and_score, vmfb, state["predict_vmfb"], self.runtime_driver, state["params"],
                                  *self._train_args(state, "test"), timeout_s=timeout)
            return {"error": 1.0 - outcome.accuracy, "accuracy": outcome.accuracy}
        outputs = run_program(vmfb, state["batches_test"], worker=worker, driver=self.runtime_driver,
                              function=self.program.entry, timeout_s=timeout)
        return self._score(state, outputs, worker, split="test")

    def export_member(self, key: str, genome: Genome, evaluation: Evaluation, out_dir: Path, *,
                      claimed: Mapping[str, float] | None = None, formats: Sequence[str] = (),
                      seed: int | None = None) -> dict[str, Any]:
        """Write the variant's MLIR (replayed from its edits) and vmfb (the stored one, or, where
        the run pruned it, compiled again from the replayed MLIR with the run's flags), its edits
        in words, a unified diff against the original, and a card with the test error recomputed
        from the written vmfb and, for a prediction program, its ``batch_coupling`` on test batches
        (`evoforge.mlir.batch_check`; the vmfb is the only format)."""
        if any(f != "iree" for f in formats):
            raise ConfigError(f"an evolve member exports as an IREE vmfb only (--format iree), not {', '.join(formats)}")
        from evoforge.mlir.describe import describe_edits, program_diff
        from evoforge.mlir.iree_runner import Worker
        from evoforge.mlir.mutate import apply_edits

        layout = self.require_layout()
        if not evaluation.ok:
            raise ConfigError(f"member {key} failed ({evaluation.reason}); only a working variant exports")
        out_dir.mkdir(parents=True, exist_ok=True)
        edits = genome.edits  # type: ignore[attr-defined]
        text = apply_edits(self.program, edits)
        (out_dir / "variant.mlir").write_text(text)
        stored = layout.resolve(evaluation.artifacts["vmfb"]) if evaluation.artifacts.get("vmfb") else None
        rebuilt = stored is None or not stored.exists()
        if rebuilt:
            from evoforge.mlir.iree_runner import compile_program

            vmfb = compile_program(text, input_type=self.program.input_type, target=self.target,
                                   extra_flags=self.extra_flags, timeout_s=max(self.compile_timeout_s, 600.0))
        else:
            assert stored is not None
            vmfb = stored.read_bytes()
        (out_dir / "variant.vmfb").write_bytes(vmfb)
        evaluated_hash = evaluation.metrics.get("vmfb_sha256")
        words = describe_edits(self.program, edits)
        (out_dir / "edits.txt").write_text("\n".join(words) + "\n")
        (out_dir / "diff.patch").write_text(program_diff(self.program, edits))
        with Worker() as worker:
            state = self._load_state(worker)
            if state["meta"]["mode"] == "predict" and "y_val" not in state["data"]:
                state["reference_outputs"] = self._original_outputs(state, "val")
            test = self._score_file(state, vmfb, worker)
            baseline = self._score_file(state, state["original_vmfb"], worker, trusted=True)
            coupling = self._coupling(state, vmfb, worker, split="test") if self._batches_checkable else None
        card = {
            "vmfb": str(out_dir / "variant.vmfb"), "mlir": str(out_dir / "variant.mlir"),
            "entry": self.program.entry, "level": self.program.level, "target": self.target,
            "edits": words, "objectives": evaluation.objectives,
            "objectives_timed_on": evaluation.metrics.get("machine"), "test": test, "original_test": baseline,
            "vmfb_rebuilt": rebuilt,
        }
        if coupling is not None:  # on the test split; what the search checked (when it did) was the validation split
            card["batch_coupling"] = coupling
        if evaluated_hash:  # runs stored before the hash was recorded cannot tell
            card["vmfb_same_as_evaluated"] = hashlib.sha256(vmfb).hexdigest() == evaluated_hash
        (out_dir / "card.json").write_text(json.dumps(card, indent=2))
        return card


def _failure(kind: str, message: str, **metrics: float) -> Evaluation:
    status = _FAILURE_STATUS.get(kind, Status.FAILED)
    return dataclasses.replace(Evaluation.failure(status, f"{kind}: {message}"), metrics={"failure_kind": kind, **metrics})


def _round_s(metrics: Mapping[str, Any]) -> float:
    """Seconds of one timing round (the variant and the original once each) of an evaluation."""
    return (float(metrics.get("runtime_ms") or 0.0) + float(metrics.get("original_runtime_ms") or 0.0)) / 1000
