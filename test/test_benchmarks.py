"""The engine benchmark's report: medians, per-stage profiles and plain-transformers baselines (tiny model;
the numbers themselves live in bench/results, never in tests)."""

from __future__ import annotations

import json

import pytest

from ego_ros.benchmarks import plain_attention, run_engine_benchmark, summary_table


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "engine.json"
    result = run_engine_benchmark("random:llava", concept_counts=[1, 3], repeats=1, profile_runs=1,
                                  keyword_tokens=2, out=out, image_px=32)
    return result, out


def test_the_report_is_written_as_json(report):
    result, out = report
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))


def test_every_figure_has_its_baseline_ratio(report):
    result, _ = report
    assert result["baseline_generate_keywords"]["median_ms"] > 0
    assert result["introduction_per_view"]["ratio_to_baseline"] > 0
    assert [r["concepts"] for r in result["recognition"]] == [1, 1, 3, 3]
    for row in result["recognition"]:
        assert row["baseline_reference_images"]["median_ms"] > 0 and row["ratio_to_baseline"] > 0


def test_preprocessing_is_timed_both_ways_on_camera_sized_frames(report):
    result, _ = report
    for size in ("640x480", "1920x1080"):
        assert {"tensor", "pil"} == set(result["preprocess_per_frame"][size])


def test_profiled_runs_break_the_time_into_stages(report):
    result, _ = report
    cached = [r for r in result["recognition"] if r["prefix_cache"]]
    for profile in [result["introduction_per_view"]["profile"]] + [r["profile"] for r in cached]:
        assert {"preprocess", "vision"} <= set(profile["stages_ms"])
        assert profile["host_gaps_ms"] >= 0 and profile["wall_ms"] > 0


def test_the_baseline_runs_plain_sdpa_and_gives_the_engine_its_attention_back(llava):
    from ego_ros.core import attention

    text_config = llava.model.config.get_text_config()
    with plain_attention(llava):
        assert text_config._attn_implementation == "sdpa"
    assert text_config._attn_implementation == attention.ATTN_IMPLEMENTATION


def test_the_summary_table_has_a_row_per_figure(report):
    result, _ = report
    assert summary_table(result).count("\n") == 2 + len(result["recognition"])
