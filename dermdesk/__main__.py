"""`python -m dermdesk`: the same entry point as the `dermdesk` command."""

import multiprocessing

if __name__ == "__main__":
    # Must run first in a frozen (PyInstaller) app so spawned job workers start correctly.
    multiprocessing.freeze_support()
    from dermdesk.cli import main

    raise SystemExit(main())
