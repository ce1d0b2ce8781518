"""The batch-independence check: the shuffle, the coupling measure, and what evolve does with it."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.mlir.batch_check import COUPLING_LIMIT, batch_coupling, can_check, mixed_batches
from tests.mlir.evolve_helpers import uid_names


def _batches(rows: int, size: int, inputs: int = 1) -> list[list[np.ndarray]]:
    data = [np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) + 1000 * k for k in range(inputs)]
    return [[x[i : i + size] for x in data] for i in range(0, rows, size)]


@pytest.mark.parametrize(("rows", "size", "inputs"), [(12, 4, 1), (4, 4, 1), (5, 5, 1), (2, 2, 1), (12, 4, 2)])
def test_the_shuffle_gives_every_example_new_mates_and_keeps_the_inputs_of_an_example_together(rows, size, inputs):
    batches = _batches(rows, size, inputs)
    mixed, order = mixed_batches(batches)
    used = min(2, len(batches))
    assert len(mixed) == used and all(len(b) == inputs and len(b[0]) == size for b in mixed)
    if used == 2:  # every example moves to a new place among new mates
        assert sorted(order) == list(range(used * size)) and not np.any(order == np.arange(used * size))
    else:  # one batch: half its examples, twice, and a new example 0
        kept = set(order.tolist())
        assert len(kept) == (size + 1) // 2 and order[0] != 0
    originals = [np.concatenate([b[i] for b in batches[:used]]) for i in range(inputs)]
    for i in range(inputs):
        np.testing.assert_array_equal(np.concatenate([b[i] for b in mixed]), originals[i][order])
    _, same = mixed_batches(batches)  # the same shuffle every time
    np.testing.assert_array_equal(order, same)


def _run(batches, fn):
    return [[fn(b[0])] for b in batches]


@pytest.mark.parametrize("rows", [12, 4])
def test_a_per_example_program_has_no_coupling_and_one_reading_example_0_has(rows):
    batches = _batches(rows, 4)
    mixed, order = mixed_batches(batches)

    def per_example(x):
        return x * 2.0 + 1.0

    def reads_example_0(x):  # what an operand_replace into a per-channel vector does
        return x * 2.0 + x[0]

    def batch_mean(x):
        return x - x.mean(axis=0)

    assert batch_coupling(_run(batches, per_example), _run(mixed, per_example), order, 4) == 0.0
    assert batch_coupling(_run(batches, reads_example_0), _run(mixed, reads_example_0), order, 4) > 0.01
    assert batch_coupling(_run(batches, batch_mean), _run(mixed, batch_mean), order, 4) > 0.01


def test_only_outputs_whose_first_dimension_is_the_batch_count():
    batches = _batches(8, 4)
    mixed, order = mixed_batches(batches)

    def two_outputs(x):  # a per-example output and a batch-wide statistic
        return [x + 1.0, np.array(x.sum(), dtype=np.float32)]

    plain = [two_outputs(b[0]) for b in batches]
    shuffled = [two_outputs(b[0]) for b in mixed]
    assert batch_coupling(plain, shuffled, order, 4) == 0.0
    assert batch_coupling([[o[1]] for o in plain], [[o[1]] for o in shuffled], order, 4) is None
    assert can_check(4, [(4, 10), ()]) and not can_check(4, [()]) and not can_check(1, [(1, 10)])


def test_float_noise_is_under_the_limit():
    batches = _batches(8, 4)
    mixed, order = mixed_batches(batches)
    rng = np.random.default_rng(0)
    plain = _run(batches, lambda x: x)
    noisy = [[o[0] * (1 + rng.uniform(-1e-7, 1e-7, o[0].shape)).astype(np.float32)] for o in _run(mixed, lambda x: x)]
    assert batch_coupling(plain, noisy, order, 4) < COUPLING_LIMIT


# ---------------------------------------------------------------------------------- in a run


@pytest.fixture
def prepared_mlp(tmp_path, linalg_mlp_text):
    """A run folder with the linalg MLP prepared (batch 4, four random validation batches)."""
    from evoforge.layout import RunLayout
    from evoforge.mlir.api import prepare_program

    path = tmp_path / "mlp.mlir"
    path.write_text(linalg_mlp_text)
    layout = RunLayout(tmp_path / "run")
    prepare_program(path, layout)
    return layout


def _domain(layout, **options):
    from evoforge.mlir.domain import EvolveDomain

    domain = EvolveDomain(**options)
    domain.attach(layout)
    domain.prepare()
    return domain


def _reads_example_0(program):
    """The bias operand of the MLP's first generic now reads the matmul's [4,5] output reshaped
    to [5]: example 0's hidden features, added to every example."""
    from evoforge.mlir.edits import EditListGenome, OperandReplace, Source

    first: dict[str, str] = {}
    for uid, name in uid_names(program).items():
        first.setdefault(name, uid)
    return EditListGenome(edits=(OperandReplace(user=first["linalg.generic"], operand=1,
                                                source=Source(f"{first['linalg.matmul']}#0", 0)),))


@pytest.mark.iree
def test_evolve_rejects_a_variant_that_mixes_the_examples_of_a_batch(prepared_mlp):
    from evoforge.mlir.edits import EditListGenome
    from evoforge.search.domain import EvalContext
    from evoforge.search.evaluation import Status

    domain = _domain(prepared_mlp)
    assert domain.original_batch_coupling == 0.0 and domain.checks_batches
    assert domain.config()["original_batch_coupling"] == 0.0  # recorded: a resume does not measure it again
    original = domain.evaluate(EditListGenome(), EvalContext(seed=1))
    assert original.ok and original.metrics["batch_coupling"] == 0.0
    coupled = _reads_example_0(domain.program)
    rejected = domain.evaluate(coupled, EvalContext(seed=1))
    assert rejected.status is Status.FAILED and rejected.metrics["failure_kind"] == "batch_coupled"
    assert rejected.metrics["batch_coupling"] > COUPLING_LIMIT
    assert rejected.reason.startswith("batch_coupled: an example's outputs move by")
    assert domain.headline_notes({"a": original, "b": rejected})[-1] == (
        "batch check: 1 of 2 variants checked rejected, an example's outputs depending on the other examples of its batch")
    unchecked = _domain(prepared_mlp, batch_check=False)
    kept = unchecked.evaluate(coupled, EvalContext(seed=1))
    assert kept.ok and "batch_coupling" not in kept.metrics and not unchecked.checks_batches


@pytest.mark.iree
def test_the_check_is_off_when_the_original_itself_depends_on_the_batch(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("iree.turbine")
    from evoforge.layout import RunLayout
    from evoforge.mlir.api import prepare_program
    from evoforge.mlir.edits import EditListGenome
    from evoforge.search.domain import EvalContext

    class Centred(torch.nn.Module):
        def forward(self, x):
            return x - x.mean(dim=0, keepdim=True)

    layout = RunLayout(tmp_path / "run")
    prepare_program(Centred().eval(), layout, example_input=torch.randn(4, 6))
    domain = _domain(layout)
    assert domain.original_batch_coupling > COUPLING_LIMIT and not domain.checks_batches
    original = domain.evaluate(EditListGenome(), EvalContext(seed=1))
    assert original.ok and "batch_coupling" not in original.metrics
    assert any(n.startswith("batch check: off, the original program's own outputs move by")
               for n in domain.headline_notes({"a": original}))


def test_runs_stored_before_the_check_keep_evaluating_without_it():
    from evoforge.mlir.domain import EvolveDomain

    assert EvolveDomain.from_config({}).batch_check is False
    assert EvolveDomain().batch_check is True
    with pytest.raises(Exception, match="batch_check must be true or false, got 'yes'"):
        EvolveDomain(batch_check="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- in the draws


def test_per_example_values_are_those_computed_from_the_inputs(tiny_torch):
    from evoforge.mlir import irtools
    from evoforge.mlir.mutate import Session

    _, _, program = tiny_torch  # a 6-5-3 MLP at batch 4
    with Session(program, keep_examples_apart=True) as s:
        by_name: dict[str, list] = {}
        for op in irtools.walk(s.fn):
            if irtools.uid_of(op) and op.results:
                by_name.setdefault(op.name, []).append(op.results[0])
        x = s.fn.regions[0].blocks[0].arguments[0]
        hidden, logits = by_name["torch.aten.linear"]
        weight = next(v for v in by_name["torch.vtensor.literal"] if irtools.tensor_info(v.type).shape == (5, 6))
        bias = next(v for v in by_name["torch.vtensor.literal"] if irtools.tensor_info(v.type).shape == (5,))
        assert s.per_example(x) and s.per_example(hidden) and s.per_example(logits)
        assert not s.per_example(weight) and not s.per_example(bias)
        assert s.mixes_examples(hidden, bias)  # [4,5] into a [5] vector: example 2's features for everyone
        assert s.mixes_examples(hidden, weight)  # into a shared weight
        assert s.mixes_examples(x, hidden.owner.operation.results[0]) is False  # [4,6] -> [4,5]: row by row
        assert not s.mixes_examples(bias, hidden)  # a shared [5] into [4,5]: broadcast, the same for every example
        assert s.mixes_examples(weight, logits)  # a shared [5,6] into [4,3]: example i would read row i


@pytest.mark.iree
def test_draws_that_keep_examples_apart_give_no_coupled_variant(prepared_mlp):
    """Every kind's draws, evaluated with the check: without the rule some variants mix the
    examples of a batch; with it none does (and the check has nothing to reject)."""
    from evoforge.mlir.edits import EditListGenome
    from evoforge.mlir.mutate import random_edit
    from evoforge.search.domain import EvalContext

    domain = _domain(prepared_mlp)
    rng = np.random.default_rng(3)
    coupled = {True: 0, False: 0}
    for apart in (False, True):
        for i in range(32):
            kind = ("delete", "copy", "operand_replace", "resize")[i % 4]
            edit = random_edit(domain.program, rng, kind, keep_examples_apart=apart)
            evaluation = domain.evaluate(EditListGenome(edits=(edit,)), EvalContext(seed=1))
            coupled[apart] += evaluation.metrics.get("failure_kind") == "batch_coupled"
    assert coupled[False] >= 2 and coupled[True] == 0, coupled


def test_a_sequence_first_loop_keeps_its_examples_apart_in_the_draws():
    """A GRU through ONNX runs a loop over time steps on ``[T, B, H]`` tensors: its state starts
    as a shared zero constant and reads the inputs only through the loop, and its batch is dim 1.
    Each repair below coupled examples in a GRU run before the rule knew that."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from evoforge.mlir import irtools
    from evoforge.mlir.mutate import Session, _resizable_dims
    from evoforge.mlir.program import from_module
    from tests.support.architectures import GRUClassifier

    torch.manual_seed(0)
    program, export = from_module(GRUClassifier().eval(), torch.randint(0, 100, (8, 5)))
    assert export["exporter"] == "onnx"
    with Session(program, keep_examples_apart=True) as s:
        loop = next(op for op in irtools.walk(s.fn) if op.name == "torch.prim.Loop")
        states = [r for r in loop.results if irtools.tensor_info(r.type).shape == (5, 8, 32)]
        inits = [v for v in loop.operands[2:] if irtools.tensor_info(v.type)]
        body = list(loop.regions[0].blocks[0].arguments)[1:]
        weight = next(op.results[0] for op in irtools.walk(s.fn) if op.name == "torch.vtensor.literal"
                      and len(irtools.tensor_info(op.results[0].type).shape) == 2)
        assert states and all(s.per_example(v) for v in [*states, *inits, *body])  # to a fixed point through the loop
        assert not s.per_example(weight)
        assert s.batch_dims(states[0]) == {1} and s.batch_dims(s.fn.regions[0].blocks[0].arguments[0]) == {0}
        assert s.mixes_examples(weight, states[0])  # a [k,n] weight over [5,8,32]: example i reads row i
        assert all(s.mixes_examples(weight, v) for v in inits)  # the shared zero state's place is per-example
        assert 1 not in _resizable_dims(s, states[0]) and 0 in _resizable_dims(s, states[0])  # time steps may go
        hidden = next(r for op in irtools.walk(loop) if op.name == "torch.aten.mm" for r in op.results)
        assert s.per_example(hidden) and s.batch_dims(hidden) == {0}  # [8,32] inside the body: batch-first


@pytest.mark.iree
def test_a_shared_value_spread_along_the_batch_keeps_its_batch_dim(tmp_path):
    """A class token expanded to the batch is shared (no input reaches it), yet its dim 0 runs
    along the batch of the tokens it joins: cropping it gives some examples a zero token, by
    their place in the batch. The rule leaves that dim out of the draws, and the check agrees.
    So for an index over the examples, unsqueezed before it picks each example's rows."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("iree.turbine")
    from evoforge.layout import RunLayout
    from evoforge.mlir import irtools
    from evoforge.mlir.api import prepare_program
    from evoforge.mlir.edits import EditListGenome, Resize
    from evoforge.mlir.mutate import Session, _resizable_dims
    from evoforge.search.domain import EvalContext

    class WithClassToken(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = torch.nn.Parameter(torch.randn(1, 1, 6))
            self.head = torch.nn.Linear(6, 3)

        def forward(self, x):  # x: [batch, 5, 6]
            x = x[torch.arange(x.shape[0]).unsqueeze(1), torch.arange(5)]  # every example's own rows
            tokens = torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)
            return self.head(torch.tanh(tokens).mean(dim=1))

    torch.manual_seed(0)
    layout = RunLayout(tmp_path / "run")
    prepare_program(WithClassToken().eval(), layout, example_input=torch.randn(4, 5, 6))
    domain = _domain(layout)
    with Session(domain.program, keep_examples_apart=True) as s:
        expanded = next(op.results[0] for op in irtools.walk(s.fn) if op.name == "torch.aten.expand")
        name = irtools.value_name(expanded, s.fn)
        assert not s.per_example(expanded) and s.spread_batch_dims(expanded) == {0}
        assert _resizable_dims(s, expanded) == [2]  # the token's features may still be cropped
        s.keep_examples_apart = False
        assert _resizable_dims(s, expanded) == [0, 2]
        weight = next(op.results[0] for op in irtools.walk(s.fn) if op.name == "torch.vtensor.literal"
                      and irtools.tensor_info(op.results[0].type).shape == (3, 6))
        assert s.spread_batch_dims(weight) == frozenset()  # a weight is never spread along the batch
        index = [op.results[0] for op in irtools.walk(s.fn) if op.name in ("torch.aten.arange", "torch.aten.unsqueeze")
                 and irtools.tensor_info(op.results[0].type).shape[0] == 4]
        assert len(index) == 2 and all(s.spread_batch_dims(v) == {0} for v in index), [str(v.type) for v in index]
    cropped = domain.evaluate(EditListGenome(edits=(Resize(value=name, dim=0, size=2, fill=0),)), EvalContext(seed=1))
    assert cropped.metrics.get("failure_kind") == "batch_coupled"
