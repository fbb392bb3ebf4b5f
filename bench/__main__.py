"""``python -m bench``: the one entry point."""

import sys

from bench.source import ref_from_argv, use_revision

if (ref := ref_from_argv(sys.argv[1:])) is not None:
    use_revision(ref)  # before anything imports idp or idp_phone

from bench.run import main

main()
