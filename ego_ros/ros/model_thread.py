"""The model thread: every model call of the node runs on one dedicated thread, in arrival order.

Executor threads never run the model: service and action coroutines await an rclpy future that the
model thread settles, and the streaming worker waits on the job it submitted.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future as ConcurrentFuture
from functools import partial
from typing import Any

from rclpy.task import Future

from .request_helpers import NodeStateError


class ModelThreadMixin:
    """EgoNode's access to the model thread (`self._pool`, a one-worker ThreadPoolExecutor)."""

    def _job(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one model call on the model thread; keeps the memory report for diagnostics current."""
        try:
            return fn(*args, **kwargs)
        finally:
            self._refresh_memory_report()

    def _refresh_memory_report(self) -> None:
        engine = self._engine
        if engine is not None:
            try:
                self._memory_report = engine.memory_report()
            except RuntimeError:
                pass  # a concurrent store change; the next job refreshes it

    def _new_future(self) -> Future:
        """An rclpy future whose completion from any thread wakes the executor.

        rclpy resumes a coroutine awaiting a future only when the executor wakes up; a done callback
        makes set_result schedule a task, which triggers the executor's guard condition.
        """
        future: Future = Future(executor=self.executor)
        future.add_done_callback(lambda _f: None)
        return future

    async def _on_model_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Await `fn(*args, **kwargs)` run on the model thread, behind the calls queued before it."""
        pool = self._pool
        if pool is None:
            raise NodeStateError(self._not_configured())
        result = self._new_future()
        try:
            job = pool.submit(self._job, fn, *args, **kwargs)
        except RuntimeError as exc:
            raise NodeStateError("the node is cleaning up; the request was not run") from exc
        job.add_done_callback(partial(settle, result))
        return await result


class PoolClosedError(Exception):
    """The model thread was shut down (cleanup) while the worker wanted it."""


def settle(target: Future, job: ConcurrentFuture) -> None:
    """Copy a model-thread job's outcome onto the rclpy future a coroutine awaits."""
    if job.cancelled():
        target.set_exception(NodeStateError("the request was dropped: the node was cleaned up before it ran"))
    elif job.exception() is not None:
        target.set_exception(job.exception())
    else:
        target.set_result(job.result())
