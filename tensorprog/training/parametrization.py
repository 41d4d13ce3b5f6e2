"""abc-parametrizations of a whole network and what they mean in the infinite-width limit.

Every trainable tensor ``W`` (fan-in ``F``: ``d`` for an input layer's weight, ``n`` for hidden
matrices and the readout, ``1`` for biases) is written ``W = σ n^{-a} w/√F_c`` (``F_c = d`` for
input weights, else 1) with ``w ~ N(0, n^{-2b})`` trained by ``w ← w − η λ n^{-c} ∂L/∂w``
(TP IIb Setup D.1: standard-normal parameters, σ in the multiplier; Tensor Programs IV §3).
Only the combinations ``e = 2(a + b)`` (the variance ``Var W = σ² n^{-e}/F_c``) and
``g = 2a + c`` (the effective learning rate ``η λ σ² n^{-g}/F_c`` of ``W``) matter: the gauge
``(a, b, c) → (a + θ, b − θ, c − 2θ)`` leaves the training run unchanged (Yaida Eq. 2.8).

Stable parametrizations with every layer learning form Yaida's family (Eqs. 3.16–3.20), indexed
by ``s = e_out − 1`` of the readout:

=============  =========  ===========
tensor         ``e``      ``g``
=============  =========  ===========
input weight   0          −s
hidden matrix  1          1 − s
bias           0          −s
readout        1 + s      1
output bias    ≥ s        0
=============  =========  ===========

In these the outputs move by Θ(1) per step, features (pre-activations) by ``n^{-(1−s)/2}`` per
coordinate: ``s = 0`` is the NTK parametrization (the initial outputs a Gaussian process),
``0 < s < 1`` kernel gradient descent from zero outputs, ``s = 1`` the maximal-update
parametrization (muP, mean field), in which features move by Θ(1).  A tensor whose ``g`` is
larger than its entry trains too slowly to matter in the limit (it is frozen there, e.g. the
input layer under the standard parametrization with ``c = 1``); a smaller ``g`` or another
``e`` makes the limit blow up or vanish, and :func:`resolve` says which condition fails.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..errors import TrainingError

ROLES = ("input", "hidden", "bias", "output", "output_bias")


def _frac(x) -> Fraction:
    return Fraction(x).limit_denominator(10**6)


@dataclass(frozen=True)
class AbcParametrization:
    """The exponents ``(a, b, c)`` of every tensor role (see the module docstring) under a
    name.  Build one with the presets (:func:`ntk_parametrization`, :func:`mup`, ...) or
    :func:`abc_parametrization`."""

    name: str
    exponents: tuple  # ((role, (a, b, c)), ...) in ROLES order

    def abc(self, role: str) -> tuple:
        return dict(self.exponents)[role]

    def e(self, role: str) -> Fraction:
        """``2(a + b)``: the width exponent of the initial variance."""
        a, b, _ = self.abc(role)
        return 2 * (a + b)

    def g(self, role: str) -> Fraction:
        """``2a + c``: the width exponent of the effective learning rate."""
        a, _, c = self.abc(role)
        return 2 * a + c

    def gauge(self, theta) -> "AbcParametrization":
        """The gauge-equivalent ``(a + θ, b − θ, c − 2θ)`` on every tensor (Yaida Eq. 2.8)."""
        t = _frac(theta)
        return AbcParametrization(f"{self.name}, gauge {t}", tuple(
            (r, (a + t, b - t, c - 2 * t)) for r, (a, b, c) in self.exponents))

    def __str__(self) -> str:
        parts = ", ".join(f"{r}=({a}, {b}, {c})" for r, (a, b, c) in self.exponents)
        return f"{self.name}: {parts}"


def abc_parametrization(name: str = "abc", **roles) -> AbcParametrization:
    """A parametrization from ``(a, b, c)`` triples per role (``input``, ``hidden``, ``bias``,
    ``output``, ``output_bias``); roles left out keep the NTK values.

    Parameters
    ----------
    name : str
        Its name in messages and printouts.
    **roles : tuple of three numbers
        ``role=(a, b, c)``: multiplier ``n^{-a}``, initial scale ``n^{-b}``, learning rate
        ``n^{-c}`` of that role's tensors (module docstring; TP IIb Setup D.1).

    Returns
    -------
    AbcParametrization

    Raises
    ------
    TrainingError
        On an unknown role or a triple that is not three numbers.

    Example
    -------
    >>> from tensorprog.training.parametrization import resolve
    >>> mup_like = tp.abc_parametrization("muP", input=(-0.5, 0.5, 0), hidden=(0, 0.5, 0),
    ...     bias=(-0.5, 0.5, 0), output=(0.5, 0.5, 0), output_bias=(0, 0.5, 0))
    >>> resolve(mup_like).feature_learning          # s = 1: features move by Θ(1)
    True
    """
    base = dict(ntk_parametrization().exponents)
    for role, triple in roles.items():
        if role not in ROLES:
            raise TrainingError(f"abc_parametrization: unknown role {role!r}; use one of "
                                f"{', '.join(ROLES)}")
        try:
            a, b, c = (_frac(x) for x in triple)
        except (TypeError, ValueError):
            raise TrainingError(f"abc_parametrization: {role}={triple!r} must be three numbers "
                                "(a, b, c)") from None
        base[role] = (a, b, c)
    return AbcParametrization(name, tuple((r, base[r]) for r in ROLES))


def _make(name, table) -> AbcParametrization:
    return AbcParametrization(name, tuple((r, tuple(_frac(x) for x in table[r])) for r in ROLES))


def ntk_parametrization() -> AbcParametrization:
    """The NTK parametrization (TP IIb Setup D.1, the compiler's default): ``a = 1/2`` for the
    hidden matrices and readout, 0 elsewhere, ``b = c = 0`` (Yaida's ``s = 0``).

    Returns
    -------
    AbcParametrization
        The one the kernels :func:`tensorprog.nngp` and :func:`tensorprog.ntk` assume.

    Example
    -------
    >>> print(tp.ntk_parametrization())
    NTK: input=(0, 0, 0), hidden=(1/2, 0, 0), bias=(0, 0, 0), output=(1/2, 0, 0),
    output_bias=(0, 0, 0)
    """
    h = (Fraction(1, 2), 0, 0)
    return _make("NTK", dict(input=(0, 0, 0), hidden=h, bias=(0, 0, 0), output=h,
                             output_bias=(0, 0, 0)))


def standard_parametrization(c=1) -> AbcParametrization:
    """The standard parametrization (PyTorch's default): ``a = 0``, ``b = 1/2`` for the hidden
    matrices and readout, ``b = 0`` elsewhere, every learning rate ``η n^{-c}``.  With ``c = 1``
    the limit is kernel gradient descent in which the input layer and the biases are frozen;
    with ``c < 1`` it blows up (Tensor Programs IV, Thm 3.3).

    Parameters
    ----------
    c : float
        The learning-rate exponent of every tensor.

    Returns
    -------
    AbcParametrization
        Named ``SP(c=…)``.

    Example
    -------
    >>> from tensorprog.training.parametrization import resolve
    >>> resolve(tp.standard_parametrization()).active["input"]    # frozen in the limit
    False
    """
    h, f = (0, Fraction(1, 2), c), (0, 0, c)
    return _make(f"SP(c={c})", dict(input=f, hidden=h, bias=f, output=h, output_bias=f))


def mup() -> AbcParametrization:
    """The maximal-update parametrization (Tensor Programs IV, Table 3): input weights and
    biases ``(−1/2, 1/2, 0)``, hidden matrices ``(0, 1/2, 0)``, readout ``(1/2, 1/2, 0)``,
    output bias ``(0, 1/2, 0)`` — gauge-equivalent to ``yaida(1)``.

    Returns
    -------
    AbcParametrization
        Named ``muP``.

    Example
    -------
    >>> from tensorprog.training.parametrization import ROLES
    >>> all((tp.mup().e(r), tp.mup().g(r)) == (tp.yaida(1).e(r), tp.yaida(1).g(r))
    ...     for r in ROLES)                         # the same (e, g) on every role
    True
    """
    half = Fraction(1, 2)
    return _make("muP", dict(input=(-half, half, 0), hidden=(0, half, 0), bias=(-half, half, 0),
                             output=(half, half, 0), output_bias=(0, half, 0)))


def mean_field() -> AbcParametrization:
    """The mean-field parametrization: readout multiplier ``1/n`` (``a = 1``), every learning
    rate ``η n`` (``c = −1``); hidden matrices ``(1/2, 0, −1)``.  Gauge-equivalent to muP
    (θ = 1/2).

    Returns
    -------
    AbcParametrization
        Named ``mean-field``.

    Example
    -------
    >>> tp.mean_field().abc("output")               # a = 1: the readout multiplier is 1/n
    (Fraction(1, 1), Fraction(0, 1), Fraction(-1, 1))
    """
    half = Fraction(1, 2)
    return _make("mean-field", dict(input=(0, 0, -1), hidden=(half, 0, -1), bias=(0, 0, -1),
                                    output=(1, 0, -1), output_bias=(half, 0, -1)))


def yaida(s) -> AbcParametrization:
    """Yaida's one-parameter family (Eqs. 3.16–3.20) written in abc form with ``a = 0``
    (footnote 2): weights are the parameters, hidden and input layers in the NT scaling
    (``Var = σ²/fan_in``, learning-rate tensor ``λ σ²/fan_in``), the readout's initial variances
    and learning-rate tensor divided by ``n^s``, and the global learning rate ``η = n^s η₀``.
    Yaida's ``λ_W`` is ``λ σ²`` here.  ``s = 0`` is the NTK scaling, ``s = 1`` maximal update.

    Parameters
    ----------
    s : float
        The family's index, ``e_out − 1`` of the readout (module table).

    Returns
    -------
    AbcParametrization
        Named ``Yaida(s=…)``.

    Raises
    ------
    TrainingError
        When ``s`` is not a finite number.  (Values outside [0, 1] are accepted here and
        rejected with the failing condition by :func:`resolve`.)

    Example
    -------
    >>> par = tp.yaida(0.5)
    >>> par.e("output"), par.g("input")           # e = 1 + s, g = −s
    (Fraction(3, 2), Fraction(-1, 2))
    """
    try:
        s = _frac(float(s))
    except (TypeError, ValueError, OverflowError):
        raise TrainingError(f"yaida(s={s!r}): s must be a number in [0, 1]") from None
    half = Fraction(1, 2)
    return _make(f"Yaida(s={s})", dict(input=(0, 0, -s), hidden=(0, half, 1 - s),
                                      bias=(0, 0, -s), output=(0, (1 + s) / 2, 1),
                                      output_bias=(0, s / 2, 0)))


@dataclass(frozen=True)
class Regime:
    """What a parametrization does in the limit: ``s``; ``active[role]`` whether the role's
    tensors train at the limit's scale (False: frozen in the limit); ``random_outputs``
    whether the initial outputs stay random (a Gaussian process) and ``random_bias`` whether
    the output bias contributes to them."""

    s: Fraction
    active: dict
    random_outputs: bool
    random_bias: bool

    @property
    def feature_learning(self) -> bool:
        """Features move by Θ(1) per coordinate (``s = 1``)."""
        return self.s == 1


def target_exponents(s) -> dict:
    """The ``(e, g)`` of every role in Yaida's family at ``s`` (module table)."""
    return dict(input=(0, -s), hidden=(1, 1 - s), bias=(0, -s), output=(1 + s, 1),
                output_bias=(s, 0))


def resolve(par: AbcParametrization) -> Regime:
    """The :class:`Regime` of ``par``.

    Raises
    ------
    TrainingError : naming the exponent condition that fails: the readout's ``2(a+b) − 1 = s``
        outside [0, 1] (outputs growing like ``n^{-s/2}`` with s < 0; features blowing up with
        s > 1), an initial variance exponent ``2(a+b)`` other than the stable one for input
        weights, hidden matrices and biases, an output-bias variance larger than the outputs'
        scale, or a learning-rate exponent ``2a + c`` below the family's value (updates growing
        with the width).
    """
    if not isinstance(par, AbcParametrization):
        raise TrainingError(f"parametrization must be a preset such as tp.ntk_parametrization(),"
                            f" tp.mup() or tp.yaida(s), got {par!r}")
    s = par.e("output") - 1
    if s < 0:
        raise TrainingError(
            f"{par.name}: the readout has 2(a+b) = {par.e('output')} < 1, so the outputs at "
            f"initialisation grow like n^{-s / 2}; stability needs a+b ≥ 1/2 for the readout "
            "(Yaida's s = 2(a+b) − 1 ≥ 0)")
    if s > 1:
        raise TrainingError(
            f"{par.name}: the readout has 2(a+b) − 1 = s = {s} > 1; with the outputs learning at "
            f"Θ(1) the features would move like n^{(s - 1) / 2} per coordinate and blow up; "
            "stability needs s = 2(a+b) − 1 ≤ 1 (Yaida's family s ∈ [0, 1])")
    targets = target_exponents(s)
    active = {}
    for role in ROLES:
        e_star, g_star = targets[role]
        e, g = par.e(role), par.g(role)
        if role == "output_bias":
            if e < s:
                raise TrainingError(
                    f"{par.name}: the output bias has 2(a+b) = {e} < s = {s}: its initial "
                    f"value (variance n^{-e}) would dominate outputs of scale n^{-s / 2}; "
                    "it needs 2(a+b) ≥ s")
        elif e != e_star:
            grow = "blow up" if e < e_star else "vanish"
            raise TrainingError(
                f"{par.name}: the {role} tensors have 2(a+b) = {e}, so the forward pass would "
                f"{grow} with the width; stable signal propagation needs 2(a+b) = {e_star}")
        if g < g_star:
            raise TrainingError(
                f"{par.name}: the {role} tensors have learning-rate exponent 2a+c = {g} < "
                f"{g_star}: their updates grow like n^{g_star - g} and the limit blows up; "
                f"stability needs 2a+c ≥ {g_star} at s = {s}")
        active[role] = g == g_star
    return Regime(s, active, random_outputs=(s == 0), random_bias=(par.e("output_bias") == 0))
