"""run_eval end to end with the real engine on a tiny random LLaVA (built from a config) and toy exports.

The random model's answers are meaningless; these tests check the plumbing: every sample reaches the
engine and the cache, a run interrupted mid-way resumes without redoing finished samples and ends
with the same results, and every compared method's settings are accepted by the engine.
"""

import json

import pytest

from ego_ros.core.engine import EgoEngine
from ego_ros.eval.cache import CACHE_FILE
from ego_ros.eval.methods import METHODS
from ego_ros.eval.runner import run_eval
from ego_ros.toy.export import export

MODEL = "random:llava"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    return EgoEngine.load(MODEL)


@pytest.fixture(scope="module")
def yollava(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "yollava-data"
    export(root, "yollava", 3, seed=0, views=2, test_per_concept=2, negatives=1)
    return f"yollava:{root}"


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy-multi")
    export(root, "thisismy-multi", 4, seed=0, views=1, test_per_concept=2)
    return f"thisismy-multi:{root}"


def cache_lines(out):
    return (out / CACHE_FILE).read_text().splitlines()


def test_run_records_every_sample_and_the_model(engine, yollava, tmp_path):
    out = tmp_path / "run"
    results = run_eval(yollava, MODEL, "ego", 1, out, engine=engine, max_new_tokens=4, progress=False)
    tasks = [json.loads(line)["task"] for line in cache_lines(out)]
    assert tasks.count("introduce") == 3 and tasks.count("recognition") == 6 * 3
    assert tasks.count("vqa") == results["dataset"]["counts"]["vqa"] > 0
    assert results["model_fingerprint"] == engine.backend.fingerprint()
    assert results["engine_config"]["context"] == "memory"
    rec = results["metrics"]["recognition"]
    assert all(g["tp"] + g["fp"] + g["fn"] + g["tn"] == 6 for g in rec["per_group"].values())
    assert rec["auc"] is not None and 0.0 <= rec["f1_of_means"] <= 1.0
    intro = results["introductions"]
    assert all(i["views"] == 1 and len(i["k_c"]) == 1 and i["num_tokens"] >= 1 for i in intro.values())
    assert results["timings"]["introduce"]["mean"] > 0 and results["timings"]["samples"]["vqa"]["count"] > 0
    assert (out / "report.md").is_file() and (out / "recognition_per_group.png").is_file()


def test_interrupted_run_resumes_without_redoing_finished_samples(engine, yollava, tmp_path):
    out = tmp_path / "run"
    first = run_eval(yollava, MODEL, "ego", 1, out, engine=engine, max_new_tokens=4, progress=False)
    lines = cache_lines(out)
    kept = lines[: len(lines) // 2]
    # Simulate a kill mid-run: half of the samples done and a line torn in the middle of its write.
    (out / CACHE_FILE).write_text("".join(line + "\n" for line in kept) + lines[len(kept)][:25])
    second = run_eval(yollava, MODEL, "ego", 1, out, engine=engine, max_new_tokens=4, progress=False)
    after = cache_lines(out)
    assert after[: len(kept)] == kept  # finished samples untouched (same timestamps)
    assert len(after) == len(lines)  # each missing sample computed once, none twice
    assert sorted(json.loads(x)["key"] for x in after) == sorted(json.loads(x)["key"] for x in lines)
    assert second["metrics"] == first["metrics"]


def test_multi_concept_run_scores_pairs_open_answers_and_captions(engine, multi, tmp_path):
    out = tmp_path / "run"
    results = run_eval(multi, MODEL, "ego", 1, out, engine=engine, judge="exact", max_new_tokens=4, progress=False)
    m = results["metrics"]
    assert m["recognition"]["confusion"]["groups"] == results["dataset"]["groups"]
    assert len(results["dataset"]["groups"]) == 2 and all(" + " in g for g in results["dataset"]["groups"])
    assert m["vqa"]["kind"] == "open" and m["vqa"]["scored"] == m["vqa"]["total"] > 0
    assert 0.0 <= m["captioning"]["recall"] <= 1.0
    answers = json.loads((out / "answers.json").read_text())
    assert len(answers) == m["vqa"]["total"] and all(isinstance(a["prediction"], str) for a in answers)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "ego"])
def test_every_method_runs_through_the_engine(engine, yollava, tmp_path, method):
    views = 5 if method == "reference-images" else 1  # 5 asked, 2 exported: all available are used
    results = run_eval(
        yollava, MODEL, method, views, tmp_path / method, limit=1, tasks=["recognition"], engine=engine, progress=False
    )
    assert results["settings"]["method"]["name"] == method
    assert results["metrics"]["recognition"]["num_images"] == 1
    assert all(i["views"] == min(views, 2) for i in results["introductions"].values())


def test_engine_options_reach_the_loaded_engine(yollava, tmp_path):
    results = run_eval(
        yollava,
        MODEL,
        "ego",
        1,
        tmp_path / "o",
        limit=1,
        tasks=["recognition"],
        engine_options={"threshold": 0.9, "max_context_concepts": 2},
        recognition_context="all",
        progress=False,
    )
    assert results["engine_config"]["threshold"] == 0.9
    assert results["settings"]["engine_options"] == {"max_context_concepts": 2, "threshold": 0.9}
    # Three concepts, a context of two: one decision per image is made without its memory.
    assert results["metrics"]["recognition"]["not_considered"] == 1


def test_single_concept_protocol_gives_each_question_its_own_concept_only(yollava, tmp_path):
    each = run_eval(yollava, MODEL, "ego", 1, tmp_path / "each", tasks=["recognition"], progress=False,
                    engine_options={"max_context_concepts": 1})
    assert each["settings"]["recognition_context"] == "each"
    # With one concept in context per question, a context budget of one filters nothing.
    assert each["metrics"]["recognition"]["not_considered"] == 0
    both = run_eval(yollava, MODEL, "ego", 1, tmp_path / "all", tasks=["recognition"], progress=False,
                    engine_options={"max_context_concepts": 1}, recognition_context="all")
    assert both["metrics"]["recognition"]["not_considered"] > 0
