"""Benchmark problems (ZDT1-3, DTLZ2) as a test domain with real-valued genomes."""

from evoforge.problems.domain import PROBLEMS, BenchmarkDomain, RealVector
from evoforge.problems.operators import polynomial_mutation, sbx_crossover

__all__ = ["PROBLEMS", "BenchmarkDomain", "RealVector", "polynomial_mutation", "sbx_crossover"]
