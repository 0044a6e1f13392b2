"""Tokenizers the tiny models build from their task's own text.

- Word level (``model.tokenizer: word``, the default): built-in tasks are sequences of letters, digits
  and symbols; a word-level vocabulary covers them exactly (one token per word, no sub-word noise) and
  keeps the embedding table tiny.
- Byte-level BPE (``model.tokenizer: bpe``): a real corpus, as GPT-2's own tokenizer is made: byte-level
  pre-tokenisation (every string encodes, nothing is unknown), merges learnt by the ``tokenizers``
  library up to ``model.vocab_size`` on the training text only, one ``<|endoftext|>`` token that
  separates documents and stands for BOS, EOS and padding.

Both are ordinary ``PreTrainedTokenizerFast`` objects: they pad, truncate and round-trip through
``save_pretrained`` / ``AutoTokenizer.from_pretrained`` like any Hugging Face tokenizer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE, WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from tokenizers.processors import TemplateProcessing
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

PAD, UNK, CLS, SEP, BOS, EOS = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]", "[EOS]"
# Fixed ids 0..5 (PAD first, so zero-initialised buffers are padding).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, BOS, EOS)
END_OF_TEXT = "<|endoftext|>"  # the BPE tokenizer's one special token (id 0), as GPT-2's


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


def build_bpe_tokenizer(
    texts: Iterable[str], *, vocab_size: int, model_max_length: int = 1024, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` (GPT-2's scheme): the 256 byte symbols, merges up to
    ``vocab_size`` entries in all, and ``<|endoftext|>`` (id 0) as BOS, EOS, padding and unknown token.
    Deterministic for the same texts in the same order."""
    if vocab_size < 257 + 1:
        raise ValueError(f"model.vocab_size: a byte-level BPE needs more than 257 entries, got {vocab_size}")
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((t for t in texts if t), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        padding_side="right",
        truncation_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )
