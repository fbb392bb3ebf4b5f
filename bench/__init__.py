"""QR-IdP benchmark harness (issue 6): ``python -m bench [--quick|--full] [--peer] [--profile]``.

Starts ``idp serve`` pinned to CPU 0 (SQLite, then PostgreSQL + Redis), drives it from
CPU 1 with an asyncio load generator (aiohttp for HTTP keep-alive and WebSockets, the
phone's real ES256 device proofs), prints one line per figure and writes
``bench/results/<date>.json`` and ``.md`` with PNG plots.
"""
