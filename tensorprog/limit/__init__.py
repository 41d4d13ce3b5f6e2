"""The Master-Theorem limit of a program: Z of every vector, limit of every scalar."""
from .evaluator import Limit

__all__ = ["Limit"]
