"""The particle tier of the training limit (tensorprog.limit.particles): its estimates agree
with exact limits and with the Monte-Carlo tier within their error bars, the error bars are
end-to-end and calibrated, and finite widths converge to it."""
import numpy as np
import pytest
import sympy as sp

import tensorprog as tp
from tensorprog.errors import LimitError
from tensorprog.limit.particles import ParticleLimit

from ..conftest import build_mlp
from .test_error_calibration import calibrated
from .test_feature_learning import TRAIN as FL_TRAIN, Y as FL_Y, mlp
from .test_kernel_regime import LR, STEPS, TEST, TRAIN, Y, ensemble, inputs


def replica_outputs(run, lim) -> np.ndarray:
    """(steps + 1, N, R): the outputs of ``run`` in every replica of ``lim``."""
    N = run.net.num_inputs
    out = np.zeros((run.steps + 1, N, lim.R))
    for t, o in enumerate(run.unrolled.outputs):
        if o is None:  # f_0 = 0 (s > 0)
            continue
        expr = sp.sympify(o)
        syms = sorted(expr.free_symbols, key=str)
        vals = [np.broadcast_to(lim.replicas[s.name], (N, lim.R)) for s in syms]
        out[t] = sp.lambdify(syms, expr, "numpy")(*vals)
    return out


def test_ntk_parametrization_is_kernel_descent_within_the_error_bars():
    """Random initial outputs (s = 0): mean and covariance of the particle limit against
    kernel gradient descent with the program's NTK and NNGP (exact), entry by entry."""
    p = build_mlp(inputs(), depth=1, wvar=1.5, bvar=0.1, phi=tp.erf)
    run = tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR, tier="particles")
    ens = ensemble(p)
    k = 5.0  # t with 15 dof: P(|t| > 5) = 1.6e-4 an entry, under 2 % over the 104 entries
    for cols, mean in ((TRAIN, ens.mean_train), (TEST, ens.mean_test)):
        dev = np.abs(run.mean[:, cols] - mean)
        assert np.all(dev <= k * run.mean_error[:, cols] + 1e-12), dev / run.mean_error[:, cols]
    for cols, cov in ((TRAIN, ens.cov_train), (TEST, ens.cov_test)):
        block = np.ix_(range(STEPS + 1), cols, cols)
        dev = np.abs(run.cov[block] - cov)
        assert np.all(dev <= k * run.cov_error[block] + 1e-12)
    # the error bars are small enough for the comparison to mean something
    assert 0 < run.limit_error < 0.01
    assert np.abs(run.mean[-1, TRAIN] - Y).max() < np.abs(Y).max()  # it learns


@pytest.fixture(scope="module")
def mup_runs():
    p = mlp()
    kw = dict(train=FL_TRAIN, steps=2, lr=2.0, parametrization=tp.mup())
    return tp.train(p, FL_Y, **kw), tp.train(p, FL_Y, tier="montecarlo", **kw)


def test_mup_particles_agree_with_the_monte_carlo_tier(mup_runs):
    particles, montecarlo = mup_runs
    assert particles.tier == "particles" and montecarlo.tier == "montecarlo"
    sigma = np.sqrt(particles.mean_error ** 2 + montecarlo.limit_error ** 2)
    z = np.abs(particles.mean - montecarlo.mean) / sigma
    assert z[1:].max() < 4, z
    assert np.all(particles.cov == 0) and np.all(particles.cov_error == 0)
    # end-to-end errors grow along the run (each step uses the estimates of the last)
    worst = particles.mean_error.max(axis=1)
    assert 0 < worst[1] < worst[2] < 0.01


def test_mup_particles_follow_finite_width(mup_runs):
    """The default tier of a feature-learning run: seed means of width-1024 networks within 4
    combined standard errors of the particle limit."""
    run = mup_runs[0]
    sim = run.simulate(1024, seeds=48)
    z = np.abs(sim.mean - run.mean) / np.sqrt(sim.stderr ** 2 + run.mean_error ** 2)
    assert z.max() < 4


@pytest.fixture(scope="module")
def kernel_case():
    """s = 1/2: the limit is deterministic kernel gradient descent from zero outputs, with the
    program's NTK (closed-form erf kernels) as exact reference."""
    p = build_mlp(inputs(), depth=1, wvar=1.5, bvar=0.1, phi=tp.erf)
    run = tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR, parametrization=tp.yaida(0.5))
    ens = ensemble(p)
    exact = np.zeros((STEPS + 1, len(TRAIN) + len(TEST)))
    exact[:, TRAIN], exact[:, TEST] = ens.mean_train, ens.mean_test
    zs = []
    for seed in range(12):
        lim = ParticleLimit(run.program, particles=4096, seed=seed)
        reps = replica_outputs(run, lim)[1:]          # step 0 is 0 in every replica
        zs.append(((reps.mean(axis=-1), reps.std(axis=-1, ddof=1) / np.sqrt(lim.R))))
    return exact[1:], zs


def particle_z(kernel_case, shift=0.0):
    exact, estimates = kernel_case
    return np.concatenate([((mean - exact - shift * err) / err).ravel()
                           for mean, err in estimates])


def test_particle_error_bars_are_calibrated(kernel_case):
    z = particle_z(kernel_case)
    assert len(z) >= 200
    assert calibrated(z), (len(z), np.sqrt(np.mean(z ** 2)), np.max(np.abs(z)))


@pytest.mark.parametrize("shift", [1.0, -1.0])
def test_a_wrong_exact_value_is_rejected_by_the_particle_errors(kernel_case, shift):
    assert not calibrated(particle_z(kernel_case, shift=shift))


def test_particle_tier_refuses_what_it_cannot_evaluate():
    p = tp.demo_program(moment=True)
    with pytest.raises(LimitError, match="power of 2"):
        ParticleLimit(p, particles=1000)
    with pytest.raises(LimitError, match="at least 2"):
        ParticleLimit(p, replicas=1)
    lim = ParticleLimit(p, particles=1000, qmc=False, replicas=4)
    assert abs(lim.scalar("th")[0] - 0.55) < 5 * lim.scalar_error("th")[0] + 1e-3
    with pytest.raises(LimitError, match="no scalar"):
        lim.scalar("nope")


def test_gru_trains_in_mup_on_particles():
    """The GRU (programs/gru.py, weights shared over its steps), whose feature-learning limit
    the evaluator's tiers do not finish: on particles in seconds, and width-512 networks
    follow it."""
    from .test_errors import program_of

    run = tp.train(program_of("gru"), [1.0], train=[0], steps=2, lr=1.0,
                   parametrization=tp.mup())
    assert run.tier == "particles" and run.limit_error < 1e-3
    assert run.mean[2, 0] > run.mean[1, 0] > 0.1     # it learns its training point
    sim = run.simulate(512, seeds=32)
    z = np.abs(sim.mean - run.mean) / np.sqrt(sim.stderr ** 2 + run.mean_error ** 2)
    assert z.max() < 4
