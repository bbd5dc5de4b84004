"""Checkpoints: a process reads the latest one and the manifests after it, and gets what reading
every manifest gave.

`answers_of_every_manifest` is that reference: the warehouse's answers as the methods computed
them before checkpoints, each manifest read and folded in turn. Hand-built history (files from
tests/test_warehouse.py's fixture, seq: what it commits):

    1: batch 1 (e1 e2 on 01-05, e3 on 01-06), offsets touchpoints 0 [0, 3), backfill KEY [0, 300)
    2: batch 2 (e4 on 01-06, e5 on 01-07), offsets 0 [3, 4) and 1 [0, 1), KEY [300, 500)
    3: a marts refresh (no file)
    4: a merge of 01-06 (e3 e4) removing batch 1's and 2's files of that day; created 01-09;
       those two files are then deleted (`delete_removed` before 01-09 12:00)
    5: a merge of 01-05 (e1 e2) removing batch 1's file of that day; created 01-10
       -> checkpoint 5
    6: batch 6 (e6 on 01-07), offsets 1 [1, 2) and survey_answers 0 [0, 4), KEY [500, 600)
       -> checkpoint 6 (batch 6 not in the marts yet)
    7: batch 7 (e7 on 01-08), backfill OTHER [0, 50)
    and batch 8's file, never committed: an orphan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parcours.warehouse import (
    DATASETS,
    MARTS_THROUGH,
    Checkpoint,
    CheckpointError,
    Manifest,
    PublishedFile,
    Removal,
    Warehouse,
)
from tests.pipeline_helpers import parcours
from tests.test_warehouse import BATCH_1, BATCH_2, NO_MODELS, manifest, query, touchpoints

KEY = "/backfill/touchpoints.jsonl|4096|1"
OTHER = "/backfill/other.jsonl|50|2"
INSTANTS = [
    datetime(2026, 1, 9, tzinfo=UTC),
    datetime(2026, 1, 9, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 1, 12, tzinfo=UTC),
]


def answers_of_every_manifest(root: Path, instants: Sequence[datetime]) -> dict:
    """Every public answer of the warehouse at `root`, each manifest read and folded as before
    checkpoints existed: the independent reading the checkpointed one must equal."""
    manifests = [Manifest.from_json(path.read_bytes()) for path in sorted((root / "_manifests").glob("*.json"))]
    live: dict[str, PublishedFile] = {}
    offsets: dict[str, dict[int, int]] = {}
    progress: dict[str, int] = {}
    pending: list[Manifest] = []
    for m in manifests:
        for published in m.files:
            live.setdefault(published.path, published)
        for path in m.removed:
            live.pop(path, None)
        for topic, partitions in m.offsets.items():
            for partition, (_start, end) in partitions.items():
                offsets.setdefault(topic, {})[partition] = max(end, offsets.get(topic, {}).get(partition, end))
        for source in m.sources:
            if source.get("key"):
                progress[source["key"]] = max(progress.get(source["key"], 0), source["range"][1])
        if MARTS_THROUGH in m.counts:
            pending = []
        elif any(f.dataset in ("touchpoints", "rewrites") for f in m.files):
            pending.append(m)
    listed = {root / published.path for m in manifests for published in m.files}
    on_disk = [p for p in (root / "data").rglob("*") if p.is_file() and p.name.endswith((".parquet", ".tmp"))]

    def removed_before(instant: datetime) -> list[Path]:
        return sorted(
            {
                root / path
                for m in manifests
                if datetime.fromisoformat(m.created_at) < instant
                for path in m.removed
                if path not in live and (root / path).exists()
            }
        )

    latest = manifests[-1].watermarks if manifests else {}
    return {
        "live": list(live.items()),
        "live_files": {name: [f for f in live.values() if f.dataset == name] for name in DATASETS},
        "published_files": {name: [p for p, f in live.items() if f.dataset == name] for name in DATASETS},
        "offsets": offsets,
        "watermarks": {t: {p: datetime.fromisoformat(v) for p, v in parts.items()} for t, parts in latest.items()},
        "next_seq": manifests[-1].seq + 1 if manifests else 1,
        "marts_pending": pending,
        "file_progress": progress,
        "orphans": sorted(p for p in on_disk if p not in listed),
        "removed_files": [removed_before(instant) for instant in instants],
    }


def answers(warehouse: Warehouse, instants: Sequence[datetime]) -> dict:
    """The same answers, from the warehouse's methods."""
    return {
        "live": list(warehouse._live_files().items()),
        "live_files": {name: warehouse.live_files(name) for name in DATASETS},
        "published_files": {name: warehouse.published_files(name) for name in DATASETS},
        "offsets": warehouse.offsets(),
        "watermarks": warehouse.watermarks(),
        "next_seq": warehouse.next_seq(),
        "marts_pending": warehouse.marts_pending(),
        "file_progress": warehouse.file_progress(),
        "orphans": warehouse.orphans(),
        "removed_files": [warehouse.removed_files(instant) for instant in instants],
    }


def garble_manifests(warehouse: Warehouse, through: int) -> None:
    """Make manifests 1..through unreadable: a reader that still parses one fails loudly."""
    for path in sorted(warehouse.manifest_dir.glob("*.json"))[:through]:
        path.write_bytes(b"archived: not a manifest any more")


def checkpoint_path(warehouse: Warehouse, seq: int) -> Path:
    return warehouse.checkpoint_dir / f"{seq:010d}.json"


@dataclass
class History:
    warehouse: Warehouse
    batch_1: list[PublishedFile]
    batch_2: list[PublishedFile]
    merged: list[PublishedFile]  # of seqs 4 and 5
    batch_6: list[PublishedFile]
    batch_7: list[PublishedFile]
    orphan: Path


def day(n: int, hour: int = 9) -> datetime:
    return datetime(2026, 1, n, hour, tzinfo=UTC)


@pytest.fixture
def history(tmp_path: Path) -> History:
    wh = Warehouse(tmp_path / "wh")

    def batch(seq: int, rows: list, watermark: str, **fields: object) -> list[PublishedFile]:
        files = wh.write_parquet("touchpoints", touchpoints(rows, seq), seq, "p0")
        wh.commit(manifest(seq, files, watermarks={"touchpoints": {0: watermark}}, **fields))
        return files

    def merge(seq: int, rows: list, replaced: list[PublishedFile], created_at: str) -> PublishedFile:
        (merged,) = wh.write_parquet("touchpoints", touchpoints(rows, seq), seq, "merged")
        removed = tuple(f.path for f in replaced)
        wh.commit(manifest(seq, [merged], created_at=created_at, counts={MARTS_THROUGH: seq}, removed=removed))
        return merged

    def source(key: str, start: int, end: int) -> tuple[dict, ...]:
        return ({"path": key.split("|")[0], "key": key, "range": [start, end], "records": 1},)

    b1 = batch(1, BATCH_1, "2026-01-06T00:00:01Z", offsets={"touchpoints": {0: (0, 3)}}, sources=source(KEY, 0, 300))
    b2 = batch(
        2,
        BATCH_2,
        "2026-01-07T08:00:00Z",
        offsets={"touchpoints": {0: (3, 4), 1: (0, 1)}},
        sources=source(KEY, 300, 500),
    )
    wh.commit(manifest(3, [], counts={MARTS_THROUGH: 3}))
    merged_4 = merge(4, BATCH_1[2:] + BATCH_2[:1], [b1[1], b2[0]], "2026-01-09T00:00:00Z")
    with wh.lock():
        assert wh.delete_removed(datetime(2026, 1, 9, 12, tzinfo=UTC)) == sorted(
            [wh.root / b1[1].path, wh.root / b2[0].path]
        )
    merged_5 = merge(5, BATCH_1[:2], [b1[0]], "2026-01-10T00:00:00Z")
    with wh.lock():
        assert wh.write_checkpoint() == checkpoint_path(wh, 5)
    b6 = batch(
        6,
        [("e6", "c4", day(7))],
        "2026-01-07T09:00:00Z",
        created_at="2026-01-11T00:00:00Z",
        offsets={"touchpoints": {1: (1, 2)}, "survey_answers": {0: (0, 4)}},
        sources=source(KEY, 500, 600),
    )
    with wh.lock():
        assert wh.write_checkpoint() == checkpoint_path(wh, 6)
    b7 = batch(7, [("e7", "c5", day(8))], "2026-01-08T09:00:00Z", sources=source(OTHER, 0, 50))
    (orphan,) = wh.write_parquet("touchpoints", touchpoints([("e8", "c6", day(8, 10))], 8), 8, "p0")
    return History(wh, b1, b2, [merged_4, merged_5], b6, b7, wh.root / orphan.path)


def test_the_history_reads_as_computed_by_hand(history: History) -> None:
    wh = Warehouse(history.warehouse.root)
    assert [path for path, _f in wh._live_files().items()] == [
        history.batch_2[1].path,
        *(f.path for f in history.merged),
        history.batch_6[0].path,
        history.batch_7[0].path,
    ]
    assert wh.offsets() == {"touchpoints": {0: 4, 1: 2}, "survey_answers": {0: 4}}
    assert wh.watermarks() == {"touchpoints": {0: day(8)}}
    assert wh.file_progress() == {KEY: 600, OTHER: 50}
    assert [m.seq for m in wh.marts_pending()] == [6, 7]
    assert wh.next_seq() == 8
    assert wh.orphans() == [history.orphan]
    # Batch 1's file of 01-05 was removed by 5 and is still on disk; the files 4 removed are deleted.
    assert [wh.removed_files(instant) for instant in INSTANTS] == [[], [], [wh.root / history.batch_1[0].path]]


def test_a_checkpoint_holds_the_fold_of_its_manifests_and_only_removed_files_still_on_disk(history: History) -> None:
    wh = history.warehouse
    checkpoint = Checkpoint.from_json(checkpoint_path(wh, 6).read_bytes(), "6")
    assert checkpoint.seq == 6 and checkpoint.created_at == "2026-01-11T00:00:00Z"
    assert checkpoint.live == (history.batch_2[1], *history.merged, *history.batch_6)
    assert checkpoint.offsets == {"touchpoints": {0: 4, 1: 2}, "survey_answers": {0: 4}}
    assert checkpoint.watermarks == {"touchpoints": {0: "2026-01-07T09:00:00Z"}}
    assert checkpoint.file_progress == {KEY: 600}
    assert checkpoint.marts_pending == (6,)
    assert checkpoint.removals == (Removal(5, "2026-01-10T00:00:00Z", (history.batch_1[0].path,)),)
    assert (checkpoint.config_version, checkpoint.config_fingerprint) == (1, "abc123def456")
    first_line, rest = checkpoint_path(wh, 6).read_bytes().split(b"\n", 1)
    assert first_line.startswith(b'{"format":2,"sha256":"') and rest == b""


def test_a_reader_after_checkpoints_answers_as_every_manifest_and_reads_none_they_cover(history: History) -> None:
    wh = history.warehouse
    expected = answers_of_every_manifest(wh.root, INSTANTS)
    assert answers(wh, INSTANTS) == expected  # the writer, folded as it committed
    assert answers(Warehouse(wh.root), INSTANTS) == expected

    garble_manifests(wh, through=5)  # all checkpoint 6 covers, but batch 6 that the marts still need
    reader = Warehouse(wh.root)
    assert answers(reader, INSTANTS) == expected
    assert reader.manifests()[-1].seq == 7 and len(reader.manifests()) == 7
    db = reader.rebuild_views(NO_MODELS)
    assert query(db, "select list(event_id order by event_id) from raw_touchpoints") == [
        (["e1", "e2", "e3", "e4", "e5", "e6", "e7"],)
    ]
    # It keeps up with commits after it opened, as any reader does.
    files = history.warehouse.write_parquet("touchpoints", touchpoints(BATCH_2[1:], 8), 8, "p0")
    Warehouse(wh.root).commit(manifest(8, files, removed=(history.batch_2[1].path,)))
    assert reader.next_seq() == 9
    assert reader.published_files("touchpoints")[-1] == files[0].path
    assert history.batch_2[1].path not in reader.published_files("touchpoints")


def damage_by_truncating(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def damage_by_editing_a_path(path: Path) -> None:
    """Still valid JSON of the right shape: only the digest tells."""
    data = path.read_bytes()
    assert data.count(b"b0000000006-p0") == 1
    path.write_bytes(data.replace(b"b0000000006-p0", b"b0000000006-q0"))


def damage_by_renaming(path: Path) -> None:
    """The checkpoint of another seq under this name."""
    path.write_bytes(path.with_name("0000000005.json").read_bytes())


@pytest.mark.parametrize("damage", [damage_by_truncating, damage_by_editing_a_path, damage_by_renaming])
def test_a_damaged_checkpoint_is_skipped_with_a_warning(
    history: History, damage, caplog: pytest.LogCaptureFixture
) -> None:
    wh = history.warehouse
    expected = answers_of_every_manifest(wh.root, INSTANTS)
    damage(checkpoint_path(wh, 6))
    with caplog.at_level(logging.WARNING, logger="parcours.warehouse"):
        assert answers(Warehouse(wh.root), INSTANTS) == expected
    (record,) = caplog.records
    assert record.getMessage().startswith(f"checkpoint {checkpoint_path(wh, 6)} is damaged (")
    assert record.getMessage().endswith("ignored, reading checkpoint 5 and the manifests after it instead")

    caplog.clear()
    damage_by_truncating(checkpoint_path(wh, 5))
    with caplog.at_level(logging.WARNING, logger="parcours.warehouse"):
        assert answers(Warehouse(wh.root), INSTANTS) == expected
    assert [r.getMessage().split(" is damaged")[0] for r in caplog.records] == [
        f"checkpoint {checkpoint_path(wh, 6)}",
        f"checkpoint {checkpoint_path(wh, 5)}",
    ]
    assert all(r.getMessage().endswith("ignored, reading every manifest instead") for r in caplog.records)


def test_a_damaged_checkpoint_whose_manifests_are_archived_stops_the_reader(history: History) -> None:
    wh = history.warehouse
    expected = answers_of_every_manifest(wh.root, INSTANTS)
    for path in sorted(wh.manifest_dir.glob("*.json"))[:4]:  # archived: older than checkpoint 5
        path.unlink()
    damage_by_truncating(checkpoint_path(wh, 6))
    assert answers(Warehouse(wh.root), INSTANTS) == expected  # checkpoint 5 and manifests 6, 7 suffice
    damage_by_truncating(checkpoint_path(wh, 5))
    with pytest.raises(CheckpointError) as raised:
        Warehouse(wh.root).offsets()
    message = str(raised.value)
    assert message.startswith(f"checkpoint {checkpoint_path(wh, 6)} is damaged (")
    assert message.endswith(
        f"and manifests 1..4 it summarises are not in {wh.manifest_dir} (4 missing): "
        "restore them from the archive, or a good copy of the checkpoint"
    )


def test_a_checkpoint_of_an_unknown_format_is_a_clear_error(history: History) -> None:
    wh = history.warehouse
    path = checkpoint_path(wh, 6)
    path.write_bytes(path.read_bytes().replace(b'{"format":2,', b'{"format":3,', 1))
    expected = (
        f"checkpoint {path} is in format 3, but this parcours reads format 1 or 2 only: it was written by "
        "another version of parcours. Run that version, or move the _checkpoints folder aside to read the "
        "manifests instead (slower, and only if none was archived)"
    )
    with pytest.raises(CheckpointError) as raised:
        Warehouse(wh.root).next_seq()
    assert str(raised.value) == expected
    refused = parcours("compact", "--warehouse", str(wh.root))
    assert refused.returncode == 2
    assert f"error: checkpoint {path} is in format 3" in refused.stderr and "Traceback" not in refused.stderr


def test_a_checkpoint_of_format_1_reads_as_one_without_quarantines(history: History) -> None:
    wh = history.warehouse
    path = checkpoint_path(wh, 6)
    expected = answers(Warehouse(wh.root), INSTANTS)
    # Format 1 is format 2 without the quarantines, which did not exist: the digest is of the state only.
    path.write_bytes(path.read_bytes().replace(b'{"format":2,', b'{"format":1,', 1))
    assert answers(Warehouse(wh.root), INSTANTS) == expected
    assert Warehouse(wh.root).quarantines() == []


def test_writing_a_checkpoint_needs_the_lock_and_a_commit(tmp_path: Path, history: History) -> None:
    empty = Warehouse(tmp_path / "empty")
    with empty.lock(), pytest.raises(ValueError, match="has no commit yet: nothing to checkpoint"):
        empty.write_checkpoint()
    wh = history.warehouse
    with pytest.raises(RuntimeError, match="needs the warehouse lock"):
        wh.write_checkpoint()
    # A checkpoint being written (or whose writer died) is not read, and the next write clears it.
    being_written = wh.checkpoint_dir / "0000000007.json.4242.tmp"
    being_written.write_bytes(b'{"format":2,"sha256":"')
    assert answers(Warehouse(wh.root), INSTANTS) == answers_of_every_manifest(wh.root, INSTANTS)
    with wh.lock():
        assert wh.write_checkpoint() == checkpoint_path(wh, 7)
    assert sorted(p.name for p in wh.checkpoint_dir.iterdir()) == [f"{seq:010d}.json" for seq in (5, 6, 7)]
