"""Structured channel pruning with torch-pruning's dependency graph (MetaPruner).

Whole channels / neurons are removed and every coupled layer (BN, LayerNorm, residual partners,
depthwise convs, the next layer's inputs) is resized with them, so the result is a plain,
smaller ``nn.Module``. Layers in ``ctx.protected`` keep their output channels.

When torch-pruning cannot follow the whole model's channels (ShuffleNet's channel shuffle, Swin's
window partition), the model is pruned block by block instead (`block_pruners`): the largest
submodules whose channels it can follow are each pruned inside only, their outputs kept, so the
channels a shuffle or a reshape regroups are never touched.

torch-pruning can also follow a model and map channels wrongly without an error (a channel
shuffle it treats as a plain view, a permutation it treats as elementwise): before pruning, every
group whose layers can be checked is tried once on a copy (`misread_layers`), and a group whose
removal of dead channels changes the output is kept whole.

Attention is pruned by whole heads: every module with a head count attribute
(``num_attention_heads``, ``num_heads``, ``n_heads``) and query / key / value ``Linear``
children, plain or factorized by low-rank (BERT, DistilBERT, ViT and most transformers), is
handed to torch-pruning's head support, which removes the same heads from q, k and v and keeps
each head's width; the module's head count is updated afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import torch
import torch_pruning as tp
from torch import Tensor, nn

from evoforge.compression.genome import IMPORTANCES, Stage
from evoforge.compression.stages import STAGES, StageContext
from evoforge.errors import ConfigError, EvaluationError, PruningWarning
from evoforge.hostlock import compute_step
from evoforge.workload.inputs import call_model, output_tensor, to_tensors
from evoforge.workload.training import LossFn, loss_function, train

_GRAD_EXAMPLES = 256  # calibration examples used to estimate gradients (taylor) per pruning step
_HESSIAN_EXAMPLES = 64  # examples whose squared per-example gradients estimate the Hessian diagonal
_MAX_GLOBAL_RATIO = 0.95  # with global allocation no layer loses more than this share of its channels
HEAD_ATTRIBUTES = ("num_attention_heads", "num_heads", "n_heads")
_QKV_NAME = re.compile(r"^(q|k|v|query|key|value|[qkv]_(proj|lin)|to_[qkv])$")
_FUSED_QKV_NAME = re.compile(r"^(c_attn|qkv|qkv_proj|Wqkv|query_key_value)$")


class _BNScaleOrL1(tp.importance.Importance):  # type: ignore[misc]  # torch-pruning ships no type hints
    """BN scale factor (network slimming) for groups that hold a batch norm, L1 magnitude for the rest."""

    def __init__(self) -> None:
        self._bn = tp.importance.BNScaleImportance()
        self._l1 = tp.importance.MagnitudeImportance(p=1)

    def __call__(self, group: tp.dependency.Group) -> Tensor | None:
        scores = self._bn(group)
        return cast(Tensor | None, self._l1(group) if scores is None else scores)


def make_importance(name: str) -> tp.importance.Importance:
    """The torch-pruning importance criterion for one of `IMPORTANCES`."""
    factories = {
        "l1": lambda: tp.importance.MagnitudeImportance(p=1),
        "l2": lambda: tp.importance.MagnitudeImportance(p=2),
        "lamp": lambda: tp.importance.LAMPImportance(p=2),
        "taylor": tp.importance.TaylorImportance,
        "hessian": tp.importance.HessianImportance,
        "bn_scale": _BNScaleOrL1,
        "random": tp.importance.RandomImportance,
    }
    if name not in factories:
        raise ConfigError(f"unknown pruning importance {name!r}; choose one of {list(IMPORTANCES)}")
    return factories[name]()


def _accumulate_gradients(model: nn.Module, ctx: StageContext, loss: LossFn, *, squared: bool) -> None:
    """Fill ``p.grad`` from calibration data: summed batch gradients of the task loss, or (``squared``)
    the mean squared per-example gradient, a diagonal Fisher estimate of the Hessian."""
    model.eval()  # gradients only: keep batch-norm statistics untouched
    model.zero_grad(set_to_none=True)
    params = [p for p in model.parameters() if p.requires_grad]
    calib = ctx.data.calib
    if not squared:
        for x, y in calib.subset(np.arange(min(len(calib), _GRAD_EXAMPLES))).batches(ctx.batch_size):
            with compute_step():
                loss(call_model(model, to_tensors(x, ctx.device)), y.to(ctx.device)).backward()
        return
    n = min(len(calib), _HESSIAN_EXAMPLES)
    fisher = [torch.zeros_like(p) for p in params]
    for x, y in calib.subset(np.arange(n)).batches(1):
        with compute_step():
            grads = torch.autograd.grad(loss(call_model(model, to_tensors(x, ctx.device)), y.to(ctx.device)), params, allow_unused=True)
        for acc, g in zip(fisher, grads):
            if g is not None:
                acc += g.pow(2) / n
    for p, acc in zip(params, fisher):
        p.grad = acc


def attention_heads(model: nn.Module) -> list[tuple[nn.Module, str, list[nn.Linear]]]:
    """(module, head-count attribute, [q, k, v Linear children]) for every attention module whose
    heads torch-pruning can prune whole."""
    found = []
    for module in model.modules():
        attribute = next((a for a in HEAD_ATTRIBUTES if isinstance(getattr(module, a, None), int)), None)
        if attribute is None or getattr(module, attribute) < 1:
            continue
        heads = getattr(module, attribute)
        projections = [(n, _head_output(c)) for n, c in module.named_children() if _QKV_NAME.match(n)]
        qkv = [linear for _, linear in projections if linear is not None]
        if len(qkv) >= 2 and len(qkv) == len(projections) and all(c.out_features % heads == 0 for c in qkv):
            found.append((module, attribute, qkv))
    return found


def fused_qkv_projections(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers that compute queries, keys and values in one output (GPT-2's ``c_attn``,
    Swin's ``qkv``) which the attention then splits: torch-pruning cannot map their outputs
    through the split to heads, so their outputs are kept (their inputs follow the hidden size)."""
    return [m for name, m in model.named_modules() if isinstance(m, nn.Linear) and _FUSED_QKV_NAME.match(name.rsplit(".", 1)[-1])]


def _head_output(projection: nn.Module) -> nn.Linear | None:
    """The Linear whose outputs are the heads: the projection itself, or the last layer of a
    factorized one (low-rank folds a projection into a ``Sequential`` of two Linears)."""
    if isinstance(projection, nn.Sequential) and len(projection) > 0:
        projection = projection[-1]
    return projection if isinstance(projection, nn.Linear) else None


def head_schedule(ratio: float, steps: int, heads: int) -> list[float]:
    """Per-step shares of the *current* heads to remove (index 0 is before the first step, as in
    torch-pruning's schedules) so that ``ratio`` of ``heads`` (rounded, at least one kept) are
    gone after ``steps`` steps. torch-pruning removes ``ceil(share * current heads)`` per step;
    fed its own cumulative schedule it overshoots (4 heads, ratio 0.5, two steps: 1 head left),
    so uniform pruning gets this one."""
    shares, current = [0.0], heads
    for k in range(1, steps + 1):
        remaining = max(1, round(heads * (1 - ratio * k / steps)))
        removed = current - remaining
        shares.append(max(0.0, (removed - 1e-3) / current) if removed > 0 else 0.0)
        current = remaining
    return shares


def _update_head_counts(attention: list[tuple[nn.Module, str, list[nn.Linear]]], pruner: Any) -> None:
    """Write the pruned head counts back into the attention modules (and their total width)."""
    for module, attribute, qkv in attention:
        heads = int(pruner.num_heads.get(qkv[0], getattr(module, attribute)))
        setattr(module, attribute, heads)
        if isinstance(getattr(module, "all_head_size", None), int):
            setattr(module, "all_head_size", qkv[0].out_features)  # noqa: B010  (nn.Module.__setattr__ is typed for tensors)


def _step_keeping_a_head(pruner: Any, attention: list[tuple[nn.Module, str, list[nn.Linear]]]) -> None:
    """One pruning step in which no attention module loses its last head: a module whose heads
    this step would all remove keeps them. Global allocation needs it: torch-pruning ranks heads
    across all modules with no floor per module, counts a module's heads down to zero even when
    it then refuses to cut the module, and the next step divides by that count (a bert-tokens
    candidate failed so)."""
    before = dict(pruner.num_heads)
    emptied: set[nn.Module] = set()
    no_head_this_step = pruner.global_pruning and pruner.prune_num_heads and _global_heads_to_remove(pruner, attention) <= 0
    if no_head_this_step:  # torch-pruning 1.6.1 would read a head threshold it never set: cut no head this step
        pruner.prune_num_heads = False
    try:
        for group in pruner.step(interactive=True):  # a group is yielded after the head counts are lowered
            emptied |= {linear for _, _, qkv in attention if any(pruner.num_heads[q] <= 0 for q in qkv) for linear in qkv}
            if not any(dep.target.module in emptied and pruner.DG.is_out_channel_pruning_fn(dep.handler) for dep, _ in group):
                group.prune()
    finally:
        if no_head_this_step:
            pruner.prune_num_heads = True
    for linear in emptied:  # leave those modules as they were before this step
        pruner.num_heads[linear] = before[linear]
        pruner.out_channel_groups[linear] = before[linear]


def _global_heads_to_remove(pruner: Any, attention: list[tuple[nn.Module, str, list[nn.Linear]]]) -> int:
    """How many heads torch-pruning's global allocation removes in the pruner's next step, by its
    own rule: the heads it ranks now minus the share of its initial heads the step's schedule keeps."""
    target = pruner.per_step_head_pruning_ratio[min(pruner.current_step + 1, len(pruner.per_step_head_pruning_ratio) - 1)]
    ignored = set(pruner.ignored_layers)
    ranked: int = sum(max(pruner.num_heads[q] for q in qkv) for _, _, qkv in attention if not ignored & set(qkv))
    return ranked - int(pruner.initial_total_heads * (1 - target))


def _epoch_shares(epochs: int, steps: int) -> list[int]:
    base = epochs // steps
    return [base] * (steps - 1) + [epochs - base * (steps - 1)]


@contextlib.contextmanager
def _channels_followed() -> Iterator[None]:
    """Raise one `EvaluationError` naming the cause when torch-pruning, building its dependency
    graph and groups inside the block, cannot follow the model's channels: the build fails
    (ShuffleNet's channel shuffle: a view that regroups channels), or its channel inference gives
    up in a reshape (Swin's window partition), after which grouping the channels grows without
    bound (Swin took 24 GB before it was killed). That warning is raised as an error, so the build
    stops there."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Maximum recursive depth", category=UserWarning)
        try:
            yield
        except UserWarning as exc:
            raise EvaluationError("torch-pruning cannot infer the channel counts through this model's reshapes: its shape "
                                  "inference reached its recursion limit (Swin's window partition does this)") from exc
        except Exception as exc:
            raise EvaluationError(f"torch-pruning cannot follow this model's channels ({type(exc).__name__} in its dependency "
                                  f"graph: {exc}); a view that regroups channels, such as a channel shuffle, is one cause") from exc


@contextlib.contextmanager
def _no_key_value_cache(model: nn.Module) -> Iterator[None]:
    """Switch off a transformers model's key/value cache (``config.use_cache``) while the block
    runs: its concatenation of the past and new keys has no channel sizes torch-pruning can trace
    (GPT-2). A classifier does not need the cache; the setting is restored afterwards."""
    configs: dict[int, Any] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "use_cache", False) is True:
            configs[id(config)] = config
    for config in configs.values():
        config.use_cache = False
    try:
        yield
    finally:
        for config in configs.values():
            config.use_cache = True


def _meta_pruner(module: nn.Module, example: Any, stage: Stage, ignored: list[nn.Module], heads: dict[nn.Linear, int],
                 *, steps: int | None = None, output_transform: Callable[[Any], Tensor] = output_tensor,
                 importance: tp.importance.Importance | None = None) -> Any:
    """torch-pruning's MetaPruner on ``module`` (traced on ``example``, from the prediction
    only: GPT-2 also returns its key/value cache) with the stage's settings."""
    return tp.pruner.MetaPruner(
        module,
        example,
        output_transform=output_transform,
        importance=make_importance(stage["importance"]) if importance is None else importance,
        global_pruning=stage["allocation"] == "global",
        pruning_ratio=stage["ratio"],
        max_pruning_ratio=_MAX_GLOBAL_RATIO,
        iterative_steps=stage["steps"] if steps is None else steps,
        ignored_layers=ignored,
        round_to=None if stage["round_to"] == 1 else stage["round_to"],
        num_heads=heads,
        prune_num_heads=bool(heads),
        prune_head_dims=not heads,
        head_pruning_ratio=stage["ratio"] if heads else 0.0,
    )


@dataclasses.dataclass
class _Call:
    """A module's first call in one forward pass of the model, and how often it was called."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any
    count: int = 1


def _record_calls(model: nn.Module, example: Any) -> dict[nn.Module, _Call]:
    """The calls of every module with parameters in one forward pass of ``model`` on ``example``."""
    calls: dict[nn.Module, _Call] = {}

    def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if module in calls:
            calls[module].count += 1
        else:
            calls[module] = _Call(args, kwargs, output)

    handles = [m.register_forward_hook(record, with_kwargs=True) for m in model.modules()
               if next(m.parameters(), None) is not None]
    training = model.training
    try:
        with torch.no_grad():
            call_model(model.eval(), example)  # (batch norms keep their running statistics)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return calls


def _marked_output(out: Any) -> Tensor:
    """The prediction through one more op, so that torch-pruning's trace gives the module's output
    a node of its own even when a layer computes it (without one, pruning that layer's outputs
    looks harmless)."""
    return output_tensor(out) * 1.0


def _output_roots(pruner: Any) -> list[nn.Module]:
    """The layers whose output channels reach the traced module's output (pruning them would
    change what the module hands on)."""
    return [next(iter(group))[0].target.module
            for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types)
            if any(dep.target.type == tp.ops.OPTYPE.OUTPUT for dep, _ in group)]


_PASS_THROUGH = frozenset({tp.ops.OPTYPE.ELEMENTWISE, tp.ops.OPTYPE.CONCAT, tp.ops.OPTYPE.SPLIT, tp.ops.OPTYPE.RESHAPE,
                           tp.ops.OPTYPE.UNBIND, tp.ops.OPTYPE.EXPAND, tp.ops.OPTYPE.SLICE})
_MISMATCH_RTOL = 1e-3  # removing exactly-zero channels changes only the order of float sums
_SILENCEABLE = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.PReLU)


def _silence(module: nn.Module, channels: list[int]) -> None:
    """Make output ``channels`` of ``module`` (one of `_SILENCEABLE`, not transposed) exactly zero
    whatever it reads (a batch norm without affine parameters: on zero inputs)."""
    tensors = [] if isinstance(module, nn.PReLU) else [module.weight, module.bias, getattr(module, "running_mean", None)]
    with torch.no_grad():
        for tensor in tensors:
            if isinstance(tensor, Tensor):
                tensor[channels] = 0


def _checked_removal(group: Any, pruner: Any, heads: dict[nn.Module, int], rng: np.random.Generator) -> Any | None:
    """``group`` cut to a random quarter of its channels (the same ones in every channel group)
    with those channels silenced in the model, or None when the group cannot be checked so: it
    reaches the output, holds an attention projection, or a layer other than a convolution, a
    linear layer, a batch norm or a PReLU (a layer norm's other channels change without them)."""
    for dep, _ in group:
        module = dep.target.module
        if dep.target.type in _PASS_THROUGH:
            continue
        if not isinstance(module, _SILENCEABLE) or getattr(module, "transposed", False) or module in heads:
            return None
    channel_groups = max((pruner.out_channel_groups if pruner.DG.is_out_channel_pruning_fn(dep.handler) else pruner.in_channel_groups)
                         .get(dep.target.module, 1) for dep, _ in group)
    size = len(group[0].idxs) // channel_groups
    if size < 2:
        return None
    offsets = rng.choice(size, max(1, size // 4), replace=False)
    channels = sorted(int(o) + g * size for g in range(channel_groups) for o in offsets)
    root = group[0].dep
    removal = pruner.DG.get_pruning_group(root.target.module, root.handler, channels)
    for dep, idxs in removal:
        if pruner.DG.is_out_channel_pruning_fn(dep.handler) and dep.target.type not in _PASS_THROUGH:
            _silence(dep.target.module, list(idxs))
    return removal


def misread_layers(module: nn.Module, example: Any, stage: Stage, ignored: list[nn.Module], heads: dict[nn.Linear, int],
                   *, output_transform: Callable[[Any], Tensor] = output_tensor) -> list[nn.Module]:
    """The root layers of the pruning groups torch-pruning maps wrongly in ``module``.

    On a copy, each group that can be checked (`_checked_removal`) has a random quarter of its
    channels made exactly zero and then removed: where torch-pruning maps the channels right, the
    copy's output is unchanged (up to float rounding). A group after which it changes, or the copy
    fails, is misread; after a failure the check starts again on a fresh copy without that group.
    The draw is seeded, so the answer depends only on the model and the example.
    """
    modules = dict(module.named_modules())
    misread: list[nn.Module] = []
    while True:
        trial, pruner, trial_heads = _copy_pruner(module, example, stage, ignored + misread, heads, output_transform)
        trial_names = {m: name for name, m in trial.named_modules()}
        rng = np.random.default_rng(0)
        broken = False
        for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
            root = modules[trial_names[group[0].dep.target.module]]
            try:
                removal = _checked_removal(group, pruner, trial_heads, rng)
            except Exception:  # noqa: BLE001  (torch-pruning cannot cut this group to some of its channels)
                misread.append(root)
                continue
            if removal is None:
                continue
            try:
                with torch.no_grad():
                    before = call_model(trial, example)
                    removal.prune()
                    after = call_model(trial, example)
            except Exception:  # noqa: BLE001  (the copy no longer runs: that group broke it)
                misread.append(root)
                broken = True
                break
            tolerance = _MISMATCH_RTOL * max(float(before.abs().max()) if before.numel() else 0.0, 1e-6)
            if after.shape != before.shape or not torch.allclose(after, before, rtol=_MISMATCH_RTOL, atol=tolerance):
                misread.append(root)
        if not broken:
            return misread


def _copy_pruner(module: nn.Module, example: Any, stage: Stage, ignored: list[nn.Module], heads: dict[nn.Linear, int],
                 output_transform: Callable[[Any], Tensor]) -> tuple[nn.Module, Any, dict[nn.Module, int]]:
    """An eval-mode deep copy of ``module``, a one-step magnitude pruner of it with the stage's
    settings (magnitude scores every group: gradient criteria skip a group without gradients),
    and ``heads`` on the copy; ``ignored`` and ``heads`` are mapped to the copy's layers by name."""
    names = {m: name for name, m in module.named_modules()}
    trial = copy.deepcopy(module).eval()
    trial_modules = dict(trial.named_modules())
    trial_heads = {trial_modules[names[linear]]: n for linear, n in heads.items()}
    pruner = _meta_pruner(trial, example, stage, [trial_modules[names[m]] for m in ignored], trial_heads, steps=1,
                          output_transform=output_transform, importance=make_importance("l1"))
    return trial, pruner, trial_heads


def _block_pruner(block: nn.Module, call: _Call, stage: Stage, ignored: list[nn.Module],
                  heads: dict[nn.Linear, int]) -> tuple[Any, list[nn.Module]] | bool:
    """A pruner of ``block``'s inner channels (its output channels kept) and the layers of the
    block `misread_layers` keeps whole, or False when
    torch-pruning cannot follow the block (or pruning it would change the shapes it hands on:
    a channel it shares with its input), or True when it can but the block has no inner channel."""
    inside = set(block.modules())
    ignored = [m for m in ignored if m in inside]
    heads = {linear: n for linear, n in heads.items() if linear in inside}
    try:
        with _channels_followed(), warnings.catch_warnings():
            # a parameter the block reads outside its layers (Swin's relative position table): torch-pruning
            # would guess which of its dims to cut, and grouping such a block grew to gigabytes
            warnings.filterwarnings("error", message="Unwrapped parameters detected", category=UserWarning)
            pruner = _meta_pruner(block, call.args, stage, ignored, heads, output_transform=_marked_output)
            ignored = ignored + _output_roots(pruner)
            misread = misread_layers(block, call.args, stage, ignored, heads, output_transform=_marked_output)
            ignored = ignored + misread
            pruner = _meta_pruner(block, call.args, stage, ignored, heads, output_transform=_marked_output)
            if not any(True for _ in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                                               root_module_types=pruner.root_module_types)):
                return True
            # prune a copy at the full ratio: the shapes it hands on must not change
            trial, trial_pruner, _ = _copy_pruner(block, call.args, stage, ignored, heads, _marked_output)
            for group in trial_pruner.step(interactive=True):
                group.prune()
            with torch.no_grad():
                shapes_kept = output_tensor(trial(*call.args)).shape == output_tensor(call.output).shape
    except EvaluationError:  # (anything the build, the trial or its forward raised)
        return False
    return (pruner, misread) if shapes_kept else False


def block_pruners(model: nn.Module, example: Any, stage: Stage, ignored: list[nn.Module],
                  heads: dict[nn.Linear, int]) -> list[tuple[nn.Module, Any, list[nn.Module]]]:
    """(block, pruner, layers kept whole) for the largest submodules of ``model`` that torch-pruning can follow and
    prune inside, their output channels kept (`_block_pruner`), found top down: a submodule it
    cannot follow is looked into. A block must be called once, with tensors only."""
    calls = _record_calls(model, example)
    found: list[tuple[nn.Module, Any, list[nn.Module]]] = []
    queue = list(model.children())
    while queue:
        module = queue.pop(0)
        call = calls.get(module)
        pruner: tuple[Any, list[nn.Module]] | bool = False
        if call is not None and call.count == 1 and not call.kwargs and call.args and all(isinstance(a, Tensor) for a in call.args):
            pruner = _block_pruner(module, call, stage, ignored, heads)
        if pruner is False:
            queue[:0] = list(module.children())  # depth first, in the model's order
        elif pruner is not True:
            found.append((module, *pruner))
    return found


def _warn_misread(model: nn.Module, layers: list[nn.Module]) -> None:
    """One `PruningWarning` naming the layers `misread_layers` found, which keep their channels."""
    if layers:
        names = {m: name for name, m in model.named_modules()}
        warnings.warn(f"pruning keeps the channels of {sorted(names[m] for m in layers)}: removing some of their dead channels "
                      "changed the model's output or broke it (torch-pruning misreads a channel shuffle or another "
                      "regrouping, or the channels are also a block's input)", PruningWarning, stacklevel=2)


@STAGES.register("prune")
def prune(model: nn.Module, stage: Stage, ctx: StageContext) -> nn.Module:
    """Remove ``ratio`` of the prunable channels in ``steps`` equal increments.

    ``allocation`` "uniform" prunes every layer group by the same ratio, "global" ranks channels
    across layers (no layer loses more than 95%). Channel counts are rounded to ``round_to``.
    Taylor and Hessian criteria get fresh calibration-split gradients before every step. The
    ``epochs`` fine-tuning epochs are shared out after the steps (the remainder after the last one).
    """
    modules = dict(model.named_modules())
    unknown = [name for name in ctx.protected if name not in modules]
    if unknown:
        raise ConfigError(f"protected layers {unknown} are not modules of the model; use names from model.named_modules()")
    loss = loss_function(ctx.training.loss, ctx.data.task_type)
    model.to(ctx.device)
    importance_name, steps = stage["importance"], stage["steps"]
    attention = attention_heads(model)
    heads = {linear: getattr(module, attribute) for module, attribute, qkv in attention for linear in qkv}
    ignored = [modules[name] for name in ctx.protected] + fused_qkv_projections(model)
    example = to_tensors(ctx.example_input, ctx.device)
    with torch.random.fork_rng(devices=[]), _no_key_value_cache(model):
        torch.manual_seed(ctx.seed)  # random importance draws from the global RNG
        try:
            with _channels_followed():
                misread = misread_layers(model, example, stage, ignored, heads)
                pruners = [(model, _meta_pruner(model, example, stage, ignored + misread, heads), misread)]
        except EvaluationError as whole:
            pruners = block_pruners(model, example, stage, ignored, heads)
            if not pruners:
                raise EvaluationError(f"{whole}; nor has any block of it inner channels torch-pruning can follow") from whole
        _warn_misread(model, [layer for _, _, misread in pruners for layer in misread])
        block_attention = {}  # the attention modules each pruner cuts heads of (pruning keeps the module objects)
        for block, pruner, _ in pruners:
            inside = set(block.modules())
            block_attention[pruner] = [a for a in attention if a[0] in inside]
            if pruner.num_heads and stage["allocation"] == "uniform":
                pruner.per_step_head_pruning_ratio = head_schedule(stage["ratio"], steps, max(pruner.num_heads.values()))
        for step, epochs in enumerate(_epoch_shares(stage["epochs"], steps)):
            if importance_name in ("taylor", "hessian"):
                _accumulate_gradients(model, ctx, loss, squared=importance_name == "hessian")
            for _, pruner, _ in pruners:
                _step_keeping_a_head(pruner, block_attention[pruner])
                _update_head_counts(block_attention[pruner], pruner)
            model.zero_grad(set_to_none=True)
            train(
                model, ctx.data, ctx.training, epochs=epochs, seed=ctx.seed + step,
                batch_size=ctx.batch_size, device=ctx.device,
            )
    return model.eval()
