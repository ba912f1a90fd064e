"""Localisation on the engine: where a concept is in a frame, from the recognition pass itself (paper 3.5).

The question's last-token attention over the query image is captured while the yes/no question runs,
and combined with the similarity of the image's tokens to the concept's memory (localise.py holds the
maps and the box/point rules). A mixin of EgoEngine: these methods read the engine's store, runner,
caches and model-call guard, so they live beside it rather than behind a separate object.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .attention import capturing
from .backends.base import VisualTokens
from .compose import recognition_queries
from .images import ImageInput, to_rgb
from .localise import MAPS, Location, attention_rows, combine, locate_map, locate_maps, similarity_map
from .profile import stage
from .results import Recognition
from .tails import shared_last_logits

#: what `recognize(..., locate=...)` accepts: no locations, for the concepts judged present, for all
LOCATE_MODES = (None, "present", "all")


class LocatingMixin:
    """`locate`, `location_maps` and the locations of `recognize(locate=...)` (EgoEngine's attributes)."""

    def locate(self, image: ImageInput, name: str, map: str | None = None) -> Recognition:
        """Where concept `name` is in the image: its recognition (found: `present`) with a `Location`
        from the map `map` (default: config.location_map), whether or not it was judged present."""
        which = map or self.config.location_map
        if which not in MAPS:
            raise ValueError(f"unknown localisation map {which!r}; expected one of {MAPS}")
        rgb = to_rgb(image)
        names = self._names([name])
        with self._model_call("localisation"), torch.inference_mode():
            vt = self._encode_frames([rgb])[0]
            self._check()
            probs, attn = self._yes_probabilities(vt, names, capture=True)
            n = names[0]
            rec = Recognition(n, probs[n], probs[n] >= self.config.threshold)
            rec.location = self._location(vt, n, attn.get(n), which)
        return rec

    def location_maps(self, image: ImageInput, name: str, layers: list[int] | None = None
                      ) -> tuple[VisualTokens, dict[str, Any], float]:
        """Every candidate map of one concept in one image (benchmarks): the image's visual tokens, the
        maps by name (localise.MAPS, each (rows, cols), normalised) and P(yes).

        The maps also hold the raw signals the candidates are built from, for analysis of other rules:
        "raw_similarity" (rows, cols) and "raw_attention" (L, rows, cols), the attention of the question's
        last token on each layer of `layers` (default: the engine's calibrated layers, from which the
        "attention" map is built as in recognition)."""
        rgb = to_rgb(image)
        names = self._names([name])
        own = list(range(self.backend.num_layers)) if self.layers is None else list(self.layers)
        layers = own if layers is None else list(layers)
        with self._model_call("localisation"), torch.inference_mode():
            vt = self._encode_frames([rgb])[0]
            probs, records = self._captured_yes_probabilities(vt, names, sorted(set(layers) | set(own)))
            attn = attention_rows({k: records[k] for k in own})[0]
            sim = similarity_map(vt.embeds, self._memory_tokens(names[0]))
            maps = {m: vt.to_map(combine(attn, sim, m)) for m in MAPS}
            maps["raw_similarity"] = vt.to_map(sim)
            maps["raw_attention"] = np.stack([vt.to_map(attention_rows({k: records[k]})[0]) for k in layers])
        return vt, maps, probs[names[0]]

    def _memory_tokens(self, name: str) -> torch.Tensor:
        return torch.cat([v.embeds for v in self.store.get(name).views])

    def _similarities(self, vt: VisualTokens, names: list[str]) -> dict[str, Any]:
        """`localise.similarity_map` of several concepts at once: one product with the kept normalised
        memory matrix of the concept set, one transfer to the host."""
        with stage("locate"), torch.no_grad():
            mem, segment, _ = self._memory_matrix(names)
            q = torch.nn.functional.normalize(vt.embeds.float(), dim=-1).to(mem.device)
            sims = mem @ q.T  # (memory tokens, query tokens)
            best = torch.full((len(names), sims.shape[1]), float("-inf"), device=mem.device)
            best = best.scatter_reduce(0, segment[:, None].expand_as(sims), sims, reduce="amax")
            return dict(zip(names, best.cpu().numpy()))

    def _location(self, vt: VisualTokens, name: str, attention: Any, which: str | None = None,
                  similarity: Any = None) -> Location:
        which = which or self.config.location_map
        with stage("locate"):
            sim = similarity_map(vt.embeds, self._memory_tokens(name)) if similarity is None else similarity
            return locate_map(name, combine(attention, sim, which), vt, which)

    def _captured_yes_probabilities(self, vt: VisualTokens, names: list[str], layers: list[int],
                                    queries: Any = None, prefix: Any = None
                                    ) -> tuple[dict[str, float], dict[int, list[torch.Tensor]]]:
        """P(yes) per concept and the attention records (Capture.records) of each question's last token
        over the query image's visual tokens on `layers`, from the recognition passes themselves."""
        if queries is None:
            with stage("compose"):
                queries = recognition_queries(self.backend, self._context(names, 1), [vt],
                                              [self.backend.prompts.recognition.format(name=n) for n in names])
            prefix = self._prefix(queries.shared, names, queries.context_end)
        columns = queries.shared.columns["image::0"]  # the query image's tokens, in token-list order
        with capturing(layers, columns) as cap:
            logits = shared_last_logits(self.runner, queries, prefix, batch=self.config.question_batch,
                                        capture=cap)
        return dict(zip(names, self._probabilities(logits))), cap.records

    def _add_locations(self, vt: VisualTokens, recs: list[Recognition], attn: dict[str, Any],
                       locate: str | None) -> None:
        """Give the recognitions `locate` asks for ("present" or "all" considered ones) their `Location`,
        from the attention captured on the recognition pass and one similarity product for them all."""
        wanted = [r for r in recs if r.considered and (locate == "all" or (locate == "present" and r.present))]
        if not wanted:
            return
        sims = self._similarities(vt, [r.name for r in wanted])
        which = self.config.location_map
        with stage("locate"):
            heats = np.stack([combine(attn.get(r.name), sims[r.name], which) for r in wanted])
            for r, loc in zip(wanted, locate_maps([r.name for r in wanted], heats, vt, which)):
                r.location = loc
