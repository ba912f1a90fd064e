"""Model calls on the engine: one at a time, cancellable by interrupt(), bounded by a deadline, OOM mapped.

A mixin of EgoEngine (it reads the engine's lock, epoch, per-thread call, config and caches).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .errors import BusyError, DeviceOutOfMemoryError, RequestCancelledError, RequestTimeoutError


@dataclass
class _Call:
    """The model call a thread is running: the interrupt epoch it entered at and its deadline."""

    what: str
    epoch: int
    deadline: float | None = None


class ModelCallsMixin:
    """`interrupt` and the guard every model call runs under (`_model_call`, `_check`)."""

    def interrupt(self) -> None:
        """Cancel every model call running or waiting for the engine now (thread-safe).

        Each raises RequestCancelledError at its next check (before the next forward pass or decode
        step) and stores nothing; calls started after this one run normally."""
        with self._epoch_lock:
            self._epoch += 1

    def _check(self) -> None:
        """Raise if the current thread's model call was interrupted or passed its deadline."""
        call: _Call | None = getattr(self._calls, "current", None)
        if call is None:
            return
        if self._epoch != call.epoch:
            raise RequestCancelledError(f"{call.what} was interrupted; nothing was changed")
        if call.deadline is not None and time.monotonic() > call.deadline:
            raise RequestTimeoutError(f"{call.what} took longer than the {self.config.request_timeout_s:g} s "
                                      "deadline (request_timeout_s) and was abandoned; nothing was changed")

    @contextlib.contextmanager
    def _model_call(self, what: str, wait: bool = True, busy: str | None = None) -> Iterator[None]:
        """Run a model call: hold the engine, check the interrupt epoch and the deadline, map OOM.

        The epoch is read before waiting for the engine, so interrupt() also cancels waiting calls. The
        deadline starts when the call gets the engine: time spent waiting is bounded by the running
        call's own deadline. A model call made inside another on the same thread (from an on_view
        callback, say) runs under the outer call's epoch and deadline."""
        if getattr(self._calls, "current", None) is not None:
            yield
            return
        epoch = self._epoch
        with self._acquire(wait, busy or what):
            timeout = self.config.request_timeout_s
            self._calls.current = _Call(what, epoch, time.monotonic() + timeout if timeout > 0 else None)
            try:
                self._check()
                with self._device_guard():
                    yield
            finally:
                self._calls.current = None

    # ----- internals: locking and device errors ------------------------------------------------------
    @contextlib.contextmanager
    def _acquire(self, wait: bool, what: str) -> Iterator[None]:
        if not self._lock.acquire(blocking=wait):
            raise BusyError(f"engine busy ({what}); try again when it finishes")
        try:
            yield
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def _device_guard(self) -> Iterator[None]:
        try:
            yield
        except torch.OutOfMemoryError as exc:
            self._clear_caches()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise DeviceOutOfMemoryError(f"out of device memory on {self.backend.device}: {exc}. Nothing was "
                                         "changed; try fewer concepts, fewer views or a smaller image") from exc


def weak_check(engine: Any) -> Callable[[], None]:
    """`engine._check` held weakly (for the runner: no engine <-> runner cycle)."""
    ref = weakref.ref(engine)

    def check() -> None:
        alive = ref()
        if alive is not None:
            alive._check()

    return check
