import sqlite3

import pytest

from evoforge.errors import StoreError
from evoforge.store import SCHEMA_VERSION, MemoryRunStore, SQLiteRunStore
from evoforge.testing.store_conformance import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self):
        return MemoryRunStore()


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path):
        with SQLiteRunStore(tmp_path / "run.db") as s:
            yield s


def test_sqlite_persists_across_reopen(tmp_path):
    with SQLiteRunStore(tmp_path / "run.db") as s:
        s.put_config({"a": 1})
        s.put_genome("k", "{}")
    with SQLiteRunStore(tmp_path / "run.db", readonly=True) as r:
        assert r.config() == {"a": 1} and r.genome("k") == "{}"
        with pytest.raises(StoreError, match="read-only"):
            r.put_meta("x", 1)


def test_second_writer_gets_a_clear_error(tmp_path):
    with SQLiteRunStore(tmp_path / "run.db"):
        with pytest.raises(StoreError, match="in use by another evoforge process"):
            SQLiteRunStore(tmp_path / "run.db")
        with SQLiteRunStore(tmp_path / "run.db", readonly=True) as reader:  # readers are fine
            assert reader.config() is None
    SQLiteRunStore(tmp_path / "run.db").close()  # lock released


def test_incompatible_schema_version_is_refused_and_untouched(tmp_path):
    path = tmp_path / "run.db"
    with SQLiteRunStore(path) as s:
        s.put_config({"a": 1})
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SQLiteRunStore(path)
    assert path.read_bytes() == before


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE x (a)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not an evoforge run store"):
        SQLiteRunStore(path)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "run.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not an evoforge run store"):
        SQLiteRunStore(path)


def test_a_store_written_before_screenings_gains_the_table_when_opened_for_writing(tmp_path):
    from evoforge.search.evaluation import Evaluation, Status

    with SQLiteRunStore(tmp_path / "run.db") as s:
        s.put_genome("k", "{}")
    db = sqlite3.connect(tmp_path / "run.db")
    db.execute("DROP TABLE screenings")
    db.commit()
    db.close()
    with SQLiteRunStore(tmp_path / "run.db", readonly=True) as r:
        assert r.screenings() == {}
    with SQLiteRunStore(tmp_path / "run.db") as s:
        s.put_screening("k", 0.5, Evaluation(Status.OK, {"f": 1.0}), 0)
        assert list(s.screenings()[0.5]) == ["k"]
