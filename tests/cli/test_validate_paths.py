"""`factory validate PATHS [--import]` reports the named files only, imports only their targets, and says in
one line what else it loaded."""

from __future__ import annotations

import textwrap

from factory.cli.main import main
from factory.cli.output import EXIT_FINDINGS, EXIT_OK
from factory.review import lint

BROKEN = """\
schema_version: 1
kind: architecture
architecture: my-toy
config: factory.models.configration:Config
tasks:
  model: factory.models.bert:BertModel
"""
FINE = """\
schema_version: 1
kind: architecture
architecture: my-other
config: tests.auto.custom_models:UntypedConfig
tasks:
  model: tests.auto.custom_models:PlainModule
"""


def test_validate_import_reports_and_imports_only_the_named_directory(tmp_path, capsys, monkeypatch):
    registry = tmp_path / "my-registry"
    registry.mkdir()
    (registry / "my-toy.yaml").write_text(BROKEN)
    (registry / "my-other.yaml").write_text(FINE)
    imported = []
    real_import = lint._import

    def recording_import(reg):
        imported.append(reg)
        return real_import(reg)

    monkeypatch.setattr(lint, "_import", recording_import)
    code = main(["validate", str(registry), "--import"])
    out, err = capsys.readouterr()
    assert code == EXIT_FINDINGS
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # none of the built-in pack's warnings
    assert lines[0].startswith(f"{registry / 'my-toy.yaml'}:4: error: [F001]")
    assert "did you mean 'factory.models.configuration'?" in lines[0]
    first, note = err.strip().splitlines()
    assert first == "2 file(s) checked: 1 problem(s)"
    assert note.startswith("note: ") and "other file(s) loaded for context" in note
    assert int(note.split()[1]) > 800  # the built-in registry and its pack
    assert {r.provenance.file for r in imported} == {str(registry / "my-toy.yaml"), str(registry / "my-other.yaml")}


def test_validate_one_good_file(tmp_path, capsys):
    path = tmp_path / "my-other.yaml"
    path.write_text(FINE)
    assert main(["validate", "--import", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[0] == "1 file(s) checked: ok"


def test_validate_without_paths_has_no_context_note(reg_env, capsys):
    reg_env.write("models/toy.yaml", textwrap.dedent(FINE).replace("my-other", "toy"))
    assert main(["validate"]) == EXIT_OK
    _, err = capsys.readouterr()
    assert "note:" not in err
