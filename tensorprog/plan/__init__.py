"""Derive once, evaluate anywhere: a program's kernels compiled into a function of its inputs."""
from .compiled import KernelFn

__all__ = ["KernelFn"]
