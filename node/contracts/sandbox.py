"""Where contract code runs: threads whose stack at entry never depends on who called.

Python raises RecursionError at a depth counted from the bottom of the running thread's stack.
Run on the caller's thread, a deep contract would fail or succeed depending on how deep the
caller happened to be (a test, the RPC layer, block execution, block sync) — a result that can
differ between validators. So every contract load and call runs on a VM thread:

- one *execution* thread for transactions and deploys; the caller waits for it, so contract
  calls still run one at a time, in block order;
- a bounded pool of *query* threads for read-only `contract_query`, which run beside the node's
  event loop (node/rpc/methods.py waits on them without blocking it).

Every VM thread starts at the same depth, has a large stack, and the interpreter's recursion
limit leaves `limits.contract_python_frames_max` frames above that start. The VM's own caps
(call depth, nesting depth) keep a contract well under that, and a test measures the deepest
legal contract against it; should a run ever reach the limit anyway, the error is the same on
every node because the starting depth is.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from node import limits

thread_stack_bytes = 64 * 1024 * 1024
"""Stack of each VM thread: room for the recursion limit below with C frames of any size."""
thread_entry_frames_max = 16
"""Python frames below a VM thread's work (threading's bootstrap and the worker loop)."""

_recursion_limit = thread_entry_frames_max + limits.contract_python_frames_max
if sys.getrecursionlimit() < _recursion_limit:
    # Once, at import: the limit is per interpreter, and raising it never shortens another thread's room.
    sys.setrecursionlimit(_recursion_limit)
_local = threading.local()


def on_vm_thread() -> bool:
    """True on a thread this module started (contract code may run here directly)."""
    return getattr(_local, "is_vm_thread", False)


class VMThreads:
    """`count` daemon threads with a large stack, taking work from one queue (`queue_max` 0: the callers
    bound it, each waiting for its own call)."""

    def __init__(self, name: str, count: int, queue_max: int) -> None:
        self._work: queue.Queue = queue.Queue(maxsize=queue_max)
        previous = threading.stack_size(thread_stack_bytes)
        try:
            self._threads = [threading.Thread(target=self._serve, name=f"{name}-{index}", daemon=True)
                             for index in range(count)]
            for thread in self._threads:
                thread.start()
        finally:
            threading.stack_size(previous)

    def submit(self, function: Callable[..., Any], *args: Any) -> Future:
        """Queue `function(*args)`; raises queue.Full if `queue_max` calls are already waiting."""
        future: Future = Future()
        self._work.put((future, function, args), block=False)
        return future

    def _serve(self) -> None:
        _local.is_vm_thread = True
        while True:
            future, function, args = self._work.get()
            if not future.set_running_or_notify_cancel():
                continue
            if sys.getrecursionlimit() < _recursion_limit:   # someone lowered it since (a test framework may)
                sys.setrecursionlimit(_recursion_limit)
            try:
                future.set_result(function(*args))
            except BaseException as error:   # handed to the waiting caller, who re-raises it
                future.set_exception(error)


_pools: dict[str, VMThreads] = {}
_pools_lock = threading.Lock()


def _pool(name: str) -> VMThreads:
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            if name == "execution":
                pool = VMThreads("contract-vm", 1, queue_max=0)
            else:
                pool = VMThreads("contract-query", limits.contract_queries_running_max,
                                 queue_max=limits.contract_queries_running_max)
            _pools[name] = pool
        return pool


def run_on_vm_thread(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` on a VM thread: here if this is one, else on the execution thread (waiting)."""
    if on_vm_thread():
        return function(*args)
    return _pool("execution").submit(function, *args).result()


def submit_query(function: Callable[..., Any], *args: Any) -> Future:
    """Start a read-only query on the query pool; raises queue.Full when every query thread is busy
    and as many queries wait (the RPC layer answers "busy, retry")."""
    return _pool("query").submit(function, *args)
