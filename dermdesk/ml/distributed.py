"""Multi-device training: the same fine-tuning loop under torchrun (DDP).

``devices > 1`` makes the job's worker launch
``torchrun --standalone --nproc_per_node N -m dermdesk.ml.distributed SPEC``
in its own session (so Ctrl-C and the runner's cancel go through the job, not
straight to the ranks). Every rank runs :func:`dermdesk.ml.finetune.finetune`
with a :class:`~dermdesk.ml.loop.DistEnv`; NCCL on GPUs, gloo on the CPU (the
path the tests cover). Rank 0 alone reports, checkpoints and evaluates: its
messages go to ``ddp_events.jsonl``, which the worker relays to the runner,
and its outcome to ``ddp_result.json``. Cancel reaches rank 0 through the
job's cancel file and the other ranks through a broadcast in the loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dermdesk
from dermdesk.jobs.context import JobCancelled, JobContext, cancel_file, file_sender, pid_alive

EVENTS = "ddp_events.jsonl"
RESULT = "ddp_result.json"
SPEC = "ddp_spec.json"
LOG = "ddp.log"


def torchrun_command(devices: int, spec_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={devices}",
        "-m",
        "dermdesk.ml.distributed",
        str(spec_path),
    ]


def run_under_torchrun(ctx: JobContext, cfg: Any) -> dict[str, Any]:
    """Worker side: launch the ranks, relay rank 0's messages, return its result."""
    work = ctx.work_dir
    (work / EVENTS).write_text("")
    (work / RESULT).unlink(missing_ok=True)
    spec = {
        "job_id": ctx.job_id,
        "library_dir": str(ctx.library_dir),
        "params": ctx.params,
        "resume": ctx.resume,
        "owner_pid": os.getpid(),
    }
    (work / SPEC).write_text(json.dumps(spec))
    env = dict(os.environ)
    package_root = str(Path(dermdesk.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    ctx.log(f"launching {cfg.devices} processes with torchrun")
    with open(work / LOG, "w") as out:
        proc = subprocess.Popen(
            torchrun_command(cfg.devices, work / SPEC),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        offset = 0
        while proc.poll() is None:
            offset = _relay(ctx, work / EVENTS, offset)
            if ctx.should_stop():  # also when the runner vanished: ask rank 0 to stop
                cancel_file(ctx.library_dir, ctx.job_id).touch()
            time.sleep(0.2)
        _relay(ctx, work / EVENTS, offset)
    return _outcome(work, proc.returncode)


def _relay(ctx: JobContext, events: Path, offset: int) -> int:
    with open(events, encoding="utf-8") as fh:
        fh.seek(offset)
        chunk = fh.read()
    complete, _, _ = chunk.rpartition("\n")
    if not complete:
        return offset
    for line in complete.splitlines():
        kind, payload = json.loads(line)
        if kind == "progress":
            ctx.progress(payload["progress"], payload.get("message"), force=True)
        elif kind == "log":
            ctx.log(str(payload))
    return offset + len(complete.encode("utf-8")) + 1


def _outcome(work: Path, returncode: int) -> dict[str, Any]:
    result_path = work / RESULT
    if not result_path.is_file():
        tail = (work / LOG).read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(
            f"torchrun exited with status {returncode} without a result; last output:\n"
            + "\n".join(tail)
        )
    outcome = json.loads(result_path.read_text())
    if outcome["status"] == "cancelled":
        raise JobCancelled(outcome.get("message") or "cancelled")
    if outcome["status"] == "failed":
        raise RuntimeError("rank 0 failed:\n" + outcome["error"])
    result: dict[str, Any] = outcome["result"]
    return result


# -- rank side (under torchrun) --------------------------------------------------------------


def rank_main(argv: Sequence[str]) -> int:
    """One rank of a torchrun launch: init the process group and fine-tune."""
    import torch
    import torch.distributed as dist

    from dermdesk.ml.finetune import FinetuneConfig, finetune
    from dermdesk.ml.loop import DistEnv

    # DDP's note about ViT token parameters' gradient strides is harmless and floods the log.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    spec = json.loads(Path(argv[0]).read_text())
    cfg = FinetuneConfig.from_params(spec["params"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    gpu = torch.cuda.is_available() and cfg.loop.device != "cpu"
    if gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if gpu else "gloo", timeout=timedelta(minutes=10))
    env = DistEnv(dist.get_rank(), dist.get_world_size(), local_rank)
    library_dir = Path(spec["library_dir"])
    work = JobContext(spec["job_id"], library_dir, spec["params"], lambda m: None).work_dir
    ctx = JobContext(
        spec["job_id"],
        library_dir,
        spec["params"],
        file_sender(work / EVENTS) if env.is_main else (lambda m: None),
        resume=spec["resume"],
        owner_alive=lambda: pid_alive(int(spec["owner_pid"])),
        echo=not env.is_main,  # other ranks' lines go to ddp.log only
    )
    try:
        result = finetune(library_dir, cfg, ctx, ctx.checkpoint_path, resume=ctx.resume, dist=env)
        outcome: dict[str, Any] = {"status": "done", "result": result}
    except JobCancelled as exc:
        outcome = {"status": "cancelled", "message": str(exc)}
    except BaseException:
        outcome = {"status": "failed", "error": traceback.format_exc()}
        print(outcome["error"], file=sys.stderr, flush=True)
    if env.is_main:
        tmp = work / (RESULT + ".part")
        tmp.write_text(json.dumps(outcome))
        os.replace(tmp, work / RESULT)
    dist.destroy_process_group()
    return 1 if outcome["status"] == "failed" else 0


if __name__ == "__main__":
    raise SystemExit(rank_main(sys.argv[1:]))
