"""Side-by-side benchmark of the token service (``python -m bench``; docs/performance.md).

Importing this package imports nothing heavy: the benchmark's worker processes must
control what they import (and set SSL_CERT_FILE before aiohttp is imported).
"""
