"""Search terms: what the inverted index stores and what a query looks up (docs/search.md).

One function turns text into terms, for indexing and for queries alike, so both always agree:
- NFKC, then case folding (full-width "ＴＥＡ" and "tea" are one term; so are 茶 and its
  compatibility forms);
- letters and digits of scripts written with spaces are words, cut at anything else (so an email
  address is its parts: "alice@shop.example" -> alice, shop, example); a plural "s" is dropped;
- a run of Chinese, Japanese or Korean characters is cut into overlapping pairs (bigrams), since
  those scripts write no spaces: "紫砂茶壶" -> 紫砂, 砂茶, 茶壶, so "茶壶" is found inside it;
  with ``unigrams`` each character is a term too (visitor names: a one-character query such as
  a surname); a run of one character is always that character;
- punctuation, symbols and emoji are no terms.
Text is bounded before it is cut (``MAX_CHARS``) and so is the number of terms (``MAX_TERMS``), so
one long message cannot make an unbounded number of index writes.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterator, List

MAX_CHARS = 2000      # characters of one text looked at
MAX_TERMS = 200       # distinct terms kept from one text (the earliest)
MAX_WORD = 40         # longer words are cut to this many characters

_CJK = (
    "\u3040-\u30ff"   # Hiragana, Katakana
    "\u3400-\u4dbf"   # CJK Extension A
    "\u4e00-\u9fff"   # CJK Unified Ideographs
    "\uac00-\ud7af"   # Hangul syllables
    "\uf900-\ufaff"   # CJK Compatibility Ideographs (NFKC maps most away)
    "\U00020000-\U0003134f"  # Extensions B-G
)
_RUN = re.compile(f"([{_CJK}]+)|([^\\W_{_CJK}]+(?:_[^\\W_{_CJK}]+)*)")


def _stem(word: str) -> str:
    """Plural to singular, crudely and the same way on both sides: teapots -> teapot,
    boxes -> box, cities -> city; glass, status and this stay."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _terms(text: str, unigrams: bool) -> Iterator[str]:
    normal = unicodedata.normalize("NFKC", text[:MAX_CHARS]).casefold()
    for match in _RUN.finditer(normal):
        cjk, word = match.groups()
        if word:
            yield _stem(word[:MAX_WORD])
            continue
        if len(cjk) == 1:
            yield cjk
            continue
        for i in range(len(cjk) - 1):
            if unigrams:
                yield cjk[i]
            yield cjk[i:i + 2]
        if unigrams:
            yield cjk[-1]


def terms(text: str, unigrams: bool = False) -> List[str]:
    """The distinct terms of ``text``, in order of first appearance, at most ``MAX_TERMS``."""
    found: dict = {}
    for term in _terms(text or "", unigrams):
        if term not in found:
            found[term] = None
            if len(found) >= MAX_TERMS:
                break
    return list(found)


def query_terms(query: str) -> List[str]:
    """The terms a query must all match. The same cut as indexing, so a query is found in any text
    that contains it: a one-character CJK run stays one character (it matches visitor names,
    which are indexed with single characters, and messages that hold it alone)."""
    return terms(query)
