"""Gallery snapshots, dashboard counts and gaps, and the annotation writers (audited)."""

from __future__ import annotations

import pytest

from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.browse import (
    coverage_gaps,
    dashboard_stats,
    distinct_devices,
    model_report,
    patient_words,
    readable_params,
    snapshot,
    tiles,
)
from dermdesk.library.edits import (
    CaptureInfo,
    add_capture,
    link_images,
    request_job_cancel,
    set_body_site,
)
from dermdesk.library.query import device_name
from dermdesk.library.records import ImageRecord, LabelIn, PatientRef, SkinToneIn
from dermdesk.ml.groups import device_name as device_group
from tests.helpers import encode, skin_like


def add(lib: Library, seed: int, **kwargs: object) -> str:
    stored = ingest_bytes(encode(skin_like(seed=seed)), lib.store)
    return lib.add_images([ImageRecord(stored=stored, **kwargs)])[0][1]  # type: ignore[arg-type, union-attr]


def test_snapshot_orders_and_groups_consistently(lib: Library) -> None:
    a = add(lib, 1, label=LabelIn("MEL"))
    b = add(lib, 2, label=LabelIn("NEV"))
    c = add(lib, 3)
    snap = snapshot(lib, sort="imported", group="diagnosis")
    assert [g.key for g in snap.groups] == [None, "MEL", "NEV"]
    assert snap.ids == [c, a, b]
    assert [t.id for t in tiles(lib, snap.ids)] == snap.ids
    assert snapshot(lib, ImageFilter(labelled=False)).ids == [c]
    with pytest.raises(ValueError, match="unknown sort"):
        snapshot(lib, sort="nope")


def test_dashboard_counts_and_gap_sentences(lib: Library) -> None:
    for seed in range(3):
        add(lib, seed, label=LabelIn("MEL"), skin_tones=[SkinToneIn(fitzpatrick=2)])
    add(lib, 9, label=LabelIn("NEV"), skin_tones=[SkinToneIn(fitzpatrick=6)])
    stats = dashboard_stats(lib)
    assert (stats.total, stats.labelled) == (4, 4)
    assert stats.dx_fitzpatrick[("MEL", 2)] == 3
    texts = [g.text() for g in coverage_gaps(stats)]
    assert "no melanoma on Fitzpatrick V-VI" in texts
    assert "only 3 melanoma images on Fitzpatrick I-II" in texts
    assert stats.quality["unchecked"] == 4


def test_link_body_site_and_tone_clear_are_audited(lib: Library) -> None:
    image = add(lib, 1)
    link_images(lib, [image], patient="MRN-1", lesion="mole-1", body_site="back")
    row = lib.image(image)
    assert lib.patient(row["patient_id"])["external_id"] == "MRN-1"
    set_body_site(lib, row["lesion_id"], "chest")
    assert lib.lesion(row["lesion_id"])["body_site"] == "chest"
    other = add(lib, 2)
    link_images(
        lib, [other], patient=row["patient_id"], lesion=row["lesion_id"]
    )  # by pseudonymous id
    assert lib.image(other)["lesion_id"] == row["lesion_id"]
    link_images(lib, [other], patient="MRN-2", lesion=None)
    with pytest.raises(LibraryError, match="belongs to another patient"):
        link_images(lib, [other], patient="MRN-2", lesion="mole-1")

    lib.set_skin_tone([image], SkinToneIn(fitzpatrick=3, method="estimated", rater="ita"))
    lib.set_skin_tone([image], SkinToneIn(fitzpatrick=5, method="manual", rater="nurse"))
    lib.clear_skin_tone([image])
    row = lib.image(image)
    assert (row["fitzpatrick"], row["fitzpatrick_est"]) == (None, 3)  # the estimate stays one
    actions = {e["action"] for e in lib.audit_entries(image)}
    assert {"image.link", "skin_tone.clear"} <= actions


def test_capture_needs_a_reason_to_keep_a_failed_frame(lib: Library) -> None:
    stored = ingest_bytes(encode(skin_like(seed=5)), lib.store)
    failed = CaptureInfo(
        checks=[{"name": "sharpness", "verdict": "fail"}], device={"device_model": "cam"}
    )
    with pytest.raises(LibraryError, match="give a reason"):
        add_capture(lib, stored, failed)
    failed.override_reason = "only view possible"
    image = add_capture(lib, stored, failed)
    assert lib.image(image)["source"] == "capture" and lib.image(image)["device_model"] == "cam"
    assert any(e["action"] == "capture.override" for e in lib.audit_entries(image))


def test_capture_keeps_a_rated_skin_type_and_a_provisional_diagnosis(lib: Library) -> None:
    stored = ingest_bytes(encode(skin_like(seed=6)), lib.store)
    bad = CaptureInfo(operator="nurse-ana", diagnosis="NOPE")
    with pytest.raises(LibraryError, match="unknown diagnosis"):
        add_capture(lib, stored, bad)
    with pytest.raises(LibraryError, match="Fitzpatrick"):
        add_capture(lib, stored, CaptureInfo(fitzpatrick=7))
    assert lib.count() == 0
    info = CaptureInfo(
        operator="nurse-ana", fitzpatrick=5, diagnosis="OTHER", diagnosis_text="keloid"
    )
    image = add_capture(lib, stored, info)
    row = lib.image(image)
    assert (row["fitzpatrick"], row["monk"], row["diagnosis"]) == (5, None, "OTHER")
    label = lib.current_label(image)
    assert label is not None
    assert (label["annotator"], label["certainty"], label["free_text"]) == (
        "nurse-ana",
        "single_expert",
        "keloid",
    )
    manual = [t for t in lib.skin_tones(image) if t["method"] == "manual"]
    assert [(t["fitzpatrick"], t["rater"]) for t in manual] == [(5, "nurse-ana")]


def test_job_cancel_request(lib: Library) -> None:
    job = lib.conn.execute(
        "INSERT INTO job (kind, status, created_at) VALUES ('train', 'running', 'now')"
    ).lastrowid
    assert request_job_cancel(lib, int(job or 0))
    assert lib.jobs()[0]["status"] == "cancelling"


def test_device_names() -> None:
    assert device_name("Canon", "Canon EOS 5D") == "Canon EOS 5D"
    assert device_name("Apple", "iPhone 15") == "Apple iPhone 15"
    assert device_name(None, " ") is None and device_group({}) == "unknown"


def test_migration_7_names_devices_as_the_python_function_does() -> None:
    import sqlite3

    from dermdesk.library.schema import _DEVICE_NAME_SQL

    pairs = [
        ("Canon", "Canon EOS 5D"),
        ("canon", "CANON EOS 5D"),
        ("NIKON CORPORATION", "NIKON D70"),
        ("Apple", "iPhone 15"),
        (None, "DermLite DL4"),
        ("HEINE", None),
        (" Canon ", " Canon EOS R5 "),
        ("", ""),
        (None, None),
        ("\tSony", "Sony A7"),
        ("Ästhetik", "ästhetik cam"),  # non-ASCII case: neither side folds it
        ("Ästhetik", "Ästhetik cam"),
        ("Long make name", "Long"),
    ]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE image (device_make TEXT, device_model TEXT)")
    conn.executemany("INSERT INTO image VALUES (?, ?)", pairs)
    rows = conn.execute(f"SELECT device_make, device_model, {_DEVICE_NAME_SQL} FROM image")
    for make, model, name in rows:  # migration 7's SQL names every device as Python does
        assert name == device_name(make, model), (make, model)


def test_every_device_suggestion_finds_its_images(lib: Library) -> None:
    """Suggestions, filters, stats and metric groups all use one device name."""
    stored = {}
    for seed, make, model in (
        (1, "Canon", "Canon EOS 5D"),
        (2, "Canon", "Canon EOS 5D"),
        (3, "NIKON CORPORATION", "NIKON D70"),
        (4, "Apple", "iPhone 15"),
        (5, None, "DermLite DL4"),
    ):
        s = ingest_bytes(encode(skin_like(seed=seed)), lib.store)
        s.device = {"device_make": make, "device_model": model}
        stored[seed] = s
        lib.add_images([ImageRecord(stored=s)])
    add(lib, 6)  # no device
    names = distinct_devices(lib)
    assert names[0] == "Canon EOS 5D" and len(names) == 4
    assert "NIKON CORPORATION NIKON D70" in names
    for name in names:
        matched = lib.images(ImageFilter(device=name))
        assert matched and {device_group(r) for r in matched} == {name}
    lib.update_image(next(iter(stored.values())).sha256, device_model="EOS R5")
    assert lib.count(ImageFilter(device="Canon EOS R5")) == 1  # an edit renames it
    lib.update_image(next(iter(stored.values())).sha256, device_model="Canon EOS 5D")
    counts = {r["device"]: r["n"] for r in lib.counts(["device"])}
    assert counts == {
        "Canon EOS 5D": 2,
        "NIKON CORPORATION NIKON D70": 1,
        "Apple iPhone 15": 1,
        "DermLite DL4": 1,
        None: 1,
    }
    assert dict(dashboard_stats(lib).devices)["unknown device"] == 1


def test_model_report_reads_what_the_metrics_code_writes() -> None:
    """The Models tab reads the exact shape ml.metrics.evaluate_groups records."""
    import numpy as np

    from dermdesk.ml.metrics import evaluate_groups

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    probs = rng.dirichlet(np.ones(3), 90)
    groups = {"fitzpatrick": ["I-II"] * 60 + ["V-VI"] * 30, "device": ["a"] * 89 + ["b"]}
    test = evaluate_groups(y, probs, ["MEL", "NEV", "BCC"], groups, min_n=5, n_boot=50)
    report = model_report({"test": test, "val": test}, "test")
    ba = report.overall["balanced_accuracy"]
    assert ba.value == test["overall"]["balanced_accuracy"]["value"] and ba.n == 90
    assert ba.low is not None and ba.low <= ba.value <= ba.high
    assert [f.label for f in report.groups["fitzpatrick"]] == ["I-II", "V-VI"]
    small = report.groups["device"][1]
    assert (small.label, small.value, small.n) == ("b", None, 1)
    assert "too few" in small.text()
    assert [c for c, *_ in report.per_class] == ["MEL", "NEV", "BCC"]
    assert "malignant" in report.overall
    assert model_report({}, "test").empty and model_report({"test": "junk"}).empty
    rows = dict(readable_params({"arch": "vit", "loop": {"lr": 0.001}, "classes": ["A", "B"]}))
    assert rows == {"arch": "vit", "loop.lr": "0.001", "classes": "A, B"}


def test_patient_words_offer_every_id_and_a_local_patient_s_own_number(lib: Library) -> None:
    add(lib, 1, patient=PatientRef("local", "P-17"))
    add(lib, 2, patient=PatientRef("ham10000", "HAM_0001"))
    ids = [p["id"] for p in lib.query("SELECT id FROM patient")]
    words = patient_words(lib)
    assert set(ids) <= set(words) and "P-17" in words  # typed at the desk, found
    assert "HAM_0001" not in words  # a dataset's own numbering is not offered
