"""Self-calibration against mask calibration on the toy world (docs/calibration.md).

On toy views with exact masks: the layers each way of ranking picks (mask overlap, paper 3.4; the
self-calibration's spatial coherence, no masks; and two rejected mask-free alternatives: keyword-attention
concentration, and overlap with pseudo-masks made from the model's own attention), each layer's scores,
and the mask overlap of each chosen set. Then the recognition ROC AUC of Ego (1 and 5 views) on toy
exports with each chosen set and with all layers.

Usage: python bench/toy_layer_choice.py [--views 64] [--calibration-seeds 0 1] [--export-seeds 0 1]
       [--out bench/results/toy_layer_choice.json]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ego_ros.core.calibration import calibrate, folder_pairs, read_mask
from ego_ros.core.engine import EgoEngine
from ego_ros.core.images import to_rgb
from ego_ros.core.introduce import ask_area, describe_with_attention
from ego_ros.core.self_calibration import folder_images, self_calibrate
from ego_ros.eval.runner import run_eval
from ego_ros.toy.export import export, export_mask_folder
from ego_ros.toy.model_world import model_world


def _maps(engine: EgoEngine, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per view: every layer's keyword importance (views, layers, N), the tokens on the mask (views, N)
    and the model's own answer to the area question (percent; NaN when unusable)."""
    backend, runner = engine.backend, engine.runner
    imps, on, areas = [], [], []
    with torch.inference_mode():
        for img, mask in folder_pairs(folder):
            vt = backend.encode_images([to_rgb(str(img))])[0]
            ka, _ = describe_with_attention(backend, runner, vt, None, 16)
            imps.append(np.stack([ka.importance([layer]).float().cpu().numpy() for layer in range(backend.num_layers)]))
            on.append(vt.mask_fraction(read_mask(mask)) >= 0.5)
            alpha, _ = ask_area(backend, runner, vt, 8)
            areas.append(np.nan if alpha is None else alpha)
    return np.stack(imps), np.stack(on), np.asarray(areas)


def _pseudo_mask_overlap(imps: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Per layer, the mask overlap against pseudo-masks: each view's top tokens by the consensus of all
    layers (mean of each layer's rank-normalised importance), as many as the model's own area answer
    covers (K_c's rule; 20 % when unusable), the layer's top tokens of the same count scored on them."""
    n_views, n_layers, n = imps.shape
    ranks = imps.argsort(-1).argsort(-1) / (n - 1)
    consensus = ranks.mean(1)
    scores = np.zeros(n_layers)
    for v in range(n_views):
        alpha = 20.0 if np.isnan(areas[v]) else areas[v]
        k = int(min(n, max(1, math.ceil(alpha * n / 100))))
        pseudo = np.zeros(n, bool)
        pseudo[np.argsort(-consensus[v], kind="stable")[:k]] = True
        for layer in range(n_layers):
            scores[layer] += pseudo[np.argsort(-imps[v, layer], kind="stable")[:k]].mean()
    return scores / n_views


def _set_overlap(imps: np.ndarray, on: np.ndarray, layers: list[int]) -> float:
    """Mean share of the top-K tokens (K = the mask's token count) of the importance averaged over
    `layers` (as the engine averages them) that lie on the mask."""
    shares = []
    for imp, obj in zip(imps, on):
        k = max(1, int(obj.sum()))
        shares.append(obj[np.argsort(-imp[layers].mean(0), kind="stable")[:k]].mean())
    return float(np.mean(shares))


def _concentration(imps: np.ndarray) -> np.ndarray:
    """Per layer, the mean share of the importance held by the top 20 % of the tokens."""
    p = imps / imps.sum(-1, keepdims=True)
    k = math.ceil(0.2 * imps.shape[-1])
    return np.sort(p, -1)[..., ::-1][..., :k].sum(-1).mean(0)


def _best(scores: np.ndarray, n: int) -> list[int]:
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:n])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="toy")
    p.add_argument("--views", type=int, default=64, help="calibration views per seed")
    p.add_argument("--num-layers", type=int, default=2, help="layers kept (L); the toy ships 2")
    p.add_argument("--calibration-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--export-seeds", type=int, nargs="*", default=[0, 1], help="none: calibrations only")
    p.add_argument("--concepts", type=int, default=12)
    p.add_argument("--test-per-concept", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/toy_layer_choice.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    world = model_world(args.model)
    engine = EgoEngine.load(args.model)
    work = Path(tempfile.mkdtemp(prefix="toy_layer_choice_"))

    calibrations = []
    for seed in args.calibration_seeds:
        folder = work / f"masks_{seed}"
        export_mask_folder(folder, args.views, seed=seed, world=world)
        t0 = time.perf_counter()
        by_masks = calibrate(engine.backend, [(i, read_mask(m)) for i, m in folder_pairs(folder)],
                             num_layers=args.num_layers)
        t_masks = time.perf_counter() - t0
        t0 = time.perf_counter()
        by_self = self_calibrate(engine.backend, folder_images(folder), num_layers=args.num_layers)
        t_self = time.perf_counter() - t0
        imps, on, areas = _maps(engine, folder)
        conc = _concentration(imps)
        pseudo = _pseudo_mask_overlap(imps, areas)
        chosen = {"masks": by_masks.layers, "self": by_self.layers, "concentration": _best(conc, args.num_layers),
                  "pseudo_masks": _best(pseudo, args.num_layers), "all": list(range(engine.backend.num_layers))}
        calibrations.append({
            "seed": seed, "views": args.views,
            "layer_scores": {"mask_overlap": by_masks.layer_scores, "coherence": by_self.layer_scores,
                             "concentration": [float(x) for x in conc],
                             "pseudo_mask_overlap": [float(x) for x in pseudo]},
            "chosen": chosen,
            "set_overlap": {name: _set_overlap(imps, on, layers) for name, layers in chosen.items()},
            "seconds": {"masks": round(t_masks, 1), "self": round(t_self, 1)},
        })
        print(json.dumps(calibrations[-1]), flush=True)

    # recognition with every distinct layer set any calibration seed chose, and all layers
    sets: dict[str, list[int]] = {}
    for cal in calibrations:
        for layers in cal["chosen"].values():
            sets.setdefault(",".join(map(str, layers)), layers)
    recognition = []
    for seed in args.export_seeds:
        data = work / f"export_{seed}"
        export(data, "yollava", args.concepts, seed=seed, views=5, test_per_concept=args.test_per_concept,
               world=world)
        for key, layers in sets.items():
            engine.config.layers = layers
            for views in (1, 5):
                t0 = time.perf_counter()
                res = run_eval(f"yollava:{data}", args.model, "ego", views, work / f"run_{seed}_{key}_{views}",
                               tasks=["recognition"], progress=False, engine=engine, recognition_context="each",
                               seed=seed)
                rec = res["metrics"]["recognition"]
                recognition.append({"export_seed": seed, "layers": layers, "views": views, "auc": rec["auc"],
                                    "f1": rec["f1_of_means"], "decisions": rec["num_decisions"],
                                    "seconds": round(time.perf_counter() - t0, 1)})
                print(json.dumps(recognition[-1]), flush=True)
    result = {"model": args.model, "fingerprint": engine.backend.fingerprint(), "world": world,
              "num_layers": args.num_layers, "concepts": args.concepts, "test_per_concept": args.test_per_concept,
              "threads": args.threads, "calibrations": calibrations, "recognition": recognition}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
