"""Entry point of the packaged app (PyInstaller runs this file as __main__)."""

import multiprocessing
import sys

if __name__ == "__main__":
    # First thing in a frozen app: lets spawned job workers start instead of
    # re-running the whole application.
    multiprocessing.freeze_support()
    from dermdesk.cli import main

    sys.exit(main())
