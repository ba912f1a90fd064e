"""Held-out look-alike probe of a training checkpoint's vision features (world v2).

The trainer's own held-out metric (`match_auc_lookalike`) asks the whole model, language model included,
whether a concept is in a scene; early in training it stays at chance long after the vision tower has
started to tell signatures apart. This probe asks the vision side alone: for `n` held-out v2 instances it
renders a reference view, a query scene holding the instance (its look-alike kept out) and a query
scene holding a look-alike instead (the instance kept out), mask-pools each object's projector
outputs (the tokens the engine would keep), and scores ROC AUC of cosine(reference, same instance)
against cosine(reference, look-alike), both on the raw pooled features and after the trainer's
contrastive projection head. Chance is 0.5.

    python -m ego_ros.toy.probe CKPT [CKPT ...] [--n 64]      # one JSON line per checkpoint
    python -m ego_ros.toy.probe CKPT --untrained              # the same model at its initial weights

Random initial weights already score above 0.5 on the raw features (pixels differ), so compare a
checkpoint with ``--untrained`` of the same config, not with 0.5 alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .attributes import held_out_instances, lookalikes, sample_signature
from .image_data import IMAGE_SIZE, ImageData, image_data
from .scenes import query_scene, reference_scene
from .train import Trainer
from .train_config import TrainConfig
from .train_eval import auc


def _weights(image: ImageData, k: int) -> np.ndarray:
    w = image.obj_frac[k].reshape(-1).astype(np.float32)
    return w / max(float(w.sum()), 1e-6)


def probe_images(n: int, seed: int = 777) -> list[tuple[ImageData, int, ImageData, int, ImageData, int]]:
    """(reference, k, same-instance query, k, look-alike query, k) per held-out v2 instance."""
    held = held_out_instances()
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        inst = held[int(rng.integers(len(held)))].with_signature(sample_signature(rng, held_out=True))
        twins = lookalikes(inst)
        twin = twins[int(rng.integers(len(twins)))]
        ref = reference_scene(inst, rng, IMAGE_SIZE, distractor_held_out=None)
        same = query_scene(rng, IMAGE_SIZE, include=[inst], exclude=[twin], distractor_held_out=None)
        other = query_scene(rng, IMAGE_SIZE, include=[twin], exclude=[inst], distractor_held_out=None)
        out.append(
            (
                image_data(ref), ref.spec.main,
                image_data(same), same.spec.instances.index(inst),
                image_data(other), other.spec.instances.index(twin),
            )
        )  # fmt: skip
    return out


@torch.inference_mode()
def lookalike_probe(trainer: Trainer, n: int = 64, seed: int = 777) -> dict[str, Any]:
    """ROC AUC of same-instance against look-alike similarity, raw pooled features and contrastive head."""
    triples = probe_images(n, seed)
    images = [im for t in triples for im in (t[0], t[2], t[4])]
    feats = trainer.encode(images).float()  # (3n, T, D)
    weights = torch.from_numpy(
        np.stack([_weights(im, k) for t in triples for im, k in ((t[0], t[1]), (t[2], t[3]), (t[4], t[5]))])
    ).to(feats.device)
    pooled = torch.einsum("nt,ntd->nd", weights, feats)
    out: dict[str, Any] = {"step": trainer.step, "samples": trainer.samples_seen, "n": n}
    for name, z in (("raw", pooled), ("head", trainer.heads.proj(pooled))):
        z = F.normalize(z, dim=-1).reshape(n, 3, -1)
        pos = (z[:, 0] * z[:, 1]).sum(-1).tolist()
        neg = (z[:, 0] * z[:, 2]).sum(-1).tolist()
        out[f"auc_{name}"] = auc(pos, neg)
        out[f"paired_{name}"] = float(np.mean([p > q for p, q in zip(pos, neg)]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ego_ros.toy.probe", description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--untrained", action="store_true", help="probe the checkpoint's config at its initial weights")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for path in args.checkpoints:
        if args.untrained:
            state = torch.load(path, map_location="cpu", weights_only=False)
            cfg = TrainConfig.from_dict(state["config"])
            cfg.threads, cfg.device = args.threads, "cpu"
            trainer = Trainer(cfg)
        else:
            trainer = Trainer.from_checkpoint(path, threads=args.threads, device="cpu")
        record = {"checkpoint": path, "untrained": args.untrained, **lookalike_probe(trainer, args.n, args.seed)}
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
