"""Personal data customers type into verbatims: what a PII scrubber must find (`--pii-rate`).

Customers paste their e-mail address, their phone number in whatever spelling they use (spaces,
dots, dashes, +33, 0033, "+33 (0)", compact), a foreign number, their card number (Luhn-valid,
grouped or not) or their IBAN (valid mod-97 check digits). Every planted string is recorded in
`truth/pii.parquet` with the response that carries it, so a test can look for each one in every
file the pipeline writes.
"""

from __future__ import annotations

import random

KINDS = ("email", "phone_fr", "phone_intl", "card", "iban")
_KIND_WEIGHTS = (3, 3, 2, 2, 2)

_FIRST = ("marie", "jean", "sophie", "lucas", "camille", "thomas", "lea", "hugo", "emma", "nicolas")
_LAST = ("martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand", "leroy", "moreau")
_DOMAINS = ("gmail.com", "orange.fr", "free.fr", "hotmail.fr", "laposte.net", "yahoo.fr", "outlook.com", "sfr.fr")

# (country code, allocated leading digits, national number length, grouping): numbers a
# customer could really have, valid in their country's numbering plan.
_INTL = (
    ("44", "79", 10, (4, 6)),  # +44 7911 123456 (UK mobile)
    ("44", "207", 10, (2, 4, 4)),  # +44 20 7946 0958 (London)
    ("1", "415", 10, None),  # +1 (415) 555-0132
    ("49", "151", 11, (3, 8)),  # +49 151 23456789
    ("32", "47", 9, (3, 2, 2, 2)),  # +32 470 12 34 56
    ("41", "79", 9, (2, 3, 2, 2)),  # +41 79 123 45 67
)
# Metropolitan French ranges (0690-0697, 0639 and 0262/0269 are overseas; 070-072 unallocated).
_FR_LEADING = ("60", "61", "62", "64", "65", "66", "67", "68", "75", "76", "77", "78", "14", "47", "55", "38", "29")

_TEMPLATES = {
    "fr": {
        "email": ("Écrivez-moi à {x}.", "Mon adresse : {x}", "Réponse attendue sur {x} svp."),
        "phone_fr": ("Rappelez-moi au {x}.", "Mon numéro : {x}", "Joignable au {x} après 18h."),
        "phone_intl": ("Je suis à l'étranger, appelez le {x}.", "Numéro à l'étranger : {x}"),
        "card": ("Carte {x} débitée deux fois.", "Remboursez sur ma carte {x}."),
        "iban": ("Mon IBAN : {x}", "Remboursement sur le compte {x} svp."),
    },
    "en": {
        "email": ("Email me at {x}.", "My address is {x}", "Please reply to {x}."),
        "phone_fr": ("Call me back on {x}.", "My number: {x}"),
        "phone_intl": ("Call me on {x}.", "My number abroad is {x}"),
        "card": ("Card {x} was charged twice.", "Refund my card {x} please."),
        "iban": ("My IBAN is {x}", "Refund to account {x} please."),
    },
}


def draw(rng: random.Random) -> tuple[str, str]:
    """A kind of personal data and one string of it, spelled as a customer would."""
    kind = rng.choices(KINDS, weights=_KIND_WEIGHTS)[0]
    return kind, _MAKERS[kind](rng)


def embed(rng: random.Random, language: str, kind: str, planted: str, text: str) -> str:
    """The verbatim with a sentence carrying the planted string, before or after it."""
    sentence = rng.choice(_TEMPLATES[language][kind]).format(x=planted)
    return f"{text} {sentence}" if rng.random() < 0.7 else f"{sentence} {text}"


def email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = rng.choice(
        (f"{first}.{last}", f"{first}{last}{rng.randint(1, 99)}", f"{first[0]}{last}", f"{first}_{last}")
    )
    return f"{local}@{rng.choice(_DOMAINS)}"


def phone_fr(rng: random.Random) -> str:
    """A French number: 0 + 9 digits (mobile 6/7, landline 1-5), in one of the usual spellings."""
    digits = rng.choice(_FR_LEADING) + "".join(str(rng.randint(0, 9)) for _ in range(7))
    first = digits[0]
    national = "0" + digits
    pairs = [national[i : i + 2] for i in range(0, 10, 2)]
    spelling = rng.randrange(8)
    if spelling == 0:
        return " ".join(pairs)  # 06 12 34 56 78
    if spelling == 1:
        return ".".join(pairs)  # 06.12.34.56.78
    if spelling == 2:
        return national  # 0612345678
    if spelling == 3:
        return "-".join(pairs)  # 06-12-34-56-78
    rest = " ".join(digits[i : i + 2] for i in range(1, 9, 2))
    if spelling == 4:
        return f"+33 {first} {rest}"  # +33 6 12 34 56 78
    if spelling == 5:
        return f"+33{digits}"  # +33612345678
    if spelling == 6:
        return f"0033 {first} {rest}"  # 0033 6 12 34 56 78
    return f"+33 (0){first} {rest}"  # +33 (0)6 12 34 56 78


def phone_intl(rng: random.Random) -> str:
    code, prefix, length, groups = rng.choice(_INTL)
    number = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix)))
    if groups is None:  # North American: +1 (415) 555-0132, the exchange starting with 2-9
        number = number[:3] + str(rng.randint(2, 9)) + number[4:]
        return f"+{code} ({number[:3]}) {number[3:6]}-{number[6:]}"
    if rng.random() < 0.25:
        return f"+{code}{number}"
    parts, at = [], 0
    for size in groups:
        parts.append(number[at : at + size])
        at += size
    return f"+{code} " + " ".join(parts)


def luhn_check_digit(partial: str) -> str:
    """The digit that makes `partial + digit` pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(partial)):
        digit = int(char)
        if position % 2 == 0:  # doubled once the check digit is appended
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    """A Luhn-valid Visa, Mastercard or Amex number, grouped by spaces or dashes, or not."""
    brand = rng.randrange(3)
    if brand == 0:
        prefix, length, groups = "4", 16, (4, 4, 4, 4)
    elif brand == 1:
        prefix, length, groups = str(rng.randint(51, 55)), 16, (4, 4, 4, 4)
    else:
        prefix, length, groups = rng.choice(("34", "37")), 15, (4, 6, 5)
    partial = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    number = partial + luhn_check_digit(partial)
    separator = rng.choice(("", " ", " ", "-"))
    parts, at = [], 0
    for size in groups:
        parts.append(number[at : at + size])
        at += size
    return separator.join(parts)


def iban_check_digits(country: str, bban: str) -> str:
    """ISO 13616 check digits: 98 - (BBAN + country letters as numbers + '00') mod 97."""
    rearranged = bban + country + "00"
    numeric = "".join(str(int(char, 36)) for char in rearranged)
    return f"{98 - int(numeric) % 97:02d}"


def iban(rng: random.Random) -> str:
    """A French (27 characters) or German (22) IBAN with valid check digits, grouped by four or not."""
    if rng.random() < 0.8:
        country = "FR"
        bank = "".join(str(rng.randint(0, 9)) for _ in range(10))
        account = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(11))
        bban = bank + account + f"{rng.randint(0, 99):02d}"
    else:
        country = "DE"
        bban = "".join(str(rng.randint(0, 9)) for _ in range(18))
    code = country + iban_check_digits(country, bban) + bban
    if rng.random() < 0.35:
        return code
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def luhn_valid(number: str) -> bool:
    digits = [c for c in number if c.isdigit()]
    return len(digits) > 1 and luhn_check_digit("".join(digits[:-1])) == digits[-1]


def iban_valid(code: str) -> bool:
    compact = code.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


_MAKERS = {"email": email, "phone_fr": phone_fr, "phone_intl": phone_intl, "card": card, "iban": iban}
