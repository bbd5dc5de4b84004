"""Redaction of personal data in verbatims: what must go, and what must stay."""

from __future__ import annotations

import pyarrow as pa
import pytest

from parcours.pipelines.redact import candidates, iban_is_valid, luhn_is_valid, redact, redact_text

PHONES = [
    "06 12 34 56 78",
    "06.12.34.56.78",
    "06-12-34-56-78",
    "0612345678",
    "01 42 68 53 00",
    "+33 6 12 34 56 78",
    "+33612345678",
    "+33 (0)6 12 34 56 78",
    "0033 6 12 34 56 78",
    "0033612345678",
    "(0)6 12 34 56 78",
    "+33.6.12.34.56.78",
    "+44 20 7946 0958",
    "0044 20 7946 0958",
    "+1 (415) 555-2671",
    "+1 415-555-2671",
    "+49 30 901820",
    "+32 2 555 12 12",
]


@pytest.mark.parametrize("phone", PHONES)
def test_phone_numbers_in_french_and_international_spellings(phone: str) -> None:
    text, counts = redact_text(f"rappelez-moi au {phone} après 18h")
    assert text == "rappelez-moi au [phone] après 18h"
    assert counts == {"email": 0, "iban": 0, "card": 0, "phone": 1}


def test_a_national_number_of_another_country_needs_its_prefix() -> None:
    # Read with the FR numbering plan, "(415) 555-2671" is no valid number; with the US region it is.
    assert redact_text("(415) 555-2671")[1]["phone"] == 0
    assert redact_text("(415) 555-2671", region="US") == ("[phone]", {"email": 0, "iban": 0, "card": 0, "phone": 1})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("écrivez à jean.dupont+sav@exemple.fr.", "écrivez à [email]."),
        ("JEAN_DUPONT@EXEMPLE.CO.UK merci", "[email] merci"),
        ("a@b.io ou c.d@e-f.com", "[email] ou [email]"),
    ],
)
def test_email_addresses(text: str, expected: str) -> None:
    assert redact_text(text)[0] == expected


# Published test card numbers (Visa, Mastercard, Amex, Discover), Luhn-valid by construction.
VALID_CARDS = [
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "5555 5555 5555 4444",
    "3782 822463 10005",
    "6011 1111 1111 1117",
]


@pytest.mark.parametrize("card", VALID_CARDS)
def test_luhn_valid_card_numbers(card: str) -> None:
    assert redact_text(f"ma carte {card} a été débitée deux fois") == (
        "ma carte [card] a été débitée deux fois",
        {"email": 0, "iban": 0, "card": 1, "phone": 0},
    )


@pytest.mark.parametrize("card", ["4111 1111 1111 1112", "5555 5555 5555 4445", "4111111111111121"])
def test_luhn_invalid_card_numbers_stay(card: str) -> None:
    assert redact_text(f"ma carte {card}")[1]["card"] == 0


def test_a_card_next_to_another_number_is_still_found() -> None:
    assert redact_text("5555 5555 5555 4444 le 12 mars")[0] == "[card] le 12 mars"
    assert redact_text("le 12 5555 5555 5555 4444")[0] == "le 12 [card]"


def test_luhn_by_hand() -> None:
    # 79927398713: the classic worked example (sum of the doubled-from-the-right digits is 70).
    assert luhn_is_valid("79927398713")
    assert not luhn_is_valid("79927398710")


# ISO 13616 / national-bank published examples.
VALID_IBANS = [
    "FR76 3000 6000 0112 3456 7890 189",
    "FR7630006000011234567890189",
    "GB82 WEST 1234 5698 7654 32",
    "DE89 3704 0044 0532 0130 00",
    "BE68 5390 0754 7034",
]


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_ibans(iban: str) -> None:
    assert redact_text(f"remboursez sur {iban} SVP") == (
        "remboursez sur [iban] SVP",
        {"email": 0, "iban": 1, "card": 0, "phone": 0},
    )


@pytest.mark.parametrize(
    "iban", ["FR76 3000 6000 0112 3456 7890 188", "GB83 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 01"]
)
def test_ibans_with_a_wrong_checksum_stay(iban: str) -> None:
    text, counts = redact_text(f"remboursez sur {iban}")
    assert counts["iban"] == 0
    assert "[iban]" not in text


def test_an_iban_typed_in_lower_case_before_other_words() -> None:
    assert redact_text("iban fr76 3000 6000 0112 3456 7890 189 merci")[0] == "iban [iban] merci"
    assert redact_text("IBAN FR76 3000 6000 0112 3456 7890 189 OK MERCI")[0] == "IBAN [iban] OK MERCI"


def test_iban_checksum_by_hand() -> None:
    # GB82WEST12345698765432 -> WEST12345698765432GB82 -> 3214282912345698765432161182, mod 97 = 1.
    assert int("3214282912345698765432161182") % 97 == 1
    assert iban_is_valid("GB82WEST12345698765432")
    assert not iban_is_valid("GB82WEST12345698765433")  # last digit changed
    assert not iban_is_valid("GB82WEST1234")  # shorter than any IBAN


@pytest.mark.parametrize(
    "text",
    [
        "livré le 01/02/2026 au lieu du 28/01/2026",
        "depuis le 2026-02-01",
        "le 12.03.2025 à 10:45:00",
        "entre 10h30 et 12h00, puis à 14:30",
        "commande 123456789 toujours pas reçue",
        "commande #A12345",
        "ref 2026-02-01-0001",
        "payé 49,99 € puis 1 299 € et 1 299,00 EUR",
        "une remise de 20 % ou 15,5%",
        "livraison au 75011 Paris, puis 13001 Marseille",
        "client depuis 2019, en 2026 ça ne va plus",
        "3 colis sur 12 abîmés, 2 fois sur 5",
        "version 2.14.3 de l'application",
    ],
)
def test_text_that_must_not_be_redacted(text: str) -> None:
    assert redact_text(text) == (text, {"email": 0, "iban": 0, "card": 0, "phone": 0})


def test_several_kinds_in_one_text() -> None:
    text = "Jean, jean@exemple.fr, 06 12 34 56 78, carte 4111 1111 1111 1111, IBAN FR76 3000 6000 0112 3456 7890 189."
    assert redact_text(text) == (
        "Jean, [email], [phone], carte [card], IBAN [iban].",
        {"email": 1, "iban": 1, "card": 1, "phone": 1},
    )


def test_redact_a_batch_keeps_order_nulls_and_untouched_texts() -> None:
    texts = pa.array(
        [
            "très bien",
            None,
            "appelez le 06 12 34 56 78",
            "",
            "commande 123456789",
            "a@b.fr et c@d.fr",
            "livré le 01/02/2026",
        ],
        pa.string(),
    )
    assert candidates(texts).to_pylist() == [False, False, True, False, True, True, True]
    out, counts = redact(pa.chunked_array([texts[:3], texts[3:]]))
    assert out.to_pylist() == [
        "très bien",
        None,
        "appelez le [phone]",
        "",
        "commande 123456789",
        "[email] et [email]",
        "livré le 01/02/2026",
    ]
    assert counts == {"email": 2, "iban": 0, "card": 0, "phone": 1}


def test_a_batch_without_candidates_is_returned_as_is() -> None:
    texts = pa.array(["bien", "pas terrible", None])
    out, counts = redact(texts)
    assert out.equals(texts)
    assert counts == {"email": 0, "iban": 0, "card": 0, "phone": 0}


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(TypeError, match="string array"):
        redact(pa.array([1, 2]))
    with pytest.raises(ValueError, match="region"):
        redact(pa.array(["06 12 34 56 78"]), region="XX")
