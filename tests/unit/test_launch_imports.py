"""What a trial's processes import at start-up (issue 6 item 5: trial launch is import-bound).

Ray Train's controller and the Tune trial actor unpickle ``econ_ray.search.trial.train_worker`` and
so import its module: it must not pull in torch or Optuna. The Train workers import DeepSpeed, whose
autotuner imports MLflow at module level: ``import_deepspeed`` keeps that out. Each check runs in a
fresh interpreter, since the test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_trial_module_is_light_for_the_controller():
    got = _run(
        "import json, sys\n"
        "import econ_ray.search.trial\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'optuna', 'transformers', 'deepspeed')}))\n"
    )
    assert got == {"torch": False, "optuna": False, "transformers": False, "deepspeed": False}


def test_import_deepspeed_skips_mlflow_and_leaves_it_importable():
    got = _run(
        "import json, sys\n"
        "from econ_ray.training.deepspeed_engine import import_deepspeed\n"
        "ds = import_deepspeed()\n"
        "from deepspeed.autotuning import autotuner\n"
        "after = {'deepspeed': ds.__name__, 'mlflow_loaded': 'mlflow' in sys.modules,\n"
        "         'autotuner_has_mlflow': autotuner.has_mlflow}\n"
        "import mlflow\n"  # hidden only while DeepSpeed imports: a later import works
        "after['mlflow_importable'] = hasattr(mlflow, 'log_metric')\n"
        "print(json.dumps(after))\n"
    )
    assert got == {
        "deepspeed": "deepspeed",
        "mlflow_loaded": False,
        "autotuner_has_mlflow": False,
        "mlflow_importable": True,
    }


def test_import_deepspeed_does_not_hide_a_loaded_mlflow():
    got = _run(
        "import json, sys\n"
        "import mlflow\n"
        "from econ_ray.training.deepspeed_engine import import_deepspeed\n"
        "import_deepspeed()\n"
        "from deepspeed.autotuning import autotuner\n"
        "print(json.dumps({'autotuner_has_mlflow': autotuner.has_mlflow}))\n"
    )
    assert got == {"autotuner_has_mlflow": True}


def test_trainer_stops_its_placement_group_cleaner_quickly():
    """The trial's TorchTrainer keeps Ray's placement-group cleaner, with a 2 s state-API timeout
    instead of 10 s (Ray 2.60 waited 12 s for it at the end of every run)."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    from econ_ray.search.trial import _torch_trainer_class

    cls = _torch_trainer_class()
    assert issubclass(cls, TorchTrainer)
    trainer = cls(lambda config: None, scaling_config=ray.train.ScalingConfig(num_workers=1))
    cleaners = [cb for cb in trainer._create_default_callbacks() if isinstance(cb, PlacementGroupCleanerCallback)]
    assert len(cleaners) == 1
    assert cleaners[0]._get_actor_timeout_s == 2.0
    assert cleaners[0]._stop_timeout == 4.0
