"""Numerical constants of the expectation tiers and the Monte-Carlo sampling, in one place.

Two Monte-Carlo estimators draw Gaussian points: the expectation engine's tier 3 integrates one
factor at a time (:mod:`tensorprog.expectations.montecarlo`, ``FACTOR_*``), and the limit's
Monte-Carlo tier draws whole atom families jointly (:mod:`tensorprog.limit.sampling`,
``JOINT_*``).  Both report the mean of independent randomisations and its standard error.
"""
from __future__ import annotations

#: Points per randomisation of a per-factor Monte-Carlo integral (a power of 2, as Sobol
#: sequences want).
FACTOR_POINTS = 2 ** 11
#: Points per randomisation of the limit's joint draws (a power of 2).
JOINT_POINTS = 2 ** 12
#: Independent randomisations (scramblings) of either estimator; the standard error is computed
#: from their spread.
REPLICAS = 16
#: Seed of the per-factor Sobol scramblings.
FACTOR_SEED = 20240917
#: Seed of the joint draws (Sobol scramblings and the pseudo-random padding).
JOINT_SEED = 20241123
#: Bytes of temporaries per chunk of a batched quadrature or per-factor Monte-Carlo integral.
INTEGRATION_MEMORY_BUDGET = 200e6
#: Eigenvalues below this fraction of the largest are dropped when a factor's covariance is
#: whitened (quadrature and per-factor Monte Carlo).
FACTOR_RANK_RTOL = 1e-14
#: The same for the joint covariance of an atom family (it is assembled from estimated blocks).
JOINT_RANK_RTOL = 1e-13
#: Relative size of a negative eigenvalue of a joint covariance that is estimation noise, not a
#: wrong covariance.
JOINT_NEGATIVE_RTOL = 1e-2
