"""The concept store: name -> memory, resident on the model's device, persisted atomically.

Layout of a store directory:
    store.json                index: format, model fingerprint, and per concept its file and checksum
    concepts/<uuid>.safetensors   one file per concept: tensors + JSON metadata (safetensors header)

Every write goes to a temporary file that is fsync'ed and then renamed over the target, and the
directory is fsync'ed, so a crash at any moment leaves either the old or the new store, never a mix:
a new concept file is written first and the index that refers to it second; a removed concept leaves
the index first and its file after. Files the index does not name (left by a crash) are ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import DuplicateConceptError, ModelMismatchError, StoreCorruptError, UnknownConceptError
from .memory import ConceptMemory, MemoryView, validate_name

FORMAT_VERSION = 1
INDEX_FILE = "store.json"
CONCEPTS_DIR = "concepts"


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` so that readers see the old or the new content, never a partial file.

    The file is private to its owner (mkstemp's 0600) unless `mode` says otherwise: concept memories are
    personal data, a calibration file is meant to be shared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def memory_to_bytes(memory: ConceptMemory) -> bytes:
    """Serialise a memory as safetensors bytes (tensors on CPU, metadata as JSON in the header)."""
    tensors: dict[str, torch.Tensor] = {}
    views_meta = []
    for i, v in enumerate(memory.views):
        tensors[f"view{i}.embeds"] = v.embeds.detach().to("cpu").contiguous()
        tensors[f"view{i}.indices"] = v.indices.detach().to("cpu", torch.int64).contiguous()
        tensors[f"view{i}.importance"] = v.importance.detach().to("cpu", torch.float32).contiguous()
        if v.deepstack is not None:
            tensors[f"view{i}.deepstack"] = v.deepstack.detach().to("cpu").contiguous()
        if v.reference is not None:
            tensors[f"view{i}.reference"] = torch.from_numpy(np.ascontiguousarray(v.reference, dtype=np.uint8))
        views_meta.append({
            "grid": list(v.grid), "box": list(v.box), "image_size": list(v.image_size),
            "keywords": v.keywords, "description": v.description, "alpha": v.alpha, "k_c": v.k_c,
            "area_answer": v.area_answer,
        })
    meta = {
        "format": FORMAT_VERSION, "name": memory.name, "fingerprint": memory.fingerprint, "model": memory.model,
        "selection": memory.selection, "notes": memory.notes, "created": memory.created,
        "seconds": memory.seconds, "views": views_meta,
    }
    return st_save(tensors, metadata={"ego": json.dumps(meta, ensure_ascii=False)})


def memory_from_bytes(data: bytes, source: str = "<bytes>") -> ConceptMemory:
    """Parse bytes written by `memory_to_bytes`; StoreCorruptError says what is wrong."""
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header["__metadata__"]["ego"])
        views = []
        for i, vm in enumerate(meta["views"]):
            views.append(MemoryView(
                embeds=tensors[f"view{i}.embeds"], indices=tensors[f"view{i}.indices"],
                grid=tuple(vm["grid"]), box=tuple(vm["box"]), image_size=tuple(vm["image_size"]),
                keywords=list(vm["keywords"]), description=vm["description"], alpha=vm["alpha"],
                k_c=int(vm["k_c"]), importance=tensors[f"view{i}.importance"],
                area_answer=vm.get("area_answer", ""),
                reference=tensors[f"view{i}.reference"].numpy() if f"view{i}.reference" in tensors else None,
                deepstack=tensors.get(f"view{i}.deepstack"),
            ))
            if views[-1].embeds.shape[0] != views[-1].indices.shape[0]:
                raise ValueError(f"view {i}: {views[-1].embeds.shape[0]} embeddings for "
                                 f"{views[-1].indices.shape[0]} indices")
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported memory format {meta.get('format')!r}")
        return ConceptMemory(name=meta["name"], views=views, fingerprint=meta["fingerprint"], model=meta["model"],
                             selection=meta["selection"], notes=meta["notes"], created=float(meta["created"]),
                             seconds=float(meta["seconds"]))
    except (SafetensorError, KeyError, ValueError, TypeError, json.JSONDecodeError, IndexError) as exc:
        raise StoreCorruptError(f"{source}: not a valid concept memory ({type(exc).__name__}: {exc})") from exc


class ConceptStore:
    """Concept memories by name, on one device, optionally persisted in a directory.

    Thread-safe: every public method holds the store's lock. `revision(name)` changes whenever a
    concept's memory changes, so caches built from memories can tell they are stale.
    """

    def __init__(self, fingerprint: str, model: str = "", directory: str | Path | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> None:
        self.fingerprint = fingerprint
        self.model = model
        self.directory = Path(directory) if directory is not None else None
        self.device = torch.device(device)
        self.dtype = dtype
        self._memories: dict[str, ConceptMemory] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._revisions: dict[str, int] = {}
        self._counter = 0
        self._lock = threading.RLock()
        #: concepts the index names whose files could not be loaded (skipped, files left untouched)
        self.problems: dict[str, str] = {}

    # ----- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | Path, fingerprint: str, model: str = "", device: torch.device | str = "cpu",
             dtype: torch.dtype | None = None, strict: bool = True) -> ConceptStore:
        """Open (or create) the store in `directory` for the model with `fingerprint`.

        Raises ModelMismatchError if the store was made by another model, StoreCorruptError if the index
        is unreadable, or (strict) if any concept file is missing or corrupt. Non-strict opening skips bad
        concept files, records why in `problems` and never deletes them.
        """
        store = cls(fingerprint, model, directory, device, dtype)
        index_path = store.directory / INDEX_FILE
        if not index_path.exists():
            return store
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            concepts = index["concepts"]
            stored_fp = index["fingerprint"]
            if index.get("format") != FORMAT_VERSION or not isinstance(concepts, dict):
                raise ValueError("unsupported index format")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreCorruptError(f"{index_path}: unreadable concept store index ({exc})") from exc
        if stored_fp != fingerprint:
            raise ModelMismatchError(
                f"concept store {store.directory} was made with model {index.get('model', '?')!r} "
                f"(fingerprint {stored_fp}); the loaded model {model!r} has fingerprint {fingerprint}. "
                "Memories are projector outputs of one model and cannot be used with another: use a "
                "separate store directory per model.")
        for name, entry in concepts.items():
            path = store.directory / CONCEPTS_DIR / entry["file"]
            try:
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise StoreCorruptError(f"{path}: checksum mismatch (file damaged or changed)")
                memory = memory_from_bytes(data, str(path))
                if memory.name != name:
                    raise StoreCorruptError(f"{path}: holds concept {memory.name!r}, index says {name!r}")
                if memory.fingerprint != fingerprint:
                    raise ModelMismatchError(f"{path}: memory made by another model ({memory.fingerprint})")
            except FileNotFoundError as exc:
                problem = StoreCorruptError(f"{path}: concept file of {name!r} is missing")
                if strict:
                    raise problem from exc
                store.problems[name] = str(problem)
                continue
            except (StoreCorruptError, ModelMismatchError, OSError) as exc:
                if strict:
                    raise
                store.problems[name] = str(exc)
                continue
            store._memories[name] = memory.to(store.device, store.dtype)
            store._files[name] = dict(entry)
            store._bump(name)
        return store

    # ----- queries -------------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._memories

    def __len__(self) -> int:
        return len(self._memories)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        with self._lock:
            return list(self._memories)

    def get(self, name: str) -> ConceptMemory:
        with self._lock:
            try:
                return self._memories[name]
            except KeyError:
                raise UnknownConceptError(self._unknown(name)) from None

    def revision(self, name: str) -> int:
        return self._revisions[name]

    def _unknown(self, name: str) -> str:
        known = ", ".join(sorted(self._memories)) or "none"
        return f"unknown concept {name!r} (known: {known})"

    def check_memory(self, memory: ConceptMemory) -> None:
        if memory.fingerprint != self.fingerprint:
            raise ModelMismatchError(f"concept {memory.name!r} was made by another model (fingerprint "
                                     f"{memory.fingerprint}, this store's model has {self.fingerprint})")

    # ----- changes -------------------------------------------------------------------------------------
    def add(self, memory: ConceptMemory, replace: bool = False) -> None:
        """Add (or, with replace, overwrite) a concept; persisted before it becomes visible."""
        name = validate_name(memory.name)
        self.check_memory(memory)
        with self._lock:
            if name in self._memories and not replace:
                raise DuplicateConceptError(f"concept {name!r} already exists (remove it, rename it or ask to replace)")
            if self.directory is not None:
                self._commit_file(memory, drop=name)
            self._memories[name] = memory.to(self.device, self.dtype)
            self._bump(name)

    def remove(self, name: str) -> ConceptMemory:
        with self._lock:
            memory = self.get(name)
            if self.directory is not None:
                files = dict(self._files)
                entry = files.pop(name)
                self._write_index(files)
                self._files = files
                self._unlink(entry["file"])
            del self._memories[name]
            self._revisions.pop(name, None)
            return memory

    def rename(self, old: str, new: str) -> None:
        new = validate_name(new)
        with self._lock:
            memory = self.get(old)
            if new == old:
                return
            if new in self._memories:
                raise DuplicateConceptError(f"cannot rename {old!r} to {new!r}: that name exists")
            if self.directory is not None:
                # The memory file stores its name too: write a renamed copy, then the index.
                self._commit_file(ConceptMemory(**{**memory.__dict__, "name": new}), drop=old)
            memory.name = new
            self._memories = {(new if k == old else k): v for k, v in self._memories.items()}
            self._revisions.pop(old, None)
            self._bump(new)

    def clear(self) -> None:
        for name in self.names():
            self.remove(name)

    # ----- internals -----------------------------------------------------------------------------------
    def _bump(self, name: str) -> None:
        self._counter += 1
        self._revisions[name] = self._counter

    def _commit_file(self, memory: ConceptMemory, drop: str) -> None:
        """Write `memory` to a new file, then the index naming it in place of `drop`'s entry, then remove
        the file `drop` had. A failure before the index is written leaves the store as it was."""
        data = memory_to_bytes(memory)
        fname = f"{uuid.uuid4().hex}.safetensors"
        atomic_write_bytes(self.directory / CONCEPTS_DIR / fname, data)
        old_entry = self._files.get(drop)
        # keep the concept's place in the index (a rename must not reorder the store)
        files = {(memory.name if k == drop else k): v for k, v in self._files.items()}
        files[memory.name] = {"file": fname, "sha256": hashlib.sha256(data).hexdigest(),
                              "created": memory.created}
        try:
            self._write_index(files)
        except BaseException:
            self._unlink(fname)
            raise
        self._files = files
        if old_entry is not None:
            self._unlink(old_entry["file"])

    def _write_index(self, files: dict[str, dict[str, Any]]) -> None:
        assert self.directory is not None
        index = {"format": FORMAT_VERSION, "fingerprint": self.fingerprint, "model": self.model,
                 "updated": time.time(), "concepts": files}
        atomic_write_bytes(self.directory / INDEX_FILE,
                           json.dumps(index, ensure_ascii=False, indent=1).encode("utf-8"))

    def _unlink(self, fname: str) -> None:
        assert self.directory is not None
        try:
            (self.directory / CONCEPTS_DIR / fname).unlink()
        except FileNotFoundError:
            pass
