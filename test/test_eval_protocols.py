"""Answer parsing and name matching of the evaluation protocol."""

import pytest

from ego_ros.eval.protocols import (
    ab_correct,
    caption_mentions,
    contains_name,
    exact_match,
    format_ab_question,
    parse_choice,
    sample_frames,
)

OPTIONS = {"A": "Brown", "B": "Grey"}


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("A", "A"),
        ("b", "B"),
        ("(A)", "A"),
        ("A.", "A"),
        ("B)", "B"),
        ("'B'", "B"),
        ("**B**", "B"),
        ("Answer: B", "B"),
        ("answer:b", "B"),
        ("the answer is b", "B"),
        ("The answer is (A).", "A"),
        ("I think the answer is B because the fur is grey.", "B"),
        ("Option A", "A"),
        ("choice: a", "A"),
        ("A. Brown", "A"),
        ("(B) Grey", "B"),
        ("  B\n", "B"),
        ("The fur is grey.", "B"),  # names one option's text only
    ],
)
def test_parse_choice_reads_the_letter(reply, letter):
    assert parse_choice(reply, OPTIONS) == letter


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I am not sure.",
        "C",
        "Brown or grey, hard to say",  # names both options
        "A dog",  # an article, not a letter, and no option text
        "the answer is a dog",
        None,
    ],
)
def test_parse_choice_returns_none_when_it_cannot_tell(reply):
    assert parse_choice(reply, OPTIONS) is None


def test_parse_choice_accepts_bare_letters_without_option_texts():
    assert parse_choice("c.", ["A", "B", "C"]) == "C"
    assert parse_choice("C", ["A", "B"]) is None


def test_unparseable_answer_counts_as_wrong():
    assert ab_correct("B.", "B", OPTIONS)
    assert not ab_correct("A", "B", OPTIONS)
    assert not ab_correct("no idea", "B", OPTIONS)


def test_ab_prompt_has_the_peers_layout():
    text = format_ab_question("What colour is bo's fur?", {"B": "Grey", "A": "Brown"})
    assert text == (
        "Question: What colour is bo's fur?\nOptions:\nA. Brown\nB. Grey\n"
        "Please give a single character from the options above."
    )


@pytest.mark.parametrize(
    "text, name, expected",
    [
        ("A photo of bo on a sofa.", "bo", True),
        ("Bo's toy lies on the floor", "bo", True),
        ("BO sleeps", "bo", True),
        ("a boat on the lake", "bo", False),
        ("a man in a T-shirt", "T", False),  # a hyphen continues the word
        ("T smiles at the pig-cup.", "T", True),
        ("the pig-cup is pink", "pig-cup", True),
        ("Zak’s dog Kona runs", "Zak's dog kona", True),  # curly apostrophe, other case
        ("Zak's  dog\nkona", "Zak's dog kona", True),  # any whitespace between words
        ("Zak's dog", "Zak's dog kona", False),
        ("the colorful teapot", "colorful_teapot", True),  # folder names use _ for spaces
        ("", "bo", False),
    ],
)
def test_contains_name_matches_whole_words_case_insensitively(text, name, expected):
    assert contains_name(text, name) is expected


def test_caption_needs_every_member_of_a_pair():
    assert caption_mentions("Casey rides Casey's boosted board", ["Casey", "Casey's boosted board"])
    assert not caption_mentions("Casey rides a skateboard", ["Casey", "Casey's boosted board"])


def test_caption_member_can_be_named_by_any_alias():
    assert caption_mentions("a colorful teapot on a table", [["colorful_teapot", "teapot of mine"]])


def test_caption_mentions_rejects_an_empty_name_list():
    with pytest.raises(ValueError):
        caption_mentions("text", [])


def test_exact_match_is_normalised_whole_word_containment():
    assert exact_match("He is riding a Skateboard!", "riding a skateboard")
    assert exact_match("The dog.", "dog")
    assert not exact_match("hotdog", "dog")
    assert not exact_match("anything", "")
    assert not exact_match(None, "dog")


def test_sample_frames_spreads_frames_over_the_clip():
    frames = list(range(10))
    assert sample_frames(frames, 4) == [0, 3, 6, 9]
    assert sample_frames(frames, 1) == [5]
    assert sample_frames(frames[:3], 8) == [0, 1, 2]
    with pytest.raises(ValueError):
        sample_frames(frames, 0)
