"""The stage profiler used by the benchmarks' per-stage breakdowns."""

import time

from ego_ros.core.profile import Profiler, stage


def test_stage_without_profiler_records_nothing_and_runs_the_block():
    ran = []
    with stage("vision"):
        ran.append(1)
    assert ran == [1]


def test_nested_stages_are_recorded_under_their_parent():
    with Profiler() as prof:
        with stage("prefill"):
            with stage("tails"):
                pass
    assert set(prof.seconds) == {"prefill", "prefill/tails"}
    assert prof.calls["prefill/tails"] == 1


def test_host_gaps_are_wall_time_outside_top_level_stages():
    with Profiler() as prof:
        time.sleep(0.02)
        with stage("decode"):
            time.sleep(0.01)
    rep = prof.report()
    assert rep["host_gaps_ms"] >= 15
    assert rep["stages_ms"]["decode"] >= 8
    assert abs(rep["wall_ms"] - rep["host_gaps_ms"] - rep["stages_ms"]["decode"]) < 1e-6
