"""`dermdesk ls --failing CHECKS`: the gallery's per-check filter on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermdesk.cli import main
from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.library import Library
from dermdesk.library.records import ImageRecord
from tests.gui.stand_ins import add_quality
from tests.helpers import encode, skin_like


def test_ls_failing_lists_the_images_that_do_not_pass_a_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "lib"
    with Library.open(root) as lib:
        ids = [
            lib.add_images(
                [ImageRecord(stored=ingest_bytes(encode(skin_like(seed=s)), lib.store))]
            )[0][1]
            for s in range(3)
        ]
        add_quality(lib, ids[0], "sharpness", "fail", "blurred")
        add_quality(lib, ids[1], "sharpness", "warn", "soft")
        add_quality(lib, ids[2], "sharpness", "pass", "sharp")
    assert main(["--library", str(root), "ls", "--failing", "sharpness"]) == 0
    out = capsys.readouterr().out
    assert ids[0][:12] in out and ids[1][:12] in out and ids[2][:12] not in out
    assert main(["--library", str(root), "ls", "--failing", "blur"]) == 2
    assert "unknown quality check 'blur'" in capsys.readouterr().err
