from evoforge import provenance


def test_the_source_digest_changes_with_any_edit_added_file_or_rename(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code")

    def digest():
        provenance.source_digest.cache_clear()
        return provenance.source_digest(tmp_path)

    base = digest()
    assert digest() == base
    (tmp_path / "notes.txt").write_text("still not code")
    assert digest() == base
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    edited = digest()
    assert edited != base
    (tmp_path / "pkg" / "b.py").write_text("")
    added = digest()
    assert added not in (base, edited)
    (tmp_path / "pkg" / "b.py").rename(tmp_path / "pkg" / "c.py")
    assert digest() not in (base, edited, added)


def test_code_identity_names_evoforge_its_source_and_each_library():
    identity = provenance.code_identity(["numpy", "no-such-distribution-xyz"])
    libraries = identity["libraries"]
    assert isinstance(libraries, dict)
    assert libraries["no-such-distribution-xyz"] is None
    import numpy

    assert libraries["numpy"] == numpy.__version__
    assert identity["source"] == provenance.source_digest()
