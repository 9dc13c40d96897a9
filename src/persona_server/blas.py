"""How many threads numpy's BLAS (the OpenBLAS in numpy's wheels) may use in this process.

Recall's vector products are matrix-vector products over a user's vectors (exact below 20,000
rows, two-pass above), and the related-words channel multiplies a few query words by a user's
vocabulary. OpenBLAS runs such products on one thread per core once they pass a size threshold,
waking threads that then compete with onnxruntime's (embedding the next query or a batch) and
the store's readers for the same cores: on a loaded two-core machine a 10,000 x 384 product
took 8 ms on OpenBLAS's threads against 0.6 ms on the calling thread (BENCHMARKS.md, "Related
words at scale"). The server's parallelism is across requests, so one thread is the default.
"""

from __future__ import annotations

import logging

from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)


def configure_blas(threads: int) -> None:
    """Limit BLAS to `threads` threads for the whole process; 0 leaves the library's default."""
    if threads <= 0:
        return
    # Not used as a context manager: the limit stays for the life of the process.
    threadpool_limits(limits=threads, user_api="blas")
    log.debug("BLAS limited", extra={"threads": threads})
