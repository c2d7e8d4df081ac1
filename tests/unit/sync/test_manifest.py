"""The manifest's journal: a killed sync's records survive, a torn last line is skipped."""

from __future__ import annotations

import json
from pathlib import Path

from sagepipe.sync.manifest import JOURNAL, MANIFEST_NAME, Entry, Manifest

E = Entry(1, "etag", "md5", 1.0, 2.0)


def test_journaled_entries_survive_a_kill_and_fold_into_the_manifest(tmp_path: Path) -> None:
    (tmp_path / JOURNAL).parent.mkdir()
    raw = {"size": 1, "etag": "etag", "md5": "md5", "local_mtime": 1.0, "remote_mtime": 2.0}
    lines = [json.dumps(["s3://b/p/", rel, raw]) for rel in ("a.txt", "b.txt")]
    # what a sync killed mid-write leaves: two records and a torn line
    (tmp_path / JOURNAL).write_text("\n".join(lines) + '\n["s3://b/p/", "torn')
    again = Manifest(tmp_path, "s3://b/p/")
    assert set(again.entries) == {"a.txt", "b.txt"}
    again.set("a.txt", None)
    again.save()
    assert not (tmp_path / JOURNAL).exists()
    saved = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert set(saved["s3://b/p/"]) == {"b.txt"}


def test_save_merges_per_key_with_other_prefixes(tmp_path: Path) -> None:
    one = Manifest(tmp_path, "s3://b/one/")
    one.set("x", E)
    one.save()
    two = Manifest(tmp_path, "s3://b/two/")
    two.set("y", E)
    two.save()
    saved = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert set(saved) == {"s3://b/one/", "s3://b/two/"}
