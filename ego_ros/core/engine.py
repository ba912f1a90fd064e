"""The Ego engine: introduce concepts, then recognise them, answer questions and caption (paper 3.5).

Concept memories are injected as soft prompts, each after its name, ahead of the query image(s). That
context prefix is encoded once into a KV cache and reused for every frame until the concepts change.
Recognition asks one yes/no question per concept and reads the probability from the Yes/No logits; all
questions about one frame share the encoded prefix and image and run as one batch.

This module holds the configuration, loading, introduction, recognition (the context, its filter and
caches) and store management; EgoEngine takes its other calls from mixins, one concern each:
localisation (locating.py), answering and captioning (answering.py) and the guard every model call
runs under (calls.py). Mixins rather than delegate objects because those calls share the engine's
state (store, runner, caches, lock) and stay methods of the engine, with the same signatures.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .answering import AnsweringMixin, mentioned
from .backends.base import PREPROCESS_METHODS, Backend, VisualTokens
from .calibration import CALIBRATION_FILE, Calibration
from .calls import ModelCallsMixin, weak_check
from .compose import (
    CONTEXT_MODES,
    ContextEntry,
    QueryContext,
    frame_queries,
    query_context,
    recognition_queries,
)
from .crops import check_crop_tiles, encode_cropped
from .errors import DuplicateConceptError, InvalidImageError, ModelMismatchError
from .images import ImageInput, to_rgb
from .introduce import IntroduceOptions, timed_introduce
from .layer_defaults import LayerChoice, choose_layers
from .limits import MAX_NOTES_CHARS, check_new_tokens, check_text
from .loading import load_backend, model_directory
from .localise import DEFAULT_MAP, MAPS, attention_rows
from .locating import LOCATE_MODES, LocatingMixin
from .memory import ConceptMemory, MemoryView, validate_name
from .profile import stage
from .results import Answer, Recognition
from .sequence import DECODERS, PrefixCache, Runner, Sequence
from .store import ConceptStore
from .store_lock import DirectoryLock
from .tails import shared_last_logits

_log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    """Inference settings. `layers` None means: calibration file, else the default known for the model's
    architecture (layer_defaults.KNOWN_MODELS), else all layers."""

    layers: list[int] | None = None
    threshold: float = 0.5
    context: str = "memory"
    #: most concepts placed in one context; beyond it the similarity filter keeps the closest ones
    max_context_concepts: int = 16
    prefix_cache: bool = True
    prefix_cache_entries: int = 4
    #: most yes/no questions run as one batch (bounds activation memory with many concepts)
    question_batch: int = 16
    max_new_tokens: int = 64
    #: image preprocessing: "tensor" (torch ops on the model's device; the image processor remains the
    #: fallback for processors it does not cover) or "pil" (always the image processor)
    preprocess: str = "tensor"
    #: most tiles per image for families that tile (InternVL: default 6, see backends/internvl.py); 1:
    #: one tile, the paper's setting; None: the backend's default. Families that do not tile take 1 only.
    max_tiles: int | None = None
    #: engine-level tiling of query frames for fixed-size single-grid families (core/crops.py): a frame
    #: becomes its thumbnail plus up to this many crops, each its own grid. Not native; 1 (default): off.
    crop_tiles: int = 1
    introduce: IntroduceOptions = field(default_factory=IntroduceOptions)
    #: wall-clock deadline of one model call in seconds (introduce, recognize, ask, caption, ...), checked
    #: between forward passes and decode steps; the call then raises RequestTimeoutError. 0 disables it.
    request_timeout_s: float = 120.0
    #: localisation map: "product" (attention x similarity), "attention" or "similarity" (localise.MAPS)
    location_map: str = DEFAULT_MAP
    #: greedy decoding: "eager" (growing cache), "static" (preallocated cache; CUDA graphs on CUDA) or
    #: "auto" (static on CUDA, eager on CPU). Read when the engine is created, like `cuda_graphs`.
    decoder: str = "auto"
    #: capture the static decoder's steps as CUDA graphs (on CUDA only; off keeps the static cache alone)
    cuda_graphs: bool = True

    def validate(self) -> None:
        if self.context not in CONTEXT_MODES:
            raise ValueError(f"unknown context mode {self.context!r}; expected one of {CONTEXT_MODES}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must lie in [0, 1]")
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; expected one of {DECODERS}")
        if self.max_context_concepts < 1 or self.question_batch < 1:
            raise ValueError("max_context_concepts and question_batch must be at least 1")
        check_new_tokens(self.max_new_tokens, "EngineConfig.max_new_tokens")
        if not (isinstance(self.request_timeout_s, (int, float)) and 0.0 <= self.request_timeout_s < float("inf")):
            raise ValueError(f"request_timeout_s must be a finite number of seconds >= 0 (0 disables), "
                             f"got {self.request_timeout_s!r}")
        if self.location_map not in MAPS:
            raise ValueError(f"unknown location_map {self.location_map!r}; expected one of {MAPS}")
        if self.max_tiles is not None and (isinstance(self.max_tiles, bool) or not isinstance(self.max_tiles, int)
                                           or self.max_tiles < 1):
            raise ValueError(f"max_tiles must be a whole number >= 1 (or None), got {self.max_tiles!r}")
        if isinstance(self.crop_tiles, bool) or not isinstance(self.crop_tiles, int) or self.crop_tiles < 1:
            raise ValueError(f"crop_tiles must be a whole number >= 1 (1: off), got {self.crop_tiles!r}")
        if self.preprocess not in PREPROCESS_METHODS:
            raise ValueError(f"unknown preprocess {self.preprocess!r}; expected one of {PREPROCESS_METHODS}")
        self.introduce.validate()


class EgoEngine(LocatingMixin, AnsweringMixin, ModelCallsMixin):
    """A model backend, its concept store and the Ego procedures over them. Thread-safe."""

    def __init__(self, backend: Backend, store: ConceptStore | None = None, config: EngineConfig | None = None,
                 calibration: Calibration | None = None) -> None:
        self.backend = backend
        self.config = config or EngineConfig()
        self.config.validate()
        backend.preprocess = self.config.preprocess
        if self.config.max_tiles is not None:
            backend.set_max_tiles(self.config.max_tiles)
        check_crop_tiles(backend, self.config.crop_tiles)
        if store is None:
            store = ConceptStore(backend.fingerprint(), backend.name, device=backend.device, dtype=backend.dtype)
        self.store = store
        if self.store.fingerprint != backend.fingerprint():
            raise ModelMismatchError(f"the concept store belongs to another model (fingerprint "
                                     f"{self.store.fingerprint}, loaded model {backend.fingerprint()})")
        self.calibration = calibration
        # The runner holds the check weakly: no engine <-> runner cycle, so an engine dropped without
        # close() is freed (and its store's directory lock released) at once, not at the next GC.
        self.runner = Runner(backend, decoder=self.config.decoder, cuda_graphs=self.config.cuda_graphs,
                             check=weak_check(self))
        self._lock = threading.RLock()
        #: interrupt() increments it; a call that entered at an older epoch is cancelled at its next check
        self._epoch = 0
        self._epoch_lock = threading.Lock()
        self._calls = threading.local()
        self._introducing: str | None = None
        self._prefixes: OrderedDict[tuple, PrefixCache] = OrderedDict()
        self._contexts: OrderedDict[tuple, QueryContext] = OrderedDict()
        self._filters: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
        self._yes_ids, self._no_ids = self._answer_ids()
        _log.info("%s: %s", backend.name, self.layer_choice.message())

    # ----- construction --------------------------------------------------------------------------------
    @classmethod
    def load(cls, model: str, device: str = "cpu", dtype: str = "auto", store_dir: str | Path | None = None,
             calibration: str | Path | None = None, strict_store: bool = True, read_only_store: bool = False,
             **config: Any) -> EgoEngine:
        """Load a model and (optionally) a persistent concept store. Extra keywords set EngineConfig fields.

        The store is opened (locked, proven writable) before the model is loaded, so a store held by
        another process or an unwritable directory fails at once rather than after the load; with
        read_only_store it takes no lock and refuses changes (for inference beside a running writer)."""
        cfg = EngineConfig(**config)
        cfg.validate()
        created = store_dir is not None and not Path(store_dir).exists()
        claim = ConceptStore.claim(store_dir) if store_dir is not None and not read_only_store else None
        try:
            return cls._load(model, device, dtype, store_dir, calibration, strict_store, read_only_store, cfg,
                             claim)
        except BaseException:
            if claim is not None:
                if created:  # a failed load leaves no trace: remove the empty store the claim made
                    ConceptStore.remove_empty(store_dir)  # while still locked: no opener can slip in
                claim.release()
            raise

    @classmethod
    def _load(cls, model: str, device: str, dtype: str, store_dir: str | Path | None,
              calibration: str | Path | None, strict_store: bool, read_only_store: bool, cfg: EngineConfig,
              claim: DirectoryLock | None) -> EgoEngine:
        backend = load_backend(model, device=device, dtype=dtype)
        cal = None
        cal_path = Path(calibration) if calibration else None
        if cal_path is None:
            d = model_directory(model)
            if d is not None and (d / CALIBRATION_FILE).is_file():
                cal_path = d / CALIBRATION_FILE
        if cal_path is not None:
            cal = Calibration.load(cal_path, fingerprint=backend.fingerprint(), num_layers=backend.num_layers)
        store = None
        if store_dir is not None:
            store = ConceptStore.open(store_dir, backend.fingerprint(), backend.name, device=backend.device,
                                      dtype=backend.dtype, strict=strict_store, read_only=read_only_store,
                                      lock=claim)
        try:
            return cls(backend, store, cfg, calibration=cal)
        except BaseException:
            if store is not None:
                store.close()
            raise

    @property
    def layer_choice(self) -> LayerChoice:
        """The layers keyword attention is read on, where they come from and why."""
        return choose_layers(self.backend.model.config, self.backend.num_layers, self.config.layers,
                             self.calibration)

    @property
    def layers(self) -> list[int] | None:
        """The LLM layers whose keyword attention selects memory tokens (None: all layers)."""
        return self.layer_choice.layers

    def describe(self) -> dict[str, Any]:
        """The backend's description and the keyword-attention layers with the reason for them."""
        return {**self.backend.describe(), "attention_layers": self.layer_choice.to_dict()}

    @property
    def introducing(self) -> str | None:
        """Name of the concept being introduced right now, if any."""
        return self._introducing

    def set_context(self, mode: str) -> None:
        if mode not in CONTEXT_MODES:
            raise ValueError(f"unknown context mode {mode!r}; expected one of {CONTEXT_MODES}")
        self.config.context = mode

    # ----- concepts ------------------------------------------------------------------------------------
    def introduce(self, name: str, images: list[ImageInput], options: IntroduceOptions | None = None,
                  notes: str = "", replace_existing: bool = False, wait: bool = True,
                  on_view: Callable[[int, MemoryView], None] | None = None) -> ConceptMemory:
        """Build a concept memory from reference images and store it (atomically, after success).

        With wait=False a call that finds the engine busy raises BusyError instead of queueing.
        `on_view(i, view)` reports each finished view (keywords, K_c) while the others are processed.
        """
        name = validate_name(name)
        notes = check_text(notes, "notes", MAX_NOTES_CHARS)
        opts = options or self.config.introduce
        opts.validate()
        if not images:
            raise InvalidImageError("introduce needs at least one reference image")
        rgb = [to_rgb(im, what=f"reference image {i}") for i, im in enumerate(images)]
        if not replace_existing:
            if name in self.store:
                raise DuplicateConceptError(f"concept {name!r} already exists (remove it, rename it or ask to replace)")
            if name in self.store.unavailable():
                raise DuplicateConceptError(f"concept {name!r} exists but is unavailable "
                                            f"({self.store.unavailable()[name]}); remove it or ask to replace")
        with self._model_call(f"introducing {name!r}", wait=wait, busy=f"introducing {self._introducing!r}"):
            self._introducing = name
            try:
                views, seconds = timed_introduce(self.backend, self.runner, rgb, self.layers, opts, on_view)
                memory = ConceptMemory(name=name, views=views, fingerprint=self.backend.fingerprint(),
                                       model=self.backend.name, selection=opts.selection, notes=notes,
                                       seconds=seconds)
                self._check()  # an interrupt or deadline that arrived during the last step stores nothing
                self.store.add(memory, replace=replace_existing)
                self._clear_caches()
                return memory
            finally:
                self._introducing = None

    def build_view(self, image: ImageInput, options: IntroduceOptions | None = None) -> tuple[MemoryView, float]:
        """One reference view's memory (keywords, area, selected tokens) without storing anything.

        For introductions whose views arrive over time (a live camera): build each view as its frame
        comes, then store them together with `add_memory`. Returns the view and the seconds it took.
        """
        rgb = to_rgb(image, what="reference image")
        opts = options or self.config.introduce
        opts.validate()
        with self._model_call("building a view"):
            views, seconds = timed_introduce(self.backend, self.runner, [rgb], self.layers, opts)
        return views[0], seconds

    def add_memory(self, memory: ConceptMemory, replace_existing: bool = False) -> None:
        with self._lock:
            self.store.add(memory, replace=replace_existing)
            self._clear_caches()

    def remove(self, name: str) -> ConceptMemory | None:
        """Remove a concept (an unavailable one too: None is returned for it)."""
        with self._lock:
            self._clear_caches()
            return self.store.remove(name)

    def rename(self, old: str, new: str) -> None:
        with self._lock:
            self._clear_caches()
            self.store.rename(old, new)

    def clear(self) -> None:
        with self._lock:
            self._clear_caches()
            self.store.clear()

    def concepts(self) -> list[ConceptMemory]:
        return [self.store.get(n) for n in self.store.names()]

    def close(self) -> None:
        """Cancel running calls and release the concept store (its directory lock). Idempotent."""
        self.interrupt()
        with self._lock:
            self.store.close()

    def __enter__(self) -> EgoEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- inference -----------------------------------------------------------------------------------
    def recognize(self, image: ImageInput, concepts: list[str] | None = None, locate: str | None = None
                  ) -> list[Recognition]:
        """Yes/no and probability for each concept (default: all stored) in one image.

        `locate` "present" adds a `Location` to each concept judged present, "all" to every concept in
        the context; the signal is captured on the recognition pass itself (localise.py)."""
        return self.recognize_batch([image], concepts, locate=locate)[0]

    def recognize_batch(self, images: list[ImageInput], concepts: list[str] | None = None,
                        locate: str | None = None) -> list[list[Recognition]]:
        """Recognition over several frames sharing the cached concept prefix.

        With one concept, the frames run as one batch; with several, each frame's questions do.
        """
        if locate not in LOCATE_MODES:
            raise ValueError(f"locate must be None, 'present' or 'all', got {locate!r}")
        rgb = [to_rgb(im, what=f"image {i}") for i, im in enumerate(images)]
        names = self._names(concepts)
        if not names:
            return [[] for _ in rgb]
        with self._model_call("recognition"), torch.inference_mode():
            vts = self._encode_frames(rgb)
            self._check()
            out: list[list[Recognition]] = []
            for vt in vts:
                kept = self._filter(names, vt)
                probs, attn = self._yes_probabilities(vt, kept, capture=locate is not None) if kept else ({}, {})
                recs = [Recognition(n, probs.get(n, 0.0), probs.get(n, 0.0) >= self.config.threshold,
                                    considered=n in probs) for n in names]
                self._add_locations(vt, recs, attn, locate)
                out.append(recs)
            return out

    def _encode_frames(self, images: list[Image.Image]) -> list[VisualTokens]:
        """Visual tokens of query frames (cropped into tiles when `crop_tiles` asks for it)."""
        return encode_cropped(self.backend, images, self.config.crop_tiles)

    def recognize_frames(self, images: list[ImageInput], name: str) -> list[Recognition]:
        """One concept over a batch of frames in a single batched forward over the shared prefix."""
        rgb = [to_rgb(im, what=f"image {i}") for i, im in enumerate(images)]
        names = self._names([name])
        name = names[0]  # the stored (NFC) spelling
        with self._model_call("recognition"), torch.inference_mode():
            vts = self._encode_frames(rgb)
            self._check()
            question = self.backend.prompts.recognition.format(name=name)
            with stage("compose"):
                queries = frame_queries(self.backend, self._context(names, 1), vts, question)
            prefix = self._prefix(queries.shared, names, queries.context_end)
            logits = shared_last_logits(self.runner, queries, prefix, batch=self.config.question_batch)
            probs = self._probabilities(logits)
        return [Recognition(name, p, p >= self.config.threshold) for p in probs]

    # ----- internals: context and sequences -----------------------------------------------------------
    def _names(self, concepts: list[str] | None) -> list[str]:
        if concepts is None:
            return self.store.names()
        names = []
        for c in concepts:
            c = self.store.get(c).name  # NFC, validated; UnknownConceptError names the known ones
            if c not in names:
                names.append(c)
        return names

    def _filter(self, names: list[str], vt: VisualTokens) -> list[str]:
        """Keep at most max_context_concepts concepts: those whose memory tokens best match the image.

        Score = mean over a memory's tokens of the best cosine similarity with any query visual token,
        both in the LLM input space (paper 3.5). All memories are scored in one matrix product (the
        normalised memory matrix is kept per concept set), with one transfer of the scores to the host."""
        budget = self.config.max_context_concepts
        if len(names) <= budget:
            return names
        mem, segment, counts = self._memory_matrix(names)
        with torch.no_grad():  # the kept matrix may be an inference tensor: no autograd here
            q = torch.nn.functional.normalize(vt.embeds.float(), dim=-1).to(mem.device)
            best = (mem @ q.T).max(dim=1).values
            totals = torch.zeros(len(names), device=mem.device).index_add_(0, segment, best)
            scores = dict(zip(names, (totals / counts).tolist()))
        keep = set(sorted(names, key=lambda n: -scores[n])[:budget])
        return [n for n in names if n in keep]

    def _memory_matrix(self, names: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised memory tokens of the concepts (M, D), each token's concept index (M,) and the token
        count per concept: composed once per concept set."""
        key = ("filter", tuple(names), tuple(self.store.revision(n) for n in names))
        cached = self._filters.get(key)
        if cached is None:
            mems = [torch.cat([v.embeds for v in self.store.get(n).views]).float() for n in names]
            mem = torch.nn.functional.normalize(torch.cat(mems).to(self.backend.device), dim=-1)
            sizes = torch.tensor([m.shape[0] for m in mems], device=mem.device)
            segment = torch.repeat_interleave(torch.arange(len(names), device=mem.device), sizes)
            cached = self._filters[key] = (mem, segment, sizes.float())
            while len(self._filters) > self.config.prefix_cache_entries:
                self._filters.popitem(last=False)
        return cached

    def _entries(self, names: list[str]) -> list[ContextEntry]:
        """Context entries of stored concepts for the current context mode."""
        mode = self.config.context
        entries = []
        for n in names:
            mem = self.store.get(n)
            entry = ContextEntry(name=n, keywords=mem.unique_keywords())
            if mode in ("memory", "memory+keywords"):
                entry.memory = [v.block() for v in mem.views]
            elif mode == "reference_images":
                if any(v.reference is None for v in mem.views):
                    raise ValueError(f"concept {n!r} was introduced without keep_reference; "
                                     "the reference_images context needs the stored reference images")
                # Raw reference images go through the vision tower at inference time, as that baseline does.
                entry.references = self.backend.encode_images(
                    [Image.fromarray(v.reference) for v in mem.views],
                    max_pixels=self.config.introduce.reference_max_pixels)
            entries.append(entry)
        return entries

    def _context(self, names: list[str], n_images: int, video: bool = False) -> QueryContext:
        """The query composition of these concepts (template and built context head), composed on first use.

        Kept while the concepts are unchanged, so that a frame costs no per-concept work on the host. The
        reference_images baseline is recomposed every time: it runs its raw reference images through the
        vision tower per query, which is what it measures."""
        mode = self.config.context
        key = (mode, tuple(names), tuple(self.store.revision(n) for n in names), n_images, video)
        cached = self._contexts.get(key)
        if cached is not None:
            self._contexts.move_to_end(key)
            return cached
        context = query_context(self.backend, self._entries(names), n_images, mode, video=video)
        if mode != "reference_images":
            self._contexts[key] = context
            while len(self._contexts) > self.config.prefix_cache_entries:
                self._contexts.popitem(last=False)
        return context

    def _prefix(self, seq: Sequence, names: list[str], end: int | None = None) -> PrefixCache | None:
        """The cached KV of seq[:end] (default: up to the first query image), encoding it on first use."""
        end = seq.image_start if end is None else end
        if not self.config.prefix_cache or end is None or end == 0:
            return None
        key = (self.config.context, tuple(names), tuple(self.store.revision(n) for n in names),
               tuple(seq.ids[:end]))
        cached = self._prefixes.get(key)
        if cached is not None:
            self._prefixes.move_to_end(key)
            return cached
        with stage("prefix"):
            prefix = self.runner.encode_prefix(seq, end, key)
        self._prefixes[key] = prefix
        while len(self._prefixes) > self.config.prefix_cache_entries:
            self._prefixes.popitem(last=False)
        return prefix

    def _answer_ids(self) -> tuple[list[int], list[int]]:
        def first_ids(words: tuple[str, ...]) -> list[int]:
            ids = []
            for w in words:
                toks = self.backend.tokenize(w)
                if toks and toks[0] not in ids:
                    ids.append(toks[0])
            return ids

        yes, no = first_ids(self.backend.prompts.yes), first_ids(self.backend.prompts.no)
        if not yes or not no or set(yes) & set(no):
            raise ValueError(f"yes/no answer words must tokenize to distinct first tokens (yes {yes}, no {no})")
        return yes, no

    def _probabilities(self, logits: torch.Tensor) -> list[float]:
        """P(yes) from the answer logits: yes and no variants pooled, renormalised over the two."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        yes = torch.logsumexp(logp[:, self._yes_ids], dim=-1)
        no = torch.logsumexp(logp[:, self._no_ids], dim=-1)
        return torch.sigmoid(yes - no).tolist()

    def _yes_probabilities(self, vt: VisualTokens, names: list[str], capture: bool = False
                           ) -> tuple[dict[str, float], dict[str, Any]]:
        """P(yes) per concept: context and image encoded once, the questions as packed tails over them.

        With `capture`, also each question's last-token attention over the query image's visual tokens
        on the engine's layers, (rows, cols) arrays by name, recorded in the same passes."""
        q_template = self.backend.prompts.recognition
        with stage("compose"):
            queries = recognition_queries(self.backend, self._context(names, 1), [vt],
                                          [q_template.format(name=n) for n in names])
        prefix = self._prefix(queries.shared, names, queries.context_end)
        if not capture:
            logits = shared_last_logits(self.runner, queries, prefix, batch=self.config.question_batch)
            return dict(zip(names, self._probabilities(logits))), {}
        probs, records = self._captured_yes_probabilities(vt, names, self.layers, queries, prefix)
        return probs, dict(zip(names, attention_rows(records)))

    def _clear_caches(self) -> None:
        """Drop the prefix KV caches and the compositions (the concepts changed, or memory ran out)."""
        self._prefixes.clear()
        self._contexts.clear()
        self._filters.clear()

    def memory_report(self) -> dict[str, float]:
        """Device memory in MiB (allocated/reserved/peak on CUDA; concept memories and prefix caches)."""
        rep = {"concepts_mib": sum(sum(v.embeds.numel() * v.embeds.element_size() for v in m.views)
                                   for m in self.concepts()) / 2**20,
               "prefix_cache_mib": sum(p.nbytes() for p in self._prefixes.values()) / 2**20,
               "filter_cache_mib": sum(m.numel() * m.element_size() for m, _, _ in self._filters.values()) / 2**20}
        dev = self.backend.device
        if dev.type == "cuda":
            rep.update(allocated_mib=torch.cuda.memory_allocated(dev) / 2**20,
                       reserved_mib=torch.cuda.memory_reserved(dev) / 2**20,
                       peak_mib=torch.cuda.max_memory_allocated(dev) / 2**20)
        return rep


__all__ = ["EgoEngine", "EngineConfig", "Recognition", "Answer", "IntroduceOptions", "CONTEXT_MODES", "mentioned"]
