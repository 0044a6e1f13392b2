"""econ_ray.data: built-in tasks, hub mapping (mocked), local files, tokenizer and encoding.

Nothing here touches the network: hub loading is checked through a monkeypatched
``datasets.load_dataset``.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from econ_ray.data import (
    HUB_TASKS,
    DataError,
    EncodedSplit,
    TaskSpec,
    addition_text,
    build_word_tokenizer,
    encode_split,
    load_task,
    load_task_for,
)
from econ_ray.data.tokenizer import SPECIAL_TOKENS

# ---------------------------------------------------------------------------------------------
# Built-in tasks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["majority", "addition", "similarity"])
def test_builtin_deterministic_by_seed(name):
    a = load_task(f"builtin:{name}", seed=3)
    b = load_task(f"builtin:{name}", seed=3)
    c = load_task(f"builtin:{name}", seed=4)
    assert a.train == b.train and a.validation == b.validation and a.heldout == b.heldout
    assert a.train != c.train


def test_majority_labels_recount_and_balance():
    s = load_task("builtin:majority", seed=0)
    assert s.task == TaskSpec("builtin:majority", "classification", 2, "accuracy")
    everything = s.train + s.validation + s.heldout
    for ex in everything:
        toks = ex["text"].split()
        assert 8 <= len(toks) <= 24
        assert set(toks) <= set("abcdefgh")
        assert toks.count("a") != toks.count("b")  # ties resampled
        assert ex["label"] == int(toks.count("a") > toks.count("b"))
        assert ex["text_pair"] is None
    # default sizes 2000 / 500, 10 % of train held out
    assert (len(s.train), len(s.heldout), len(s.validation)) == (1800, 200, 500)
    share = sum(ex["label"] for ex in s.train) / len(s.train)
    assert 0.45 < share < 0.55
    assert sum(ex["label"] for ex in s.validation) == 250  # generated exactly balanced


def test_majority_options():
    s = load_task(
        "builtin:majority", builtin_options={"n_train": 100, "n_validation": 20.0, "min_len": 3, "max_len": 5}
    )
    assert len(s.train) + len(s.heldout) == 100 and len(s.validation) == 20
    assert all(3 <= len(ex["text"].split()) <= 5 for ex in s.train)
    with pytest.raises(DataError, match=r"builtin:majority.*unknown builtin option 'n_trian'.*n_train"):
        load_task("builtin:majority", builtin_options={"n_trian": 10})


def test_addition_answers():
    assert addition_text(12, 34) == "1 2 + 3 4 = 4 6"
    assert addition_text(7, 35) == "7 + 3 5 = 4 2"
    assert addition_text(99, 99) == "9 9 + 9 9 = 1 9 8"
    s = load_task("builtin:addition", seed=1)
    assert s.task == TaskSpec("builtin:addition", "lm", 0, "perplexity")
    assert (len(s.train) + len(s.heldout), len(s.validation)) == (4000, 500)
    for ex in s.train + s.validation + s.heldout:
        assert set(ex) == {"text"}
        left, answer = ex["text"].split(" = ")
        a, b = (int(part.replace(" ", "")) for part in left.split(" + "))
        assert 0 <= a <= 99 and 0 <= b <= 99
        assert int(answer.replace(" ", "")) == a + b
        assert answer.split()[0] != "0" or answer == "0"  # no leading zeros
    # operand pairs drawn without replacement: validation sums never seen in training
    assert not {ex["text"] for ex in s.validation} & {ex["text"] for ex in s.train + s.heldout}


def test_similarity_labels():
    s = load_task("builtin:similarity", seed=0)
    assert s.task == TaskSpec("builtin:similarity", "regression", 1, "pearson")
    labels = []
    for ex in s.train:
        x, y = set(ex["text"].split()), set(ex["text_pair"].split())
        assert ex["label"] == pytest.approx(5 * len(x & y) / len(x | y))
        labels.append(ex["label"])
    assert min(labels) == 0.0 and max(labels) == 5.0  # covers the STS-B range


# ---------------------------------------------------------------------------------------------
# Splitting: heldout, caps
# ---------------------------------------------------------------------------------------------


def _keys(rows):
    return [(r["text"], r.get("text_pair")) for r in rows]


def test_heldout_disjoint_and_sizes():
    s = load_task("builtin:majority", heldout_fraction=0.25, builtin_options={"n_train": 400})
    assert len(s.heldout) == 100 and len(s.train) == 300
    assert not set(_keys(s.heldout)) & set(_keys(s.train))
    tiny = load_task("builtin:majority", heldout_fraction=0.01, builtin_options={"n_train": 20})
    assert len(tiny.heldout) == 1 and len(tiny.train) == 19  # at least one heldout example


def test_load_task_for_takes_every_option_from_the_data_config():
    from econ_ray.config.schema import DataConfig

    d = DataConfig(
        source="builtin:majority", train_size=50, eval_size=30, heldout_fraction=0.2, builtin={"n_train": 200}
    )
    a = load_task_for(d, seed=5)
    b = load_task(
        "builtin:majority",
        train_size=50,
        eval_size=30,
        heldout_fraction=0.2,
        seed=5,
        builtin_options={"n_train": 200},
    )
    assert a == b and len(a.heldout) == 10


def test_load_task_for_reads_data_validation(tmp_path):
    from econ_ray.config.schema import DataConfig

    (tmp_path / "train.tsv").write_text(GLUE_TRAIN)
    (tmp_path / "dev.tsv").write_text(GLUE_DEV)
    cols = {"text": "sentence1", "text_pair": "sentence2"}
    d = DataConfig(source=str(tmp_path / "train.tsv"), validation=str(tmp_path / "dev.tsv"), columns=cols)
    s = load_task_for(d, seed=0)
    assert len(s.validation) == 9 and all(ex["text"].startswith("dev premise") for ex in s.validation)


def test_train_and_eval_caps_deterministic():
    a = load_task("builtin:majority", train_size=50, eval_size=30, seed=5)
    b = load_task("builtin:majority", train_size=50, eval_size=30, seed=5)
    assert len(a.train) + len(a.heldout) == 50 and len(a.validation) == 30
    assert len(a.heldout) == 5
    assert a.train == b.train and a.validation == b.validation and a.heldout == b.heldout
    # eval_size also bounds the heldout split (it is evaluated in full)
    c = load_task("builtin:majority", eval_size=7)
    assert len(c.heldout) == 7 and len(c.validation) == 7


def test_bad_split_arguments():
    with pytest.raises(DataError, match="heldout_fraction"):
        load_task("builtin:majority", heldout_fraction=1.0)
    with pytest.raises(DataError, match="kind 'lm' was requested but this task is classification"):
        load_task("builtin:majority", kind="lm")


# ---------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------


def _rows(n):
    return [{"sent": f"w{i} x{i % 3}", "other": f"p{i}", "y": i % 3, "score": i / 10} for i in range(n)]


def test_local_csv_with_column_mapping(tmp_path):
    import pandas as pd

    path = tmp_path / "data.csv"
    pd.DataFrame(_rows(40)).to_csv(path, index=False)
    s = load_task(str(path), columns={"text": "sent", "text_pair": "other", "label": "y"}, seed=2)
    assert s.task == TaskSpec(str(path), "classification", 3, "accuracy")
    assert (len(s.validation), len(s.heldout), len(s.train)) == (4, 4, 32)  # 10 % validation, 10 % heldout
    everything = s.train + s.validation + s.heldout
    assert sorted(ex["text"] for ex in everything) == sorted(r["sent"] for r in _rows(40))
    for ex in everything:
        i = int(ex["text"].split()[0][1:])
        assert ex["text_pair"] == f"p{i}" and ex["label"] == i % 3
    # float labels -> regression
    r = load_task(str(path), columns={"text": "sent", "label": "score"})
    assert r.task.kind == "regression" and r.task.metric_name == "pearson" and r.task.num_labels == 1
    assert isinstance(r.train[0]["label"], float) and r.train[0]["text_pair"] is None
    # no label column -> language modelling
    lm = load_task(str(path), columns={"text": "sent", "label": "absent"})
    assert lm.task.kind == "lm" and set(lm.train[0]) == {"text"}


def test_local_tsv_text_that_looks_like_missing(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\n" + "".join(f"NA {i}\t{i % 2}\n" for i in range(10)) + "null\t1\n")
    s = load_task(str(path))
    texts = {ex["text"] for ex in s.train + s.validation + s.heldout}
    assert "null" in texts and "NA 0" in texts


def test_local_jsonl_and_json(tmp_path):
    rows = _rows(30)
    jl = tmp_path / "d.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = load_task(str(jl), columns={"text": "sent", "label": "y"}, kind="classification")
    assert s.task.num_labels == 3 and len(s.train) + len(s.heldout) + len(s.validation) == 30
    js = tmp_path / "d.json"
    js.write_text(json.dumps([{"text": r["sent"], "label": ["neg", "pos"][r["y"] % 2]} for r in rows]))
    t = load_task(str(js))
    assert t.task.kind == "classification" and t.task.num_labels == 2  # strings numbered in sorted order
    for ex in t.train:
        i = int(ex["text"].split()[0][1:])
        assert ex["label"] == ["neg", "pos"].index(["neg", "pos"][i % 3 % 2])


def test_local_parquet(tmp_path):
    import pandas as pd

    path = tmp_path / "d.parquet"
    pd.DataFrame(_rows(20)).to_parquet(path)
    s = load_task(str(path), columns={"text": "sent", "label": "score"})
    assert s.task.kind == "regression"
    assert len(s.validation) == 2


def test_local_txt_is_lm(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("one two\n\n  three four  \nfive\nsix seven\n\n")
    s = load_task(str(path))
    assert s.task == TaskSpec(str(path), "lm", 0, "perplexity")
    assert sorted(ex["text"] for ex in s.train + s.validation + s.heldout) == [
        "five",
        "one two",
        "six seven",
        "three four",
    ]


# GLUE's own layout: a header, tab-separated, fields quoted where they hold a tab or a quote
GLUE_TRAIN = 'sentence1\tsentence2\tlabel\n"a ""quoted"" word\tand a tab"\tsecond one\tentailment\n' + "".join(
    f"premise {i}\thypothesis {i}\t{['entailment', 'neutral'][i % 2]}\n" for i in range(20)
)
GLUE_DEV = "".join(
    [
        "sentence1\tsentence2\tlabel\n",
        *(
            f"dev premise {i}\tdev hypothesis {i}\t{['entailment', 'neutral', 'contradiction'][i % 3]}\n"
            for i in range(9)
        ),
    ]
)


def test_glue_tsv_with_its_own_dev_file_is_the_validation_split(tmp_path):
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text(GLUE_TRAIN)
    dev.write_text(GLUE_DEV)
    cols = {"text": "sentence1", "text_pair": "sentence2"}
    s = load_task(str(train), columns=cols, validation=str(dev), heldout_fraction=0.2, seed=1)
    # the dev file is the validation split, whole; the heldout split comes from train only
    assert sorted(ex["text"] for ex in s.validation) == sorted(f"dev premise {i}" for i in range(9))
    assert len(s.train) + len(s.heldout) == 21 and not any(ex["text"].startswith("dev") for ex in s.train + s.heldout)
    quoted = [ex for ex in s.train + s.heldout if "quoted" in ex["text"]]
    assert quoted[0]["text"] == 'a "quoted" word\tand a tab' and quoted[0]["text_pair"] == "second one"
    # class names are numbered over both files (contradiction is only in dev), alike in both
    names = ["contradiction", "entailment", "neutral"]
    assert s.task == TaskSpec(str(train), "classification", 3, "accuracy")
    for ex in s.validation:
        assert names[ex["label"]] == ["entailment", "neutral", "contradiction"][int(ex["text"].split()[-1]) % 3]
    assert {ex["label"] for ex in s.train} == {1, 2}
    # the preflight agrees with the loader
    from econ_ray.data import describe_source

    assert describe_source(str(train), columns=cols, validation=str(dev)) == s.task
    # without it, 10 % of train is carved off as before
    assert len(load_task(str(train), columns=cols).validation) == 2


def test_validation_file_errors_name_data_validation(tmp_path):
    from econ_ray.data import check_source

    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(10)))
    (tmp_path / "nolabel.csv").write_text("text,y\na,1\nb,0\n")
    (tmp_path / "names.csv").write_text("text,label\na,pos\nb,neg\n")
    (tmp_path / "float.csv").write_text("text,label\na,0.25\nb,0.75\n")
    (tmp_path / "c.txt").write_text("a corpus\n")
    cases = {
        "missing.csv": "file not found",
        "nolabel.csv": r"column 'label' not found \(columns: text, y\)",
        "names.csv": "holds class names in .*names.csv but numbers in .*train.csv",
        "float.csv": "reads as a regression task but data.source|classification label 0.25 is not",
        "c.txt": r"a \.txt corpus and a table",
    }
    for name, expected in cases.items():
        v = str(tmp_path / name)
        for call in (load_task, check_source):
            with pytest.raises(DataError) as err:
                call(str(train), validation=v)
            assert err.value.field == "data.validation", (name, str(err.value))
            assert str(err.value).startswith(f"data.validation '{tmp_path}/"), str(err.value)
            assert re.search(expected, str(err.value)), (name, str(err.value))
    with pytest.raises(DataError, match="goes with a local data.source"):
        load_task("builtin:majority", validation=str(train))


def test_label_values_that_the_declared_kind_cannot_take_are_named_before_any_work(tmp_path):
    from econ_ray.data import check_source

    floats = tmp_path / "f.csv"
    floats.write_text("text,label\n" + "".join(f"t{i},{i / 7:.3f}\n" for i in range(10)))
    names = tmp_path / "n.csv"
    names.write_text("text,label\n" + "".join(f"t{i},{['pos', 'neg'][i % 2]}\n" for i in range(10)))
    with pytest.raises(
        DataError, match=r"holds numbers like 0.143 but data.kind is classification.*data.kind: regression"
    ):
        check_source(str(floats), kind="classification")
    with pytest.raises(DataError, match=r"holds class names like 'pos' but data.kind is regression"):
        check_source(str(names), kind="regression")
    assert check_source(str(floats)) == "regression" and check_source(str(names)) == "classification"


def test_missing_column_names_it(tmp_path):
    path = tmp_path / "foo.csv"
    path.write_text("a,b\nx,1\ny,0\nz,1\n")
    with pytest.raises(DataError) as err:
        load_task(str(path), columns={"text": "sentence"})
    assert str(err.value) == f"data.source '{path}': column 'sentence' not found (columns: a, b)"
    with pytest.raises(DataError, match="column 'lbl' not found"):
        load_task(str(path), columns={"text": "a", "label": "lbl"}, kind="classification")


def test_missing_empty_and_unknown_sources(tmp_path):
    with pytest.raises(DataError, match=r"data.source '.*nope\.csv': file not found"):
        load_task(str(tmp_path / "nope.csv"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv': file is empty"):
        load_task(str(empty))
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(DataError, match=r"header\.csv': file is empty"):
        load_task(str(header_only))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n")
    with pytest.raises(DataError, match=r"blank\.txt': file is empty"):
        load_task(str(blank))
    with pytest.raises(DataError) as err:
        load_task("glue/mnlii")
    msg = str(err.value)
    assert "data.source 'glue/mnlii': unknown source; did you mean 'glue/mnli'?" in msg
    assert "builtin:majority" in msg and "builtin:addition" in msg and "glue/mnli" in msg and "wikitext-103" in msg
    with pytest.raises(DataError, match=r"unknown builtin task 'majorty'.*builtin:majority"):
        load_task("builtin:majorty")
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        load_task(str(odd))


# ---------------------------------------------------------------------------------------------
# Hugging Face hub (mocked)
# ---------------------------------------------------------------------------------------------


def _fake_load(calls, splits):
    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return splits

    return load_dataset


def test_glue_mnli_mapping(monkeypatch):
    import datasets

    def split(n, offset):
        return datasets.Dataset.from_dict(
            {
                "premise": [f"p{offset + i}" for i in range(n)],
                "hypothesis": [f"h{offset + i}" for i in range(n)],
                "label": [i % 3 for i in range(n)],
                "idx": list(range(n)),
            }
        )

    fake = datasets.DatasetDict(
        {
            "train": split(50, 0),
            "validation_matched": split(10, 1000),
            "validation_mismatched": split(10, 2000),
            "test_matched": split(5, 3000),
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_load(calls, fake))
    s = load_task("glue/mnli", seed=0)
    assert calls == [("nyu-mll/glue", "mnli", {})]
    assert s.task == TaskSpec("glue/mnli", "classification", 3, "accuracy")
    assert (len(s.train), len(s.heldout), len(s.validation)) == (45, 5, 10)
    assert all(ex["text"].startswith("p1") and int(ex["text"][1:]) >= 1000 for ex in s.validation)  # matched
    ex = s.train[0]
    i = int(ex["text"][1:])
    assert ex == {"text": f"p{i}", "text_pair": f"h{i}", "label": i % 3}


def test_glue_stsb_and_cola_mapping(monkeypatch):
    import datasets

    stsb = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {
                    "sentence1": ["a b", "c d", "e f"],
                    "sentence2": ["a", "c", "x"],
                    "label": [4.5, 2.0, 0.0],
                    "idx": [0, 1, 2],
                }
            )
            for name in ("train", "validation")
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_load(calls, stsb))
    s = load_task("glue/stsb")
    assert calls[-1][:2] == ("nyu-mll/glue", "stsb")
    assert s.task == TaskSpec("glue/stsb", "regression", 1, "pearson")
    assert {(ex["text"], ex["text_pair"], ex["label"]) for ex in s.train + s.heldout} == {
        ("a b", "a", 4.5),
        ("c d", "c", 2.0),
        ("e f", "x", 0.0),
    }

    cola = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({"sentence": ["s1", "s2", "s3"], "label": [1, 0, -1], "idx": [0, 1, 2]})
            for name in ("train", "validation")
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", _fake_load(calls, cola))
    c = load_task("glue/cola")
    assert calls[-1][:2] == ("nyu-mll/glue", "cola")
    assert c.task.metric_name == "mcc"
    assert sorted(ex["text"] for ex in c.validation) == ["s1", "s2"]  # -1 (hidden label) dropped


def test_wikitext_mapping_drops_empty_lines(monkeypatch):
    import datasets

    lines = ["", " = Title = ", "", " some text here ", "more text", "   "]
    fake = datasets.DatasetDict(
        {name: datasets.Dataset.from_dict({"text": lines}) for name in ("train", "validation", "test")}
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_load(calls, fake))
    s = load_task("wikitext-103")
    assert calls == [("Salesforce/wikitext", "wikitext-103-raw-v1", {})]
    assert s.task == TaskSpec("wikitext-103", "lm", 0, "perplexity")
    assert sorted(ex["text"] for ex in s.train + s.heldout) == ["= Title =", "more text", "some text here"]
    load_task("wikitext-2")
    assert calls[-1][:2] == ("Salesforce/wikitext", "wikitext-2-raw-v1")


def test_hub_columns_registry():
    expected = {
        "glue/qnli": ("question", "sentence"),
        "glue/qqp": ("question1", "question2"),
        "glue/mrpc": ("sentence1", "sentence2"),
        "glue/rte": ("sentence1", "sentence2"),
        "glue/sst2": ("sentence", None),
        "glue/mnli": ("premise", "hypothesis"),
    }
    for name, (text, pair) in expected.items():
        assert (HUB_TASKS[name].text, HUB_TASKS[name].text_pair) == (text, pair)


def test_hub_failure_and_missing_column(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        load_task("glue/sst2")
    msg = str(err.value)
    assert msg.startswith("data.source 'glue/sst2': could not be loaded")
    assert "nyu-mll/glue" in msg and "Couldn't reach the Hugging Face Hub" in msg and "more detail" not in msg

    wrong = datasets.DatasetDict(
        {n: datasets.Dataset.from_dict({"text": ["a"], "label": [0]}) for n in ("train", "validation")}
    )
    monkeypatch.setattr(datasets, "load_dataset", _fake_load([], wrong))
    with pytest.raises(
        DataError, match=r"glue/sst2': split 'train': column 'sentence' not found \(columns: text, label\)"
    ):
        load_task("glue/sst2")
    monkeypatch.setattr(datasets, "load_dataset", _fake_load([], {"train": wrong["train"]}))
    with pytest.raises(DataError, match=r"glue/mnli': split 'validation_matched' not found"):
        load_task("glue/mnli", columns={"text": "text", "text_pair": "text"})


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def test_word_tokenizer_vocab_and_templates():
    tok = build_word_tokenizer(["c b a", "b + ="])
    vocab = tok.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4, 5]
    words = sorted((i, w) for w, i in vocab.items() if i >= 6)
    assert [w for _, w in words] == sorted(["a", "b", "c", "+", "="])
    # order of the texts does not change the vocabulary
    assert build_word_tokenizer(["b + =", "c b a"]).get_vocab() == vocab
    assert tok.pad_token_id == 0 and tok.pad_token == "[PAD]"
    single = tok("a b zz")
    assert tok.convert_ids_to_tokens(single["input_ids"]) == ["[CLS]", "a", "b", "[UNK]", "[SEP]"]
    pair = tok("a b", "c")
    assert tok.convert_ids_to_tokens(pair["input_ids"]) == ["[CLS]", "a", "b", "[SEP]", "c", "[SEP]"]
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    assert tok("a b", add_special_tokens=False)["input_ids"] == [vocab["a"], vocab["b"]]


def test_word_tokenizer_round_trip(tmp_path):
    from transformers import AutoTokenizer

    tok = build_word_tokenizer(["x y z", "1 2 + 3"], model_max_length=64)
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert back.get_vocab() == tok.get_vocab()
    for attr in ("pad_token", "unk_token", "cls_token", "sep_token", "bos_token", "eos_token"):
        assert getattr(back, attr) == getattr(tok, attr)
    assert back.model_max_length == 64
    assert back("x y", "3")["input_ids"] == tok("x y", "3")["input_ids"]
    assert back("x y", "3")["token_type_ids"] == [0, 0, 0, 0, 1, 1]


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def test_encode_classification_shapes_and_mask():
    s = load_task("builtin:majority", builtin_options={"n_train": 40, "n_validation": 10, "min_len": 8, "max_len": 24})
    tok = build_word_tokenizer(ex["text"] for ex in s.train)
    enc = encode_split(s.validation, s.task, tok, max_length=16)
    assert isinstance(enc, EncodedSplit) and len(enc) == 10
    assert enc.input_ids.shape == enc.attention_mask.shape == (10, 16)
    assert enc.input_ids.dtype == torch.long and enc.labels.dtype == torch.long and enc.labels.shape == (10,)
    assert enc.labels.tolist() == [ex["label"] for ex in s.validation]
    for row, ex in enumerate(s.validation):
        n = min(len(ex["text"].split()) + 2, 16)
        assert enc.attention_mask[row].tolist() == [1] * n + [0] * (16 - n)
        assert (enc.input_ids[row, n:] == tok.pad_token_id).all()
        assert enc.input_ids[row, 0] == tok.cls_token_id
        assert enc.input_ids[row, n - 1] == tok.sep_token_id  # truncation keeps the closing [SEP]
    b = enc.batch(torch.tensor([3, 1]))
    assert set(b) == {"input_ids", "attention_mask", "labels", "token_type_ids"}
    assert b["input_ids"].shape == (2, 16) and b["labels"].tolist() == [enc.labels[3], enc.labels[1]]


def test_encode_regression_pairs():
    s = load_task("builtin:similarity", builtin_options={"n_train": 30, "n_validation": 5})
    tok = build_word_tokenizer(t for ex in s.train for t in (ex["text"], ex["text_pair"]))
    enc = encode_split(s.validation, s.task, tok, max_length=24)
    assert enc.labels.dtype == torch.float32 and enc.labels.shape == (5,)
    assert enc.token_type_ids is not None and enc.token_type_ids.shape == (5, 24)
    ex = s.validation[0]
    n_a, n_b = len(ex["text"].split()), len(ex["text_pair"].split())
    assert enc.token_type_ids[0].tolist()[: n_a + n_b + 3] == [0] * (n_a + 2) + [1] * (n_b + 1)


def test_encode_lm_labels_and_bos():
    s = load_task("builtin:addition", builtin_options={"n_train": 50, "n_validation": 8})
    tok = build_word_tokenizer(ex["text"] for ex in s.train)
    enc = encode_split(s.validation, s.task, tok, max_length=16)
    assert enc.input_ids.shape == enc.labels.shape == (8, 16) and enc.token_type_ids is None
    for row, ex in enumerate(s.validation):
        words = ex["text"].split()
        n = len(words) + 1
        assert tok.convert_ids_to_tokens(enc.input_ids[row, :n].tolist()) == ["[BOS]", *words]  # no [CLS]/[SEP]
        assert enc.attention_mask[row].tolist() == [1] * n + [0] * (16 - n)
        assert enc.labels[row, :n].tolist() == enc.input_ids[row, :n].tolist()
        assert (enc.labels[row, n:] == -100).all()
    assert set(enc.batch([0, 1])) == {"input_ids", "attention_mask", "labels"}
    short = encode_split(s.validation, s.task, tok, max_length=4)  # truncation keeps BOS + 3 tokens
    assert short.attention_mask.sum(1).tolist() == [4] * 8


def test_encode_lm_without_pad_token_uses_eos():
    """GPT-2 style: no pad token, BOS == EOS; padding must still be masked by attention, not by id."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel({"<|endoftext|>": 0, "a": 1, "b": 2, "<unk>": 3}, unk_token="<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<unk>"
    )
    assert tok.pad_token is None
    task = TaskSpec("t", "lm", 0, "perplexity")
    enc = encode_split([{"text": "a b a"}, {"text": "b"}], task, tok, max_length=6)
    assert tok.pad_token == "<|endoftext|>"
    assert enc.input_ids.tolist() == [[0, 1, 2, 1, 0, 0], [0, 2, 0, 0, 0, 0]]
    assert enc.labels.tolist() == [[0, 1, 2, 1, -100, -100], [0, 2, -100, -100, -100, -100]]


def test_encode_errors():
    task = TaskSpec("builtin:majority", "classification", 2, "accuracy")
    tok = build_word_tokenizer(["a b"])
    with pytest.raises(DataError, match="empty split"):
        encode_split([], task, tok, 8)
    with pytest.raises(DataError, match="label 2 is outside 0..1"):
        encode_split([{"text": "a", "text_pair": None, "label": 2}], task, tok, 8)


def test_pydoc_topics_is_real_text_with_six_balanced_enough_topics_and_the_script_writes_the_same_rows(tmp_path):
    import csv
    import subprocess
    import sys
    from pathlib import Path

    from econ_ray.data import builtin
    from econ_ray.data.pydoc_topics import LABELS, build

    train, validation = builtin.generate("pydoc-topics", 0)
    again, _ = builtin.generate("pydoc-topics", 7)  # the rows are fixed by the Python version, not the seed
    assert train == again and len(validation) == 300 and len(train) > 1000
    assert {r["label"] for r in train} == set(range(6)) and len(LABELS) == 6
    texts = [r["text"] for r in train + validation]
    assert len(set(texts)) == len(texts) and all(len(t) >= 25 for t in texts)
    counts = [sum(1 for r in train if r["label"] == k) for k in range(6)]
    assert min(counts) >= 0.25 * max(counts)
    out = tmp_path / "p.csv"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, str(root / "scripts" / "make_pydoc_topics.py"), str(out)], check=True, timeout=300)
    with open(out) as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    assert rows == list(build())


def test_pydoc_pairs_is_a_balanced_sentence_pair_task_split_by_document():
    from econ_ray.data import builtin
    from econ_ray.data.pydoc_pairs import make_pairs, sentences_of

    train, validation = builtin.generate("pydoc-pairs", 0)
    again, _ = builtin.generate("pydoc-pairs", 5)  # fixed by the Python version, not the seed
    assert train == again
    assert len(train) > 3000 and len(validation) >= 1000
    for rows in (train, validation):
        share = sum(r["label"] for r in rows) / len(rows)
        assert 0.4 < share < 0.6, share
        assert all(r["text"] and r["text_pair"] for r in rows)
    # whole documents go to one split: no first sentence is in both
    assert not {r["text"] for r in train} & {r["text"] for r in validation}
    # a positive pair is two consecutive sentences of one document, a negative's are of other modules
    docs = [
        ("a.x", ["First sentence here is long enough.", "Second sentence follows it closely.", "Third one."]),
        ("b", ["Another module speaks of other things.", "And it goes on about them at length."]),
    ]
    for rows in make_pairs(docs, 0):
        for a, b, label in rows:
            src = next(d for d in docs if a in d[1])
            if label == 1:
                assert src[1].index(b) == src[1].index(a) + 1
            else:
                assert b not in src[1]
    assert sentences_of("Open it. Then close it again, please.  Short. x") == ["Then close it again, please."]


def test_a_held_out_split_takes_whole_groups():
    """Rows that carry a group (pydoc-pairs: the document) are held out by the group, never split."""
    from econ_ray.data.sources import _carve

    pool = [{"text": f"r{i}", "group": i % 7} for i in range(70)]
    heldout, train = _carve(pool, 15)
    groups = {ex["group"] for ex in heldout}
    assert len(heldout) >= 15 and len(groups) == 2  # 10 rows a group: two groups reach 15
    assert not groups & {ex["group"] for ex in train}
    assert len(heldout) + len(train) == 70
    plain = [{"text": f"r{i}"} for i in range(10)]
    assert _carve(plain, 3) == (plain[:3], plain[3:])


def test_pydoc_pairs_held_out_rows_share_no_document_with_training_rows():
    from econ_ray.data import load_task

    splits = load_task("builtin:pydoc-pairs", seed=0, heldout_fraction=0.1)
    held = {ex["group"] for ex in splits.heldout}
    assert held and not held & {ex["group"] for ex in splits.train}
    assert 0.08 < len(splits.heldout) / (len(splits.heldout) + len(splits.train)) < 0.15


def test_make_pydoc_pairs_writes_the_builtin_rows_as_glue_tsv(tmp_path):
    import csv
    import subprocess
    import sys
    from pathlib import Path

    from econ_ray.data.pydoc_pairs import build

    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, str(root / "scripts" / "make_pydoc_pairs.py"), str(tmp_path)], check=True, timeout=300
    )
    train, dev = build()
    for name, rows in (("train.tsv", train), ("dev.tsv", dev)):
        with open(tmp_path / name, newline="", encoding="utf-8") as f:
            read = list(csv.reader(f, delimiter="\t"))
        assert read[0] == ["sentence1", "sentence2", "label", "document"]
        assert [(a, b, int(y), int(d)) for a, b, y, d in read[1:]] == rows
