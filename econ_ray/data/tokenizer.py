"""A word-level tokenizer over a task's own whitespace-separated tokens, for the tiny models.

Built-in tasks are sequences of letters, digits and symbols; a word-level vocabulary covers them
exactly (one token per word, no sub-word noise) and keeps the embedding table tiny. The result is
an ordinary ``PreTrainedTokenizerFast``: it pads, truncates, builds pairs and round-trips through
``save_pretrained`` / ``AutoTokenizer.from_pretrained`` like any Hugging Face tokenizer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast

PAD, UNK, CLS, SEP, BOS, EOS = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]", "[EOS]"
# Fixed ids 0..5 (PAD first, so zero-initialised buffers are padding).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, BOS, EOS)


def word_vocabulary(texts: Iterable[str], *, min_frequency: int = 1, max_size: int | None = None) -> dict[str, int]:
    """Special tokens (ids 0..5) followed by the whitespace-split words of ``texts`` in sorted order.

    ``max_size`` (including the special tokens) keeps the most frequent words, ties broken
    alphabetically; the kept words are still numbered in sorted order, so the vocabulary depends
    only on the texts, never on their order.
    """
    counts = Counter(word for text in texts if text for word in text.split())
    words = [w for w, c in counts.items() if c >= min_frequency and w not in SPECIAL_TOKENS]
    if max_size is not None:
        room = max(0, max_size - len(SPECIAL_TOKENS))
        words = sorted(words, key=lambda w: (-counts[w], w))[:room]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in sorted(words):
        vocab[w] = len(vocab)
    return vocab


def build_word_tokenizer(
    texts: Iterable[str],
    *,
    model_max_length: int = 512,
    min_frequency: int = 1,
    max_size: int | None = None,
) -> PreTrainedTokenizerFast:
    """A WordLevel fast tokenizer over the words of ``texts`` (see ``word_vocabulary``).

    Single texts encode as ``[CLS] A [SEP]``, pairs as ``[CLS] A [SEP] B [SEP]`` (token type 1 on
    the B part); unseen words map to ``[UNK]``. For language modelling, encode with
    ``add_special_tokens=False`` and prepend ``[BOS]`` (``econ_ray.data.encode`` does).
    """
    vocab = word_vocabulary(texts, min_frequency=min_frequency, max_size=max_size)
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    # Split on whitespace only, the same rule word_vocabulary counts with (str.split).
    tok.pre_tokenizer = WhitespaceSplit()
    tok.post_processor = TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        pad_token=PAD,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="right",
        truncation_side="right",
        # transformers 5 defaults to no token_type_ids; BERT-family models use them for pairs.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
