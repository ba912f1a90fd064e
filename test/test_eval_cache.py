"""Per-sample result cache: append, resume, torn last line, settings hash."""

import json

import pytest

from ego_ros.eval.cache import CacheError, ResultCache, make_key, settings_hash


def put(cache, key, value):
    return cache.put(
        key,
        task="recognition",
        image="test/bo/0.png",
        concept="bo",
        method="ego",
        settings="h",
        result={"present": value, "probability": 0.5},
        seconds=0.1,
    )


def test_records_survive_a_reopen(tmp_path):
    path = tmp_path / "cache.jsonl"
    put(ResultCache(path), "k1", True)
    put(ResultCache(path), "k2", False)  # a second run appends
    cache = ResultCache(path)
    assert len(cache) == 2 and "k1" in cache and cache.get("k2")["result"]["present"] is False
    assert path.read_text().count("\n") == 2


def test_each_put_is_on_disk_before_it_returns(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = ResultCache(path)
    put(cache, "k1", True)
    assert json.loads(path.read_text().splitlines()[0])["key"] == "k1"


def test_torn_last_line_is_dropped_and_the_file_repaired(tmp_path):
    path = tmp_path / "cache.jsonl"
    put(ResultCache(path), "k1", True)
    with path.open("a") as f:
        f.write('{"key": "k2", "task": "recogn')  # a run killed mid-write
    cache = ResultCache(path)
    assert cache.dropped_partial_line and list(cache.records) == ["k1"]
    put(cache, "k2", True)  # the resumed run redoes k2 on a fresh line
    assert list(ResultCache(path).records) == ["k1", "k2"]


def test_malformed_line_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('garbage\n{"key": "k1"}\n')
    with pytest.raises(CacheError, match=":1:"):
        ResultCache(path)


def test_resume_skips_exactly_the_cached_keys(tmp_path):
    path = tmp_path / "cache.jsonl"
    keys = [make_key("recognition", f"test/bo/{i}.png", "bo", "ego", "h") for i in range(5)]
    first = ResultCache(path)
    for k in keys[:3]:
        put(first, k, True)
    resumed = ResultCache(path)
    assert [k for k in keys if k not in resumed] == keys[3:]


def test_key_separates_task_image_concept_item_method_and_settings():
    base = make_key("vqa", "img.png", "bo", "ego", "h1", "q1")
    variants = [
        make_key("captioning", "img.png", "bo", "ego", "h1", "q1"),
        make_key("vqa", "img2.png", "bo", "ego", "h1", "q1"),
        make_key("vqa", "img.png", "mam", "ego", "h1", "q1"),
        make_key("vqa", "img.png", "bo", "uniform", "h1", "q1"),
        make_key("vqa", "img.png", "bo", "ego", "h2", "q1"),
        make_key("vqa", "img.png", "bo", "ego", "h1", "q2"),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_settings_hash_is_stable_and_order_independent():
    a = settings_hash({"model": "m", "views": 1, "method": {"name": "ego", "max_fraction": 0.2}})
    b = settings_hash({"method": {"max_fraction": 0.2, "name": "ego"}, "views": 1, "model": "m"})
    assert a == b and len(a) == 16
    assert settings_hash({"model": "m", "views": 5, "method": {"name": "ego", "max_fraction": 0.2}}) != a
