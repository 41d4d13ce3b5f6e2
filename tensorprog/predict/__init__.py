"""Kernel predictions: what an infinitely wide network trained on MSE predicts, and Bayesian
inference with its NNGP prior, from its NNGP kernel ``K`` and its NTK ``Θ``.

Conventions (one training set ``X`` of ``m`` points with targets ``y``, test points ``x``):

* Loss: ``L(θ) = (1/m) Σ_α ½ ‖f(X_α) − y_α‖²`` — the mean over the batch of ½(f − y)²
  (summed over output columns when ``y`` has several).
* Gradient descent ``θ ← θ − η ∇L``.  In the NTK limit the network is its linearisation and the
  outputs follow kernel gradient descent (TP IIb Thm 5.3, Eq. 22; Les Houches Eq. 85):
  ``f_{k+1}(x) = f_k(x) − (η/m) Θ(x, X) (f_k(X) − y)``.
* Gradient flow ``dθ/dt = −η ∇L``, so ``t`` counts steps of size ``η``:
  ``df_t(x)/dt = −(η/m) Θ(x, X) (f_t(X) − y)``.

Both are solved in the eigenbasis ``Θ = Σ_i λ_i v_i v_iᵀ`` of the training kernel
(Les Houches Eqs. 88–89)::

    f_t(X) = f_0(X) − H_t (f_0(X) − y),          H_t = Σ_i h(λ_i) v_i v_iᵀ
    f_t(x) = f_0(x) − Θ(x, X) Φ_t (f_0(X) − y),   Φ_t = Σ_i φ(λ_i) v_i v_iᵀ = Θ⁻¹ H_t

    flow:    h(λ) = 1 − e^{−ηλt/m}          φ(λ) = h(λ)/λ  → ηt/m as λ → 0
    steps:   h(λ) = 1 − (1 − ηλ/m)^k        φ(λ) = h(λ)/λ  → kη/m as λ → 0

with ``h`` from ``expm1``/``log1p`` so that ``φ`` is accurate for every ``λ ≥ 0``: no inverse
of the kernel is formed.  Eigenvalues at or below the numerical rank cutoff ``m·ε·λ_max``
(repeated inputs, rounding) get ``h = φ = 0``: their eigenvectors are annihilated by every
cross kernel of a positive semidefinite joint kernel, and at ``t = ∞`` this makes ``Φ`` the
pseudo-inverse.  Over initialisations ``f_0 ~ GP(0, K)`` the trained outputs are Gaussian
(Les Houches Eq. 90 at ``t = ∞``), with ``T_t = Θ(x, X) Φ_t``::

    mean_t(x) = T_t y
    cov_t(x, x') = K(x, x') − T_t K(X, x') − K(x, X) T_tᵀ + T_t K(X, X) T_tᵀ

which on the training points reduces to ``mean = H_t y`` and ``cov = (I − H_t) K (I − H_t)``.
The NNGP variant (``get="nngp"``: only the readout trained) uses ``K`` for ``Θ``; at ``t = ∞``
it is the GP posterior (Les Houches Eq. 32).

Gradient descent is stable while ``η < 2m/λ_max`` (:func:`max_learning_rate`, ``2/λ_max`` of
the loss Hessian ``Θ/m``); between ``2m/λ_max`` and ``4m/λ_max`` a finite-width network may
still converge by "catapulting" to a flatter region (Les Houches §3.3), which the kernel
prediction does not describe; beyond ``4m/λ_max`` it diverges.  The test points enter through
the test×train blocks (``ntk_test_train``, ``nngp_test_train``: ``(n_test, m)`` arrays); only
covariances need the test×test NNGP block, full or its diagonal.
"""
from .dynamics import Ensemble, gradient_descent_mse, gradient_descent_mse_ensemble
from .inference import Posterior, gp_inference, log_marginal_likelihood
from .programs import ProgramPredictor, from_program
from .rates import check_learning_rate, max_learning_rate

__all__ = ["gp_inference", "log_marginal_likelihood", "gradient_descent_mse",
           "gradient_descent_mse_ensemble", "max_learning_rate", "check_learning_rate",
           "from_program", "Posterior", "Ensemble", "ProgramPredictor"]
