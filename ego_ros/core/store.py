"""The concept store: name -> memory, resident on the model's device, persisted atomically.

Layout of a store directory:
    store.json                index: format, model fingerprint, and per concept its file and checksum
    concepts/<uuid>.safetensors   one file per concept: tensors + JSON metadata (safetensors header)
    .lock                     the single writer's lock (see store_lock.py): "pid host" of the holder
    orphans/                  concept files of writes whose index never landed, moved aside at open

Every write goes to a temporary file that is fsync'ed and then renamed over the target, and the
directory is fsync'ed, so a crash at any moment leaves either the old or the new store, never a mix:
a new concept file is written first and the index that refers to it second; a removed concept leaves
the index first and its file after. What a crash leaves behind (temporary files, concept files the
index does not name) is cleaned by the next writer at open (`_clean`).

One process writes a store at a time (an exclusive lock on the directory); readers (read_only) take no
lock and see a consistent index, since every change replaces it atomically. An index entry whose file
is missing or damaged is never dropped: it stays listed as unavailable until it is removed or its file
comes back.
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

from .errors import (
    DuplicateConceptError,
    InvalidConceptNameError,
    ModelMismatchError,
    StoreCorruptError,
    StoreNotWritableError,
    UnknownConceptError,
)
from .layout import Layout
from .memory import ConceptMemory, MemoryView, validate_name
from .store_lock import LOCK_FILE, DirectoryLock

FORMAT_VERSION = 1
INDEX_FILE = "store.json"
CONCEPTS_DIR = "concepts"
ORPHANS_DIR = "orphans"


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
        if not v.layout.is_single:  # single-grid views keep the format memories had before tiling
            views_meta[-1]["layout"] = v.layout.to_json()
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
                layout=Layout.from_json(vm["layout"]) if "layout" in vm else None,
            ))
            idx = views[-1].indices
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= views[-1].layout.count):
                raise ValueError(f"view {i}: token index outside its {views[-1].layout.count}-token layout")
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

    Names are NFC-normalised and validated at every entry point (`get`, `remove`, `rename`, `in`), so a
    lookup spelt with decomposed accents finds what was stored. Index entries whose files are missing or
    damaged stay in the index as *unavailable* (see `unavailable()`): they are not served, they can be
    removed, every write keeps them, and a later open recovers them once the file is back.
    """

    def __init__(self, fingerprint: str, model: str = "", directory: str | Path | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                 read_only: bool = False) -> None:
        self.fingerprint = fingerprint
        self.model = model
        self.directory = Path(directory) if directory is not None else None
        self.device = torch.device(device)
        self.dtype = dtype
        self.read_only = read_only
        self._memories: dict[str, ConceptMemory] = {}
        #: every index entry, available or not, in index order (what the next index write keeps)
        self._files: dict[str, dict[str, Any]] = {}
        self._unavailable: dict[str, str] = {}
        self._revisions: dict[str, int] = {}
        self._counter = 0
        self._lock = threading.RLock()
        self._dir_lock: DirectoryLock | None = None
        self._closed = False
        #: files the last committed index dropped (see _write_index), read at open for the cleanup
        self._superseded: set[str] = set()
        #: files moved aside or deleted by the cleanup at open (paths, for the log)
        self.cleaned: list[str] = []

    # ----- opening -------------------------------------------------------------------------------------
    @staticmethod
    def claim(directory: str | Path) -> DirectoryLock:
        """Create `directory`, prove it writable and take its writer lock, for `open(..., lock=)`.

        Lets a caller fail at once on a store that another process holds or that cannot be written,
        before spending minutes loading a model (EgoEngine.load does)."""
        directory = Path(directory)
        _prove_writable(directory)
        return DirectoryLock.acquire(directory)

    @staticmethod
    def remove_empty(directory: str | Path) -> None:
        """Remove a store directory that holds nothing but what `claim` made (best effort)."""
        directory = Path(directory)
        try:
            (directory / LOCK_FILE).unlink(missing_ok=True)
            (directory / CONCEPTS_DIR).rmdir()
            directory.rmdir()
        except OSError:  # not empty (or already gone): leave it
            pass

    @classmethod
    def open(cls, directory: str | Path, fingerprint: str, model: str = "", device: torch.device | str = "cpu",
             dtype: torch.dtype | None = None, strict: bool = True, read_only: bool = False,
             lock: DirectoryLock | None = None) -> ConceptStore:
        """Open (or create) the store in `directory` for the model with `fingerprint`.

        A writer (read_only False) creates the directory, proves it writable (StoreNotWritableError),
        takes the directory's exclusive lock (StoreLockedError naming the holder), then cleans what
        interrupted writes left (see `_clean`). read_only takes no lock, changes nothing on disk and
        refuses writes. `lock` is the directory's lock already taken with `claim` (the store then owns
        it). Raises ModelMismatchError if the store was made by another model,
        StoreCorruptError if the index is unreadable, or (strict) if any concept file is missing or
        damaged; otherwise such concepts are kept as unavailable, with the reason, and never deleted.
        """
        store = cls(fingerprint, model, directory, device, dtype, read_only=read_only)
        assert store.directory is not None
        if not read_only:
            if lock is None:
                lock = cls.claim(store.directory)
            elif not lock.held or lock.path.parent != store.directory:
                raise ValueError(f"the lock given is not a held lock of {store.directory}")
            store._dir_lock = lock
        try:
            store._load(strict)
            if not read_only:
                store.cleaned = _clean(store.directory, {e["file"] for e in store._files.values()},
                                       store._superseded)
        except BaseException:
            store.close()
            raise
        return store

    def _load(self, strict: bool) -> None:
        assert self.directory is not None
        index_path = self.directory / INDEX_FILE
        if not index_path.exists():
            return
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            concepts = index["concepts"]
            stored_fp = index["fingerprint"]
            if index.get("format") != FORMAT_VERSION or not isinstance(concepts, dict):
                raise ValueError("unsupported index format")
            if not all(isinstance(e, dict) and isinstance(e.get("file"), str) for e in concepts.values()):
                raise ValueError("an index entry lacks its file name")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreCorruptError(f"{index_path}: unreadable concept store index ({exc})") from exc
        if stored_fp != self.fingerprint:
            raise ModelMismatchError(
                f"concept store {self.directory} was made with model {index.get('model', '?')!r} "
                f"(fingerprint {stored_fp}); the loaded model {self.model!r} has fingerprint {self.fingerprint}. "
                "Memories are projector outputs of one model and cannot be used with another: use a "
                "separate store directory per model.")
        superseded = index.get("superseded", [])
        if isinstance(superseded, list):
            self._superseded = {f for f in superseded if isinstance(f, str)}
        for name, entry in concepts.items():
            self._files[name] = dict(entry)
            try:
                memory = self._read_entry(name, entry)
            except (StoreCorruptError, ModelMismatchError) as exc:
                if strict:
                    raise
                self._unavailable[name] = str(exc)
                continue
            self._memories[name] = memory.to(self.device, self.dtype)
            self._bump(name)

    def _read_entry(self, name: str, entry: dict[str, Any]) -> ConceptMemory:
        assert self.directory is not None
        path = self.directory / CONCEPTS_DIR / entry["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreCorruptError(f"{path}: concept file of {name!r} is missing") from None
        except OSError as exc:
            raise StoreCorruptError(f"{path}: concept file of {name!r} cannot be read ({exc})") from exc
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise StoreCorruptError(f"{path}: checksum mismatch (file damaged or changed)")
        memory = memory_from_bytes(data, str(path))
        if memory.name != name:
            raise StoreCorruptError(f"{path}: holds concept {memory.name!r}, index says {name!r}")
        if memory.fingerprint != self.fingerprint:
            raise ModelMismatchError(f"{path}: memory made by another model ({memory.fingerprint})")
        return memory

    def close(self) -> None:
        """Release the directory lock; later writes are refused. Idempotent."""
        with self._lock:
            self._closed = True
            if self._dir_lock is not None:
                self._dir_lock.release()
                self._dir_lock = None

    def __enter__(self) -> ConceptStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- queries -------------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        """Whether an available concept has this name (any spelling of it; False for invalid names)."""
        try:
            return validate_name(name) in self._memories
        except InvalidConceptNameError:
            return False

    def has_entry(self, name: str) -> bool:
        """Whether the index holds this name, available or not (what `remove` accepts); validates it."""
        name = validate_name(name)
        with self._lock:
            return name in self._memories or name in self._unavailable

    def __len__(self) -> int:
        return len(self._memories)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        """Names of the available concepts (the ones inference may use), in index order."""
        with self._lock:
            return list(self._memories)

    def unavailable(self) -> dict[str, str]:
        """Name -> reason for index entries whose files are missing or damaged."""
        with self._lock:
            return dict(self._unavailable)

    @property
    def problems(self) -> dict[str, str]:
        """The former name of `unavailable()` (kept for callers that read it as an attribute)."""
        return self.unavailable()

    def get(self, name: str) -> ConceptMemory:
        name = validate_name(name)
        with self._lock:
            try:
                return self._memories[name]
            except KeyError:
                raise UnknownConceptError(self._unknown(name)) from None

    def revision(self, name: str) -> int:
        return self._revisions[validate_name(name)]

    def _unknown(self, name: str) -> str:
        if name in self._unavailable:
            return (f"concept {name!r} is unavailable: {self._unavailable[name]} (put the file back and "
                    "reopen the store, or remove the concept)")
        known = ", ".join(sorted(self._memories)) or "none"
        return f"unknown concept {name!r} (known: {known})"

    def check_memory(self, memory: ConceptMemory) -> None:
        if memory.fingerprint != self.fingerprint:
            raise ModelMismatchError(f"concept {memory.name!r} was made by another model (fingerprint "
                                     f"{memory.fingerprint}, this store's model has {self.fingerprint})")

    # ----- changes -------------------------------------------------------------------------------------
    def add(self, memory: ConceptMemory, replace: bool = False) -> None:
        """Add (or, with replace, overwrite) a concept; persisted before it becomes visible.

        An unavailable concept of the same name counts as existing: only replace overwrites it."""
        name = validate_name(memory.name)
        if name != memory.name:
            memory = ConceptMemory(**{**memory.__dict__, "name": name})
        self.check_memory(memory)
        with self._lock:
            self._check_writable()
            if name in self._unavailable and not replace:
                raise DuplicateConceptError(f"concept {name!r} exists but is unavailable "
                                            f"({self._unavailable[name]}); remove it or ask to replace")
            if name in self._memories and not replace:
                raise DuplicateConceptError(f"concept {name!r} already exists (remove it, rename it or ask to replace)")
            if self.directory is not None:
                self._commit_file(memory, drop=name)
            self._memories[name] = memory.to(self.device, self.dtype)
            self._unavailable.pop(name, None)
            self._bump(name)

    def remove(self, name: str) -> ConceptMemory | None:
        """Remove a concept and its file; returns its memory (None for an unavailable concept)."""
        name = validate_name(name)
        with self._lock:
            if name not in self._memories and name not in self._unavailable:
                raise UnknownConceptError(self._unknown(name))
            self._check_writable()
            if self.directory is not None:
                files = dict(self._files)
                entry = files.pop(name)
                self._write_index(files, superseded=[entry["file"]])
                self._files = files
                self._unlink(entry["file"])
            self._unavailable.pop(name, None)
            self._revisions.pop(name, None)
            return self._memories.pop(name, None)

    def rename(self, old: str, new: str) -> None:
        old, new = validate_name(old), validate_name(new)
        with self._lock:
            memory = self.get(old)
            if new == old:
                return
            if new in self._memories or new in self._unavailable:
                raise DuplicateConceptError(f"cannot rename {old!r} to {new!r}: that name exists")
            self._check_writable()
            if self.directory is not None:
                # The memory file stores its name too: write a renamed copy, then the index.
                self._commit_file(ConceptMemory(**{**memory.__dict__, "name": new}), drop=old)
            memory.name = new
            self._memories = {(new if k == old else k): v for k, v in self._memories.items()}
            self._revisions.pop(old, None)
            self._bump(new)

    def clear(self) -> None:
        """Remove every concept, unavailable ones included."""
        with self._lock:
            for name in [*self._memories, *self._unavailable]:
                self.remove(name)

    # ----- internals -----------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreNotWritableError(f"concept store {self.directory} was opened read-only")
        if self._closed:
            raise StoreNotWritableError(f"concept store {self.directory} is closed")

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
            self._write_index(files, superseded=[old_entry["file"]] if old_entry is not None else [])
        except BaseException:
            self._unlink(fname)
            raise
        self._files = files
        if old_entry is not None:
            self._unlink(old_entry["file"])

    def _write_index(self, files: dict[str, dict[str, Any]], superseded: list[str]) -> None:
        """Commit the index. `superseded` names the files this commit drops and that are unlinked right
        after it: a crash in between leaves them, and the next open knows they are safe to delete."""
        assert self.directory is not None
        index = {"format": FORMAT_VERSION, "fingerprint": self.fingerprint, "model": self.model,
                 "updated": time.time(), "concepts": files, "superseded": superseded}
        atomic_write_bytes(self.directory / INDEX_FILE,
                           json.dumps(index, ensure_ascii=False, indent=1).encode("utf-8"))

    def _unlink(self, fname: str) -> None:
        assert self.directory is not None
        try:
            (self.directory / CONCEPTS_DIR / fname).unlink()
        except FileNotFoundError:
            pass


def _prove_writable(directory: Path) -> None:
    """Create `directory` and write, fsync and remove a probe file in it, or raise StoreNotWritableError."""
    probe = directory / f".probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONCEPTS_DIR).mkdir(exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StoreNotWritableError(f"concept store directory {directory} cannot be created or written: "
                                    f"{reason} ({exc.filename or directory})") from exc


def _clean(directory: Path, referenced: set[str], superseded: set[str]) -> list[str]:
    """Clean what interrupted writes left; run by the lock holder at open. Returns what it touched.

    - Temporary files of atomic writes (`.<name>.<random>.tmp`) are deleted: an unfinished write.
    - Probe files of a writer that died between creating and removing one are deleted.
    - A concept file the index does not name but lists as superseded was dropped by the last commit
      (a removed concept, or the old file of a rename or replace killed before its unlink): deleted.
    - Any other concept file the index does not name belongs to a write whose index never landed (an
      introduction that was never acknowledged) or to a store written by an older version: it is moved
      to `<dir>/orphans/`, never deleted, so no memory that might be wanted is destroyed on a guess.
      The decision uses no file times, so a robot's clock jumping at boot cannot mislead it.
    """
    touched: list[str] = []
    for folder in (directory, directory / CONCEPTS_DIR):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if not path.is_file():
                continue
            name = path.name
            if (name.startswith(".") and name.endswith(".tmp")) or name.startswith(".probe-"):
                _remove_quietly(path, touched)
            elif folder.name == CONCEPTS_DIR and name.endswith(".safetensors") and name not in referenced:
                if name in superseded:
                    _remove_quietly(path, touched)
                else:
                    orphans = directory / ORPHANS_DIR
                    orphans.mkdir(exist_ok=True)
                    target = orphans / name
                    os.replace(path, target)
                    touched.append(str(target))
    if touched:
        _fsync_dir(directory / CONCEPTS_DIR)
    return touched


def _remove_quietly(path: Path, touched: list[str]) -> None:
    try:
        path.unlink()
        touched.append(str(path))
    except FileNotFoundError:
        pass
