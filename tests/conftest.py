import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Every test starts with the process's torch thread count: a test that sets it (a latency
    measurement at 1 thread) would otherwise change the float reductions of every later training."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_bert_config(**extra):
    """The config of the tiny BERT (2 layers, 4 heads, d = 32); ``extra`` overrides or adds fields."""
    from transformers import BertConfig

    return BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=50,
        max_position_embeddings=64,
        **extra,
    )


@pytest.fixture
def tiny_bert():
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config()).eval()


@pytest.fixture
def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_embd=32, n_layer=2, n_head=4, n_inner=64, vocab_size=50, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture
def batch():
    torch.manual_seed(1)
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    return ids, mask


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    """An empty MLflow SQLite store with its tables made, once per session: MLflow runs its schema
    migrations on every new database (5-10 s on 2 busy cores), so tests start from a copy of this one.
    A few tests still let the code create a store from nothing (tests/unit/test_tracking.py)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def mlflow_db(mlflow_template):
    """``mlflow_db(path)`` puts a copy of the empty store at ``path`` and returns its SQLite URI."""
    import shutil

    def make(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mlflow_template, path)
        return f"sqlite:///{path}"

    return make
