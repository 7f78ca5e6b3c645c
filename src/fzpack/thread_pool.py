"""One long-lived thread pool per purpose (generator ranges, codec planes), safe across fork.

A ``ThreadPoolExecutor`` kept in a module global outlives the call that made it, which is the
point (thread start-up would cost more than the small pieces of work it runs). After ``fork`` the
child inherits the executor object but none of its worker threads: work submitted there would
wait forever (a DataLoader worker restoring a `.fzp` file, a fork-started multiprocessing pool).
:class:`SharedPool` forgets its executor in a forked child and makes a new one on first use.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


class SharedPool:
    """A lazily made executor of ``size`` threads, made again when the size asked for changes and in a forked child.

    Args:
        prefix: the worker threads' name prefix.

    Example:
        >>> pool = SharedPool("doc")
        >>> pool.get(2).submit(sum, [1, 2]).result()
        3
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._size = 0
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # in the child: the parent's threads are gone, and the lock may have been held by one of them
        self._lock = threading.Lock()
        self._pool, self._size = None, 0

    def get(self, size: int) -> ThreadPoolExecutor:
        """The executor, with ``size`` worker threads."""
        with self._lock:
            if self._pool is None or self._size != size:
                old, self._pool, self._size = self._pool, ThreadPoolExecutor(max_workers=size, thread_name_prefix=self._prefix), size
                if old is not None:
                    old.shutdown(wait=False)  # running tasks finish; their callers hold their futures
            return self._pool
