"""SVD low-rank factorization of Linear, Conv1d, Conv2d and Embedding layers.

Each eligible layer's weight, flattened to an (out, in * k...) matrix W (an embedding table:
(entries, dim)), is rewritten as U diag(S) V. The model is trained in that form with a Hoyer loss
on S (sparser spectrum) and an orthogonality loss on U and V, then each layer is truncated by
cumulative energy and folded back into two plain layers (k x k conv to r channels + 1x1 conv,
Linear n->r + Linear r->m, or an r-wide Embedding + Linear r->dim, ALBERT's factorized
embedding), or into one dense layer where the factorized form would not be smaller.
"""

from __future__ import annotations

import collections
import copy
import math
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evoforge.compression.genome import Stage
from evoforge.compression.stages import STAGES, StageContext
from evoforge.errors import ConfigError
from evoforge.workload.training import observe_forward, train

RANK_MULTIPLE = 4
_FACTORIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)
Factorizable = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Embedding


def energy_rank(s: Tensor, energy: float) -> int:
    """Smallest r such that the r largest ``|s|`` hold at least ``energy`` of ``sum(s**2)``."""
    if not 0.0 < energy <= 1.0:
        raise ConfigError(f"energy={energy} is out of range; use a fraction in (0, 1]")
    power = s.detach().double().pow(2).sort(descending=True).values
    total = float(power.sum())
    if total == 0.0:
        return 1
    cumulative = power.cumsum(0) / total
    return min(int(torch.searchsorted(cumulative, torch.tensor(energy - 1e-12, dtype=torch.float64))) + 1, len(s))


def round_rank(r: int, full_rank: int) -> int:
    """``r`` rounded up to a multiple of `RANK_MULTIPLE`, capped at ``full_rank``."""
    return min(math.ceil(r / RANK_MULTIPLE) * RANK_MULTIPLE, full_rank)


def factorization_pays(r: int, m: int, n: int) -> bool:
    """True when rank-``r`` factors of an (m x n) weight hold fewer parameters: r(m + n) < mn."""
    return r * (m + n) < m * n


class SVDLayer(nn.Module):
    """A Linear / Conv1d / Conv2d / Embedding layer held as trainable U diag(S) V (used during
    regularized training).

    ``u`` is (out, k), ``s`` is (k,), ``v`` is (k, in * prod(kernel)) (an embedding: u is
    (entries, k), v is (k, dim)); the bias stays as is.
    """

    def __init__(self, layer: Factorizable) -> None:
        super().__init__()
        weight = layer.weight.detach()
        u, s, v = torch.linalg.svd(weight.reshape(weight.shape[0], -1), full_matrices=False)
        self.u, self.s, self.v = nn.Parameter(u.contiguous()), nn.Parameter(s), nn.Parameter(v.contiguous())
        bias = getattr(layer, "bias", None)  # embeddings have none
        self.bias: nn.Parameter | None = None if bias is None else nn.Parameter(bias.detach().clone())
        self._template = (copy.deepcopy(layer).requires_grad_(False),)  # a tuple keeps it out of the module tree

    @property
    def template(self) -> Factorizable:
        return self._template[0]

    @property
    def shape(self) -> tuple[int, int]:
        """(m, n) of the flattened weight matrix."""
        return self.u.shape[0], self.v.shape[1]

    def forward(self, x: Tensor) -> Tensor:
        layer = self.template
        if isinstance(layer, nn.Linear):
            return F.linear(F.linear(x, self.v) * self.s, self.u, self.bias)
        if isinstance(layer, nn.Embedding):
            return F.embedding(x, self.u * self.s, layer.padding_idx) @ self.v
        conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
        kernel = self.v.reshape(len(self.s), layer.in_channels, *layer.kernel_size)
        h = conv(x, kernel, None, layer.stride, layer.padding, layer.dilation)
        h = h * self.s.reshape(1, -1, *([1] * (h.dim() - 2)))
        return conv(h, self.u.reshape(*self.u.shape, *([1] * (h.dim() - 2))), self.bias)

    def hoyer(self) -> Tensor:
        """||S||_1 / ||S||_2 (in [1, sqrt(k)]; smaller means a sparser spectrum)."""
        ratio: Tensor = self.s.abs().sum() / self.s.norm().clamp_min(1e-12)
        return ratio

    def orthogonality(self) -> Tensor:
        """||U^T U - I||_F^2 / k + ||V V^T - I||_F^2 / k."""
        eye = torch.eye(len(self.s), device=self.s.device, dtype=self.s.dtype)
        k = len(self.s)
        return ((self.u.T @ self.u - eye).pow(2).sum() + (self.v @ self.v.T - eye).pow(2).sum()) / k

    def fold(self, energy: float) -> nn.Module:
        """Truncate to the energy rank (rounded up to a multiple of 4) and return plain layers:
        an ``nn.Sequential`` pair when that is smaller, else one dense layer of the full product."""
        m, n = self.shape
        r = round_rank(energy_rank(self.s, energy), len(self.s))
        layer = self.template
        with torch.no_grad():
            if not factorization_pays(r, m, n):
                dense = copy.deepcopy(layer).requires_grad_(True)
                dense.weight.copy_(((self.u * self.s) @ self.v).reshape(dense.weight.shape))
                if self.bias is not None:
                    cast(Tensor, dense.bias).copy_(self.bias)
                return dense.to(self.u.device)
            keep = self.s.abs().argsort(descending=True)[:r]
            root = self.s[keep].abs().sqrt()
            u = self.u[:, keep] * (root * self.s[keep].sign())
            v = self.v[keep] * root[:, None]
            first: Factorizable
            second: Factorizable
            if isinstance(layer, nn.Embedding):
                table, project = nn.Embedding(m, r, padding_idx=layer.padding_idx), nn.Linear(r, n, bias=False)
                table.weight.copy_(u)
                project.weight.copy_(v.T)
                return nn.Sequential(table, project).to(self.u.device)
            if isinstance(layer, nn.Linear):
                first, second = nn.Linear(n, r, bias=False), nn.Linear(r, m, bias=self.bias is not None)
            else:
                conv = nn.Conv1d if isinstance(layer, nn.Conv1d) else nn.Conv2d
                geometry: dict[str, Any] = dict(
                    kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding, dilation=layer.dilation
                )
                first, second = conv(layer.in_channels, r, bias=False, **geometry), conv(r, m, 1, bias=self.bias is not None)
            first.weight.copy_(v.reshape(first.weight.shape))
            second.weight.copy_(u.reshape(second.weight.shape))
            if self.bias is not None:
                cast(Tensor, second.bias).copy_(self.bias)
        return nn.Sequential(first, second).to(self.u.device)


def _eligible(layer: nn.Module) -> bool:
    if type(layer) not in _FACTORIZABLE or not isinstance(layer, _FACTORIZABLE):
        return False
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)) and (layer.groups != 1 or layer.padding_mode != "zeros"):
        return False
    if isinstance(layer, nn.Embedding) and (layer.max_norm is not None or layer.sparse):
        return False
    m, n = layer.weight.shape[0], layer.weight[0].numel()
    return factorization_pays(min(RANK_MULTIPLE, m, n), m, n)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)


def factorize(model: nn.Module, protected: tuple[str, ...] = (), example_input: Any = None) -> list[str]:
    """Swap every eligible layer for an `SVDLayer` in place; returns their names.

    Eligible: Linear / Conv1d / Conv2d / Embedding, not in ``protected``, not grouped
    (depthwise), zero padding, no embedding max-norm or sparse gradients, a weight no other
    layer shares (a language model's output layer tied to its embedding would keep the full
    table), and small enough at rank 4 for the factors to pay off. Given ``example_input``,
    also called as a module when the model runs on it: a layer whose weight the model reads
    directly (Swin's attention calls ``F.linear(x, qkv.weight)``) would break once replaced.
    """
    owners = collections.Counter(id(p) for m in model.modules() for p in m.parameters(recurse=False))
    names = [name for name, layer in model.named_modules()
             if name not in protected and _eligible(layer) and owners[id(layer.weight)] == 1]
    if example_input is not None and names:
        called: set[nn.Module] = set()
        observe_forward(model, example_input, [model.get_submodule(n) for n in names], lambda m, _i, _o: called.add(m))
        names = [name for name in names if model.get_submodule(name) in called]
    for name in names:
        _replace(model, name, SVDLayer(cast(Factorizable, model.get_submodule(name))))
    return names


def spectral_regularizer(hoyer_weight: float, ortho_weight: float) -> Callable[[nn.Module], Tensor]:
    """``extra_loss`` for `train`: hoyer_weight * mean Hoyer + ortho_weight * mean orthogonality over SVD layers."""

    def loss(model: nn.Module) -> Tensor:
        layers = [m for m in model.modules() if isinstance(m, SVDLayer)]
        hoyer = torch.stack([m.hoyer() for m in layers]).mean()
        ortho = torch.stack([m.orthogonality() for m in layers]).mean()
        return hoyer_weight * hoyer + ortho_weight * ortho

    return loss


def fold_all(model: nn.Module, energy: float) -> None:
    """Replace every `SVDLayer` in ``model`` by its folded plain layers (in place)."""
    for name, layer in [(n, m) for n, m in model.named_modules() if isinstance(m, SVDLayer)]:
        _replace(model, name, layer.fold(energy))


@STAGES.register("lowrank")
def lowrank(model: nn.Module, stage: Stage, ctx: StageContext) -> nn.Module:
    """Factorize, train ``reg_epochs`` epochs with task + Hoyer + orthogonality losses, truncate
    at cumulative ``energy``, fold, then fine-tune ``epochs`` epochs on the task loss alone.
    A model with no eligible layer is only fine-tuned."""
    model.to(ctx.device)
    if factorize(model, ctx.protected, ctx.example_input):
        extra = spectral_regularizer(ctx.training.hoyer_weight, ctx.training.ortho_weight)
        train(
            model, ctx.data, ctx.training, epochs=stage["reg_epochs"], seed=ctx.seed,
            batch_size=ctx.batch_size, extra_loss=extra, device=ctx.device,
        )
        fold_all(model, stage["energy"])
    return train(
        model, ctx.data, ctx.training, epochs=stage["epochs"], seed=ctx.seed + 1, batch_size=ctx.batch_size, device=ctx.device
    )
