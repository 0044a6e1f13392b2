"""The constrained objective's own logic, on a scripted environment: the multiplier's controller
(defaults, gains, checkpoint), what the objective records and returns, and the order of held-out batches.
The training loop around it is tested in test_training.py."""

from __future__ import annotations

import copy

import pytest
import torch

from econ_ray.config.schema import MultiplierConfig, ObjectiveConfig
from econ_ray.objectives import LagrangeController, make_objective, relative_tau
from econ_ray.objectives.constrained import aimed_ce, constraint_updates

CES = (1.4, 1.1, 1.2)  # violations 0.4, 0.1, 0.2 at tau = 1


def _path(c: LagrangeController, ces=CES) -> list[float]:
    return [c.update(ce) for ce in ces]


def test_relative_tau_accepts_eps_zero_and_names_bad_values():
    assert relative_tau(0.7, 0.0) == 0.7
    with pytest.raises(ValueError, match=r"^need CE_dense > 0 and eps >= 0, got 0.0, 0.05$"):
        relative_tau(0.0, 0.05)
    with pytest.raises(ValueError, match=r"^need CE_dense > 0 and eps >= 0, got 0.5, -0.01$"):
        relative_tau(0.5, -0.01)


def test_the_aim_is_a_share_of_the_allowed_increase_and_never_above_tau():
    assert aimed_ce(1.1, 1.0, 0.5) == pytest.approx(1.05)
    assert aimed_ce(1.1, 1.0, 1.0) == 1.1  # aim 1: steer at the ceiling itself
    assert aimed_ce(1.1, 1.0, 0.25) == pytest.approx(1.025)
    assert aimed_ce(0.8, 5.0, 0.5) == 0.8  # a start already above tau leaves no room: the aim is tau
    assert aimed_ce(1.0, 1.0, 0.5) == 1.0  # eps = 0
    for bad in (0.0, -0.1, 1.01):
        with pytest.raises(ValueError, match=rf"^aim must be in \(0, 1\], got {bad}$"):
            aimed_ce(1.1, 1.0, bad)


def test_the_schema_default_aim_is_measured_and_bounded():
    assert ObjectiveConfig().aim == 0.65  # docs/results.md, The aim
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="aim"):
            ObjectiveConfig(kind="constrained", tau_rel=0.1, aim=bad)


def test_the_multiplier_steers_to_the_aim_and_certification_uses_tau():
    obj = _objective(aim=0.5)  # tau = 1.1 * CE_dense 1.0, aim 1.05
    obj.start(_Env([(1.0, 1.0), (1.08, 0.3), (1.12, 0.1)], drive_ce=1.08))
    assert obj.tau == pytest.approx(1.1) and obj.tau_aim == pytest.approx(1.05)
    assert obj.controller.tau == obj.tau_aim
    rec = obj.before_step(1)  # drive CE 1.08 is above the aim, below tau: mu rises
    assert rec["multiplier"] > 1.0
    obj.initial_records()
    assert obj.on_eval(10)["meets_ceiling"] is True  # 1.08 <= tau: certified, though above the aim
    assert obj.on_eval(20)["meets_ceiling"] is False  # 1.12 > tau
    assert obj.snapshot_step == 10
    s = obj.summary([rec["multiplier"]], {"ce": 1.09})
    assert s["tau_aim"] == pytest.approx(1.05) and s["feasible"] is True  # validation 1.09 <= tau
    loss, _ = obj.loss(torch.tensor(1.05), [torch.tensor(0.2)], [])
    assert float(loss) == pytest.approx(0.2)  # at the aim the Lagrangian's constraint term is zero


def test_controller_rejects_a_ceiling_that_is_not_positive():
    with pytest.raises(ValueError, match=r"^tau must be > 0, got 0$"):
        LagrangeController(0)
    assert LagrangeController(1e-6).tau == 1e-6


def test_controller_defaults_are_the_schema_defaults():
    m = MultiplierConfig()
    assert LagrangeController(1.0).value == m.init == 1.0
    assert _path(LagrangeController(1.0)) == _path(LagrangeController(1.0, lr=m.lr, kp=m.kp, ki=m.ki, init=m.init))


def test_controller_gains_reach_nupi():
    # the first nuPI step is plain gradient ascent: mu_1 = mu_0 + lr * ki * violation
    assert LagrangeController(1.0, lr=0.5, kp=2.0, ki=0.5, init=1.0).update(1.4) == pytest.approx(1.0 + 0.5 * 0.5 * 0.4)
    # kp = 0 is projected gradient ascent all along; kp > 0 adds the proportional term from step 2 on
    ascent = _path(LagrangeController(1.0, lr=0.5, kp=0.0, ki=1.0, init=1.0))
    assert ascent == pytest.approx([1.2, 1.25, 1.35])
    pi = _path(LagrangeController(1.0, lr=0.5, kp=2.0, ki=1.0, init=1.0))
    assert pi[0] == pytest.approx(ascent[0]) and pi[1] != pytest.approx(ascent[1])
    # cooper-optim 1.0.1: after the first step nuPI's previous error is 0, not e1 = 0.4, so step 2's
    # proportional term is kp * e2 (1.2 + 0.5 (0.1 + 2 * 0.1)), not kp * (e2 - e1) (which gives 0.95)
    assert pi == pytest.approx([1.2, 1.35, 1.55])
    pi = _path(LagrangeController(1.0, lr=0.5, kp=2.0, ki=1.0, init=1.0), (1.4, 1.1, 0.5))
    assert pi == pytest.approx([1.2, 1.35, 0.5])  # docs/results.md, section 5a


def test_controller_checkpoint_carries_the_nupi_memory():
    a = LagrangeController(1.0, lr=0.5, kp=2.0, ki=1.0)
    _path(a, CES[:2])
    b = LagrangeController(1.0, lr=0.5, kp=2.0, ki=1.0)
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as through a checkpoint file: no shared tensors
    assert b.value == a.value
    assert b.update(CES[2]) == a.update(CES[2])  # a fresh nuPI would take a plain gradient step here
    fresh = LagrangeController(1.0, lr=0.5, kp=2.0, ki=1.0, init=b.value)
    assert fresh.update(CES[2]) != pytest.approx(b.value)


def test_lagrangian_value():
    c = LagrangeController(2.0, init=4.0)
    assert float(c.lagrangian(torch.tensor(0.3), torch.tensor(1.0))) == pytest.approx(0.3 + 4.0 * (1.0 / 2.0 - 1.0))


class _Env:
    """A scripted ObjectiveEnv: certification results come from a list; every held-out request is logged."""

    def __init__(self, certify=(), ce_dense=1.0, drive_ce=1.3):
        self.model = torch.nn.Linear(1, 1)
        self.ce_dense = ce_dense
        self.ce_dense_validation = None  # tau_validation falls back to tau
        self._certify = iter(certify)
        self.drive_ce = drive_ce
        self.requests: list[tuple[int, int]] = []
        self.read: list[torch.Tensor] = []

    def evaluate_certify(self):
        ce, density = next(self._certify)
        return {"ce": ce, "attention_density": density}

    def heldout_ce(self, idx):
        self.read.append(idx)
        return self.drive_ce

    def heldout_batches(self, size, skip):
        self.requests.append((size, skip))
        return iter([torch.full((size,), skip + i) for i in range(100)])


def _objective(**kw):
    return make_objective(ObjectiveConfig(kind="constrained", **{"tau_rel": 0.1, **kw}))


def test_nothing_is_known_before_start():
    obj = _objective()
    assert (obj.tau, obj.tau_aim, obj.snapshot_step, obj.snapshot_ce, obj.start_feasible, obj.best_feasible) == (
        None,
    ) * 6
    for use in (lambda: obj.env, lambda: obj.controller, lambda: obj.heldout, lambda: obj.before_step(1)):
        with pytest.raises(RuntimeError, match=r"^the constrained objective is used before start\(\)$"):
            use()


def test_an_absolute_ceiling_is_used_as_given():
    obj = _objective(tau=0.8, tau_rel=None)
    obj.start(_Env(ce_dense=5.0))
    assert obj.tau == obj.controller.tau == obj.tau_aim == 0.8  # CE_dense above it: aimed at tau


def test_neither_ceiling_is_an_error():
    cfg = ObjectiveConfig(kind="constrained", tau_rel=0.1)
    object.__setattr__(cfg, "tau_rel", None)  # past the schema, which refuses this
    with pytest.raises(ValueError, match=r"^objective 'constrained' needs tau or tau_rel$"):
        make_objective(cfg).start(_Env())


def test_the_config_multiplier_reaches_the_controller():
    m = dict(lr=0.3, kp=0.5, ki=0.7, init=0.2)
    obj = _objective(multiplier=m)
    obj.start(_Env())
    assert obj.controller.value == pytest.approx(0.2)
    assert obj.tau_aim == pytest.approx(1.0 + 0.65 * 0.1)
    assert _path(obj.controller) == _path(LagrangeController(obj.tau_aim, **m))


def test_records_and_loss():
    obj = _objective(constraint_batch_size=8, constraint_every=2, aim=1.0)
    env = _Env([(1.0, 1.0), (1.05, 0.4)])
    obj.start(env)
    assert env.requests == [(8, 0)]  # the drive batches from the first
    assert obj.initial_records() == [{"step": 0, "certify_ce": 1.0, "certify_density": 1.0, "meets_ceiling": True}]
    assert obj.on_eval(10) == {"step": 10, "certify_ce": 1.05, "certify_density": 0.4, "meets_ceiling": True}
    rec = obj.before_step(1)
    assert rec == {"constraint_ce": 1.3, "multiplier": obj.controller.value} and rec["multiplier"] > 1.0
    assert obj.before_step(2) == {"multiplier": rec["multiplier"]}  # between updates: mu held, no batch read
    assert [int(b[0]) for b in env.read] == [0]
    loss, info = obj.loss(torch.tensor(1.1), [torch.tensor(0.2), torch.tensor(0.4)], [])
    assert info == {"cost": pytest.approx(0.3)}
    assert float(loss) == pytest.approx(0.3 + rec["multiplier"] * (1.1 / 1.1 - 1.0))


def test_a_resumed_run_reads_the_next_heldout_batches_and_keeps_its_facts():
    obj = _objective(constraint_every=3)
    obj.start(_Env([(1.0, 1.0), (1.3, 0.1)]))
    obj.initial_records()
    obj.on_eval(10)  # the starting model met tau, the snapshot did not
    again = _objective(constraint_every=3)
    env = _Env()
    again.start(env)
    again.load_state_dict(obj.state_dict(), step=7)
    assert env.requests[-1] == (128, constraint_updates(7, 3)) == (128, 3)
    again.before_step(10)  # steps 1, 4, 7 read batches 0-2; step 10 is the next update
    assert int(env.read[-1][0]) == 3  # the fourth batch, as an uninterrupted run would read
    s = again.summary([], {"ce": 1.2})
    assert s["infeasible_reason"] == "only the starting model (step 0) met the ceiling on the certification rows"
    assert (s["tau_rel"], s["ce_certified"], s["snapshot_step"]) == (0.1, None, None)


def test_a_paired_drive_keeps_the_dense_references_through_a_checkpoint(tmp_path):
    """drive_reference 'paired': start() measures the dense CE of each drive batch once; a resumed run
    takes them from the checkpoint, not from its (already post-trained) model."""

    class _Paired(_Env):
        def __init__(self, dense):
            super().__init__()
            self.dense = dense

        def dense_heldout_ce(self, idx):
            return self.dense(int(idx[0]))

    obj = _objective(drive_reference="paired")
    obj.start(_Paired(lambda first: 1.0 + first / 100))
    tau_ratio = obj.tau_aim / 1.0  # tau_aim / CE_dense
    assert obj.drive_tau(torch.full((128,), 7)) == pytest.approx((1.0 + 0.07) * tau_ratio)
    state = obj.state_dict()
    torch.save(state.tensors, tmp_path / "s.pt")
    state.tensors = torch.load(tmp_path / "s.pt", weights_only=True)  # what a checkpoint's loader allows
    again = _objective(drive_reference="paired")
    again.start(_Paired(lambda first: 9.0))  # the resumed model's CE: must not become the reference
    again.load_state_dict(state, step=5)
    assert again.drive_tau(torch.full((128,), 7)) == pytest.approx((1.0 + 0.07) * tau_ratio)
    rec = again.before_step(6)
    assert rec["constraint_tau"] == pytest.approx((1.0 + 0.05) * tau_ratio)  # the sixth batch (index 5)
    assert _objective().drive_tau(torch.zeros(3)) is None  # drive_reference 'tau': the aimed ceiling
