"""Redaction of personal data in verbatims, before anything lands.

What a customer types in a survey's free text can hold an e-mail address, a phone number, a card
number or an IBAN. None of them may reach a Parquet file, a dead letter or a view, so they are
replaced by typed placeholders (`[email]`, `[phone]`, `[card]`, `[iban]`) and counted per kind:
the placeholder keeps the verbatim readable ("rappelez-moi au [phone]") and the count says how much
personal data came in, without keeping any of it.

How each kind is found, and why:
* e-mail addresses: a plain pattern (local@domain.tld); an address has no checksum to verify.
* IBANs: the ISO 13616 shape (country letters, two check digits, 11 to 30 letters and digits, in
  groups of four or not) confirmed by the ISO 7064 mod-97 checksum. The maintained library
  (schwifty, MIT) depends on pycountry, which is LGPL, and the checksum is a few lines.
* card numbers: 13 to 19 digits, optionally grouped by spaces or dashes, confirmed by the Luhn
  check; a long order number that happens to pass Luhn (one in ten) is redacted too, which errs
  on the side of privacy.
* phone numbers: `phonenumbers` (Apache-2.0, the port of Google's libphonenumber), whose matcher
  knows every country's numbering plan, written as French customers write them (06 12 34 56 78,
  06.12.34.56.78, +33 (0)6 ..., 0033 6 ...) and in international form (+44 20 ..., +1 (415) ...).
  It is told to keep only numbers valid in their plan, and it already leaves dates and times alone,
  which a home-made pattern would not.

Cost: most verbatims hold no personal data, so a vectorised prefilter (pyarrow) sends to the
matchers only the texts with an '@' or at least `MIN_DIGITS` digits; the others are returned as
they are, without leaving Arrow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

KINDS = ("email", "iban", "card", "phone")
PLACEHOLDERS = {kind: f"[{kind}]" for kind in KINDS}

# The shortest phone number worth redacting (a French number has 10 digits, +44 20 7946 0958 has 12;
# the shortest national significant numbers in use have 7). Cards have 13 and IBANs at least 9.
MIN_DIGITS = 7

_EMAIL = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# An IBAN candidate: country, check digits, then letters and digits, possibly in space-separated groups.
# The run may swallow a following capitalised word or number: `_iban_spans` tries the shorter prefixes.
_IBAN = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,40}\b", re.IGNORECASE)
_IBAN_GROUP = re.compile(r"[A-Z0-9]+", re.IGNORECASE)
# A card candidate: a run of digits with single spaces or dashes between them, 13 digits at least.
_DIGIT_RUN = re.compile(r"(?<![\w-])[0-9]+(?:[ -][0-9]+)+(?![\w-])|(?<!\w)[0-9]{13,19}(?!\w)")
_GROUP = re.compile(r"[0-9]+")


def iban_is_valid(candidate: str) -> bool:
    """ISO 13616: the IBAN with its first four characters moved to the end, letters as 10..35, is 1 mod 97."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    if not compact.isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def luhn_is_valid(digits: str) -> bool:
    """The Luhn check of payment cards (ISO/IEC 7812): doubled every second digit from the right."""
    total = 0
    for position, ch in enumerate(reversed(digits)):
        value = ord(ch) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _iban_spans(text: str) -> Iterator[tuple[int, int]]:
    for match in _IBAN.finditer(text):
        # Candidate ends: the end of each space-separated group, longest first.
        ends = [m.end() + match.start() for m in _IBAN_GROUP.finditer(match.group())]
        for end in reversed(ends):
            if iban_is_valid(text[match.start() : end]):
                yield match.start(), end
                break


def _card_spans(text: str) -> Iterator[tuple[int, int]]:
    for match in _DIGIT_RUN.finditer(text):
        groups = [(m.start() + match.start(), m.end() + match.start()) for m in _GROUP.finditer(match.group())]
        # Every run of whole groups with 13..19 digits that passes Luhn; the longest ones are kept first,
        # so that a card next to another number ("le 12 5555 5555 5555 4444") is found whole.
        valid = []
        for first in range(len(groups)):
            digits = ""
            for last in range(first, len(groups)):
                digits += text[groups[last][0] : groups[last][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_is_valid(digits):
                    valid.append((len(digits), first, last))
        taken: list[tuple[int, int]] = []
        for _, first, last in sorted(valid, key=lambda v: (-v[0], v[1])):
            if all(last < f or first > la for f, la in taken):
                taken.append((first, last))
        for first, last in sorted(taken):
            yield groups[first][0], groups[last][1]


def _phone_spans(text: str, region: str) -> Iterator[tuple[int, int]]:
    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
        yield match.start, match.end


def _replace(text: str, spans: Iterator[tuple[int, int]], placeholder: str) -> tuple[str, int]:
    pieces: list[str] = []
    last = 0
    n = 0
    for start, end in spans:
        pieces.append(text[last:start])
        pieces.append(placeholder)
        last = end
        n += 1
    if not n:
        return text, 0
    pieces.append(text[last:])
    return "".join(pieces), n


def redact_text(text: str, region: str = "FR") -> tuple[str, dict[str, int]]:
    """Redact one verbatim; `region` is where numbers without a +/00 prefix are read as national."""
    counts = dict.fromkeys(KINDS, 0)
    text, counts["email"] = _EMAIL.subn(PLACEHOLDERS["email"], text)
    # IBANs and cards before phones: their digits could otherwise be read as phone numbers.
    text, counts["iban"] = _replace(text, _iban_spans(text), PLACEHOLDERS["iban"])
    text, counts["card"] = _replace(text, _card_spans(text), PLACEHOLDERS["card"])
    text, counts["phone"] = _replace(text, _phone_spans(text, region), PLACEHOLDERS["phone"])
    return text, counts


def candidates(texts: pa.Array) -> pa.BooleanArray:
    """Texts that may hold personal data: an '@' or at least MIN_DIGITS digits (nulls are not candidates)."""
    has_at = pc.match_substring(texts, "@")
    n_digits = pc.count_substring_regex(texts, "[0-9]")
    return pc.fill_null(pc.or_(has_at, pc.greater_equal(n_digits, MIN_DIGITS)), False)


def redact(texts: pa.Array | pa.ChunkedArray, region: str = "FR") -> tuple[pa.Array, dict[str, int]]:
    """Redact a batch of verbatims: the same texts with personal data replaced, and the counts per kind.

    Nulls stay null and the order is kept, so the result replaces the column it came from.
    """
    redacted, _, counts = redact_rows(texts, region)
    return redacted, counts


def redact_rows(
    texts: pa.Array | pa.ChunkedArray, region: str = "FR"
) -> tuple[pa.Array, pa.Int32Array, dict[str, int]]:
    """`redact`, with the number of strings replaced in each text (an int32 per row, 0 for a null),
    so that a pipeline counts what lands and not what is dropped later."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    if not pa.types.is_string(texts.type):
        raise TypeError(f"redact expects a string array, got {texts.type}")
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r} (an ISO 3166 alpha-2 code such as 'FR')")
    counts = dict.fromkeys(KINDS, 0)
    mask = candidates(texts)
    if not pc.any(mask).as_py():
        return texts, pa.array(np.zeros(len(texts), np.int32)), counts
    redacted: list[str] = []
    per_row: list[int] = []
    for text in pc.filter(texts, mask).to_pylist():
        new_text, found = redact_text(text, region)
        redacted.append(new_text)
        per_row.append(sum(found.values()))
        for kind, n in found.items():
            counts[kind] += n
    replaced = pc.replace_with_mask(pa.array(np.zeros(len(texts), np.int32)), mask, pa.array(per_row, pa.int32()))
    return pc.replace_with_mask(texts, mask, pa.array(redacted, pa.string())), replaced, counts
