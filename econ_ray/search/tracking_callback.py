"""A Ray Tune callback (it runs in the driver) that mirrors trials into MLflow child runs and keeps
the records the run folder is built from. All MLflow writes come from this one process.

Each trial's record is also written to ``RUN_DIR/trial_records/`` the moment the trial ends, so a
search whose driver dies can be resumed without rerunning finished trials (``econ_ray.search.resume``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune import Callback

from econ_ray.config.schema import SearchSpaceFile
from econ_ray.search.records import CHECKPOINT_PATH_KEY, TrialRecord, numeric_metrics, write_record
from econ_ray.search.space import trial_config, trial_params
from econ_ray.search.trial import CHECKPOINT_FLAG, HISTORY_FILE


class MlflowTuneCallback(Callback):
    """Child run per trial: knobs as params, every evaluation as step metrics, the final metrics, the
    multiplier at every step (constrained trials), and FAILED with the reason for a failed trial."""

    def __init__(
        self,
        tracker: Any,
        file: SearchSpaceFile,
        *,
        run_dir: str | Path | None = None,
        order_offset: int = 0,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.tracker = tracker
        self.tags = dict(tags or {})  # on every child run (MLflow's source tags)
        self.file = file  # each trial's params are read from trial_config(file, knobs), what it trains
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.order_offset = order_offset  # trials recorded before a resume come first
        self._order: list[str] = []
        self._final: dict[str, dict[str, Any]] = {}
        self._knobs: dict[str, dict[str, Any]] = {}
        self._errors: dict[str, str] = {}

    # Tune pickles callbacks with its experiment state; the tracker (an MLflow client) is not state.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "tracker": None}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        knobs = dict(trial.config.get("knobs", {}))
        self._knobs[trial.trial_id] = knobs
        run = trial_config(self.file, knobs)
        params = {
            **trial_params(run),
            "optuna_trial": trial.config.get("optuna_trial"),
            "config": run.model_dump(mode="json"),  # what this trial trained, as config.* params
        }
        self.tracker.start_child(trial.trial_id, params=params, tags={**self.tags, "trial_id": trial.trial_id})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get(CHECKPOINT_FLAG):  # a training-state checkpoint, no evaluation
            return
        if result.get("final"):
            self._final[trial.trial_id] = dict(result)
            return
        step = int(result.get("step", result.get("training_iteration", 0)))
        self.tracker.log_metrics(
            trial.trial_id,
            {f"eval_{k}": v for k, v in numeric_metrics(result).items()},
            step=step,
        )

    def _history(self, checkpoint: str | None) -> dict[str, Any]:
        if checkpoint and Path(checkpoint, HISTORY_FILE).is_file():
            return json.loads(Path(checkpoint, HISTORY_FILE).read_text())
        return {}

    def _persist(self, trial_id: str) -> None:
        if self.run_dir is None:
            return
        rec = next(r for r in self.records() if r.trial_id == trial_id)
        write_record(self.run_dir, rec)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._order.append(trial.trial_id)
        self._persist(trial.trial_id)  # first: the run folder is what a resumed search trusts
        final = self._final.get(trial.trial_id)
        if not final:
            reason = "stopped before its final evaluation"
            self.tracker.finish_child(trial.trial_id, status="KILLED", reason=reason)
            return
        hist = self._history(final.get(CHECKPOINT_PATH_KEY))
        if hist.get("multiplier"):
            self.tracker.log_series(trial.trial_id, "lagrange_multiplier", hist["multiplier"])
        self.tracker.finish_child(trial.trial_id, status="FINISHED", metrics=numeric_metrics(final))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._order.append(trial.trial_id)
        reason = _error_line(trial)
        self._errors[trial.trial_id] = reason
        self._persist(trial.trial_id)
        self.tracker.finish_child(trial.trial_id, status="FAILED", reason=reason)

    def ended_records(self) -> list[TrialRecord]:
        """The records of the trials that have ended (what a progress display counts as done)."""
        ended = set(self._order)
        return [r for r in self.records() if r.trial_id in ended]

    def records(self) -> list[TrialRecord]:
        """One record per trial, in completion order (everything needed was seen through the callbacks)."""
        out = []
        ids = self._order + [t for t in self._knobs if t not in self._order]
        for order, tid in enumerate(ids, self.order_offset):
            final = self._final.get(tid)
            if tid in self._errors:
                out.append(TrialRecord(tid, order, "failed", self._knobs.get(tid, {}), reason=self._errors[tid]))
            elif final:
                out.append(
                    TrialRecord(
                        tid,
                        order,
                        "complete",
                        self._knobs.get(tid, {}),
                        metrics={k: v for k, v in final.items() if k not in ("config",)},
                        checkpoint=final.get(CHECKPOINT_PATH_KEY),
                    )
                )
            else:
                out.append(
                    TrialRecord(
                        tid, order, "stopped", self._knobs.get(tid, {}), reason="stopped before its final evaluation"
                    )
                )
        return out


def _error_line(trial: Any) -> str:
    """The last informative line of a trial's error (for MLflow and the run folder)."""
    text = ""
    path = getattr(trial, "error_file", None) or ""
    try:
        if path and Path(path).is_file():
            text = Path(path).read_text()
    except OSError:
        pass
    # pydantic ends a validation error with a link, not the error
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "errors.pydantic.dev" not in ln]
    for ln in reversed(lines):  # a diverged trial: the loop's own message, whatever Ray wrapped it in
        if "DivergenceError" in ln and "training diverged" in ln:
            return ln[ln.index("training diverged") :][:500]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln[:500]
    return lines[-1][:500] if lines else "trial failed"
