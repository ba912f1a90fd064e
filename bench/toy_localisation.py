"""Localisation quality on toy-world exports with exact masks (issue 15), and its cost on a recognition frame.

For every test image of a toy export and every concept present in it (its mask re-rendered from the
manifest's scene spec: the exact visible pixels), the raw signals of the recognition pass are recorded
once (the question's attention over the image's visual tokens on every LLM layer, the memory similarity),
and each rule (a map built from them plus a `localise.BoxRule`) and two baselines (the image centre; a
random visual token) give a point and a box from them. Pointing accuracy = share of cases whose point
lies on the concept's mask; box IoU against the mask's bounding box (mean and share >= 0.5); broken
down by scene kind (single: one personal concept in the image, the Yo'LLaVA layout; multi: two, the
This-is-my layout) and by object size (share of the image the visible mask covers: small < 3.5 %,
medium 3.5-4.75 %, large >= 4.75 %, the terciles of the toy's test objects). Each concept is introduced
from the export's 5 reference views; only the concept asked about is in context, as in the recognition
protocol.

Choosing the rule: `--tune` ranks a grid of candidate rules on the cases of `--tune-seed` only (seed 0),
then the report gives the engine's rule (localise.DEFAULT_RULE, the candidate picked from that ranking)
on every seed apart, so the held-out seed's numbers are not tuned on.

Cost: a recognition frame with all concepts (12 in context) with and without `locate="all"`, median of
repeated frames, with the load average.

Usage: python bench/toy_localisation.py [--model toy] [--seeds 0 1] [--out bench/results/toy_localisation.json]
       [--cases FILE.npz (reuse recorded signals)] [--tune]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean, median

import numpy as np
import torch
from PIL import Image

from ego_ros.core.backends.base import VisualTokens
from ego_ros.core.engine import EgoEngine
from ego_ros.core.localise import (
    DEFAULT_MAP,
    DEFAULT_RULE,
    MAPS,
    PRODUCT_WEIGHT,
    BoxRule,
    box_from_map,
    combine,
    normalise,
)
from ego_ros.eval.localisation import SIZES, iou, mask_box, on_mask, size_of
from ego_ros.toy.export import export
from ego_ros.toy.render import render, scene_spec_from_dict

BASELINES = ("centre", "random-token")
#: the rule of the first session (boxes of whole tokens at half the peak, the peak token's centre; with the
#: product's geometric mean, weight 0.5)
TOKEN_RULE = BoxRule(upsample=1, relative=0.5, reference="min", point="peak")


@dataclass(frozen=True)
class Candidate:
    """One localisation rule: a map from the recorded signals and a box rule. `layers` None: the engine's
    calibrated layers; `weight`: the attention's exponent in the product (the similarity's is 1 - weight)."""

    map: str
    rule: BoxRule
    layers: tuple[int, ...] | None = None
    weight: float = PRODUCT_WEIGHT

    def label(self) -> str:
        r = self.rule
        parts = [self.map, f"up{r.upsample}", f"t{r.relative:g}{'' if r.reference == 'min' else '-med'}", r.point]
        if self.layers is not None:
            parts.append("L" + "".join(map(str, self.layers)))
        if self.map == "product":
            parts.append(f"w{self.weight:g}")
        return " ".join(parts)


def introduce_all(engine: EgoEngine, data: Path, manifest: dict) -> None:
    for name in manifest["concepts"]:
        views = sorted(k for k, v in manifest["images"].items()
                       if v["role"] == "reference" and v.get("concept") == name)
        engine.introduce(name, [str(data / v) for v in views], replace_existing=True)


def record(engine: EgoEngine, data: Path, kind: str, seed: int) -> list[dict]:
    """The raw signals of every (test image, present concept) case of one export, with its exact mask."""
    manifest = json.loads((data / "toy_manifest.json").read_text())
    introduce_all(engine, data, manifest)
    layers = list(range(engine.backend.num_layers))
    cases = []
    for path, rec in manifest["images"].items():
        if rec["role"] != "test" or not rec["concepts"]:
            continue
        scene = render(scene_spec_from_dict(rec["spec"]), size=manifest["arguments"]["size"])
        for k, obj in enumerate(rec["objects"]):
            name = obj["concept"]
            if name is None or not scene.masks[k].any():
                continue
            vt, maps, p_yes = engine.location_maps(Image.open(data / path), name, layers=layers)
            cases.append({"image": path, "concept": name, "kind": kind, "seed": seed, "p_yes": round(p_yes, 4),
                          "area": float(scene.masks[k].mean()), "size": size_of(float(scene.masks[k].mean())),
                          "rows": vt.rows, "cols": vt.cols, "box": list(vt.box), "image_size": list(vt.image_size),
                          "mask": scene.masks[k], "attention": maps["raw_attention"],
                          "similarity": maps["raw_similarity"]})
    return cases


ARRAYS = ("mask", "attention", "similarity")


def save_cases(path: Path, cases: list[dict], meta: dict) -> None:
    arrays = {f"{key}_{i}": c[key] for i, c in enumerate(cases) for key in ARRAYS}
    info = [{k: v for k, v in c.items() if k not in ARRAYS} for c in cases]
    np.savez_compressed(path, meta=json.dumps({**meta, "cases": info}), **arrays)


def load_cases(path: Path) -> tuple[list[dict], dict]:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        cases = [{**info, **{key: z[f"{key}_{i}"] for key in ARRAYS}} for i, info in enumerate(meta.pop("cases"))]
    return cases, meta


def geometry(case: dict) -> VisualTokens:
    return VisualTokens(torch.empty(0), case["rows"], case["cols"], tuple(case["box"]), tuple(case["image_size"]))


def candidate_map(case: dict, cand: Candidate, calibrated: list[int]) -> np.ndarray:
    layers = calibrated if cand.layers is None else list(cand.layers)
    attention = case["attention"][layers].mean(axis=0).ravel()
    if cand.map == "product":  # as localise.combine, with the candidate's weight
        similarity = normalise(case["similarity"].ravel())
        return normalise(normalise(attention) ** cand.weight * similarity ** (1 - cand.weight))
    return combine(attention, case["similarity"].ravel(), cand.map)


def score(cases: list[dict], cand: Candidate, calibrated: list[int]) -> list[dict]:
    out = []
    for c in cases:
        box, point, _ = box_from_map(candidate_map(c, cand, calibrated), geometry(c), cand.rule)
        out.append({"hit": on_mask(point, c["mask"]), "iou": iou(box, mask_box(c["mask"]))})
    return out


def baselines(cases: list[dict], rng: np.random.Generator) -> dict[str, list[dict]]:
    """The image centre (its box: centred, of the mean ground-truth box size) and a random token's centre
    and region."""
    gts = [mask_box(c["mask"]) for c in cases]
    mean_w, mean_h = mean(g[2] - g[0] for g in gts), mean(g[3] - g[1] for g in gts)
    centre, random_token = [], []
    for c, gt in zip(cases, gts):
        w, h = c["image_size"]
        box = (w / 2 - mean_w / 2, h / 2 - mean_h / 2, w / 2 + mean_w / 2, h / 2 + mean_h / 2)
        centre.append({"hit": on_mask((w / 2, h / 2), c["mask"]), "iou": iou(box, gt)})
        t = geometry(c).token_boxes()[int(rng.integers(c["rows"] * c["cols"]))]
        random_token.append({"hit": on_mask(((t[0] + t[2]) / 2, (t[1] + t[3]) / 2), c["mask"]),
                             "iou": iou(tuple(t), gt)})
    return {"centre": centre, "random-token": random_token}


def metrics(results: list[dict]) -> dict:
    ious = [r["iou"] for r in results]
    return {"pointing": mean(float(r["hit"]) for r in results), "iou_mean": mean(ious),
            "iou_ge_0.5": mean(float(i >= 0.5) for i in ious)}


def groups(cases: list[dict]) -> dict[str, list[int]]:
    out = {"all": list(range(len(cases)))}
    for kind in ("single", "multi"):
        out[kind] = [i for i, c in enumerate(cases) if c["kind"] == kind]
    for name, _, _ in SIZES:
        out[name] = [i for i, c in enumerate(cases) if c["size"] == name]
    return {g: idx for g, idx in out.items() if idx}


def summarise(cases: list[dict], methods: dict[str, list[dict]]) -> dict:
    return {g: {"cases": len(idx), **{m: metrics([res[i] for i in idx]) for m, res in methods.items()}}
            for g, idx in groups(cases).items()}


def candidates() -> list[Candidate]:
    """The grid ranked by --tune: every map, box resolution, threshold, point rule, layer set and product
    weight tried this session."""
    rules = [BoxRule(upsample=f, relative=t, reference=ref, point=pt)
             for f, t, ref, pt in itertools.product((1, 8), (0.3, 0.4, 0.5, 0.6, 0.7), ("min", "median"),
                                                    ("peak", "centroid"))]
    out = [Candidate(m, r, None, 0.5) for m in MAPS for r in rules]
    for layers in ((0,), (1,), (2,), (3,), (0, 1, 2, 3), (2, 3)):
        out += [Candidate(m, r, layers, 0.5) for m in ("attention", "product") for r in rules if r.upsample == 8]
    out += [Candidate("product", r, None, w) for w in (0.25, 0.75) for r in rules if r.upsample == 8]
    return out


def tune(cases: list[dict], calibrated: list[int], seed: int, top: int) -> list[dict]:
    """Every candidate on the tuning seed's cases, best first (by the sum of pointing accuracy and the
    share with IoU >= 0.5, the two targets)."""
    tuning = [c for c in cases if c["seed"] == seed]
    ranked = []
    for cand in candidates():
        m = metrics(score(tuning, cand, calibrated))
        ranked.append({"candidate": cand.label(), **m, "objective": m["pointing"] + m["iou_ge_0.5"]})
    ranked.sort(key=lambda r: -r["objective"])
    return ranked[:top]


def cost(engine: EgoEngine, image: Path, frames: int) -> dict:
    times = {"recognise": [], "recognise+locate": []}
    for _ in range(2):  # warm the prefix cache and the composition
        engine.recognize(str(image))
        engine.recognize(str(image), locate="all")
    load_before = os.getloadavg()
    for _ in range(frames):
        for key, loc in (("recognise", None), ("recognise+locate", "all")):
            t0 = time.perf_counter()
            engine.recognize(str(image), locate=loc)
            times[key].append(time.perf_counter() - t0)
    med = {k: median(v) * 1000 for k, v in times.items()}
    return {"concepts": len(engine.store.names()), "frames": frames, "median_ms": med,
            "overhead": med["recognise+locate"] / med["recognise"] - 1,
            "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}


def table(summary: dict, methods: list[str]) -> str:
    lines = ["| cases | n | " + " | ".join(f"{m} point / IoU / IoU>=0.5" for m in methods) + " |",
             "| --- | --- | " + " | ".join("---" for _ in methods) + " |"]
    for g, s in summary.items():
        cells = [f"{s[m]['pointing']:.2f} / {s[m]['iou_mean']:.2f} / {s[m]['iou_ge_0.5']:.2f}" for m in methods]
        lines.append(f"| {g} | {s['cases']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(cases: list[dict], meta: dict, rng: np.random.Generator) -> tuple[dict, str]:
    """Per seed and pooled: the three maps under the engine's rule, the chosen map under the token rule
    of the first session, and the baselines."""
    calibrated = meta["layers"]
    chosen = {m: Candidate(m, DEFAULT_RULE) for m in MAPS}
    chosen[f"{DEFAULT_MAP} (first rule)"] = Candidate(DEFAULT_MAP, TOKEN_RULE, None, 0.5)
    result, md = {}, []
    for seeds in [[s] for s in meta["seeds"]] + ([meta["seeds"]] if len(meta["seeds"]) > 1 else []):
        sub = [c for c in cases if c["seed"] in seeds]
        methods = {m: score(sub, cand, calibrated) for m, cand in chosen.items()}
        methods.update(baselines(sub, rng))
        key = "seed " + "+".join(map(str, seeds))
        result[key] = summarise(sub, methods)
        md.append(f"### {key}\n\n" + table(result[key], list(methods)))
    return result, "\n\n".join(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="toy")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--concepts", type=int, default=12)
    p.add_argument("--data", default=None, help="folder holding (or to receive) the exports")
    p.add_argument("--cases", default=None, help="recorded signals (.npz) to reuse instead of running the model")
    p.add_argument("--frames", type=int, default=20, help="frames timed for the cost measurement")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/toy_localisation.json")
    p.add_argument("--tune", action="store_true", help="also rank the candidate rules on --tune-seed")
    p.add_argument("--tune-seed", type=int, default=0)
    p.add_argument("--cost-only", action="store_true",
                   help="only the cost measurement (12 seed-0 concepts), written to --out with _cost.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="toy_localisation_"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    engine = None if args.cases else EgoEngine.load(args.model, request_timeout_s=0)  # no deadline on a bench
    if args.cost_only:
        data = root / f"yollava_s{args.seeds[0]}"
        if not (data / "toy_manifest.json").is_file():
            export(data, "yollava", args.concepts, seed=args.seeds[0], views=5)
        manifest = json.loads((data / "toy_manifest.json").read_text())
        introduce_all(engine, data, manifest)
        first = next(k for k, v in manifest["images"].items() if v["role"] == "test")
        measured = cost(engine, data / first, args.frames)
        with out.with_name(out.stem + "_cost.jsonl").open("a") as f:  # one line per run: the spread is the point
            f.write(json.dumps(measured) + "\n")
        print(json.dumps(measured))
        return
    if args.cases:
        cases, meta = load_cases(Path(args.cases))
    else:
        cases = []
        for seed in args.seeds:
            for layout, kind in (("yollava", "single"), ("thisismy-multi", "multi")):
                data = root / f"{layout}_s{seed}"
                if not (data / "toy_manifest.json").is_file():
                    export(data, layout, args.concepts, seed=seed, views=5)
                engine.clear()
                cases += record(engine, data, kind, seed)
        meta = {"model": args.model, "fingerprint": engine.backend.fingerprint(), "seeds": args.seeds,
                "concepts": args.concepts, "sizes": SIZES,
                "layers": list(range(engine.backend.num_layers)) if engine.layers is None else list(engine.layers)}
        save_cases(out.with_suffix(".cases.npz"), cases, meta)  # kept: the rules can be re-scored offline
    result = {**meta, "rule": asdict(DEFAULT_RULE), "map": DEFAULT_MAP, "product_weight": PRODUCT_WEIGHT}
    result["summary"], md = report(cases, meta, np.random.default_rng(0))
    if args.tune:
        result["tuning"] = {"seed": args.tune_seed,
                            "ranked": tune(cases, meta["layers"], args.tune_seed, top=40)}
        md += f"\n\n### Candidates ranked on seed {args.tune_seed}\n\n" + "\n".join(
            f"- {r['candidate']}: pointing {r['pointing']:.3f}, IoU {r['iou_mean']:.3f}, "
            f"IoU>=0.5 {r['iou_ge_0.5']:.3f}" for r in result["tuning"]["ranked"])
    out.write_text(json.dumps(result, indent=1, default=float))
    out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
