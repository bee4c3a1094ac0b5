"""export_yaml: runtime registrations -> architecture files that `factory validate` accepts and that a
fresh process loads into the same table entries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import factory
from factory.auto import AutoConfig, AutoModel, AutoModelForTokenClassification, AutoTokenizer, export_yaml
from factory.components.tokenizer import Tokenizer
from factory.errors import RegistrationError
from factory.models.bert import BertConfig
from factory.registry import runtime
from tests.auto.custom_models import NewModel, NewModelConfig, NewModelForTokens, OtherConfig, PlainConfig, PlainModule

ROOT = Path(__file__).resolve().parents[2]


def entries(regs) -> list[dict]:
    """What a table entry says, without where it was defined."""
    return sorted((r.content() for r in regs), key=lambda c: (c["architecture"], c["task"]))


def fresh_process(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def register_new_model() -> None:
    AutoConfig.register("new-model", NewModelConfig)
    AutoModel.register(NewModelConfig, NewModel)
    AutoModelForTokenClassification.register(NewModelConfig, NewModelForTokens)
    AutoTokenizer.register(NewModelConfig, Tokenizer)


def test_round_trip_in_a_fresh_process(tmp_path):
    register_new_model()
    AutoModel.register(BertConfig, PlainModule, exist_ok=True)  # an override of a built-in entry
    written = export_yaml(tmp_path / "registry")
    assert written == [tmp_path / "registry" / "bert.yaml", tmp_path / "registry" / "new-model.yaml"]
    expected = entries(runtime.current().registrations.values())

    text = (tmp_path / "registry" / "new-model.yaml").read_text()
    assert "config: tests.auto.custom_models:NewModelConfig" in text
    assert "  tokenizer: factory.components.tokenizer:Tokenizer" in text
    assert f"#   model: {__file__}:" in text  # where each register() call was
    bert = (tmp_path / "registry" / "bert.yaml").read_text()
    assert "override: replaces factory.models.bert:BertModel" in bert

    loaded = fresh_process(
        "import json, factory\n"
        f"table = factory.load_registry([{str(tmp_path / 'registry')!r}])\n"
        "regs = [r for r in table.registrations.values() if r.provenance.source == 'path']\n"
        "print(json.dumps([r.content() for r in regs]))\n"
        "print(table.registrations[('model', 'bert')].shadows[0].target)\n"
        "model = factory.build('token-classification', 'new-model', registry=table)\n"
        "print(type(model).__qualname__, model.head.out_features)\n"
    ).splitlines()
    assert sorted(json.loads(loaded[0]), key=lambda c: (c["architecture"], c["task"])) == expected
    assert loaded[1] == "factory.models.bert:BertModel"
    assert loaded[2].split() == ["NewModelForTokens", "16"]  # the file builds what the registrations built
    assert type(factory.build("token-classification", "new-model")).__qualname__ == "NewModelForTokens"

    validate = subprocess.run(
        [sys.executable, "-m", "factory", "validate", "--import", str(tmp_path / "registry")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert validate.stdout == ""


def test_one_file_for_one_architecture(tmp_path):
    register_new_model()
    (path,) = export_yaml(tmp_path / "new-model.yaml")
    assert path.read_text().count("architecture: new-model") == 1
    AutoModel.register(OtherConfig, PlainModule)
    with pytest.raises(RegistrationError, match="one file, and there are 2 architectures to export"):
        export_yaml(tmp_path / "both.yaml")
    assert export_yaml(tmp_path / "other.yaml", architectures=["other-model"]) == [tmp_path / "other.yaml"]
    with pytest.raises(RegistrationError, match=r"no register\(\) call registered architecture\(s\) nosuch"):
        export_yaml(tmp_path / "x.yaml", architectures=["nosuch"])


def test_an_existing_file_is_replaced_only_when_asked(tmp_path):
    register_new_model()
    target = tmp_path / "new-model.yaml"
    target.write_text("# my own notes\n")
    with pytest.raises(RegistrationError, match="refusing to replace an existing file"):
        export_yaml(target)
    assert target.read_text() == "# my own notes\n"
    export_yaml(target, overwrite=True)
    assert "architecture: new-model" in target.read_text()
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new-model.yaml"]  # no temporary file left


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_classes_no_import_path_names_are_not_exported(tmp_path):
    class LocalConfig(PlainConfig):
        pass

    AutoConfig.register("local-model", LocalConfig)
    with pytest.raises(RegistrationError, match="LocalConfig is defined inside a function") as err:
        export_yaml(tmp_path)
    assert "move the class into a module" in err.value.hint
    assert list(tmp_path.iterdir()) == []

    main_class = type("MainConfig", (), {"__module__": "__main__"})
    AutoConfig.register("main-model", main_class)
    with pytest.raises(RegistrationError, match=r"defined in __main__ \(a script or notebook\)"):
        export_yaml(tmp_path, architectures=["main-model"])


def test_nothing_registered():
    with pytest.raises(RegistrationError, match=r"nothing to export: no register\(\) call"):
        export_yaml("anywhere")
