"""Runner output from a complete cache (no engine needed), reports, plots, comparison and CLI.

The engine is not involved: every sample is written into ``cache.jsonl`` first, with the keys the
runner itself computes, so ``run_eval`` only rebuilds metrics, ``results.json``, the report and plots.
"""

import json
from pathlib import Path

import pytest
from PIL import Image

from ego_ros.eval.cache import CACHE_FILE, ResultCache, make_key, settings_hash
from ego_ros.eval.cli import main
from ego_ros.eval.datasets import load_dataset
from ego_ros.eval.methods import get_method
from ego_ros.eval.report import compare, paper_tables, render_report, write_plots
from ego_ros.eval.runner import build_work, run_eval, run_settings, select_limited

MODEL = "/models/Toy-VLM"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 120, 200)).save(path)


def make_yollava(base: Path) -> str:
    for c in ("bo", "mam"):
        img(base / "train" / c / "0.png")
    for n in range(3):
        img(base / "test" / "bo" / f"{n}.png")
    img(base / "test" / "mam" / "0.png")
    qa = {"options": {"A": "Brown", "B": "Grey"}, "correct_answer": "A"}
    vqa = {
        "bo": {"test/bo/0.png": dict(qa, question="Colour of sks?"), "test/bo/1.png": dict(qa, question="Fur of sks?")}
    }
    (base / "yollava-visual-qa.json").write_text(json.dumps(vqa))
    return f"yollava:{base}"


def make_multi(base: Path) -> str:
    m = base / "Multi-concept"
    for label in ("Zak-man", "Zaks dog kona-dog", "Casey-man"):
        img(m / "train" / label / "0.png")
    img(m / "test" / "Zak_and_Zaks dog kona" / "0.png")
    img(m / "test" / "Casey_and_Zak" / "0.png")
    vqa = [
        {"image": "test/Zak_and_Zaks dog kona/0.png", "question": "What does Zak hold?", "answer": "a leash"},
        {"image": "test/Casey_and_Zak/0.png", "question": "Where are they?", "answer": "the park"},
    ]
    (m / "VQA").mkdir()
    (m / "VQA" / "q.json").write_text(json.dumps(vqa))
    return f"thisismy-multi:{base}"


def prefill(spec: str, method: str, out: Path, said: set, answers: dict, captions: dict | None = None) -> None:
    """Write every sample of the run into the cache; ``said`` holds (image name, concept) said present."""
    ds = load_dataset(spec, views=1)
    m = get_method(method)
    shash = settings_hash(run_settings(ds, MODEL, m, seed=0, dtype="auto", max_new_tokens=64, video_frames=8))
    cache = ResultCache(out / CACHE_FILE)
    for c in ds.concepts:
        cache.put(
            make_key("introduce", "", c.name, method, shash),
            task="introduce",
            image="",
            concept=c.name,
            method=method,
            settings=shash,
            seconds=1.5,
            result={"seconds": 1.5, "num_tokens": 12, "k_c": [12], "alpha": [20.0], "keywords": [["fur"]]},
        )
    for task, items in build_work(ds, ds.tasks, None, 0, method, shash).items():
        for w in items:
            if task == "recognition":
                yes = (w.image, w.concept) in said
                result = {"present": yes, "probability": 0.8 if yes else 0.2}
            elif task == "vqa":
                result = {"prediction": answers[w.record.question], "answer_concepts": []}
            else:
                result = {"caption": captions[w.image], "answer_concepts": []}
            cache.put(
                w.key,
                task=task,
                image=w.image,
                concept=w.concept,
                item=w.item,
                method=method,
                settings=shash,
                result=result,
                seconds=0.5,
            )


YOLLAVA_SAID = {("test/bo/0.png", "bo"), ("test/bo/1.png", "bo"), ("test/mam/0.png", "bo"), ("test/mam/0.png", "mam")}
YOLLAVA_ANSWERS = {"Colour of bo?": "(A)", "Fur of bo?": "hmm"}


@pytest.fixture
def yollava_run(tmp_path):
    spec = make_yollava(tmp_path / "data")
    out = tmp_path / "run"
    prefill(spec, "ego", out, YOLLAVA_SAID, YOLLAVA_ANSWERS)
    results = run_eval(spec, MODEL, "ego", 1, out, progress=False)
    return out, results


def test_complete_cache_gives_hand_computed_metrics_without_an_engine(yollava_run):
    _, results = yollava_run
    r = results["metrics"]["recognition"]
    # bo: TP 2 (0, 1), FN 1 (2), FP 1 (mam/0) -> P = R = 2/3; mam: TP 1 -> P = R = 1
    assert r["per_group"]["bo"]["precision"] == pytest.approx(2 / 3)
    assert r["per_group"]["mam"]["recall"] == 1.0
    assert r["precision"] == pytest.approx(5 / 6) and r["f1_of_means"] == pytest.approx(5 / 6)
    assert r["accuracy"] == pytest.approx(6 / 8)
    assert r["confusion"]["groups"] == ["bo", "mam"]
    assert r["confusion"]["matrix"] == [[2 / 3, 0.0], [1.0, 1.0]]
    v = results["metrics"]["vqa"]
    assert (v["correct"], v["scored"], v["unparseable"], v["kind"]) == (1, 2, 1, "multiple_choice")
    assert results["timings"]["introduce"]["mean"] == 1.5
    assert results["timings"]["samples"]["recognition"]["mean"] == pytest.approx(1.0)  # 2 concepts x 0.5 s
    assert results["introductions"]["bo"]["k_c"] == [12]


def test_results_json_records_every_setting(yollava_run):
    out, _ = yollava_run
    saved = json.loads((out / "results.json").read_text())
    s = saved["settings"]
    assert s["model"] == MODEL and s["views"] == 1 and s["seed"] == 0 and s["judge"] == "none"
    assert s["method"] == {
        "name": "ego",
        "selection": "attention",
        "dynamic_k": True,
        "max_fraction": 0.2,
        "context": "memory",
        "description": s["method"]["description"],
    }
    assert s["tasks"] == ["recognition", "vqa"] and len(s["settings_hash"]) == 16
    assert saved["package_version"] and saved["schema"] == "ego_ros.eval/1"
    assert saved["dataset"]["counts"] == {"recognition": 8, "vqa": 2}


def test_plots_are_png_files(yollava_run):
    out, results = yollava_run
    assert set(results["plots"]) == {"recognition_per_group", "recognition_matrix"}
    for name in results["plots"].values():
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000


def test_report_renders_summary_per_group_and_paper_tables(yollava_run):
    out, _ = yollava_run
    text = (out / "report.md").read_text()
    assert "| Prec. | Rec. | F1 (of means) | mean F1 |" in text
    assert "| 83.3 | 83.3 | 83.3 | 83.3 | 75.0 |" in text
    assert "| bo | 3 | 2 | 1 | 1 | 0 | 66.7 | 66.7 | 66.7 |" in text
    assert "### Table 1: Recognition" in text and "![recognition matrix](recognition_matrix.png)" in text
    assert "| multiple_choice | letter match | 50.0 |" in text


def test_rerun_with_a_limit_reuses_the_cache(yollava_run):
    out, _ = yollava_run
    before = (out / CACHE_FILE).read_text()
    results = run_eval(yollava_run[1]["settings"]["dataset"], MODEL, "ego", 1, out, limit=2, progress=False)
    assert (out / CACHE_FILE).read_text() == before  # nothing new was computed
    assert results["metrics"]["recognition"]["num_images"] == 2
    assert results["settings"]["limit"] == 2


def test_limit_spreads_items_over_groups():
    items = [("a", i) for i in range(6)] + [("b", 0), ("c", 0)]
    chosen = select_limited(items, 3, seed=1, group=lambda x: x[0])
    assert {g for g, _ in chosen} == {"a", "b", "c"}
    assert chosen == sorted(chosen, key=items.index)  # dataset order kept
    assert select_limited(items, 3, seed=1, group=lambda x: x[0]) == chosen  # seeded


def test_multi_concept_run_scores_pairs_captions_and_open_answers(tmp_path):
    spec = make_multi(tmp_path / "data")
    out = tmp_path / "run"
    zak, casey = "test/Zak_and_Zaks dog kona/0.png", "test/Casey_and_Zak/0.png"
    said = {(zak, "Zak"), (zak, "Zak's dog kona"), (casey, "Zak")}  # Casey missed on his image
    answers = {"What does Zak hold?": "He holds a leash.", "Where are they?": "On a beach."}
    captions = {zak: "Zak walks zak's dog Kona.", casey: "Two men talk."}
    prefill(spec, "ego", out, said, answers, captions)
    results = run_eval(spec, MODEL, "ego", 1, out, judge="exact", progress=False)
    r = results["metrics"]["recognition"]
    assert r["per_group"]["Zak + Zak's dog kona"]["tp"] == 1
    assert r["per_group"]["Casey + Zak"]["fn"] == 1 and r["per_group"]["Casey + Zak"]["fp"] == 0
    assert r["concept_level"]["num_decisions"] == 6
    assert results["metrics"]["captioning"]["recall"] == pytest.approx(0.5)
    v = results["metrics"]["vqa"]
    assert (v["kind"], v["judge"], v["correct"], v["scored"]) == ("open", "exact", 1, 2)
    saved = json.loads((out / "answers.json").read_text())
    assert [a["verdict"]["correct"] for a in saved] == [True, False]
    assert (out / "captioning_per_group.png").read_bytes().startswith(PNG_MAGIC)


def test_open_answers_without_judge_are_recorded_not_scored(tmp_path):
    spec = make_multi(tmp_path / "data")
    out = tmp_path / "run"
    prefill(
        spec,
        "ego",
        out,
        set(),
        {"What does Zak hold?": "x", "Where are they?": "y"},
        {"test/Zak_and_Zaks dog kona/0.png": "", "test/Casey_and_Zak/0.png": ""},
    )
    v = run_eval(spec, MODEL, "ego", 1, out, progress=False)["metrics"]["vqa"]
    assert v["accuracy"] is None and v["unscored"] == 2
    assert [a["prediction"] for a in json.loads((out / "answers.json").read_text())] == ["x", "y"]


def test_compare_puts_runs_side_by_side_in_paper_tables(tmp_path, yollava_run):
    ego_dir, _ = yollava_run
    spec = make_yollava(tmp_path / "data2")
    uni_dir = tmp_path / "uniform"
    prefill(spec, "uniform", uni_dir, {("test/bo/0.png", "bo")}, YOLLAVA_ANSWERS)
    run_eval(spec, MODEL, "uniform", 1, uni_dir, progress=False)
    text = compare([ego_dir, uni_dir])
    table1 = text.split("### Table 1")[1].split("Mean of per-group F1")[0]
    rows = [line for line in table1.splitlines() if line.startswith("| ")]
    ego_row = next(r for r in rows if r.startswith("| Ego | Toy-VLM | 1 |"))
    uni_row = next(r for r in rows if r.startswith("| Uniform | Toy-VLM | 1 |"))
    assert "| 83.3 | 83.3 | 83.3 |" in ego_row and "| 1.50s |" in ego_row
    # uniform: bo P 1, R 1/3; mam never said: P 0, R 0 -> means 1/2 and 1/6, F1 = 25.0
    assert "| 50.0 | 16.7 | 25.0 |" in uni_row
    assert "| Ego (paper) | InternVL3-14B | 1 | 1.40s | 86.0 | 94.8 | 90.2 | 77.2 | 83.4 | 80.2 |" in text
    assert "Ego (paper)" not in compare([ego_dir], include_published=False)
    assert "### Table 3: Ablation" in text and "| Uniform | Toy-VLM | 1 | 20% | ✗ |" in text


def test_render_and_plots_work_from_results_json_alone(yollava_run, tmp_path):
    out, _ = yollava_run
    results = json.loads((out / "results.json").read_text())
    written = write_plots(results, tmp_path)
    assert (tmp_path / written["recognition_per_group"]).read_bytes().startswith(PNG_MAGIC)
    assert render_report(results).startswith("# Evaluation: Ego on yollava (1 reference view)")
    assert "| Ego | Toy-VLM | 1 |" in paper_tables([results], include_published=False)


def test_cli_compare_writes_markdown(yollava_run, tmp_path, capsys):
    out, _ = yollava_run
    target = tmp_path / "cmp.md"
    assert main(["eval", "compare", str(out), "--out", str(target), "--no-published"]) == 0
    assert target.read_text().startswith("# Comparison of evaluation runs")
    assert "Table 2" in capsys.readouterr().out


def test_cli_eval_from_complete_cache_prints_a_summary(yollava_run, capsys):
    out, results = yollava_run
    args = [
        "eval",
        "--dataset",
        results["settings"]["dataset"],
        "--model",
        MODEL,
        "--method",
        "ego",
        "--views",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    assert "recognition: P 83.3  R 83.3  F1 83.3" in capsys.readouterr().out


def test_cli_reports_dataset_errors_with_exit_status_2(tmp_path, capsys):
    assert main(["eval", "--dataset", f"yollava:{tmp_path}/none", "--model", "m", "--out", str(tmp_path / "o")]) == 2
    assert "Yo'LLaVA layout" in capsys.readouterr().err


def test_cli_requires_dataset_model_and_out():
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--model", "m"])
    assert exc.value.code == 2


def test_run_eval_rejects_tasks_the_dataset_lacks(tmp_path):
    spec = make_yollava(tmp_path / "data")
    with pytest.raises(ValueError, match="captioning"):
        run_eval(spec, MODEL, "ego", 1, tmp_path / "out", tasks=["captioning"], progress=False)


def test_run_eval_rejects_unknown_methods(tmp_path):
    with pytest.raises(ValueError, match="known methods"):
        run_eval(make_yollava(tmp_path / "d"), MODEL, "magic", 1, tmp_path / "o", progress=False)
