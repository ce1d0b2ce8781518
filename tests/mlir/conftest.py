"""Shared fixtures for the GEVO-ML tests: a hand-written linalg program, a tiny exported torch
program and one sandbox worker per session."""

from __future__ import annotations

import pytest

pytest.importorskip("iree.compiler")

# A two-layer MLP at linalg level with a tensor.empty, fills, a matmul and elementwise payloads.
LINALG_MLP = """
#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d1)>
func.func @main(%x: tensor<4x6xf32>) -> tensor<4x3xf32> {
  %w1 = arith.constant dense<0.25> : tensor<6x5xf32>
  %b1 = arith.constant dense<[0.1, -0.2, 0.3, -0.4, 0.5]> : tensor<5xf32>
  %w2 = arith.constant dense<-0.5> : tensor<5x3xf32>
  %zero = arith.constant 0.0 : f32
  %e1 = tensor.empty() : tensor<4x5xf32>
  %f1 = linalg.fill ins(%zero : f32) outs(%e1 : tensor<4x5xf32>) -> tensor<4x5xf32>
  %h = linalg.matmul ins(%x, %w1 : tensor<4x6xf32>, tensor<6x5xf32>) outs(%f1 : tensor<4x5xf32>) -> tensor<4x5xf32>
  %hb = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%h, %b1 : tensor<4x5xf32>, tensor<5xf32>) outs(%e1 : tensor<4x5xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %s = arith.addf %a, %b : f32
    %r = arith.maximumf %s, %zero : f32
    linalg.yield %r : f32
  } -> tensor<4x5xf32>
  %e2 = tensor.empty() : tensor<4x3xf32>
  %f2 = linalg.fill ins(%zero : f32) outs(%e2 : tensor<4x3xf32>) -> tensor<4x3xf32>
  %y = linalg.matmul ins(%hb, %w2 : tensor<4x5xf32>, tensor<5x3xf32>) outs(%f2 : tensor<4x3xf32>) -> tensor<4x3xf32>
  return %y : tensor<4x3xf32>
}
"""


@pytest.fixture(scope="session")
def linalg_mlp_text():
    return LINALG_MLP


@pytest.fixture(scope="session")
def linalg_program():
    from evoforge.mlir.program import from_mlir

    return from_mlir(LINALG_MLP)


@pytest.fixture(scope="session")
def tiny_torch():
    """(module, example input, torch-level Program) of a 6-5-3 MLP."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("iree.turbine")
    from evoforge.mlir.program import from_torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(6, 5)
            self.b = torch.nn.Linear(5, 3)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(4, 6)
    return model, x, from_torch(model, x, level="torch")


@pytest.fixture(scope="session")
def worker():
    pytest.importorskip("iree.runtime")
    from evoforge.mlir.iree_runner import Worker

    with Worker() as w:
        yield w
