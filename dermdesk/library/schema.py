"""The library's SQLite schema as numbered migrations.

``PRAGMA user_version`` holds the number of the last migration applied. A
migration is a list of SQL statements run in one transaction; never edit one
that has shipped, add the next number instead. ``tests/unit/library`` builds a
database at every earlier version and migrates it to the newest.
"""

from __future__ import annotations


def _search_body(image_id: str) -> str:
    """SQL for the searchable text of image ``image_id``: original file name, dataset
    image id and the current label's free-text condition, one per line. Used by
    migrations 3 and 4: a change here would change shipped migrations."""
    return (
        "(SELECT coalesce(i.original_name, '') || char(10) || coalesce(i.dataset_image_id, '')"
        " || char(10) || coalesce((SELECT l.free_text FROM label l"
        f" WHERE l.image_id = i.id AND l.is_current), '') FROM image i WHERE i.id = {image_id})"
    )


# query.device_name in SQL, for migration 7 (a change here would change a shipped
# migration; tests/unit/library compares it with the Python function).
_MAKE, _MODEL = "trim(coalesce(device_make, ''))", "trim(coalesce(device_model, ''))"
_DEVICE_NAME_SQL = (
    f"(CASE WHEN {_MAKE} = '' AND {_MODEL} = '' THEN NULL "
    f"WHEN {_MAKE} != '' AND lower(substr({_MODEL}, 1, length({_MAKE}))) = lower({_MAKE}) "
    f"THEN {_MODEL} ELSE trim({_MAKE} || ' ' || {_MODEL}) END)"
)


def _current_tone(column: str, method: str) -> str:
    """SQL for an image's current skin-tone value of one method (migration 5)."""
    return (
        f"(SELECT t.{column} FROM skin_tone t WHERE t.image_id = image.id AND t.is_current"
        f" AND t.method = '{method}' ORDER BY t.id DESC LIMIT 1)"
    )


MIGRATIONS: dict[int, list[str]] = {
    1: [
        """
        CREATE TABLE patient (
            id TEXT PRIMARY KEY,              -- pseudonymous id (P-...), the only one exported
            source TEXT NOT NULL,             -- namespace of external_id: a dataset name or 'local'
            external_id TEXT,                 -- the id in its source; never leaves the library
            created_at TEXT NOT NULL,
            UNIQUE (source, external_id)
        )
        """,
        """
        CREATE TABLE lesion (
            id TEXT PRIMARY KEY,              -- pseudonymous id (L-...)
            patient_id TEXT REFERENCES patient(id),
            source TEXT NOT NULL,
            external_id TEXT,
            body_site TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (source, external_id)
        )
        """,
        """
        CREATE TABLE image (
            id TEXT PRIMARY KEY,              -- SHA-256 of the original bytes
            file TEXT NOT NULL,               -- original, relative to the library folder
            format TEXT NOT NULL,
            width INTEGER NOT NULL,           -- as displayed (after EXIF orientation)
            height INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            mode TEXT,
            orientation INTEGER,
            modality TEXT NOT NULL CHECK (modality IN ('clinical', 'dermoscopic', 'other')),
            source TEXT NOT NULL CHECK (source IN ('import', 'capture', 'synthetic')),
            dataset TEXT,
            dataset_image_id TEXT,
            original_name TEXT,               -- kept for provenance; never exported
            patient_id TEXT REFERENCES patient(id),
            lesion_id TEXT REFERENCES lesion(id),
            device_make TEXT,
            device_model TEXT,
            device_lens TEXT,
            device_software TEXT,
            focal_length REAL,
            exposure_time REAL,
            f_number REAL,
            iso INTEGER,
            captured_at TEXT,
            clinic TEXT,
            operator TEXT,
            imported_at TEXT NOT NULL,
            extra TEXT,                       -- JSON: dataset clinical metadata (age, sex, ...)
            -- Current values, kept in step with the label / skin_tone history by the
            -- writer (and checked by verify) so that filtered listings need no joins.
            diagnosis TEXT,
            fitzpatrick INTEGER CHECK (fitzpatrick BETWEEN 1 AND 6),
            monk INTEGER CHECK (monk BETWEEN 1 AND 10)
        )
        """,
        """
        CREATE TABLE label (
            id INTEGER PRIMARY KEY,
            image_id TEXT NOT NULL REFERENCES image(id),
            diagnosis TEXT NOT NULL,
            free_text TEXT,
            certainty TEXT NOT NULL,
            annotator TEXT NOT NULL,
            created_at TEXT NOT NULL,
            is_current INTEGER NOT NULL DEFAULT 1
        )
        """,
        """
        CREATE TABLE skin_tone (
            id INTEGER PRIMARY KEY,
            image_id TEXT NOT NULL REFERENCES image(id),
            method TEXT NOT NULL CHECK (method IN ('manual', 'estimated')),
            fitzpatrick INTEGER CHECK (fitzpatrick BETWEEN 1 AND 6),
            monk INTEGER CHECK (monk BETWEEN 1 AND 10),
            ita REAL,
            confidence REAL,
            rater TEXT NOT NULL,
            note TEXT,
            created_at TEXT NOT NULL,
            is_current INTEGER NOT NULL DEFAULT 1
        )
        """,
        """
        CREATE TABLE quality (
            image_id TEXT NOT NULL REFERENCES image(id),
            check_name TEXT NOT NULL,
            score REAL,
            verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'warn', 'fail')),
            reason TEXT NOT NULL,
            checker_version TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (image_id, check_name)
        )
        """,
        """
        CREATE TABLE mask (
            image_id TEXT NOT NULL REFERENCES image(id),
            kind TEXT NOT NULL,               -- e.g. 'lesion'
            file TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (image_id, kind)
        )
        """,
        """
        CREATE TABLE model (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            architecture TEXT,
            file TEXT,
            sha256 TEXT,
            parents TEXT,                     -- JSON list of model ids
            training_set TEXT,                -- JSON: image ids and split
            params TEXT,                      -- JSON hyper-parameters
            metrics TEXT,                     -- JSON: per class, skin tone, device, domain
            status TEXT NOT NULL DEFAULT 'candidate',
            created_at TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE prediction (
            image_id TEXT NOT NULL REFERENCES image(id),
            model_id TEXT NOT NULL REFERENCES model(id),
            probabilities TEXT NOT NULL,      -- JSON {code: p}
            top TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (image_id, model_id)
        )
        """,
        """
        CREATE TABLE job (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            params TEXT,
            progress REAL NOT NULL DEFAULT 0,
            message TEXT,
            log TEXT NOT NULL DEFAULT '',
            result TEXT,
            model_id TEXT REFERENCES model(id),
            error TEXT,
            pid INTEGER,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        )
        """,
        """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            entity TEXT NOT NULL,
            entity_id TEXT,
            before TEXT,
            after TEXT,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )
        """,
        "CREATE INDEX image_diagnosis ON image (diagnosis)",
        "CREATE INDEX image_fitzpatrick ON image (fitzpatrick)",
        "CREATE INDEX image_monk ON image (monk)",
        "CREATE INDEX image_modality ON image (modality)",
        "CREATE INDEX image_device ON image (device_model)",
        "CREATE INDEX image_patient ON image (patient_id)",
        "CREATE INDEX image_lesion ON image (lesion_id)",
        "CREATE INDEX image_dataset ON image (dataset)",
        "CREATE INDEX image_imported ON image (imported_at)",
        "CREATE INDEX label_image ON label (image_id)",
        "CREATE UNIQUE INDEX label_current ON label (image_id) WHERE is_current",
        "CREATE INDEX skin_tone_image ON skin_tone (image_id)",
        "CREATE INDEX lesion_patient ON lesion (patient_id)",
        "CREATE INDEX prediction_model ON prediction (model_id)",
        "CREATE INDEX job_status ON job (status)",
    ],
    2: [
        # Perceptual hash of each image, for exact / near-duplicate findings (quality_store).
        """
        CREATE TABLE image_hash (
            image_id TEXT PRIMARY KEY REFERENCES image(id),
            phash TEXT NOT NULL,              -- 64-bit DCT hash, 16 hex digits
            checker_version TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """,
        "CREATE INDEX image_hash_phash ON image_hash (phash)",
        "CREATE INDEX quality_check ON quality (check_name, verdict)",
    ],
    3: [
        # Free-text search: a trigram index (FTS5) over each image's searchable words, so
        # the filter bar's substring search answers from an index instead of scanning
        # every row (100,000 rows: 74 ms -> a few ms). Row ids follow image.rowid;
        # triggers keep it in step with the image and its current label.
        "CREATE VIRTUAL TABLE image_search USING fts5(body, tokenize = 'trigram')",
        f"INSERT INTO image_search (rowid, body) SELECT rowid, {_search_body('id')} FROM image",
        f"""
        CREATE TRIGGER image_search_insert AFTER INSERT ON image BEGIN
            INSERT INTO image_search (rowid, body) VALUES (new.rowid, {_search_body("new.id")});
        END
        """,
        f"""
        CREATE TRIGGER image_search_update AFTER UPDATE OF original_name, dataset_image_id
        ON image BEGIN
            UPDATE image_search SET body = {_search_body("new.id")} WHERE rowid = new.rowid;
        END
        """,
        """
        CREATE TRIGGER image_search_delete AFTER DELETE ON image BEGIN
            DELETE FROM image_search WHERE rowid = old.rowid;
        END
        """,
        f"""
        CREATE TRIGGER label_search_insert AFTER INSERT ON label BEGIN
            UPDATE image_search SET body = {_search_body("new.image_id")}
            WHERE rowid = (SELECT rowid FROM image WHERE id = new.image_id);
        END
        """,
        f"""
        CREATE TRIGGER label_search_update AFTER UPDATE OF is_current, free_text ON label BEGIN
            UPDATE image_search SET body = {_search_body("new.image_id")}
            WHERE rowid = (SELECT rowid FROM image WHERE id = new.image_id);
        END
        """,
    ],
    4: [
        # Cheaper search-index upkeep on import (866 images: rows 0.15 s -> 0.09 s). A new
        # image has no label yet, so its body comes from the new row itself; and a label
        # changes the body only when it is current with a condition text: a label that
        # replaces one with text first retires it, and that UPDATE already re-indexes.
        "DROP TRIGGER image_search_insert",
        """
        CREATE TRIGGER image_search_insert AFTER INSERT ON image BEGIN
            INSERT INTO image_search (rowid, body) VALUES (new.rowid,
                coalesce(new.original_name, '') || char(10)
                || coalesce(new.dataset_image_id, '') || char(10));
        END
        """,
        "DROP TRIGGER label_search_insert",
        f"""
        CREATE TRIGGER label_search_insert AFTER INSERT ON label
        WHEN new.is_current AND new.free_text IS NOT NULL BEGIN
            UPDATE image_search SET body = {_search_body("new.image_id")}
            WHERE rowid = (SELECT rowid FROM image WHERE id = new.image_id);
        END
        """,
    ],
    5: [
        # Rated and estimated skin tone apart (issue 12): image.fitzpatrick / monk hold the
        # current *rated* value only (a person's or a dataset's), the new *_est columns the
        # current estimate, so nothing shows or counts an estimate as a rating.
        "ALTER TABLE image ADD COLUMN fitzpatrick_est INTEGER "
        "CHECK (fitzpatrick_est BETWEEN 1 AND 6)",
        "ALTER TABLE image ADD COLUMN monk_est INTEGER CHECK (monk_est BETWEEN 1 AND 10)",
        f"""
        UPDATE image SET fitzpatrick = {_current_tone("fitzpatrick", "manual")},
            monk = {_current_tone("monk", "manual")},
            fitzpatrick_est = {_current_tone("fitzpatrick", "estimated")},
            monk_est = {_current_tone("monk", "estimated")}
        """,
        "CREATE INDEX image_fitzpatrick_est ON image (fitzpatrick_est)",
        "CREATE INDEX image_monk_est ON image (monk_est)",
    ],
    6: [
        # When the job's process started (seconds since the epoch, as the OS reports it):
        # a pid reused after a reboot is a different process, so a dead job is not kept
        # "running" for ever (issue 12).
        "ALTER TABLE job ADD COLUMN pid_started REAL",
    ],
    7: [
        # The one device name (query.device_name) kept with each image, as the current
        # label is: filters, suggestions and counts read one indexed column instead of
        # computing the name per row (a 100,000-row device listing: 122 -> ~40 ms).
        "ALTER TABLE image ADD COLUMN device TEXT",
        f"UPDATE image SET device = {_DEVICE_NAME_SQL}",
        "CREATE INDEX image_device_name ON image (device)",
    ],
    8: [
        # Experiments (issue 15): a named, recorded set of training runs over library
        # queries. A run row is written when the experiment is planned (its exact image
        # ids, seed and recipe) and its metrics when its job finishes, in one transaction.
        """
        CREATE TABLE experiment (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            study TEXT NOT NULL,              -- e.g. 'gap'
            profile TEXT NOT NULL,            -- smoke, cpu, full
            params TEXT NOT NULL,             -- JSON: the study's settings and recipe
            code_version TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE experiment_run (
            id INTEGER PRIMARY KEY,
            experiment_id INTEGER NOT NULL REFERENCES experiment(id),
            name TEXT NOT NULL,               -- the scheme, e.g. FullDermoscopic
            seed INTEGER NOT NULL,
            job_id INTEGER REFERENCES job(id),
            params TEXT NOT NULL,             -- JSON: recipe, start weights (another run)
            split TEXT NOT NULL,              -- JSON: image ids trained on and per eval set
            metrics TEXT,                     -- JSON: per eval set, written when done
            seconds REAL,
            status TEXT NOT NULL,             -- planned, done
            finished_at TEXT,
            UNIQUE (experiment_id, name, seed)
        )
        """,
        "CREATE INDEX experiment_run_experiment ON experiment_run (experiment_id)",
    ],
    9: [
        # A registered model evaluated on a library query (``models evaluate``): the query,
        # the exact images scored and the per-domain / per-skin-type report, kept with
        # the model so a clinic can see how a model did on its own patients.
        """
        CREATE TABLE model_evaluation (
            id INTEGER PRIMARY KEY,
            model_id TEXT NOT NULL REFERENCES model(id),
            name TEXT NOT NULL,               -- the query in words
            query TEXT NOT NULL,              -- JSON: ImageFilter fields
            image_ids TEXT NOT NULL,          -- JSON: the images scored
            report TEXT NOT NULL,             -- JSON: overall and per group
            job_id INTEGER REFERENCES job(id),
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """,
        "CREATE INDEX model_evaluation_model ON model_evaluation (model_id)",
    ],
    10: [
        # Named dataset splits (issue 16, ``curate split``): which part every image is in,
        # kept so training and export reuse the very same split. A split is never edited;
        # a new one gets a new name.
        """
        CREATE TABLE dataset_split (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            params TEXT NOT NULL,             -- JSON: fractions, seed, query, grouping
            report TEXT NOT NULL,             -- JSON: counts per part and the imbalance
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE dataset_split_image (
            split_id INTEGER NOT NULL REFERENCES dataset_split(id),
            image_id TEXT NOT NULL REFERENCES image(id),
            part TEXT NOT NULL CHECK (part IN ('train', 'val', 'test')),
            UNIQUE (split_id, image_id)
        )
        """,
        "CREATE INDEX dataset_split_image_image ON dataset_split_image (image_id)",
    ],
    11: [
        # Curation (issue 16, library/curation_store.py): decisions on near-duplicate pairs
        # and images kept out of datasets. Both are rows with history (is_current), never
        # deletions; undo makes a row not current and restores what it changed.
        """
        CREATE TABLE duplicate_decision (
            id INTEGER PRIMARY KEY,
            image_a TEXT NOT NULL REFERENCES image(id),
            image_b TEXT NOT NULL REFERENCES image(id),   -- the one linked or excluded
            decision TEXT NOT NULL
                CHECK (decision IN ('same_lesion', 'merge', 'exclude', 'not_duplicate')),
            note TEXT,
            before TEXT NOT NULL,             -- JSON: both images' patient and lesion
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            is_current INTEGER NOT NULL DEFAULT 1
        )
        """,
        """
        CREATE TABLE exclusion (
            id INTEGER PRIMARY KEY,
            image_id TEXT NOT NULL REFERENCES image(id),
            reason TEXT NOT NULL,
            decision_id INTEGER REFERENCES duplicate_decision(id),
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            is_current INTEGER NOT NULL DEFAULT 1
        )
        """,
        "CREATE INDEX exclusion_image ON exclusion (image_id, is_current)",
    ],
    12: [
        # Where an image's modality came from (issue 14): 'recorded' (a person, a dataset's
        # metadata or an import option said it), 'detected' (the detector was sure), or
        # 'unsure' (the detector's guess is below its calibrated confidence, or nothing
        # could look; ``modality`` then holds that guess). Images from before this version
        # are counted as recorded: earlier versions stored a guess only for plain folder
        # imports without --modality, which this column cannot tell apart any more.
        "ALTER TABLE image ADD COLUMN modality_method TEXT NOT NULL DEFAULT 'recorded' "
        "CHECK (modality_method IN ('recorded', 'detected', 'unsure'))",
        "CREATE INDEX image_modality_method ON image (modality_method)",
    ],
    13: [
        # Visual meta-domains (issue 18, ml/meta_domains.py, library/domain_store.py): each
        # image's estimated domain (modality refined by acquisition look) and the method
        # version and seed that assigned it; ``meta_domain`` describes each domain of a
        # version. Derived data, recomputed by `dermdesk domains assign` (never rated).
        "ALTER TABLE image ADD COLUMN meta_domain TEXT",
        "ALTER TABLE image ADD COLUMN meta_domain_version TEXT",
        "CREATE INDEX image_meta_domain ON image (meta_domain)",
        """
        CREATE TABLE meta_domain (
            version TEXT NOT NULL,
            name TEXT NOT NULL,
            modality TEXT NOT NULL,
            n INTEGER NOT NULL,
            description TEXT NOT NULL,
            centre TEXT NOT NULL,             -- JSON: feature -> robust z-score
            created_at TEXT NOT NULL,
            PRIMARY KEY (version, name)
        )
        """,
    ],
    14: [
        # Near-duplicates by embedding cosine (issue 16, `curate embed-duplicates`): pairs
        # of images whose backbone features are this close, per backbone (image_a <
        # image_b). Derived data, recomputable; joined with the perceptual-hash pairs
        # wherever near-duplicates are listed or grouped.
        """
        CREATE TABLE embedding_pair (
            image_a TEXT NOT NULL REFERENCES image(id),
            image_b TEXT NOT NULL REFERENCES image(id),
            model_id TEXT NOT NULL,
            cosine REAL NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (image_a, image_b, model_id)
        )
        """,
    ],
}

LATEST_VERSION = max(MIGRATIONS)
