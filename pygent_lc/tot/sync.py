"""Running a search from sync code, so that Ctrl-C and cancellation end it at once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
import warnings
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

#: How long an interrupted search gets to cancel its calls before we stop waiting.
CANCEL_GRACE_S = 0.5
_POLL_S = 0.05


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from sync code, even under a running event loop.

    Without a running loop this is ``asyncio.run``: Ctrl-C cancels the
    search, whose calls in flight are cancelled with it. Under a running loop
    (a notebook cell, an async handler) the coroutine runs on a fresh loop in
    a worker thread, with the caller's context variables, and the caller's
    thread (and its loop) waits: ``await engine.solve(...)`` is the way there.
    A ``KeyboardInterrupt`` while waiting, or the cancellation of the task
    that called us, cancels the search in the worker at once and is raised
    within about ``CANCEL_GRACE_S``.
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    warnings.warn(
        "a sync solve under a running event loop blocks that loop until it ends; "
        "use 'await engine.solve(...)' there",
        RuntimeWarning,
        stacklevel=3,
    )
    return _run_in_thread(coro, asyncio.current_task(running))


def _run_in_thread(coro: Coroutine[Any, Any, _T], caller: asyncio.Task[Any] | None) -> _T:
    done: concurrent.futures.Future[_T] = concurrent.futures.Future()
    started = threading.Event()
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def work() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(coro, context=context)
            box["loop"], box["task"] = loop, task
            started.set()
            try:
                done.set_result(loop.run_until_complete(task))
            except BaseException as exc:  # delivered to the waiting thread
                done.set_exception(exc)
        finally:
            started.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # A daemon thread: an interrupted search must not hold the interpreter open.
    worker = threading.Thread(target=work, name="pygent-tot-solve", daemon=True)
    worker.start()
    try:
        while True:
            try:
                return done.result(timeout=_POLL_S)
            except concurrent.futures.TimeoutError:
                if caller is not None and caller.cancelling():
                    raise asyncio.CancelledError() from None
    except BaseException:
        started.wait()
        loop, task = box.get("loop"), box.get("task")
        if loop is not None and task is not None and not done.done():
            # RuntimeError: the loop has just closed, nothing is left to cancel.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
            concurrent.futures.wait([done], timeout=CANCEL_GRACE_S)
        raise


__all__ = ["CANCEL_GRACE_S", "run_sync"]
