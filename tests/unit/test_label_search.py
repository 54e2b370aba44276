"""The diagnosis search's ranking over the vocabulary (no Qt)."""

from __future__ import annotations

from dermdesk import taxonomy


def keys(query: str, recent: tuple[str, ...] = ()) -> list[str]:
    return [c.key for c in taxonomy.search_labels(query, recent)]


def test_every_code_and_known_other_condition_is_a_choice() -> None:
    all_keys = keys("")
    assert set(taxonomy.diagnoses()) <= set(all_keys)
    assert "OTHER:keloid" in all_keys and "OTHER:kaposi-sarcoma" in all_keys
    assert all(taxonomy.label_choice(k) is not None for k in all_keys)
    assert taxonomy.label_choice("OTHER:not-a-condition") is None


def test_synonyms_match_and_the_best_match_comes_first() -> None:
    assert keys("akiec")[0] == "ACK" and keys("bkl")[0] == "SEK"
    assert keys("basal cell")[0] == "BCC"
    assert keys("nev")[:2] == ["NEV", "OTHER:epidermal-nevus"]
    assert keys("xyzzy") == []


def test_recent_choices_come_first_on_an_empty_query_and_break_ties() -> None:
    assert keys("", ("OTHER:keloid", "SCC"))[:3] == ["OTHER:keloid", "SCC", "MEL"]
    assert keys("derma")[:2] == ["DF", "OTHER:dermatomyositis"]
    assert keys("derma", ("OTHER:dermatomyositis",))[:2] == ["OTHER:dermatomyositis", "DF"]
    assert keys("eczema", ("OTHER:dyshidrotic-eczema",))[0] == "OTHER:eczema"  # exact wins
