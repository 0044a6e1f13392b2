"""Resuming a search whose driver died (killed, machine rebooted): what is already done, what is left.

The run folder is the source of truth:

    search_state.json      what the search was started with (trials asked, sampler, seed, the MLflow
                           parent run id, the tracking URI) and how many times it was resumed
    trial_records/*.json   one record per finished trial (complete, failed or stopped), written by the
                           Tune callback the moment the trial ends, atomically

A resumed search keeps every recorded trial (none is rerun), reopens the Optuna study in
``optuna.db`` and runs a *new* Tuner for the remaining trials (asked minus recorded). Optuna trials
still RUNNING in the study were cut off by the kill: they are marked FAIL (user attribute
``interrupted``) and their knobs are enqueued again, so they are re-run from the start with the same
knobs and the final set of trials is the one an uninterrupted search would have sampled up to that
point. Their MLflow child runs are ended KILLED, naming the reason.

Why a new Tuner and not ``Tuner.restore``: Tune's experiment state is written periodically, not at
each trial's end, so after a SIGKILL it may predate trials that did finish; a restored Tuner also
unpickles its callbacks and searcher (our MLflow callback deliberately drops its client when pickled)
and restarts interrupted function trials from scratch anyway, since the TorchTrainer inside a trial
checkpoints to Ray Train's storage, not to Tune's. Our own records and the Optuna storage are
written at the moment a trial ends, so they are the exact state to go on from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from econ_ray.search.records import TrialRecord
from econ_ray.training.checkpoint import atomic_write

STATE_FILE = "search_state.json"
INTERRUPTED_ATTR = "interrupted"
RECONCILED_ATTR = "econ_ray_reconciled"


class ResumeError(RuntimeError):
    """The folder cannot be resumed (not a search run folder, or a different configuration)."""


def read_state(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise ResumeError(f"{run_dir}: not a search run folder (no {STATE_FILE})")
    return json.loads(path.read_text())


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    text = json.dumps(state, indent=2, default=str)

    def write(p: Path) -> None:
        p.write_text(text)

    atomic_write(Path(run_dir) / STATE_FILE, write)


def remaining_trials(n_trials: int, records: list[TrialRecord]) -> int:
    """Trials still to run: every recorded trial (complete, failed or stopped) counts as done."""
    return max(0, int(n_trials) - len(records))


def reconcile_study(study: Any, records: list[TrialRecord]) -> list[dict[str, Any]]:
    """Close the Optuna trials the kill cut off and enqueue their knobs again.

    A trial RUNNING in the study with no record is marked FAIL (``interrupted``) and its params are
    enqueued, so the next ``ask`` returns the same knobs; that includes one asked for but not yet
    tagged with its Tune trial id (the kill fell between ``ask`` and ``set_user_attr``). A trial the study has as finished but that
    has no record (the kill fell between Optuna's tell and the record's write) is re-run the same way.
    Returns ``[{"tune_trial_id", "optuna_trial", "params"}]`` of the trials to re-run."""
    from optuna.trial import TrialState

    recorded = {r.trial_id for r in records}
    handled = set(study.user_attrs.get(RECONCILED_ATTR, []))  # finished trials cannot take user attrs
    rerun = []
    for t in study.get_trials(deepcopy=False):
        tid = t.user_attrs.get("tune_trial_id")
        if t.state == TrialState.WAITING or t.number in handled or (tid is not None and tid in recorded):
            continue
        if tid is None and t.state != TrialState.RUNNING:
            continue  # finished without ever being a Tune trial: nothing to re-run
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(t._trial_id, INTERRUPTED_ATTR, True)
            study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(t.params), user_attrs={"rerun_of": t.number}, skip_if_exists=False)
        handled.add(t.number)
        rerun.append({"tune_trial_id": tid, "optuna_trial": t.number, "params": dict(t.params)})
    if rerun:
        study.set_user_attr(RECONCILED_ATTR, sorted(handled))
    return rerun


def check_same_config(stored: dict[str, Any], given: dict[str, Any]) -> None:
    """A resumed search must train what it started with; only the search budget may differ."""

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        d = json.loads(json.dumps(d))
        for key in ("trials", "concurrency"):
            d.get("search", {}).pop(key, None)
        return d

    a, b = strip(stored), strip(given)
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ResumeError(
            f"the file differs from the run's config.yaml in {', '.join(diff)}; "
            "resume without FILE to use the run's own config"
        )
