"""Upload what a search kept in its tracking outbox during an MLflow outage (``econ-ray sync RUN_DIR``).

The parent run and its children are found again (the parent id is in ``search_state.json``, the
children by their trial tag), the outbox is replayed in order (``econ_ray.tracking.outbox.replay``),
and the registry versions it created are written into ``pareto.json`` and ``summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def sync_run(run_dir: str | Path, *, tracking_uri: str | None = None) -> dict[str, Any]:
    """Replay ``run_dir``'s pending tracking operations; returns ``{"applied", "files", "versions",
    "pending", "tracking_uri"}``. Raises ``ResumeError`` (not a run folder) or ``TrackingError``."""
    from econ_ray.search.resume import ResumeError, read_state
    from econ_ray.tracking import MlflowTracker, check_tracking_uri
    from econ_ray.tracking import tracking_uri as resolve_uri
    from econ_ray.tracking.outbox import pending_ops, replay
    from econ_ray.tracking.store import redact_uri

    root = Path(run_dir).resolve()
    state = read_state(root)
    uri = resolve_uri(tracking_uri or state.get("tracking_uri"))
    if not pending_ops(root):
        return {"applied": 0, "files": [], "versions": {}, "pending": 0, "tracking_uri": redact_uri(uri)}
    check_tracking_uri(uri)
    if not state.get("parent_run_id"):
        raise ResumeError(f"{root}: search_state.json names no MLflow parent run")
    tracker = MlflowTracker(uri, experiment=state["experiment"])
    tracker.resume_parent(state["parent_run_id"], set_running=False)
    out = replay(root, tracker)
    if out["versions"]:
        _fill_versions(root, {str(k): v for k, v in out["versions"].items()})
    return {**out, "pending": pending_ops(root), "tracking_uri": redact_uri(uri)}


def _fill_versions(root: Path, versions: dict[str, Any]) -> None:
    """Write the registry versions into the rows of pareto.json and summary.json."""
    for name, key in (("pareto.json", "pareto"), ("summary.json", "pareto")):
        path = root / name
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        for row in doc.get(key, []):
            if row.get("trial_id") in versions:
                row["version"] = versions[row["trial_id"]]
        if name == "summary.json":
            doc["pending_tracking_ops"] = 0
        path.write_text(json.dumps(doc, indent=2, default=str))
