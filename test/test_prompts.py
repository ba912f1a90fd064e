"""Prompt templates, area answers and keyword parsing."""

from __future__ import annotations

import json

import pytest

from ego_ros.core.prompts import PromptSet, Slot, fill, load_prompts, parse_area_percent, split_keywords


def test_fill_keeps_slots_as_separate_parts():
    parts = fill("{name}: {memory}\n", name="kona", memory=[Slot("memory", "kona", 0), Slot("memory", "kona", 1)])
    assert parts == ["kona: ", Slot("memory", "kona", 0), Slot("memory", "kona", 1), "\n"]


def test_fill_reports_a_missing_field():
    with pytest.raises(KeyError, match="name"):
        fill("{name}")


@pytest.mark.parametrize("answer,expected", [
    ("30", 30.0), ("About 45%.", 45.0), ("12.5 percent", 12.5), ("0.25", 25.0), ("150", 100.0),
    ("roughly half of it", 50.0), ("a quarter", 25.0), ("It covers 7% of the image", 7.0), ("0", 0.0),
])
def test_area_answers_are_parsed(answer, expected):
    assert parse_area_percent(answer) == pytest.approx(expected)


@pytest.mark.parametrize("answer", ["", "I cannot tell", "large"])
def test_unusable_area_answers_give_none(answer):
    assert parse_area_percent(answer) is None


def test_keywords_are_split_on_commas_and_lines():
    assert split_keywords("red mug, white handle;\n- logo.") == ["red mug", "white handle", "logo"]


def test_model_directory_overrides_prompt_fields(tmp_path):
    (tmp_path / "ego_prompts.json").write_text(json.dumps({"keywords": "kw?", "yes": ["ja"]}))
    prompts = load_prompts(tmp_path)
    assert prompts.keywords == "kw?" and prompts.yes == ("ja",)
    assert prompts.area == PromptSet().area


def test_unknown_prompt_fields_are_refused(tmp_path):
    (tmp_path / "ego_prompts.json").write_text(json.dumps({"keyword": "typo"}))
    with pytest.raises(ValueError, match="unknown prompt fields"):
        load_prompts(tmp_path)
