"""The PETRA domain: genomes are compression pipelines, evaluation compresses a copy of the
baseline, exports it to the run's runtime (`evoforge.runtimes`), and measures quality, latency
and size against the baseline exported to the same runtime.

int8 depends on the runtime: ``torchscript`` exports models that torch.ao has quantized (the
``quantize`` stage runs in PyTorch); runtimes with their own int8 (``onnxruntime``) export the
float model the other stages produced and quantize it at export, calibrated on the calibration
split. A genome whose quantize mode the runtime lacks fails with the runtime's valid modes.

Before the search, `CompressDomain.prepare` stores the task's inputs in the run, trains (or
loads) the baseline, and probes which stage kinds, pruning importances and int8 modes work on
this model (`probe_capabilities`); the operators draw only from those, so a supported
architecture never gets candidates that fail for a reason the search could have avoided.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from evoforge.compression.genome import QUANT_MODES, TORCH_AO_MODES, PipelineGenome, Stage
from evoforge.compression.operators import EXCLUDABLE, PipelineOperators, SearchSpace, at_fidelity, pipeline_features
from evoforge.compression.prefix import PrefixCache, apply_with_prefixes
from evoforge.errors import ConfigError, PruningWarning
from evoforge.genome import Genome
from evoforge.machine import INT8_DOT_FEATURES, MACHINE_METRIC, machine_name, machines_note
from evoforge.pareto import Objective, check_limit, objective_names
from evoforge.provenance import code_identity
from evoforge.registry import Registry
from evoforge.runtimes.base import (
    RUNTIMES,
    QuantSettings,
    Runtime,
    check_compare_runtimes,
    check_int8_weight_bits,
    get_runtime,
    int8_weight_bits_here,
)
from evoforge.search.domain import Domain, EvalContext, Mutation, RebuiltMember, register_domain
from evoforge.search.evaluation import Evaluation, Status
from evoforge.workload.task import Task

if TYPE_CHECKING:
    from evoforge.workload.data import Splits

BASELINE_DIR = "baseline"
DEFAULT_RUNTIME = "onnxruntime"
LEGACY_RUNTIME = "torchscript"
"""The runtime of runs stored before the runtime was a setting."""
CALIBRATION_ROWS = 1024
"""Calibration examples an export-time static int8 sees at most."""
SCREEN_BY = ("epochs", "examples")
"""What a screening (fidelity f < 1) scales: every stage's number of epochs (`at_fidelity`, with
its floor), or the share of the train split each epoch visits (`examples_per_epoch`; every epoch
count kept)."""
EVALUATION_LIBRARIES = ("torch", "torch-pruning", "torchao", "onnx", "onnxscript", "onnxruntime", "numpy")
"""The distributions whose versions decide a compress evaluation's result (the cache identity
holds them; a user model's own library, such as transformers, is not among them)."""


@functools.lru_cache(maxsize=1)
def evaluation_code_digest() -> str:
    """A digest of the code and machine that compute a pipeline's stages (evoforge's source, the
    `EVALUATION_LIBRARIES` versions, `machine_name`): the prefix cache keys its entries by it."""
    import hashlib

    from evoforge.genome import canonical_json

    identity = {"code": code_identity(EVALUATION_LIBRARIES), MACHINE_METRIC: machine_name()}
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
    metric: str  # key in the evaluation metrics
    reference: float
    description: str


OBJECTIVES: Registry[ObjectiveSpec] = Registry("objective")
OBJECTIVES.add("quality_drop", ObjectiveSpec("quality_drop", 0.0, "quality lost vs the baseline (points, or % when relative)"))
OBJECTIVES.add("latency_ratio", ObjectiveSpec("latency_ratio_batch", 1.1, "latency at batch B / baseline's"))
OBJECTIVES.add("latency_b1_ratio", ObjectiveSpec("latency_ratio_b1", 1.1, "latency at batch 1 / baseline's"))
OBJECTIVES.add("size_ratio", ObjectiveSpec("size_ratio", 1.1, "artifact bytes / baseline's"))
OBJECTIVES.add("params_ratio", ObjectiveSpec("params_ratio", 1.1, "parameters / baseline's"))
OBJECTIVES.add("macs_ratio", ObjectiveSpec("macs_ratio", 1.1, "multiply-accumulates / baseline's"))

DEFAULT_OBJECTIVES = ("quality_drop", "latency_ratio", "size_ratio")
EPOCH_SHARE = 0.6
"""Share of the evaluation timeout a pipeline's training may fill (the rest: export, scoring, timing)."""
SCREENING_RESOLUTION = 0.5
"""A screening scores on enough validation examples that one example moves its quality by at most
this share of the quality limit (100 / n points per example), so that a single unlucky example
does not make it infeasible."""
LATENCY_CALLS = 5
"""Calls of each model per timing round (the round keeps their median)."""
RETIME_SESSIONS = 3
"""Front members are timed again at the end of a run, up to this many times, each time with the
run's repeats and both models loaded afresh..."""
RETIME_SECONDS = 20.0
"""...as far as that fits in this many seconds per member (at least once)."""
FASTER_ELSEWHERE = 0.95
"""`show` says a run's ratios overstate the gain when another runtime runs the same fp32 file in
less than this share of the reference's time (`CompressDomain._fp32_elsewhere`)."""
UNAVAILABLE = "not available on "
"""How the probe's reason for a mode it left out untried begins: the runtime lacks the mode, or
the processor (bf16 without bfloat16 arithmetic). Not a failure, so `show` does not list it."""
MAX_PIPELINE_EPOCHS = 60
"""Above this many epochs a pipeline's training is not capped: the genome ranges never reach it."""


def fastest_fp32(record: Mapping[str, Any]) -> tuple[str | None, float]:
    """The runtime whose fp32 baseline ran fastest at the run's latency batch when the run
    started (``record``: baseline.json's, `CompressDomain._fp32_elsewhere`), and its time as a
    share of the run's own reference: (None, 1.0) when none was faster."""
    best: tuple[str | None, float] = (None, 1.0)
    for name, other in (record.get("fp32_elsewhere") or {}).items():
        if "ratio_batch" in other and other["ratio_batch"] < best[1]:
            best = (name, float(other["ratio_batch"]))
    return best


def runtime_quant_modes(runtime: Runtime) -> tuple[str, ...]:
    """The quantize-stage modes a runtime can deploy: the modes it applies at export, and
    torch.ao's int8 modes when it takes torch-quantized models (in `QUANT_MODES` order)."""
    return tuple(m for m in QUANT_MODES if m in runtime.quant_modes or (runtime.takes_torch_int8 and m in TORCH_AO_MODES))


def split_quant(genome: PipelineGenome, runtime: Runtime, calibration: Sequence[tuple[Any, ...]] = (),
               train_qat: Callable[[Any, int], object] | None = None,
               weight_bits: int | None = None) -> tuple[PipelineGenome, QuantSettings | None]:
    """The pipeline to run in PyTorch and the quantization the runtime applies at export: static and
    QAT int8 get ``calibration``; QAT with epochs gets ``train_qat(model, epochs)`` as its
    trainer; int8 gets ``weight_bits`` (`QuantSettings.weight_bits`). Raises `ConfigError` naming
    the runtime's modes when the genome's quantize mode is not among them."""
    last = genome.stages[-1] if genome.stages else None
    if last is None or last.kind != "quantize":
        return genome, None
    modes = runtime_quant_modes(runtime)
    if last["mode"] not in modes:
        raise ConfigError(f"quantize mode {last['mode']!r} is not available on runtime {runtime.name!r}; its modes: {', '.join(modes)}")
    if last["mode"] not in runtime.quant_modes:  # torch.ao int8, applied by the stage in PyTorch
        return genome, None
    mode, epochs = last["mode"], last["epochs"]
    trainer = None
    if mode == "qat" and epochs > 0 and train_qat is not None:
        qat_train = train_qat

        def trainer(model: Any) -> object:
            return qat_train(model, epochs)
    quant = QuantSettings(mode, per_channel=last["per_channel"], keep_float_edges=last["keep_float_edges"],
                          calibration=calibration if mode in ("static", "qat") else (), train=trainer,
                          weight_bits=weight_bits)
    return dataclasses.replace(genome, stages=genome.stages[:-1]), quant


def _int8_weight_note(bits: int | None) -> dict[str, Any]:
    """A member card's ``int8_weight_bits`` and what it means where the member is deployed (nothing
    for members whose int8 weights do not depend on the processor, or that have none)."""
    if bits is None:
        return {}
    if bits == 7:
        note = ("int8 weights in 7 bits, which processors without VNNI need (their int8 kernels saturate with 8): "
                "the file keeps its accuracy on any processor")
    else:
        flags = f"{', '.join(INT8_DOT_FEATURES[:-1])} or {INT8_DOT_FEATURES[-1]}"
        note = (f"int8 weights in 8 bits: on an x86 processor without VNNI ({flags}) they can "
                "saturate the int8 kernels and cost accuracy; compress with int8_weight_bits 7 for such a processor")
    return {"int8_weight_bits": bits, "int8_note": note}


def _saturation_hint(bits: int | None) -> str:
    """Why an int8 member scores differently here, when its 8-bit weights meet a processor whose
    int8 kernels saturate with them (else nothing)."""
    if bits != 8 or int8_weight_bits_here() != 7:
        return ""
    return (f" here: this processor has none of {', '.join(INT8_DOT_FEATURES)}, and the member's 8-bit int8 weights saturate "
            "its int8 kernels; compress with int8_weight_bits 7 for members that keep their accuracy on it")


def default_quality_limit(task: Task) -> tuple[float, bool]:
    """(max drop, relative): 1 point for accuracy-like metrics (fractions), 5% for the rest
    (regression errors, custom measures)."""
    from evoforge.workload.task import metric_of

    percent = task.evaluate is None and metric_of(task).percent
    return (1.0, False) if percent else (5.0, True)


def hand_recipes(training: Any) -> dict[str, PipelineGenome]:
    """The six pipelines a user would try first, by name: int8 static, int8 dynamic, 50% L2
    channel pruning + 5 epochs of fine-tuning, low-rank at energy 0.95 + 5 epochs (without the
    Hoyer and orthogonality terms), 50% pruning with 5 epochs then int8 static, and bf16 (where
    the runtime and processor have it, OpenVINO's default precision). ``training``: the task's
    `TrainingSettings`."""
    q = {"per_channel": True, "keep_float_edges": False, "epochs": 0}
    prune = {"importance": "l2", "ratio": 0.5, "steps": 1, "allocation": "uniform", "round_to": 8, "epochs": 0}
    finetune = Stage.make("finetune", epochs=5)
    plain = dataclasses.replace(training, hoyer_weight=0.0, ortho_weight=0.0)
    return {
        "int8 static": PipelineGenome((Stage.make("quantize", mode="static", **q),), training),
        "int8 dynamic": PipelineGenome((Stage.make("quantize", mode="dynamic", **q),), training),
        "prune 50% + fine-tune": PipelineGenome((Stage.make("prune", **prune), finetune), training),
        "low-rank 0.95 + fine-tune": PipelineGenome((Stage.make("lowrank", energy=0.95, reg_epochs=1, epochs=0), finetune), plain),
        "prune 50% + int8 static": PipelineGenome((Stage.make("prune", **{**prune, "epochs": 5}),
                                                   Stage.make("quantize", mode="static", **q)), training),
        "bf16": PipelineGenome((Stage.make("quantize", mode="bf16", **q),), training),
    }


def initial_pipelines(base: PipelineGenome) -> list[PipelineGenome]:
    """Warm starts: the untouched baseline, the `hand_recipes` (so that a run's evaluations hold
    every recipe's point: same genome and run seed, same model), and a milder 30% pruning."""
    mild = Stage.make("prune", importance="l2", ratio=0.3, steps=1, allocation="uniform", round_to=4, epochs=4)
    return [base, *hand_recipes(base.training).values(), dataclasses.replace(base, stages=(mild,))]


@register_domain
class CompressDomain(Domain):
    """Configured by a `Task` (or its dict), the objective names (see `OBJECTIVES`), and the
    quality constraint: ``max_quality_drop`` in points (or percent when ``relative_drop``; -1:
    the task's default, None: no constraint). ``runtime`` (a name in `RUNTIMES`) is what every
    candidate and the fp32 reference are exported to and timed in. ``space`` is what
    `probe_capabilities` found to work on the model in that runtime (filled in by `prepare`),
    less ``exclude`` (names of `EXCLUDABLE`, or one comma-separated string of them); the
    baseline's fp32 is also timed in the other runtimes ``compare_runtimes`` names (one of
    `evoforge.runtimes.base.COMPARE_RUNTIMES`; see `_fp32_elsewhere`); ``int8_weight_bits`` (one of
    `evoforge.runtimes.base.INT8_WEIGHT_BITS`, only for runtimes that `Runtime.narrows_int8_weights`)
    is how wide int8 weights are: the evaluating processor's need (``auto``), or 7 or 8 bits;
    with ``timeout_s`` (the evaluation timeout) `prepare` also caps each pipeline's training at
    what fits in ``EPOCH_SHARE`` of it. At fidelity f < 1 (screening) every stage trains all of
    its epochs on f of the train split each (``screen_by="examples"``, the default), or f of its
    epochs (``screen_by="epochs"``; `at_fidelity`: never fewer than `SCREENING_MIN_EPOCHS`), quality is scored on the
    first f of the validation split (`screening_examples`) against the baseline's quality on the
    same examples, latency is timed with fewer repeats, and a runtime that `Runtime.drafts`
    exports a draft, whose latency and size are ratios to the baseline's draft."""

    name = "compress"
    writes_report = True
    measures_front = True
    supports_fidelity = True
    run_defaults: ClassVar[dict[str, Any]] = {"algorithm": "petra", "pop_size": 10, "budget": "10m", "workers": 1, "timeout_s": 900.0}

    def __init__(
        self,
        task: Task | Mapping[str, Any],
        objectives: Sequence[str] = DEFAULT_OBJECTIVES,
        max_quality_drop: float | None = -1.0,
        relative_drop: bool | None = None,
        device: str = "cpu",
        latency_repeats: int = 11,
        space: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        runtime: str = DEFAULT_RUNTIME,
        prefix_seed: int | None = 0,
        prefix_cache_mb: float = 512.0,
        quantize_operator: bool = True,
        screen_by: str = "examples",
        exclude: Sequence[str] = (),
        compare_runtimes: str = "fast",
        int8_weight_bits: str | int = "auto",
    ) -> None:
        self.runtime = get_runtime(runtime)
        self.compare_runtimes = check_compare_runtimes(compare_runtimes)
        self.int8_weight_bits = check_int8_weight_bits(int8_weight_bits)
        if self.int8_weight_bits != "auto" and not self.runtime.narrows_int8_weights:
            takes = ", ".join(name for name, cls in RUNTIMES.items() if cls.narrows_int8_weights)
            raise ConfigError(f"int8_weight_bits {self.int8_weight_bits} applies to {takes}; {self.runtime.name} chooses "
                              "its own int8 weights: leave it 'auto'")
        if isinstance(exclude, str):
            exclude = [name.strip() for name in exclude.split(",") if name.strip()]
        unknown = [name for name in exclude if name not in EXCLUDABLE]
        if unknown:
            raise ConfigError(f"cannot exclude {unknown[0]!r}; name a stage kind, prune:<importance> or quantize:<mode>: "
                              f"{', '.join(EXCLUDABLE)}")
        self.exclude = tuple(dict.fromkeys(exclude))
        if screen_by not in SCREEN_BY:
            raise ConfigError(f"screen_by {screen_by!r} is not one of: {', '.join(SCREEN_BY)}")
        self.screen_by = screen_by
        if prefix_cache_mb < 0:
            raise ConfigError(f"prefix_cache_mb must be >= 0 (0 turns prefix reuse off), got {prefix_cache_mb}")
        self.prefix_seed = prefix_seed
        self.prefix_cache_mb = prefix_cache_mb
        self.quantize_operator = quantize_operator
        self.task = task if isinstance(task, Task) else Task.from_dict(dict(task))
        self.task.validate()
        limit, relative = default_quality_limit(self.task)
        self.relative_drop = relative if relative_drop is None else relative_drop
        self.max_quality_drop = limit if max_quality_drop == -1.0 else max_quality_drop
        check_limit("max_quality_drop", self.max_quality_drop)
        if not isinstance(self.relative_drop, bool):
            raise ConfigError(f"relative must be true or false, got {self.relative_drop!r}")
        self.objective_names = objective_names(objectives, list(OBJECTIVES))
        specs = [OBJECTIVES[n] for n in self.objective_names]
        drop_ref = self.max_quality_drop if self.max_quality_drop else 10.0
        self.objectives = tuple(
            Objective(n, reference=(drop_ref * 1.05 + 1e-9) if n == "quality_drop" else s.reference)
            for n, s in zip(self.objective_names, specs)
        )
        self.constraints = ("quality_drop_limit",) if self.max_quality_drop is not None else ()
        self.device = device
        self.latency_repeats = latency_repeats
        self.timeout_s = timeout_s
        self._use_space(SearchSpace.from_dict(space) if space is not None else SearchSpace())
        self._state: dict[str, Any] | None = None

    def _use_space(self, space: SearchSpace) -> None:
        """Draw from ``space``, less what the run excludes, from now on; `ConfigError` when
        nothing is left to draw."""
        left = space.without(self.exclude)
        if not left.kinds:
            cause = f"excluding {', '.join(self.exclude)}" if self.exclude else "the probe's refusals (baseline/baseline.json)"
            raise ConfigError(f"{cause} leaves no stage to search; exclude less (stage kinds: {', '.join(space.kinds) or 'none'})")
        self.space = left
        self.operators = PipelineOperators(self.task.task_type, self.space, self.task.training,
                                           quantize_operator=self.quantize_operator)
        self._mutations: Registry[Mutation] = self.operators.registry()  # type: ignore[assignment]

    def config(self) -> dict[str, Any]:
        return {
            "task": self.task.to_dict(),
            "objectives": self.objective_names,
            "max_quality_drop": self.max_quality_drop,
            "relative_drop": self.relative_drop,
            "device": self.device,
            "latency_repeats": self.latency_repeats,
            "space": self.space.to_dict(),
            "timeout_s": self.timeout_s,
            "runtime": self.runtime.name,
            "prefix_seed": self.prefix_seed,
            "prefix_cache_mb": self.prefix_cache_mb,
            "quantize_operator": self.quantize_operator,
            "screen_by": self.screen_by,
            "exclude": list(self.exclude),
            "compare_runtimes": self.compare_runtimes,
            "int8_weight_bits": self.int8_weight_bits,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CompressDomain:
        # runs stored before runtimes were chosen were TorchScript runs; before prefix seeds, every
        # stage's seed came from the whole genome (prefix_seed None), which re-export must repeat;
        # before the quantize operator, a resumed run must draw from the operators it had; before
        # screen_by, screenings scaled epochs
        return cls(**{"runtime": LEGACY_RUNTIME, "prefix_seed": None, "quantize_operator": False, "screen_by": "epochs", **config})

    @property
    def artifact(self) -> str:
        """File name of a candidate's (and the baseline's) artifact in the run's runtime."""
        return self.runtime.artifact_name

    @property
    def mutations(self) -> Mapping[str, Mutation]:
        return self._mutations

    @property
    def base_genome(self) -> PipelineGenome:
        return PipelineGenome(training=self.task.training)

    def warm_starts(self) -> list[Genome]:
        """`initial_pipelines` that the run's space allows, in canonical form."""
        return [g for g in map(self.operators.canonical, initial_pipelines(self.base_genome)) if self.space.allows(g)]

    def initial_population(self, rng: np.random.Generator, size: int) -> list[Genome]:
        seeds: list[Genome] = self.warm_starts()[:size]
        seen = {g.content_hash for g in seeds}
        for _ in range(100 * size):  # distinct samples while the space has them
            if len(seeds) >= size:
                break
            genome = self.sample(rng)
            if genome.content_hash not in seen:
                seen.add(genome.content_hash)
                seeds.append(genome)
        while len(seeds) < size:
            seeds.append(self.sample(rng))
        return seeds

    def sample(self, rng: np.random.Generator) -> Genome:
        return self.operators.sample(rng, base=self.task.training)

    def describe(self, genome: Genome) -> str:
        assert isinstance(genome, PipelineGenome)
        return describe_pipeline(genome)

    def baseline_objectives(self) -> dict[str, float]:
        """The baseline scores 0 drop and ratio 1 on every other objective, by definition."""
        return {name: 0.0 if name == "quality_drop" else 1.0 for name in self.objective_names}

    def genome_features(self, genome: Genome) -> dict[str, str]:
        assert isinstance(genome, PipelineGenome)
        features = {"stages": " -> ".join(s.kind for s in genome.stages) or "none"}
        for stage in genome.stages:
            if stage.kind == "prune":
                features["prune importance"] = stage["importance"]
                features["prune allocation"] = stage["allocation"]
                low = min(0.7, 0.1 + 0.2 * int((stage["ratio"] - 0.1) / 0.2))
                features["prune ratio"] = f"{low:.1f}-{low + 0.2:.1f}"
            elif stage.kind == "quantize":
                features["quantize mode"] = stage["mode"]
                if stage["mode"] != "bf16":
                    features["int8 weights"] = "per channel" if stage["per_channel"] else "per tensor"
        if genome.stages and any(s.kind != "quantize" for s in genome.stages):
            features["optimizer"] = genome.training.optimizer
        return features

    def cache_identity(self) -> dict[str, Any]:
        """The task with its data fingerprints, the baseline artifact's hash, the runtime, the
        machine (`evoforge.machine`: latencies differ between processors), the measurement
        settings, the objectives, and the code (`evoforge.provenance`: evoforge's source and the
        libraries that train, prune, export and run a model). The search space is not in it: a
        genome's evaluation does not depend on what else could be drawn."""
        import hashlib

        ignored = ("space", "timeout_s", "prefix_cache_mb", "quantize_operator", "screen_by")  # screen_by: `screening_identity`
        config = {k: v for k, v in self.config().items() if k not in ignored}
        baseline = hashlib.sha256((self.require_layout().baseline / self.artifact).read_bytes()).hexdigest()
        return {"domain": self.name, **config, "baseline": baseline, MACHINE_METRIC: machine_name(),
                "code": code_identity(EVALUATION_LIBRARIES)}

    def screening_identity(self) -> dict[str, Any]:
        return {"screen_by": self.screen_by}

    def search_features(self, genome: Genome) -> dict[str, float | str]:
        assert isinstance(genome, PipelineGenome)
        return pipeline_features(genome)

    def member_details(self, genome: Genome) -> dict[str, str]:
        assert isinstance(genome, PipelineGenome)
        lines = [f"{i}. {s.kind}: " + ", ".join(f"{k}={v}" for k, v in s.params) for i, s in enumerate(genome.stages, 1)]
        t = genome.training
        training = ", ".join(f"{f.name}={getattr(t, f.name)}" for f in dataclasses.fields(t))
        return {"stages": "\n".join(lines) or "none (the baseline)", "training settings": training,
                "runtime": self.runtime.name}

    # ------------------------------------------------------------------ baseline
    @property
    def _root(self) -> Path:
        return self.require_layout().root

    def prepare(self) -> None:
        """Store the task's inputs in the run (first time), check them against their
        fingerprints (every time: a resumed run refuses changed inputs), then train or load the
        baseline, export it to the runtime, record its numbers (and the exported fp32 model's
        speed against torch eager) in ``baseline/baseline.json`` and probe what the search may
        draw (skipped when already there)."""
        from evoforge.workload import task as tasks

        layout = self.require_layout()
        if "data" not in self.task.fingerprints:
            self.task = tasks.materialize(self.task, layout.inputs)
        splits = tasks.load_splits(self.task, layout.root)  # verifies every fingerprint
        if "data" not in self.task.fingerprints:
            self.task = tasks.with_data_fingerprint(self.task, splits)
        base = layout.baseline
        if (base / "baseline.json").exists() and (base / self.artifact).exists():
            self._use_space(SearchSpace.from_dict(self.baseline_record()["space"]))
            return
        from evoforge.compression.measure import count_macs, measure_latency, parameter_count
        from evoforge.compression.probe import probe_capabilities, seconds_per_epoch
        from evoforge.workload.inputs import ExportedModel, ModelAdapter

        model = tasks.baseline_model(self.task, splits, base, root=layout.root, device=self.device)
        example = tasks.example_input(splits)
        self.runtime.export(model, example, base / self.artifact)
        exported = self.runtime.load(base / self.artifact)
        space, refused = probe_capabilities(model, splits, self.task, device=self.device, runtime=self.runtime)
        epoch_s = seconds_per_epoch(model, splits, self.task, device=self.device)
        if self.timeout_s is not None and EPOCH_SHARE * self.timeout_s / epoch_s < MAX_PIPELINE_EPOCHS:
            space = dataclasses.replace(space, max_epochs=round(max(1.0, EPOCH_SHARE * self.timeout_s / epoch_s), 1))
        self._use_space(space)
        spec = splits.input_spec
        latency_inputs = self.latency_inputs(splits)
        single = self.runtime.load(base / self.artifact, threads=1)
        versus_eager = measure_latency(single, ModelAdapter(model, spec), latency_inputs, repeats=self.latency_repeats, threads=1)
        record = {
            "runtime": self.runtime.name,
            "validation": self._quality(ExportedModel(exported, spec), splits.val),
            "test": self._quality(ExportedModel(exported, spec), splits.test),
            "size_bytes": self.runtime.size_bytes(base / self.artifact),
            "params": parameter_count(model),
            "macs": count_macs(model, example),
            "inputs": spec.describe(),
            "data_split": splits.carved,
            "space": space.to_dict(),
            "refused": refused,
            "epoch_seconds": epoch_s,
            MACHINE_METRIC: machine_name(),
            "versus_eager": {
                "ratio_b1": versus_eager.b1.ratio,
                "ratio_batch": versus_eager.batch.ratio,
                "eager_b1_ms": versus_eager.b1.baseline_ms,
                "eager_batch_ms": versus_eager.batch.baseline_ms,
            },
            "fp32_elsewhere": self._fp32_elsewhere(model, example, base / self.artifact, single, latency_inputs),
        }
        if self.task.evaluate is None:  # the built-in metrics, which a constant prediction also has
            from evoforge.workload.metrics import constant_prediction_scores

            record["constant_prediction"] = {"validation": constant_prediction_scores(splits.val.targets(), self.task.task_type),
                                             "validation_examples": len(splits.val)}
        (base / "baseline.json").write_text(json.dumps(record, indent=2))
        unlearnt = self._unlearnt_note(record)
        if unlearnt:
            logging.getLogger("evoforge").warning("%s", unlearnt)

    def _fp32_elsewhere(self, model: Any, example: Any, path: Path, reference: Any, inputs: Any) -> dict[str, dict[str, Any]]:
        """The baseline's fp32 ``model`` timed in each other installed runtime against this run's
        ``reference`` (its artifact at ``path``), one thread, as ``{runtime: {"ratio_b1",
        "ratio_batch", "same_file"}}``: the same file in a runtime that loads it as it is (OpenVINO
        and ONNX Runtime), else the model exported once per artifact format. Where another runtime
        runs the model faster, the run's ratios overstate the gain over the best fp32 a user could
        deploy. ``compare_runtimes`` decides which: ``fast`` leaves out runtimes whose export
        compiles native code (recorded as ``skipped``), ``all`` times them too, ``none`` none. A
        runtime that cannot take the model is recorded with its error, never fatal."""
        from evoforge.compression.measure import measure_latency
        from evoforge.runtimes.base import installed_runtimes, loads_artifacts_of

        out: dict[str, dict[str, Any]] = {}
        if self.compare_runtimes == "none":
            return out
        exported: dict[str, Path] = {}  # artifact format (or runtime name) -> the file exported to it
        with tempfile.TemporaryDirectory(prefix="evoforge-fp32-") as tmp:
            for other in installed_runtimes():
                if other.name == self.runtime.name:
                    continue
                if other.export_compiles and self.compare_runtimes != "all":
                    out[other.name] = {"skipped": "its export compiles native code (tens of seconds); compare_runtimes='all' times it"}
                    continue
                same_file = loads_artifacts_of(other, self.runtime)
                try:
                    artifact = path
                    if not same_file:
                        key = other.artifact_format or other.name
                        if key not in exported:
                            exported[key] = other.export(model, example, Path(tmp) / f"{key}-{other.artifact_name}")
                        artifact = exported[key]
                    timed = measure_latency(other.load(artifact, threads=1), reference, inputs, repeats=self.latency_repeats,
                                            threads=1)
                except Exception as exc:  # noqa: BLE001 - a runtime that cannot take the model is a finding
                    out[other.name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                    continue
                out[other.name] = {"ratio_b1": timed.b1.ratio, "ratio_batch": timed.batch.ratio, "same_file": same_file}
        return out

    def baseline_record(self) -> dict[str, Any]:
        path = self.require_layout().baseline / "baseline.json"
        if not path.exists():
            raise ConfigError(f"no baseline in {path.parent}; it is created when the run starts")
        return dict(json.loads(path.read_text()))

    def _unlearnt_note(self, record: Mapping[str, Any]) -> str | None:
        """A warning when the baseline's validation quality is no better than a constant prediction's."""
        from evoforge.workload.metrics import learnt_nothing, unlearnt_warning

        constant = record.get("constant_prediction")
        if not constant:
            return None
        return unlearnt_warning("the baseline", learnt_nothing(record["validation"], constant["validation"],
                                                               self.task.task_type, int(constant["validation_examples"])))

    def headline_notes(self, evaluations: Mapping[str, Evaluation]) -> list[str]:
        record = self.baseline_record() if (self.require_layout().baseline / "baseline.json").exists() else {}
        eager = record.get("versus_eager")
        note = f"runtime {self.runtime.name}: ratios are against the fp32 model exported to it"
        if eager:
            note += (f"; that reference runs at {eager['ratio_b1']:.3g}x torch eager's latency at batch 1 and "
                     f"{eager['ratio_batch']:.3g}x at batch {self.task.latency_batch} (latency_vs_eager = latency_ratio x that)")
        if any("latency_threads" in e.metrics for e in evaluations.values()):
            note += ("; test_latency_ratio and test_latency_b1_ratio: each front member timed again when the run ended "
                     f"(median of up to {RETIME_SESSIONS} fresh timings), the ratios to quote")
        notes = [note]
        for name, other in (record.get("fp32_elsewhere") or {}).items():
            if "ratio_batch" in other:
                faster = min(other["ratio_b1"], other["ratio_batch"]) < FASTER_ELSEWHERE
                what = f"the same fp32 file runs in {name}" if other.get("same_file", True) else f"the fp32 model exported to {name} runs"
                notes.append(f"{what} at {other['ratio_b1']:.3g}x this reference's latency at batch 1 "
                             f"and {other['ratio_batch']:.3g}x at batch {self.task.latency_batch}"
                             + (f"; against {name}'s fp32 the ratios here overstate the gain" if faster else ""))
        fastest, share = fastest_fp32(record)
        if fastest is not None:
            notes.append(f"the fastest fp32 timed at batch {self.task.latency_batch} is {fastest}'s, at {share:.3g}x this reference: "
                         f"latency_vs_best_fp32 = latency_ratio x {share:.3g}, the gain over the best fp32 deployment measured here")
        unlearnt = self._unlearnt_note(record)
        if unlearnt:
            notes.insert(0, "WARNING: " + unlearnt)
        if self.exclude:
            notes.append(f"left out of the search by the run's settings (exclude): {', '.join(self.exclude)}")
        failed = {name: reason for name, reason in (record.get("refused") or {}).items()
                  if not reason.startswith(UNAVAILABLE)}  # (the runtime's documented modes, bf16 without the CPU for it)
        if failed:
            notes.append("the probe left out (baseline/baseline.json, refused): "
                         + "; ".join(f"{name}: {_clipped(reason)}" for name, reason in sorted(failed.items())))
        timed_on = machines_note(e.metrics for e in evaluations.values() if e.ok)
        if timed_on:
            notes.append(timed_on)
        widths = sorted({int(e.metrics["int8_weight_bits"]) for e in evaluations.values() if e.ok and e.metrics.get("int8_weight_bits")})
        if widths:
            chosen = ("as the run set (int8_weight_bits)" if self.int8_weight_bits != "auto"
                      else "as the evaluating processor needs (int8_weight_bits auto: 7 without VNNI)")
            notes.append(f"int8 weights in {' and '.join(map(str, widths))} bits, {chosen}"
                         + ("; WARNING: the widths differ between evaluations (processors with and without VNNI)"
                            if len(widths) > 1 else ""))
        reused = [int(e.metrics.get("prefix_reused_stages") or 0) for e in evaluations.values() if e.ok]
        if any(reused):
            notes.append(f"prefix reuse: {sum(1 for r in reused if r)} of {len(reused)} evaluations started from a stored "
                         f"intermediate model ({sum(reused)} stages not recomputed)")
        return notes

    def check_inputs(self) -> list[str]:
        from evoforge.workload.task import verify_files

        try:
            verify_files(self.task, self._root)
        except ConfigError as exc:
            return [str(exc)]
        return []

    def _quality(self, model: Any, split: Any) -> dict[str, float]:
        from evoforge.workload.task import quality

        evaluate = self._state["evaluate"] if self._state is not None else None
        return quality(self.task, model, split, root=self._root, device=self.device, evaluate=evaluate)

    def setup_worker(self) -> None:
        import warnings

        import torch

        warnings.filterwarnings("ignore", category=PruningWarning)  # the probe recorded it in the baseline
        if self.runtime.takes_torch_int8:
            # torch.ao announces its own deprecation on every call; the results are what we record
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao")

        from evoforge.compression.stages import protected_layers
        from evoforge.workload import task as tasks
        from evoforge.workload.inputs import ExportedModel

        layout = self.require_layout()
        splits = tasks.load_splits(self.task, layout.root)
        baseline = tasks.baseline_model(self.task, splits, layout.baseline, root=layout.root, device=self.device)
        example = tasks.example_input(splits)
        spec = splits.input_spec
        self._state = {
            "splits": splits,
            "spec": spec,
            "baseline": baseline,
            "references": {},  # (threads, draft) -> the exported baseline loaded with them
            "example": example,
            "latency_inputs": self.latency_inputs(splits),
            "calibration": calibration_batches(splits, self.task.batch_size) if {"static", "qat"} & set(self.runtime.quant_modes) else [],
            "protected": protected_layers(baseline, example),
            "record": self.baseline_record(),
            "evaluate": tasks.load_evaluate(self.task, layout.root) if self.task.evaluate is not None else None,
            "wrap": lambda artifact: ExportedModel(artifact, spec),
        }
        del torch

    def _reference(self, threads: int | None, draft: bool = False) -> Any:
        """The exported fp32 baseline, loaded in the runtime with ``threads`` (kept per count);
        with ``draft``, the baseline's draft export, which screening evaluations compare with."""
        assert self._state is not None
        references = self._state["references"]
        if (threads, draft) not in references:
            path = self._draft_baseline()[0] if draft else self.require_layout().baseline / self.artifact
            references[threads, draft] = self.runtime.load(path, threads=threads)
        return references[threads, draft]

    def _draft_baseline(self) -> tuple[Path, int]:
        """The baseline exported as a draft (`Runtime.export`), into a directory this worker
        owns until it exits, and its size in bytes."""
        st = self._state
        assert st is not None
        if "draft_baseline" not in st:
            scratch = tempfile.TemporaryDirectory(prefix="evoforge-draft-")  # removed when the worker exits
            path = self.runtime.export(st["baseline"], st["example"], Path(scratch.name) / self.artifact, draft=True)
            st["draft_baseline"] = (scratch, path, self.runtime.size_bytes(path))
        return st["draft_baseline"][1], st["draft_baseline"][2]

    def screening_examples(self, fraction: float, available: int) -> int:
        """How many of ``available`` validation examples a ``fraction``-fidelity evaluation scores
        on: ``ceil(fraction * available)``, but with a quality limit at least enough that one
        example is worth at most `SCREENING_RESOLUTION` of it (200 for a 1-point limit)."""
        wanted = math.ceil(fraction * available)
        if self.max_quality_drop is not None:
            floor = math.ceil(100.0 / (SCREENING_RESOLUTION * self.max_quality_drop)) if self.max_quality_drop > 0 else available
            wanted = max(wanted, floor)
        return max(1, min(available, wanted))

    def _validation(self, fraction: float, threads: int) -> tuple[Any, dict[str, float]]:
        """The validation split a ``fraction``-fidelity evaluation scores on (its first
        `screening_examples`), and the baseline's quality there (kept per size)."""
        st = self._state
        assert st is not None
        val = st["splits"].val
        count = len(val) if fraction >= 1.0 else self.screening_examples(fraction, len(val))
        if count >= len(val):
            return val, st["record"]["validation"]
        subset = val.subset(np.arange(count))
        known = st.setdefault("subset_baseline", {})
        if count not in known:
            known[count] = self._quality(st["wrap"](self._reference(threads)), subset)
        return subset, known[count]

    # ------------------------------------------------------------------ evaluation
    def _prefix_cache(self) -> PrefixCache | None:
        if self.prefix_seed is None or self.prefix_cache_mb <= 0 or self.layout is None:
            return None
        return PrefixCache(self.layout.prefix_cache, int(self.prefix_cache_mb * 2**20), code=evaluation_code_digest())

    def _compressed(self, genome: PipelineGenome, seed: int, state: dict[str, Any],
                    cache: PrefixCache | None = None, examples_fraction: float = 1.0) -> tuple[Any, int]:
        """The baseline (a copy) with the genome's pipeline applied, and how many of its stages
        came from ``cache``. Stage seeds come from the run's prefix seed and the pipeline up to
        each stage (`evoforge.compression.prefix`); runs stored before that used ``seed``. Every
        epoch trains on ``examples_fraction`` of the train split (`examples_per_epoch`)."""
        import torch

        from evoforge.compression.stages import StageContext, apply_pipeline, apply_stage
        from evoforge.workload.training import examples_per_epoch

        ctx = StageContext(
            data=state["splits"],
            training=genome.training,
            example_input=state["example"],
            seed=seed,
            protected=state["protected"],
            device=self.device,
            batch_size=self.task.batch_size,
        )
        if self.prefix_seed is None:
            with torch.random.fork_rng(), examples_per_epoch(examples_fraction):
                torch.manual_seed(seed)
                return apply_pipeline(copy.deepcopy(state["baseline"]), genome, ctx), 0

        def run_stage(model: Any, stage: Stage, stage_seed: int) -> Any:
            with torch.random.fork_rng(), examples_per_epoch(examples_fraction):
                torch.manual_seed(stage_seed)
                return apply_stage(model, stage, dataclasses.replace(ctx, seed=stage_seed))

        return apply_with_prefixes(state["baseline"], genome, self.prefix_seed, run_stage, cache, examples_fraction)

    def _qat_trainer(self, genome: PipelineGenome, seed: int, state: dict[str, Any]) -> Callable[[Any, int], object]:
        """Trains a runtime's fake-quantized model (QAT at export) with the genome's training
        settings, on CPU where int8 runs."""
        from evoforge.workload.training import train

        def run(model: Any, epochs: int) -> object:
            return train(model, state["splits"], genome.training, epochs=epochs, seed=seed, batch_size=self.task.batch_size)

        return run

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        from evoforge.compression.measure import count_macs, measure_latency, parameter_count
        from evoforge.workload.metrics import quality_drop_of
        from evoforge.workload.training import examples_per_epoch, record_validation_losses

        if not isinstance(genome, PipelineGenome):
            raise ConfigError(f"the compress domain takes pipeline genomes, got {genome.TYPE}")
        if self._state is None:
            self.setup_worker()
        st = self._state
        assert st is not None
        fraction = context.fidelity
        examples = fraction if self.screen_by == "examples" else 1.0
        if self.screen_by == "epochs":
            genome = at_fidelity(genome, fraction)
        val, base_quality = self._validation(fraction, context.threads)
        draft = fraction < 1.0 and self.runtime.drafts  # screening: a draft, compared with the baseline's draft
        in_torch, quant = split_quant(genome, self.runtime, st["calibration"], self._qat_trainer(genome, context.seed, st),
                                      weight_bits=None if self.int8_weight_bits == "auto" else int(self.int8_weight_bits))
        timings: dict[str, float] = {}
        start = time.perf_counter()
        with record_validation_losses() as curve:
            model, reused = self._compressed(in_torch, context.seed, st, cache=self._prefix_cache(), examples_fraction=examples)
        timings["compress_s"] = time.perf_counter() - start

        scratch = None
        out_dir = context.artifact_dir
        if out_dir is None:
            scratch = tempfile.mkdtemp(prefix="evoforge-")
            out_dir = Path(scratch)
        try:
            t = time.perf_counter()
            with examples_per_epoch(examples):  # a runtime's quantization-aware training runs at export
                path = self.runtime.export(model, st["example"], out_dir / self.artifact, quant=quant, draft=draft)
            timings["export_s"] = time.perf_counter() - t
            t = time.perf_counter()
            exported = self.runtime.load(path, threads=context.threads)
            timings["load_s"] = time.perf_counter() - t
            t = time.perf_counter()
            quality = self._quality(st["wrap"](exported), val)
            timings["quality_s"] = time.perf_counter() - t
            t = time.perf_counter()
            repeats = self.latency_repeats if fraction >= 1.0 else max(3, math.ceil(fraction * self.latency_repeats))
            latency = measure_latency(exported, self._reference(context.threads, draft), st["latency_inputs"],
                                      repeats=repeats, calls=LATENCY_CALLS, threads=context.threads).to_dict()
            timings["latency_s"] = time.perf_counter() - t
            size = self.runtime.size_bytes(path)
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
        record = st["record"]
        name = self.task.quality_metric
        drop = quality_drop_of(self._direction, base_quality[name], quality[name], relative=self.relative_drop)
        params = parameter_count(model)
        try:
            macs: float | None = float(count_macs(model, st["example"]))
        except Exception:  # noqa: BLE001 - MACs are informative only
            macs = None
        eager = record.get("versus_eager")
        metrics: dict[str, Any] = {
            **{f"val_{k}": v for k, v in quality.items()},
            **latency,
            "latency_threads": context.threads,
            "latency_vs_eager": latency["latency_ratio_batch"] * eager["ratio_batch"] if eager else None,
            "latency_vs_best_fp32": latency["latency_ratio_batch"] * fastest_fp32(record)[1],
            "quality_drop": drop,
            "size_bytes": size,
            "size_ratio": size / (self._draft_baseline()[1] if draft else record["size_bytes"]),
            "draft_artifact": draft,
            "params": params,
            "params_ratio": params / max(1, record["params"]),
            "macs": macs,
            "macs_ratio": None if macs is None else macs / max(1, record["macs"]),
            "pipeline": describe_pipeline(genome),
            "runtime": self.runtime.name,
            MACHINE_METRIC: machine_name(),
            **({"int8_weight_bits": quant.int8_weight_bits()}
               if quant is not None and quant.mode != "bf16" and self.runtime.narrows_int8_weights else {}),
            "val_loss_curve": [round(v, 6) for v in curve],
            "prefix_reused_stages": reused,
            **timings,
        }
        objectives = {}
        for objective in self.objective_names:
            value = metrics.get(OBJECTIVES[objective].metric)
            objectives[objective] = math.nan if value is None else float(value)
        constraints = {"quality_drop_limit": drop - self.max_quality_drop} if self.max_quality_drop is not None else {}
        artifacts = {"model": f"artifacts/{context.artifact_dir.name}/{self.artifact}"} if context.artifact_dir else {}
        return Evaluation(Status.OK, objectives, constraints, metrics=metrics, artifacts=artifacts)

    @property
    def _direction(self) -> tuple[bool, bool]:
        from evoforge.workload.task import quality_direction

        return quality_direction(self.task)

    # ------------------------------------------------------------------ final numbers
    def _artifact_path(self, evaluation: Evaluation) -> Path | None:
        relative = evaluation.artifacts.get("model")
        path = self.require_layout().resolve(relative) if relative else None
        return path if path is not None and path.exists() else None

    def test_quality(self, members: Sequence[tuple[str, Evaluation]], splits: Splits | None = None) -> dict[str, dict[str, Any]]:
        """Test-split quality of each member (and of ``"baseline"``), computed on its stored
        artifact in the runtime; members without a stored artifact are left out. ``splits``: the
        task's data when already loaded."""
        from evoforge.workload.inputs import ExportedModel
        from evoforge.workload.task import load_splits

        splits = load_splits(self.task, self._root) if splits is None else splits
        out: dict[str, dict[str, Any]] = {"baseline": dict(self.baseline_record()["test"])}
        for key, evaluation in members:
            path = self._artifact_path(evaluation)
            if path is not None:
                out[key] = self._quality(ExportedModel(self.runtime.load(path), splits.input_spec), splits.test)
        return out

    def finalize(self, members: Sequence[tuple[str, Evaluation]]) -> dict[str, dict[str, Any]]:
        """`test_quality`, and each member's latency ratios (``latency_ratio`` at batch B,
        ``latency_b1_ratio`` at batch 1) timed again against the baseline (`retime`): the search
        keeps the candidates that timed fastest, so their own timings flatter them (the winner's
        curse), while a timing drawn after the choice does not."""
        from evoforge.workload.task import load_splits

        splits = load_splits(self.task, self._root)
        out = self.test_quality(members, splits)
        inputs = self.latency_inputs(splits)
        for key, evaluation in members:
            if key in out and (ratios := self.retime(evaluation, inputs)) is not None:
                out[key].update(ratios)
        return out

    def _retime_sessions(self, metrics: Mapping[str, Any]) -> int:
        """How many timings `retime` takes of an evaluation with these metrics."""
        session_ms = self.latency_repeats * LATENCY_CALLS * sum(float(metrics.get(k) or 0.0) for k in (
            "latency_b1_ms", "baseline_latency_b1_ms", "latency_batch_ms", "baseline_latency_batch_ms"))
        return RETIME_SESSIONS if session_ms <= 0 else max(1, min(RETIME_SESSIONS, int(1000 * RETIME_SECONDS / session_ms)))

    def finalize_seconds(self, members: Sequence[tuple[str, Evaluation]]) -> float:
        """Per member, from its own evaluation's timings: a load and a scoring for the test split
        (scored as validation was), and for each of `retime`'s timings a load of it and of the
        baseline (taken to load as fast) and the timing itself."""
        def seconds(metrics: Mapping[str, Any]) -> float:
            load, sessions = float(metrics.get("load_s") or 0.0), self._retime_sessions(metrics)
            return load + float(metrics.get("quality_s") or 0.0) + sessions * (2 * load + float(metrics.get("latency_s") or 0.0))

        return sum(seconds(e.metrics) for _, e in members)

    def latency_inputs(self, splits: Splits | None = None) -> Any:
        """The batch-B inputs every timing of the run uses (its first row is the batch-1 input)."""
        from evoforge.workload.inputs import to_tensors
        from evoforge.workload.task import example_input, load_splits

        splits = load_splits(self.task, self._root) if splits is None else splits
        return splits.input_spec.flatten(to_tensors(example_input(splits, self.task.latency_batch), self.device))

    def retime(self, evaluation: Evaluation, inputs: Any = None) -> dict[str, float] | None:
        """The evaluation's stored artifact timed against the fp32 baseline on ``inputs``
        (default `latency_inputs`), interleaved, with the thread count the search timed it with:
        ``RETIME_SESSIONS`` timings of the run's repeats, each with both models loaded afresh
        (a load can land slow or fast), as many as fit in ``RETIME_SECONDS`` at the latencies the
        search measured (at least one); the median ratio of them. None for an evaluation with no
        stored artifact, a draft artifact (screenings), or no recorded thread count (runs stored
        before it was recorded)."""
        from evoforge.compression.measure import measure_latency

        m = evaluation.metrics
        threads = m.get("latency_threads")
        path = self._artifact_path(evaluation)
        if threads is None or path is None or m.get("draft_artifact"):
            return None
        sessions = self._retime_sessions(m)
        if inputs is None:
            inputs = self.latency_inputs()
        batch, b1 = [], []
        for _ in range(sessions):
            candidate = self.runtime.load(path, threads=int(threads))
            reference = self.runtime.load(self.require_layout().baseline / self.artifact, threads=int(threads))
            timing = measure_latency(candidate, reference, inputs, repeats=self.latency_repeats, calls=LATENCY_CALLS,
                                     threads=int(threads))
            batch.append(timing.batch.ratio)
            b1.append(timing.b1.ratio)
        return {"latency_ratio": float(np.median(batch)), "latency_b1_ratio": float(np.median(b1))}

    def export_member(self, key: str, genome: Genome, evaluation: Evaluation, out_dir: Path, *,
                      claimed: Mapping[str, float] | None = None, formats: Sequence[str] = (),
                      seed: int | None = None) -> dict[str, Any]:
        """Copy the member's artifact to ``out_dir`` and re-verify it in a fresh process: test
        quality (an `EvaluationError` when it differs from ``claimed``, the numbers `show`
        reports, beyond one example's worth) and latency against the fp32 reference. Each
        runtime in ``formats`` (besides the run's own) gets the member rebuilt with its candidate
        ``seed`` and exported to it (float members only: int8 and bf16 belong to the runtime
        that applied them), verified alike."""
        from evoforge.workload.task import load_splits

        layout = self.require_layout()
        source = self._artifact_path(evaluation)
        if source is None:
            raise ConfigError(f"member {key} has no stored artifact in {layout.root}; was the run started without a run directory?")
        extra = [get_runtime(name) for name in dict.fromkeys(formats) if name != self.runtime.name]
        modes = [s["mode"] for s in genome.stages if s.kind == "quantize"] if isinstance(genome, PipelineGenome) else []
        if extra and modes:
            raise ConfigError(
                f"member {key[:12]} is {'bf16' if modes[-1] == 'bf16' else 'int8'} in {self.runtime.name}, which does not convert to "
                f"{', '.join(r.name for r in extra)}; export a float member, or only --format {self.runtime.name}"
            )
        splits = load_splits(self.task, layout.root)  # refuses changed inputs before anything is written
        threads = int(evaluation.metrics.get("latency_threads") or 1)  # as the search timed it (runs before it was recorded: 1)
        out_dir.mkdir(parents=True, exist_ok=True)
        dest = out_dir / self.artifact
        shutil.copyfile(source, dest)
        card = {
            "artifact": str(dest),
            "runtime": self.runtime.name,
            "load_with": self.runtime.load_snippet(dest),
            "inputs": splits.input_spec.describe(),
            "task": self.task.name,
            "pipeline": describe_pipeline(genome) if isinstance(genome, PipelineGenome) else "",
            "genome": json.loads(genome.to_json()),
            "objectives": evaluation.objectives,
            "objectives_timed_on": evaluation.metrics.get("machine"),
            **_int8_weight_note(evaluation.metrics.get("int8_weight_bits")),
            **self._verify(self.runtime, dest, claimed, threads, _saturation_hint(evaluation.metrics.get("int8_weight_bits"))),
            "baseline_test": self.baseline_record()["test"],
        }
        if extra:
            if seed is None:
                raise ConfigError("converting a member to other formats needs its candidate seed to rebuild it")
            rebuilt = self.member_model(key, genome, evaluation, seed)
            card["formats"] = {}
            for runtime in extra:
                path = runtime.export(rebuilt.model, self._state["example"], out_dir / runtime.artifact_name)  # type: ignore[index]
                card["formats"][runtime.name] = {
                    "artifact": str(path), "load_with": runtime.load_snippet(path), **self._verify(runtime, path, claimed, threads)
                }
        (out_dir / "card.json").write_text(json.dumps(card, indent=2))
        return card

    def _verify(self, runtime: Runtime, path: Path, claimed: Mapping[str, float] | None, threads: int,
                hint: str = "") -> dict[str, Any]:
        """Reload ``path`` in a fresh process (`evoforge.compression.verify`); raise
        `EvaluationError` (ending in ``hint``) when its test quality differs from ``claimed`` by
        more than one example's worth."""
        from evoforge.compression.verify import verify_in_fresh_process
        from evoforge.errors import EvaluationError
        from evoforge.workload.task import metric_of

        verified = verify_in_fresh_process({
            "runtime": runtime.name, "path": str(path), "reference_runtime": self.runtime.name,
            "reference_path": str(self.require_layout().baseline / self.artifact), "task": self.task.to_dict(),
            "root": str(self._root), "repeats": self.latency_repeats, "threads": threads,
        })
        name = self.task.quality_metric
        if claimed and name in claimed:
            fresh, stated = verified["test"][name], float(claimed[name])
            percent = self.task.evaluate is None and metric_of(self.task).percent
            tolerance = 1.0 / verified["test_examples"] + 1e-9 if percent else 1e-4 * max(1.0, abs(stated))
            if not abs(fresh - stated) <= tolerance:
                raise EvaluationError(
                    f"{path.name} reloaded in a fresh {runtime.name} process scores {name} {fresh:.6g} on the test split, "
                    f"not the {stated:.6g} the run reports (tolerance {tolerance:.3g}); the artifact is not what was measured{hint}"
                )
        return {"test": verified["test"], "verified_in_fresh_process": True, "latency": verified["latency"],
                "latency_threads": threads, "latency_timed_on": machine_name()}

    def member_model(self, key: str, genome: Genome, evaluation: Evaluation, seed: int) -> RebuiltMember:
        """The member as a float PyTorch module (its pipeline re-applied to the baseline with
        its own seed) with the task's data; int8 members have no float form."""
        if not isinstance(genome, PipelineGenome):
            raise ConfigError(f"the compress domain takes pipeline genomes, got {genome.TYPE}")
        if any(s.kind == "quantize" for s in genome.stages):
            raise ConfigError(f"member {key[:12]} is int8-quantized, which has no float model to hand on; pick a float member")
        if self._state is None:
            self.setup_worker()
        assert self._state is not None
        model = self._compressed(genome, seed, self._state)[0].eval()
        return RebuiltMember(model=model, data=self._state["splits"], description=describe_pipeline(genome))


def describe_pipeline(genome: PipelineGenome) -> str:
    """'prune(l2 0.50 x1 uniform r4 +4ep) -> quantize(static pc)' style summary."""
    if not genome.stages:
        return "baseline (no compression)"
    parts = []
    for s in genome.stages:
        p = dict(s.params)
        if s.kind == "prune":
            parts.append(f"prune({p['importance']} {p['ratio']:.2f} x{p['steps']} {p['allocation']} r{p['round_to']} +{p['epochs']}ep)")
        elif s.kind == "lowrank":
            parts.append(f"lowrank(energy {p['energy']:.3f} reg {p['reg_epochs']}ep +{p['epochs']}ep)")
        elif s.kind == "quantize":
            flags = ("pc " if p["per_channel"] else "") + ("float-edges " if p["keep_float_edges"] else "")
            extra = f" {p['epochs']}ep" if p["mode"] == "qat" else ""
            parts.append(f"quantize({p['mode']} {flags.strip()}{extra})".replace(" )", ")"))
        else:
            parts.append(f"finetune({p['epochs']}ep)")
    t = genome.training
    return " -> ".join(parts) + f" | {t.optimizer} lr {t.lr:.2g} {t.loss}"


def calibration_batches(splits: Any, batch_size: int, rows: int = CALIBRATION_ROWS) -> list[tuple[Any, ...]]:
    """Up to ``rows`` examples of the calibration split as positional batches, for runtimes that
    calibrate static int8 at export."""
    from evoforge.workload.inputs import to_tensors

    spec = splits.input_spec
    calib = splits.calib.subset(np.arange(min(rows, len(splits.calib))))
    return [spec.flatten(to_tensors(x)) for x, _ in calib.batches(batch_size)]


def _clipped(reason: str, limit: int = 160) -> str:
    """``reason`` cut to ``limit`` characters for a one-line note."""
    return reason if len(reason) <= limit else reason[: limit - 3].rstrip() + "..."
