"""The dense vision supervision of training: the training-only heads on the projector outputs and
their two losses (not part of the exported model).

Without them instance matching stays at chance (toy notes):

* per-patch attribute classification: a linear head predicts, for each of the 64 tokens, the shape,
  colour, pattern and mark of the object covering most of that patch (or background);
* instance contrast: features mask-pooled over each recognisable object are compared across all
  images of the batch (supervised contrastive loss). The same instance seen in a reference view, a
  crop and a cluttered query is a positive; everything else, including the near-duplicates the
  matching tasks put in the same batch, a negative.

The losses stay on the device (no boolean selections, no Python numbers): every read-back to the host
would make the CPU wait for the GPU once per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batches import VisionTargets
from .tasks import LABEL_CLASSES

#: weight of background patches in the per-patch attribute loss (object patches weigh 1)
BACKGROUND_WEIGHT = 0.25


class Heads(torch.nn.Module):
    """Training-only heads on the projector outputs: per-patch attributes and the contrastive projection."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.sizes = [LABEL_CLASSES[a] for a in ("shape", "colour", "pattern", "mark")]
        # Projector outputs live at the scale of token embeddings (std ~0.03): the heads normalise them
        # first, otherwise a linear head on such small inputs learns little beyond its bias.
        self.dense = torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, sum(self.sizes)))
        self.proj = torch.nn.Sequential(
            torch.nn.LayerNorm(dim), torch.nn.Linear(dim, dim), torch.nn.GELU(), torch.nn.Linear(dim, 128)
        )


def dense_loss(
    heads: Heads, feats: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-patch attribute loss of projector outputs `feats` (N, T, D); `labels` (N, 4, T) as in
    `VisionTargets`. Returns the loss and the accuracy of each attribute on object patches (0-d tensors)."""
    logits = heads.dense(feats.float())  # (N, T, C)
    labels = labels.to(feats.device, non_blocking=True)
    total = feats.new_zeros((), dtype=torch.float32)
    accs = {}
    start = 0
    for a, (name, size) in enumerate(zip(("shape", "colour", "pattern", "mark"), heads.sizes)):
        lg = logits[..., start : start + size]
        start += size
        y = labels[:, a]
        obj = y > 0
        # Object patches are about an eighth of all patches: down-weight the background so the heads
        # do not settle on "background everywhere".
        w = torch.where(obj, 1.0, BACKGROUND_WEIGHT).reshape(-1)
        ce = F.cross_entropy(lg.reshape(-1, size), y.reshape(-1), reduction="none")
        total = total + (ce * w).sum() / w.sum()
        accs[name] = ((lg.argmax(-1) == y) & obj).sum() / obj.sum().clamp(min=1)
    return total / 4, accs


def contrastive_loss(
    heads: Heads, feats: torch.Tensor, vision: VisionTargets, temperature: float, through_head: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Supervised contrastive loss over mask-pooled object features of the whole batch, and the
    retrieval accuracy (is an anchor's nearest neighbour the same instance?).

    With `through_head` False the pooled projector outputs are compared themselves, only layer-normalised
    (`TrainConfig.raw_contrast_weight`): the engine keeps those features, not the head's projection, and a
    head can learn to tell instances apart that the features it reads still mix up."""
    zero = feats.new_zeros((), dtype=torch.float32)
    m = int(vision.anchor_instance.shape[0])
    if m < 2:
        return zero, zero
    dev = feats.device
    w = vision.anchor_weights.to(dev, non_blocking=True)  # (M, T)
    img = vision.anchor_image.to(dev, non_blocking=True)
    labels = vision.anchor_instance.to(dev, non_blocking=True)
    pooled = torch.einsum("mt,mtd->md", w, feats.float()[img])
    z = heads.proj(pooled) if through_head else F.layer_norm(pooled, pooled.shape[-1:])
    z = F.normalize(z, dim=-1)
    sim = z @ z.T / temperature
    eye = torch.eye(m, dtype=torch.bool, device=dev)
    sim = sim.masked_fill(eye, float("-inf"))
    pos = (labels[:, None] == labels[None, :]) & ~eye
    has = pos.any(1)
    n_has = has.sum().clamp(min=1)
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    per_anchor = logp.masked_fill(~pos, 0.0).sum(1) / pos.sum(1).clamp(min=1)
    loss = -(per_anchor * has).sum() / n_has
    acc = ((labels[sim.argmax(1)] == labels) & has).sum() / n_has
    return loss, acc
