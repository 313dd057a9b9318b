"""BERT uncased WordPiece tokenizer read from a ``vocab.txt`` (no extra dependency).

Two stages, as in the original BERT release (Devlin et al. 2019, ``tokenization.py``):
basic tokenization (clean control characters, pad CJK ideographs with spaces, lower-case,
strip accents, split on whitespace and punctuation), then greedy longest-match-first
WordPiece with ``##`` continuation pieces; a word longer than 100 characters or with no
match becomes ``[UNK]``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["WordPieceTokenizer", "Encoded"]

_MAX_WORD_CHARS = 100


def _is_whitespace(ch: str) -> bool:
    if ch in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # ASCII non-letters/digits count as punctuation ("$", "^", "`"), as in BERT.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


@dataclass(frozen=True, slots=True, kw_only=True)
class Encoded:
    """A padded batch: ``input_ids`` and ``attention_mask`` are ``[batch, seq]`` int64."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class WordPieceTokenizer:
    """Uncased BERT tokenizer over the vocabulary file at ``vocab_path``."""

    def __init__(self, vocab_path: str | Path, *, lower_case: bool = True) -> None:
        path = Path(vocab_path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise FileNotFoundError(f"cannot read the WordPiece vocabulary {path}: {exc}") from None
        self.vocab: dict[str, int] = {}
        for index, token in enumerate(lines):
            self.vocab.setdefault(token.rstrip("\n"), index)
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in self.vocab:
                raise ValueError(f"vocabulary {path} lacks the special token {special}; is it a BERT vocab.txt?")
        self.lower_case = lower_case
        self.pad_id = self.vocab["[PAD]"]
        self.unk_id = self.vocab["[UNK]"]
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]

    # -- basic tokenization ------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_cjk(cp):
                out.append(f" {ch} ")
            elif _is_whitespace(ch):
                out.append(" ")
            else:
                out.append(ch)
        return "".join(out)

    def _split_punctuation(self, word: str) -> list[str]:
        pieces: list[str] = []
        current: list[str] = []
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    pieces.append("".join(current))
                    current = []
                pieces.append(ch)
            else:
                current.append(ch)
        if current:
            pieces.append("".join(current))
        return pieces

    def basic_tokens(self, text: str) -> list[str]:
        tokens: list[str] = []
        for word in self._clean(text).split():
            if self.lower_case:
                word = word.lower()
                word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            tokens.extend(self._split_punctuation(word))
        return tokens

    # -- wordpiece ---------------------------------------------------------------------------

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > _MAX_WORD_CHARS:
            return [self.unk_id]
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str, max_length: int = 128) -> list[int]:
        """Token ids ``[CLS] … [SEP]`` truncated to ``max_length`` ids in all."""
        if max_length < 2:
            raise ValueError(f"The 'max_length' parameter of encode must be an int >= 2. Got {max_length!r} instead.")
        ids: list[int] = []
        for token in self.basic_tokens(text):
            ids.extend(self._wordpiece(token))
        return [self.cls_id, *ids[: max_length - 2], self.sep_id]

    def batch(self, texts: list[str], max_length: int = 128) -> Encoded:
        """Encode and right-pad ``texts`` to the longest one."""
        if not texts:
            raise ValueError("batch() needs at least one text")
        rows = [self.encode(t, max_length) for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.int64)
        mask = torch.zeros((len(rows), width), dtype=torch.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
            mask[i, : len(r)] = 1
        return Encoded(input_ids=ids, attention_mask=mask)
