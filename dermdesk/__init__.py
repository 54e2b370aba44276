"""dermdesk: a desktop workstation for clinical dermatology datasets."""

__version__ = "0.1.0"
