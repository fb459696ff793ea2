"""ASE calculators backed by euclidnet models."""

from .ase_calculator import EuclidNetCalculator

__all__ = ["EuclidNetCalculator"]
