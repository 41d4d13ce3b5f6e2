"""Training in the infinite-width limit: abc-parametrizations and gradient descent unrolled into
a NETSOR⊤+ program (TP IIb §5, App. D.1; Yaida §III)."""
from .losses import F, Y, make_loss
from .parametrization import (AbcParametrization, abc_parametrization, mean_field, mup,
                              ntk_parametrization, resolve, standard_parametrization, yaida)
from .run import FiniteRun, TrainingRun, train

__all__ = ["train", "TrainingRun", "FiniteRun", "AbcParametrization", "abc_parametrization",
           "ntk_parametrization", "standard_parametrization", "mup", "mean_field", "yaida",
           "resolve", "make_loss", "F", "Y"]
