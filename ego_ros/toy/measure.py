"""Quality of an exported toy model measured through the engine (`ego-ros toy train --measure`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ego_ros.core.compose import view_sequence
from ego_ros.core.prompts import split_keywords

from .tasks import IMAGE_SIZE
from .train_eval import auc


def measure_model_dir(model: str, concepts: int = 20, describe: int = 48, seed: int = 999) -> dict[str, Any]:
    """Quality of an exported model through the engine, on held-out instances (fresh seeds).

    Description: the keyword answer to a reference view holds the right colour / shape / pattern /
    mark. Recognition: each concept is introduced from one reference view with each selection
    ("ego" = attention top-K_c, "uniform", "random", "all", and "keywords" = Ego memory but keyword
    text in context), then asked about 2 scenes holding it, 2 holding a near-duplicate instead (hard)
    and 1 holding neither (easy). Returns accuracies (threshold 0.5) and ROC AUCs. A model trained on
    world v2 (`model_world.model_world`) is measured on v2 instances: its hard negatives are then
    mostly look-alikes.
    """
    from PIL import Image

    from ego_ros.core.engine import EgoEngine
    from ego_ros.core.introduce import IntroduceOptions

    from .attributes import held_out_instances, near_duplicates, sample_near_duplicate, sample_signature
    from .model_world import model_world
    from .scenes import query_scene, reference_scene

    engine = EgoEngine.load(model)
    backend, runner = engine.backend, engine.runner
    world = model_world(model)
    held = held_out_instances()

    def held_out_instance(rng: np.random.Generator):
        inst = held[int(rng.integers(len(held)))]
        return inst if world == "v1" else inst.with_signature(sample_signature(rng, held_out=True))

    out: dict[str, Any] = {"model": model, "world": world}
    hits: dict[str, list[bool]] = {"colour": [], "shape": [], "pattern": [], "mark": []}
    for i in range(describe):
        rng = np.random.default_rng([seed, 0, i])
        inst = held_out_instance(rng)
        img = Image.fromarray(reference_scene(inst, rng, IMAGE_SIZE, distractor_held_out=None).image)
        (vt,) = backend.encode_images([img])
        with torch.inference_mode():
            ids = runner.generate(view_sequence(backend, vt, backend.prompts.keywords), 12)
        words = [w.lower() for w in split_keywords(backend.decode(ids), backend.prompts.keyword_separator)]
        truth = inst.keywords
        hits["colour"].append(truth[0] in words)
        hits["shape"].append(truth[1] in words)
        hits["pattern"].append(truth[2] in words)
        hits["mark"].append(truth[3] in words and truth[4] in words)
    out.update({f"describe_{k}": float(np.mean(v)) for k, v in hits.items()})
    settings = {
        "ego": ("attention", "memory"),
        "uniform": ("uniform", "memory"),
        "random": ("random", "memory"),
        "all": ("all", "memory"),
        "keywords": ("attention", "keywords"),
    }
    probs: dict[str, dict[str, list[float]]] = {k: {"pos": [], "hard": [], "easy": []} for k in settings}
    k_c = []
    for c in range(concepts):
        rng = np.random.default_rng([seed, 1, c])
        inst = held_out_instance(rng)
        dup = sample_near_duplicate(inst, rng)
        ref = reference_scene(inst, rng, IMAGE_SIZE, distractor_held_out=None)
        queries = []
        for _ in range(2):
            queries.append(("pos", query_scene(rng, IMAGE_SIZE, include=[inst], distractor_held_out=None)))
            queries.append(
                ("hard", query_scene(rng, IMAGE_SIZE, include=[dup], exclude=[inst], distractor_held_out=None))
            )
        queries.append(
            ("easy", query_scene(rng, IMAGE_SIZE, exclude=[inst, *near_duplicates(inst)], distractor_held_out=None))
        )
        for key, (selection, mode) in settings.items():
            engine.set_context(mode)
            mem = engine.introduce(
                "concept",
                [Image.fromarray(ref.image)],
                options=IntroduceOptions(selection=selection),
                replace_existing=True,
            )
            if key == "ego":
                k_c.append(mem.views[0].k_c)
            for kind, q in queries:
                probs[key][kind].append(engine.recognize(Image.fromarray(q.image), ["concept"])[0].probability)
            engine.remove("concept")
    out["mean_k_c"] = float(np.mean(k_c)) if k_c else float("nan")
    for key, r in probs.items():
        pos, hard, easy = (np.asarray(r[k]) for k in ("pos", "hard", "easy"))
        neg = np.concatenate([hard, easy])
        out[key] = {
            "acc": float((np.sum(pos >= 0.5) + np.sum(neg < 0.5)) / max(1, len(pos) + len(neg))),
            "auc": auc(list(pos), list(neg)),
            "auc_pos_vs_hard": auc(list(pos), list(hard)),
            "hard_rejected": float(np.mean(hard < 0.5)) if len(hard) else float("nan"),
            "mean_p_pos": float(np.mean(pos)) if len(pos) else float("nan"),
            "mean_p_hard": float(np.mean(hard)) if len(hard) else float("nan"),
        }
    return out
