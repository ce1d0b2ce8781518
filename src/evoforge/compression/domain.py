"""The PETRA domain: genomes are compression pipelines, evaluation compresses a copy of the
baseline, exports it, and measures quality, latency and size against the baseline."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.compression.genome import PipelineGenome, Stage
from evoforge.compression.operators import PipelineOperators
from evoforge.compression.task import Task
from evoforge.errors import ConfigError
from evoforge.genome import Genome
from evoforge.pareto import Objective
from evoforge.registry import Registry
from evoforge.search.domain import Domain, EvalContext, Mutation, register_domain
from evoforge.search.evaluation import Evaluation, Status

BASELINE_DIR = "baseline"
ARTIFACT = "model.pt"


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


def default_quality_limit(task_type: str) -> tuple[float, bool]:
    """(max drop, relative): 1 accuracy point for classification, 5% for regression."""
    return (1.0, False) if task_type == "classification" else (5.0, True)


def initial_pipelines(base: PipelineGenome) -> list[PipelineGenome]:
    """Warm starts: the untouched baseline and a few pipelines known to work on CPU."""
    q = {"per_channel": True, "keep_float_edges": False, "epochs": 0}
    prune = {"importance": "l2", "steps": 1, "allocation": "uniform", "round_to": 4, "epochs": 4}
    stages = [
        (),
        (Stage.make("quantize", mode="static", **q),),
        (Stage.make("prune", ratio=0.5, **prune), Stage.make("quantize", mode="static", **q)),
        (Stage.make("prune", ratio=0.3, **prune),),
        (Stage.make("lowrank", energy=0.95, reg_epochs=2, epochs=2),),
        (Stage.make("quantize", mode="dynamic", **q),),
    ]
    return [dataclasses.replace(base, stages=s) for s in stages]


@register_domain
class CompressDomain(Domain):
    """Configured by a `Task` (as a dict), the run directory holding the cached baseline, the
    objective names (see `OBJECTIVES`), and the quality constraint: ``max_quality_drop`` in
    accuracy points (or percent when ``relative_drop``); None disables the constraint."""

    name = "compress"

    def __init__(
        self,
        task: Mapping[str, Any],
        run_dir: str,
        objectives: Sequence[str] = DEFAULT_OBJECTIVES,
        max_quality_drop: float | None = -1.0,
        relative_drop: bool | None = None,
        device: str = "cpu",
        latency_repeats: int = 11,
    ) -> None:
        self.task = Task.from_dict(dict(task))
        self.run_dir = Path(run_dir)
        limit, relative = default_quality_limit(self.task.task_type)
        self.relative_drop = relative if relative_drop is None else relative_drop
        self.max_quality_drop = limit if max_quality_drop == -1.0 else max_quality_drop
        if self.max_quality_drop is not None and self.max_quality_drop < 0:
            raise ConfigError(f"max_quality_drop must be >= 0, got {self.max_quality_drop}")
        if not objectives:
            raise ConfigError("give at least one objective; valid: " + ", ".join(OBJECTIVES))
        self.objective_names = list(objectives)
        specs = [OBJECTIVES[n] for n in self.objective_names]
        drop_ref = self.max_quality_drop if self.max_quality_drop else 10.0
        self.objectives = tuple(
            Objective(n, reference=(drop_ref * 1.05 + 1e-9) if n == "quality_drop" else s.reference)
            for n, s in zip(self.objective_names, specs)
        )
        self.constraints = ("quality_drop_limit",) if self.max_quality_drop is not None else ()
        self.device = device
        self.latency_repeats = latency_repeats
        self.operators = PipelineOperators(self.task.task_type)
        self._mutations: Registry[Mutation] = self.operators.registry()  # type: ignore[assignment]
        self._state: dict[str, Any] | None = None

    def config(self) -> dict[str, Any]:
        return {
            "task": self.task.to_dict(),
            "run_dir": str(self.run_dir),
            "objectives": self.objective_names,
            "max_quality_drop": self.max_quality_drop,
            "relative_drop": self.relative_drop,
            "device": self.device,
            "latency_repeats": self.latency_repeats,
        }

    @property
    def mutations(self) -> Mapping[str, Mutation]:
        return self._mutations

    @property
    def base_genome(self) -> PipelineGenome:
        return PipelineGenome(training=self.task.training)

    def initial_population(self, rng: np.random.Generator, size: int) -> list[Genome]:
        seeds: list[Genome] = []
        seeds.extend(initial_pipelines(self.base_genome)[:size])
        while len(seeds) < size:
            seeds.append(self.sample(rng))
        return seeds

    def sample(self, rng: np.random.Generator) -> Genome:
        return self.operators.sample(rng, base=self.task.training)

    def describe(self, genome: Genome) -> str:
        assert isinstance(genome, PipelineGenome)
        return describe_pipeline(genome)

    # ------------------------------------------------------------------ baseline
    def prepare(self, run_dir: Path | None) -> None:
        """Train (or load) the baseline, export it, and record its numbers in
        ``run_dir/baseline/baseline.json`` (skipped when already there)."""
        base = self.run_dir / BASELINE_DIR
        if (base / "baseline.json").exists() and (base / ARTIFACT).exists():
            return
        from evoforge.compression import task as tasks
        from evoforge.compression.export import export_model, load_exported
        from evoforge.compression.measure import artifact_size_bytes, count_macs, parameter_count

        splits = tasks.load_splits(self.task)
        model = tasks.baseline_model(self.task, splits, base, device=self.device)
        example = tasks.example_input(self.task, splits)
        export_model(model, example, base / ARTIFACT)
        exported = load_exported(base / ARTIFACT)
        record = {
            "validation": self._quality(exported, splits.x_val, splits.y_val),
            "test": self._quality(exported, splits.x_test, splits.y_test),
            "size_bytes": (base / ARTIFACT).stat().st_size,
            "params": parameter_count(model),
            "macs": count_macs(model, example),
            "state_size_bytes": artifact_size_bytes(model, example),
        }
        (base / "baseline.json").write_text(json.dumps(record, indent=2))

    def baseline_record(self) -> dict[str, Any]:
        path = self.run_dir / BASELINE_DIR / "baseline.json"
        if not path.exists():
            raise ConfigError(f"no baseline in {path.parent}; it is created when the run starts")
        return dict(json.loads(path.read_text()))

    def _quality(self, model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        from evoforge.compression.quality import METRICS, score
        from evoforge.compression.task import metric_of
        from evoforge.compression.training import predict

        metric = metric_of(self.task)
        extra = [] if metric.name in METRICS else [metric]
        return score(y, predict(model, x, device=self.device), self.task.task_type, extra=extra)

    def setup_worker(self) -> None:
        import warnings

        import torch

        # torch.ao announces its own deprecation on every call; the results are what we record
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao")

        from evoforge.compression import task as tasks
        from evoforge.compression.export import load_exported
        from evoforge.compression.stages import protected_layers

        splits = tasks.load_splits(self.task)
        baseline = tasks.baseline_model(self.task, splits, self.run_dir / BASELINE_DIR, device=self.device)
        example = tasks.example_input(self.task, splits)
        idx = np.arange(self.task.latency_batch) % len(splits.x_val)
        self._state = {
            "splits": splits,
            "baseline": baseline,
            "baseline_exported": load_exported(self.run_dir / BASELINE_DIR / ARTIFACT),
            "example": example,
            "latency_inputs": torch.as_tensor(splits.x_val[idx]).to(self.device),
            "protected": protected_layers(baseline, example),
            "record": self.baseline_record(),
        }

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        import torch

        from evoforge.compression.export import export_model, load_exported
        from evoforge.compression.measure import count_macs, measure_latency, parameter_count
        from evoforge.compression.quality import quality_drop
        from evoforge.compression.stages import StageContext, apply_pipeline
        from evoforge.compression.task import metric_of

        if not isinstance(genome, PipelineGenome):
            raise ConfigError(f"the compress domain takes pipeline genomes, got {genome.TYPE}")
        if self._state is None:
            self.setup_worker()
        st = self._state
        assert st is not None
        timings: dict[str, float] = {}
        start = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(context.seed)
            model = copy.deepcopy(st["baseline"])
            ctx = StageContext(
                data=st["splits"],
                training=genome.training,
                example_input=st["example"],
                seed=context.seed,
                protected=st["protected"],
                device=self.device,
                batch_size=self.task.batch_size,
            )
            model = apply_pipeline(model, genome, ctx)
        timings["compress_s"] = time.perf_counter() - start

        scratch = None
        out_dir = context.artifact_dir
        if out_dir is None:
            scratch = tempfile.mkdtemp(prefix="evoforge-")
            out_dir = Path(scratch)
        try:
            t = time.perf_counter()
            path = export_model(model, st["example"], out_dir / ARTIFACT)
            exported = load_exported(path)
            timings["export_s"] = time.perf_counter() - t
            t = time.perf_counter()
            splits = st["splits"]
            quality = self._quality(exported, splits.x_val, splits.y_val)
            timings["quality_s"] = time.perf_counter() - t
            t = time.perf_counter()
            latency = measure_latency(
                exported, st["baseline_exported"], st["latency_inputs"], repeats=self.latency_repeats, threads=context.threads
            ).to_dict()
            timings["latency_s"] = time.perf_counter() - t
            size = path.stat().st_size
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
        record = st["record"]
        metric = metric_of(self.task)
        drop = quality_drop(metric, record["validation"][metric.name], quality[metric.name], relative=self.relative_drop)
        if self.relative_drop:
            drop *= 100.0
        params = parameter_count(model)
        try:
            macs: float | None = float(count_macs(model, st["example"]))
        except Exception:  # noqa: BLE001 - MACs are informative only
            macs = None
        metrics: dict[str, Any] = {
            **{f"val_{k}": v for k, v in quality.items()},
            **latency,
            "quality_drop": drop,
            "size_bytes": size,
            "size_ratio": size / record["size_bytes"],
            "params": params,
            "params_ratio": params / max(1, record["params"]),
            "macs": macs,
            "macs_ratio": None if macs is None else macs / max(1, record["macs"]),
            "pipeline": describe_pipeline(genome),
            **timings,
        }
        objectives = {}
        for name in self.objective_names:
            value = metrics.get(OBJECTIVES[name].metric)
            objectives[name] = math.nan if value is None else float(value)
        constraints = {"quality_drop_limit": drop - self.max_quality_drop} if self.max_quality_drop is not None else {}
        artifacts = {"model": f"artifacts/{context.artifact_dir.name}/{ARTIFACT}"} if context.artifact_dir else {}
        return Evaluation(Status.OK, objectives, constraints, metrics=metrics, artifacts=artifacts)

    # ------------------------------------------------------------------ final numbers
    def finalize(self, members: Sequence[tuple[str, Evaluation]], run_dir: Path) -> dict[str, dict[str, Any]]:
        """Test-split quality of each member, computed on its exported TorchScript artifact."""
        from evoforge.compression.export import load_exported
        from evoforge.compression.task import load_splits

        splits = load_splits(self.task)
        out: dict[str, dict[str, Any]] = {"baseline": self.baseline_record()["test"]}
        for key, evaluation in members:
            path = run_dir / evaluation.artifacts.get("model", "")
            if evaluation.artifacts.get("model") and path.exists():
                out[key] = self._quality(load_exported(path), splits.x_test, splits.y_test)
        return out

    def export_member(self, key: str, genome: Genome, evaluation: Evaluation, run_dir: Path, out_dir: Path) -> dict[str, Any]:
        """Copy the member's TorchScript artifact to ``out_dir``, reload it with plain
        ``torch.jit.load`` and recompute its test quality."""
        from evoforge.compression.export import load_exported
        from evoforge.compression.task import load_splits

        src = run_dir / evaluation.artifacts.get("model", "")
        if not evaluation.artifacts.get("model") or not src.exists():
            raise ConfigError(f"member {key} has no stored artifact in {run_dir}; was the run started without a run directory?")
        out_dir.mkdir(parents=True, exist_ok=True)
        dest = out_dir / ARTIFACT
        shutil.copyfile(src, dest)
        reloaded = load_exported(dest, device=self.device)  # plain torch.jit.load, as a user would
        splits = load_splits(self.task)
        test = self._quality(reloaded, splits.x_test, splits.y_test)
        card = {
            "artifact": str(dest),
            "load_with": f"torch.jit.load({str(dest)!r})",
            "task": self.task.name,
            "pipeline": describe_pipeline(genome) if isinstance(genome, PipelineGenome) else "",
            "genome": json.loads(genome.to_json()),
            "objectives": evaluation.objectives,
            "test": test,
            "baseline_test": self.baseline_record()["test"],
            "input_shape": list(load_splits(self.task).input_shape),
        }
        (out_dir / "card.json").write_text(json.dumps(card, indent=2))
        return card


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
