"""Markdown reports, plots and paper-shaped tables (Tables 1-3) from ``results.json`` files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .methods import DISPLAY_NAMES, METHODS

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"

#: Dataset columns of the paper's tables, in the paper's order.
RECOGNITION_DATASETS = (
    ("myvlm", "MyVLM"),
    ("yollava", "Yo'LLaVA"),
    ("thisismy", "This-is-my (Single)"),
    ("thisismy-multi", "This-is-my (Multi)"),
    ("rap", "RAP (Multi)"),
)
#: Table 2 columns: (dataset kind, task, header).
TABLE2_COLUMNS = (
    ("yollava", "vqa", "VQA Yo'LLaVA"),
    ("thisismy", "vqa", "VQA This-is-my"),
    ("myvlm", "captioning", "Caption MyVLM"),
    ("thisismy-multi", "vqa", "VQA This-is-my (Multi)"),
    ("thisismy-multi", "captioning", "Caption This-is-my (Multi)"),
    ("videoqa", "video_qa", "Video VQA This-is-my"),
)

# Published numbers (Ego paper, Tables 1-3), in percent; F1 as printed in the paper.
PUBLISHED_TABLE1: dict[tuple[str, int], dict[str, Any]] = {
    ("InternVL3-14B", 1): {
        "intro_s": 1.40,
        "myvlm": (86.0, 94.8, 90.2),
        "yollava": (77.2, 83.4, 80.2),
        "thisismy": (81.3, 77.0, 79.1),
        "thisismy-multi": (93.9, 78.2, 88.6),
        "rap": (100.0, 96.9, 98.4),
    },
    ("Qwen2.5-VL-7B", 1): {
        "intro_s": 1.25,
        "myvlm": (76.9, 90.3, 83.1),
        "yollava": (65.9, 90.2, 76.2),
        "thisismy": (73.3, 67.6, 70.3),
        "thisismy-multi": (83.4, 87.3, 85.3),
        "rap": (94.1, 78.1, 85.4),
    },
    ("InternVL3-14B", 5): {
        "intro_s": 7.00,
        "myvlm": (87.7, 99.0, 92.8),
        "yollava": (85.0, 86.4, 85.7),
        "thisismy": (87.2, 65.9, 75.1),
        "thisismy-multi": (100.0, 81.8, 90.9),
    },
    ("Qwen2.5-VL-7B", 5): {
        "intro_s": 6.25,
        "myvlm": (72.1, 95.9, 82.3),
        "yollava": (67.9, 98.7, 80.5),
        "thisismy": (77.6, 71.9, 74.6),
        "thisismy-multi": (92.1, 74.5, 82.4),
    },
}
PUBLISHED_TABLE2 = {
    "runtime_s": 6.0,
    ("yollava", "vqa"): 92.3,
    ("thisismy", "vqa"): 88.0,
    ("myvlm", "captioning"): 91.3,
    ("thisismy-multi", "vqa"): 72.2,
    ("thisismy-multi", "captioning"): 70.9,
    ("videoqa", "video_qa"): 70.0,
}
#: Table 3 (Yo'LLaVA recognition F1, InternVL3-14B): (row label, % tokens, keywords injected, F1).
PUBLISHED_TABLE3 = (
    ("Keywords", "-", True, 71.3),
    ("Full Visual", "100%", False, 84.1),
    ("Full Visual + Keywords", "100%", True, 82.5),
    ("Uniform", "20%", False, 77.7),
    ("Ego (1-view)", "20%", False, 80.4),
    ("Ego (5-view)", "20%", False, 85.7),
)


def pct(value: float | None) -> str:
    """Format a fraction as the paper prints it (x100, one decimal); an en dash when absent."""
    return "–" if value is None else f"{100 * value:.1f}"


def secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}s"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def model_label(model: str) -> str:
    """Short model name for tables: the last path component of a local path or Hub id."""
    return Path(model.rstrip("/")).name or model


# ------------------------------------------------------------------------------------------ run report


def render_report(results: dict[str, Any]) -> str:
    """Markdown report of one run (the layout of ``results.json`` is described in results.py)."""
    s = results["settings"]
    m = results["metrics"]
    method = s["method"]["name"]
    out = [
        f"# Evaluation: {DISPLAY_NAMES.get(method, method)} on {s['dataset_kind']} "
        f"({s['views']} reference view{'s' if s['views'] != 1 else ''})",
        "",
    ]
    rows = [
        ("dataset", s["dataset"]),
        ("model", s["model"]),
        ("model fingerprint", results.get("model_fingerprint") or "–"),
        (
            "method",
            f"{method} (selection={s['method']['selection']}, dynamic_k={s['method']['dynamic_k']}, "
            f"max_fraction={s['method']['max_fraction']}, context={s['method']['context']})",
        ),
        ("views", s["views"]),
        ("seed", s["seed"]),
        ("limit", s.get("limit") or "all"),
        ("judge", s.get("judge", "none")),
        ("device", s.get("device", "–")),
        ("tasks", ", ".join(s.get("tasks", []))),
        ("package version", results.get("package_version", "–")),
        ("settings hash", s.get("settings_hash", "–")),
    ]
    out += [_table(("setting", "value"), rows), ""]
    if "recognition" in m:
        out += _recognition_section(m["recognition"], results.get("plots", {}))
    if "localisation" in m:
        out += _localisation_section(m["localisation"], results.get("plots", {}))
    for task, title in (("vqa", "Visual question answering"), ("video_qa", "Video question answering")):
        if task in m:
            out += _qa_section(m[task], title)
    if "captioning" in m:
        c = m["captioning"]
        out += [
            "## Captioning recall",
            "",
            _table(
                ("recall (mean over groups)", "micro recall", "images"),
                [(pct(c["recall"]), pct(c["micro_recall"]), c["num_images"])],
            ),
            "",
            _table(
                ("group", "hits", "images", "recall"),
                [(g, d["hits"], d["total"], pct(d["recall"])) for g, d in c["per_group"].items()],
            ),
            "",
        ]
        if "captioning" in results.get("plots", {}):
            out += [f"![captioning recall per group]({results['plots']['captioning']})", ""]
    out += _timing_section(results.get("timings", {}))
    out += ["## Paper-shaped tables (this run)", "", paper_tables([results], include_published=False), ""]
    notes = results.get("dataset", {}).get("notes", [])
    if notes:
        out += ["## Dataset notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out).rstrip() + "\n"


def _recognition_section(r: dict[str, Any], plots: dict[str, str]) -> list[str]:
    out = [
        "## Recognition",
        "",
        _table(
            ("Prec.", "Rec.", "F1 (of means)", "mean F1", "Acc.", "AUC", "macro AUC", "groups", "images"),
            [
                (
                    pct(r["precision"]),
                    pct(r["recall"]),
                    pct(r["f1_of_means"]),
                    pct(r["mean_f1"]),
                    pct(r["accuracy"]),
                    pct(r["auc"]),
                    pct(r["macro_auc"]),
                    r["num_groups"],
                    r["num_images"],
                )
            ],
        ),
        "",
        "F1 (of means) is the F1 of the averaged precision and recall (the paper's stated convention); "
        "mean F1 averages the per-group F1.",
        "",
    ]
    out += [
        _table(
            ("group", "positives", "TP", "FP", "FN", "TN", "Prec.", "Rec.", "F1", "AUC"),
            [
                (
                    g,
                    d["positives"],
                    d["tp"],
                    d["fp"],
                    d["fn"],
                    d["tn"],
                    pct(d["precision"]),
                    pct(d["recall"]),
                    pct(d["f1"]),
                    pct(d["auc"]),
                )
                for g, d in r["per_group"].items()
            ],
        ),
        "",
    ]
    if r.get("by_negative_kind"):
        out += [
            "By negative kind (every positive against the negatives of one kind; look-alikes differ from "
            "the concept only in what words cannot name):",
            "",
            _table(
                ("negative kind", "negatives", "AUC", "false-positive rate", "mean P(yes)"),
                [
                    (k, d["negatives"], pct(d["auc"]), pct(d["false_positive_rate"]), pct(d["mean_probability"]))
                    for k, d in r["by_negative_kind"].items()
                ],
            ),
            "",
        ]
    if r.get("excluded"):
        out += [f"Groups without positive test images (left out of the averages): {', '.join(r['excluded'])}", ""]
    if "concept_level" in r:
        c = r["concept_level"]
        out += [
            "Concept-level recognition (each concept judged on its own):",
            "",
            _table(
                ("Prec.", "Rec.", "F1 (of means)", "mean F1", "Acc.", "AUC"),
                [
                    (
                        pct(c["precision"]),
                        pct(c["recall"]),
                        pct(c["f1_of_means"]),
                        pct(c["mean_f1"]),
                        pct(c["accuracy"]),
                        pct(c["auc"]),
                    )
                ],
            ),
            "",
        ]
    for key, alt in (
        ("recognition_per_group", "precision and recall per group"),
        ("recognition_matrix", "recognition matrix"),
    ):
        if key in plots:
            out += [f"![{alt}]({plots[key]})", ""]
    return out


def _localisation_section(loc: dict[str, Any], plots: dict[str, str]) -> list[str]:
    out = ["## Localisation", ""]
    if not loc.get("cases"):
        return out + [f"No case with a visible mask ({loc.get('hidden', 0)} hidden).", ""]
    out += [f"Every (test image, concept it shows) case, located with the engine's `{loc.get('map')}` map "
            "against the exact masks of the toy export: pointing = the point lies on the concept's mask; "
            "IoU against the mask's bounding box. Baselines: the image centre (a centred box of the mean "
            f"ground-truth size) and a random visual token. {loc['hidden']} case(s) with the concept hidden "
            f"were not scored; {pct(loc['present_share'])} % of the scored cases were judged present.", ""]
    rows = [("Ego (all)", loc)] + [(f"Ego ({size})", v) for size, v in loc["by_size"].items()]
    rows += [(f"baseline: {name}", v) for name, v in loc["baselines"].items()]
    out += [_table(("cases", "n", "pointing accuracy", "mean IoU", "IoU >= 0.5"),
                   [(label, v["cases"], pct(v["pointing"]), f"{v['iou_mean']:.3f}", pct(v["iou_ge_0.5"]))
                    for label, v in rows]), ""]
    if "localisation" in plots:
        out += [f"![heatmaps of a few cases over their images]({plots['localisation']})", ""]
    return out


def _qa_section(q: dict[str, Any], title: str) -> list[str]:
    kind = q.get("kind", "")
    out = [
        f"## {title}",
        "",
        _table(
            ("kind", "judge", "accuracy", "macro accuracy", "correct", "scored", "unscored", "unparseable", "total"),
            [
                (
                    kind,
                    q.get("judge", "–"),
                    pct(q["accuracy"]),
                    pct(q["macro_accuracy"]),
                    q["correct"],
                    q["scored"],
                    q["unscored"],
                    q.get("unparseable", 0),
                    q["total"],
                )
            ],
        ),
        "",
    ]
    if q["accuracy"] is None and q["unscored"]:
        out += ["Answers were recorded without a judge (see answers.json); pass --judge to score them.", ""]
    out += [
        _table(
            ("group", "correct", "scored", "accuracy"),
            [(g, d["correct"], d["scored"], pct(d["accuracy"])) for g, d in q["per_group"].items()],
        ),
        "",
    ]
    return out


def _timing_section(t: dict[str, Any]) -> list[str]:
    if not t:
        return []
    out = ["## Timings", ""]
    intro = t.get("introduce")
    rows = []
    if intro:
        rows.append(
            (
                "concept introduction (per concept)",
                intro["count"],
                secs(intro["mean"]),
                secs(intro["median"]),
                secs(intro["total"]),
            )
        )
    for task, summary in t.get("samples", {}).items():
        rows.append(
            (
                f"{task} (per sample)",
                summary["count"],
                secs(summary["mean"]),
                secs(summary["median"]),
                secs(summary["total"]),
            )
        )
    out += [_table(("what", "count", "mean", "median", "total"), rows), ""]
    return out


# --------------------------------------------------------------------------------------------- plots


def write_plots(results: dict[str, Any], out_dir: str | Path) -> dict[str, str]:
    """Write the run's PNG plots; returns {plot id: file name}. Needs matplotlib (the ``eval`` extra)."""
    # Figure + the Agg canvas directly: no pyplot, so no global backend switch and no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    written: dict[str, str] = {}
    m = results["metrics"]
    if "recognition" in m and m["recognition"]["per_group"]:
        per = m["recognition"]["per_group"]
        groups = list(per)
        n = len(groups)
        fig = Figure(figsize=(8, max(2.5, 0.32 * n + 1.2)))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ys = list(range(n))
        ax.barh([y - 0.2 for y in ys], [per[g]["precision"] or 0.0 for g in groups], height=0.4, label="precision")
        ax.barh([y + 0.2 for y in ys], [per[g]["recall"] or 0.0 for g in groups], height=0.4, label="recall")
        ax.set_yticks(ys, labels=groups, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction")
        ax.set_title("Recognition: precision and recall per group")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "recognition_per_group.png", dpi=110)
        written["recognition_per_group"] = "recognition_per_group.png"
        conf = m["recognition"].get("confusion")
        if conf and conf["groups"]:
            written["recognition_matrix"] = _matrix_plot(
                conf, out_dir / "recognition_matrix.png", Figure, FigureCanvasAgg
            )
    if m.get("localisation", {}).get("examples"):
        written["localisation"] = _heatmap_plot(m["localisation"]["examples"], Path(results["dataset"]["root"]),
                                                out_dir / "localisation_heatmaps.png", Figure, FigureCanvasAgg)
    if "captioning" in m and m["captioning"]["per_group"]:
        per = m["captioning"]["per_group"]
        groups = list(per)
        fig = Figure(figsize=(8, max(2.5, 0.28 * len(groups) + 1.2)))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.barh(range(len(groups)), [per[g]["recall"] for g in groups], height=0.6)
        ax.set_yticks(range(len(groups)), labels=groups, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title("Captioning recall per group")
        fig.tight_layout()
        fig.savefig(out_dir / "captioning_per_group.png", dpi=110)
        written["captioning"] = "captioning_per_group.png"
    return written


def _heatmap_plot(examples: list[dict[str, Any]], root: Path, path: Path, figure_cls: Any, canvas_cls: Any) -> str:
    """Each example's heatmap over its image (placed on the region the grid tiles), with the located box
    and point (red) and the ground-truth box (white, dashed)."""
    from matplotlib.patches import Rectangle
    from PIL import Image

    fig = figure_cls(figsize=(2.4 * len(examples), 2.8))
    canvas_cls(fig)
    for i, ex in enumerate(examples):
        ax = fig.add_subplot(1, len(examples), i + 1)
        with Image.open(root / ex["image"]) as im:
            ax.imshow(im.convert("RGB"))
        x0, y0, x1, y1 = ex["extent"]
        ax.imshow(ex["heatmap"], extent=(x0, x1, y1, y0), cmap="jet", alpha=0.45, interpolation="bilinear")
        for box, style in ((ex["gt_box"], {"edgecolor": "w", "linestyle": "--"}), (ex["box"], {"edgecolor": "r"})):
            ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, lw=1.2, **style))
        ax.plot(*ex["point"], "r+", ms=9)
        ax.set_title(f"{ex['concept']}: {'hit' if ex['hit'] else 'miss'}, IoU {ex['iou']:.2f}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path.name


def _matrix_plot(conf: dict[str, Any], path: Path, figure_cls: Any, canvas_cls: Any) -> str:
    groups = conf["groups"]
    matrix = [[float("nan") if v is None else v for v in row] for row in conf["matrix"]]
    n = len(groups)
    side = max(4.0, 0.35 * n + 2.5)
    fig = figure_cls(figsize=(side + 1.0, side))
    canvas_cls(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(n), labels=groups, rotation=90, fontsize=6)
    ax.set_yticks(range(n), labels=groups, fontsize=6)
    ax.set_xlabel("group asked about (predicted present)")
    ax.set_ylabel("group in the image")
    ax.set_title("Share of images judged to contain each group", fontsize=10)
    if n <= 12:  # small matrices: print the values too
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                if v == v:  # not NaN
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path.name


# ------------------------------------------------------------------------------------- paper tables


def _row_key(r: dict[str, Any]) -> tuple[str, str, int]:
    s = r["settings"]
    return s["method"]["name"], model_label(s["model"]), int(s["views"])


def _index(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, dict[str, Any]]]:
    """Index runs as {(method, model, views): {dataset kind: results}}; a later run replaces an earlier one."""
    table: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for r in runs:
        table.setdefault(_row_key(r), {})[r["settings"]["dataset_kind"]] = r
    return table


def _sort_key(key: tuple[str, str, int]) -> tuple[int, int, str]:
    order = list(METHODS)
    method, model, views = key
    return views, order.index(method) if method in order else len(order), model


def _intro_mean(cells: dict[str, dict[str, Any]]) -> float | None:
    values = [
        c["timings"]["introduce"]["mean"]
        for c in cells.values()
        if c.get("timings", {}).get("introduce", {}).get("mean") is not None
    ]
    return sum(values) / len(values) if values else None


def paper_tables(runs: Sequence[dict[str, Any]], include_published: bool = True) -> str:
    """Tables 1-3 of the paper (methods x datasets) filled from the given runs' results."""
    index = _index(runs)
    keys = sorted(index, key=_sort_key)
    parts = ["### Table 1: Recognition (Prec. / Rec. / F1 = F1 of averaged P and R)", ""]
    header = ["Method", "Model", "Views", "Intro time"]
    for _, title in RECOGNITION_DATASETS:
        header += [f"{title} Prec.", f"{title} Rec.", f"{title} F1"]
    rows: list[list[str]] = []
    for key in keys:
        cells = index[key]
        row = [DISPLAY_NAMES.get(key[0], key[0]), key[1], str(key[2]), secs(_intro_mean(cells))]
        for kind, _ in RECOGNITION_DATASETS:
            rec = cells.get(kind, {}).get("metrics", {}).get("recognition")
            row += [pct(rec["precision"]), pct(rec["recall"]), pct(rec["f1_of_means"])] if rec else ["–"] * 3
        rows.append(row)
    if include_published:
        for (model, views), pub in PUBLISHED_TABLE1.items():
            row = ["Ego (paper)", model, str(views), f"{pub['intro_s']:.2f}s"]
            for kind, _ in RECOGNITION_DATASETS:
                row += [f"{v:.1f}" for v in pub[kind]] if kind in pub else ["–"] * 3
            rows.append(row)
    parts += [_table(header, rows), ""]
    parts += ["Mean of per-group F1 (the convention the paper's multi-concept numbers follow):", ""]
    mf_rows = []
    for key in keys:
        row = [DISPLAY_NAMES.get(key[0], key[0]), key[1], str(key[2])]
        for kind, _ in RECOGNITION_DATASETS:
            rec = index[key].get(kind, {}).get("metrics", {}).get("recognition")
            row.append(pct(rec["mean_f1"]) if rec else "–")
        mf_rows.append(row)
    parts += [_table(["Method", "Model", "Views"] + [t for _, t in RECOGNITION_DATASETS], mf_rows), ""]

    parts += ["### Table 2: VQA accuracy and captioning recall", ""]
    header2 = ["Method", "Model", "Views", "Sample runtime"] + [h for _, _, h in TABLE2_COLUMNS]
    rows2 = []
    for key in keys:
        cells = index[key]
        runtimes = [
            c["timings"]["samples"][t]["mean"]
            for c in cells.values()
            for t in ("vqa", "captioning", "video_qa")
            if c.get("timings", {}).get("samples", {}).get(t, {}).get("mean") is not None
        ]
        row = [
            DISPLAY_NAMES.get(key[0], key[0]),
            key[1],
            str(key[2]),
            secs(sum(runtimes) / len(runtimes)) if runtimes else "–",
        ]
        for kind, task, _ in TABLE2_COLUMNS:
            metric = cells.get(kind, {}).get("metrics", {}).get(task)
            value = None if metric is None else metric.get("recall" if task == "captioning" else "accuracy")
            row.append(pct(value))
        rows2.append(row)
    if include_published:
        rows2.append(
            ["Ego (paper)", "InternVL3-14B", "1", f"{PUBLISHED_TABLE2['runtime_s']:.2f}s"]
            + [f"{PUBLISHED_TABLE2[(k, t)]:.1f}" for k, t, _ in TABLE2_COLUMNS]
        )
    parts += [_table(header2, rows2), ""]

    parts += ["### Table 3: Ablation (recognition F1 of averaged P and R)", ""]
    kinds = [k for k, _ in RECOGNITION_DATASETS if any(k in index[key] for key in keys)]
    header3 = ["Method", "Model", "Views", "% of visual tokens", "Word injection"] + [
        dict(RECOGNITION_DATASETS)[k] for k in kinds
    ]
    rows3 = []
    for key in keys:
        spec = METHODS.get(key[0])
        tokens = (
            "-"
            if spec is None or spec.context in ("keywords", "none")
            else (f"{spec.max_fraction:.0%}" + (" (max, dynamic)" if spec.dynamic_k else ""))
        )
        words = "✓" if spec is not None and "keywords" in spec.context else "✗"
        row = [DISPLAY_NAMES.get(key[0], key[0]), key[1], str(key[2]), tokens, words]
        for kind in kinds:
            rec = index[key].get(kind, {}).get("metrics", {}).get("recognition")
            row.append(pct(rec["f1_of_means"]) if rec else "–")
        rows3.append(row)
    parts += [_table(header3, rows3), ""]
    if include_published:
        parts += [
            "Published ablation (Yo'LLaVA, InternVL3-14B):",
            "",
            _table(
                ["Method", "% of visual tokens", "Word injection", "F1"],
                [(n, t, "✓" if w else "✗", f"{f:.1f}") for n, t, w, f in PUBLISHED_TABLE3],
            ),
            "",
        ]
    return "\n".join(parts).rstrip() + "\n"


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """Read ``results.json`` of a run folder (or the file itself)."""
    path = Path(run_dir)
    path = path / RESULTS_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {RESULTS_FILE} (is this an evaluation output folder?)")
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "settings" not in data or "metrics" not in data:
        raise ValueError(f"{path}: not an evaluation results file (no 'settings'/'metrics')")
    return data


def compare(run_dirs: Sequence[str | Path], include_published: bool = True) -> str:
    """Markdown putting several runs side by side, shaped like the paper's Tables 1-3."""
    if not run_dirs:
        raise ValueError("compare needs at least one run folder")
    runs = [load_results(d) for d in run_dirs]
    lines = ["# Comparison of evaluation runs", "", "Runs:", ""]
    for d, r in zip(run_dirs, runs):
        s = r["settings"]
        lines.append(
            f"- `{d}`: {s['method']['name']} on {s['dataset_kind']}, {model_label(s['model'])}, "
            f"{s['views']} view(s), seed {s['seed']}, limit {s.get('limit') or 'all'}"
        )
    lines += ["", paper_tables(runs, include_published=include_published)]
    return "\n".join(lines).rstrip() + "\n"
