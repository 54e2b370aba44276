"""Is a process still the one we started? pid plus start time (psutil), across platforms."""

from __future__ import annotations


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if there is none."""
    import psutil  # lazy: only the job runner needs it

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError, ValueError):
        return None


def pid_alive(pid: int, started: float | None = None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still exists (a zombie
    counts as alive). With ``started`` given, a process that has the same pid but
    started at another time (the pid was reused, e.g. after a reboot) is not it."""
    if pid <= 0:
        return False
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return True
    # create_time is rounded differently by platforms; a reused pid differs by far more.
    return started is None or abs(created - started) < 2.0
