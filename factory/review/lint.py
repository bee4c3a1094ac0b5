"""``factory lint``: what a reviewer of a registry change would miss.

Every finding has a code, a severity and a place (``file:line``). A finding is
suppressed for one entry by a reason in its YAML, and is then still reported,
as *suppressed*, with that reason::

    tasks:
      model:
        target: mypkg.modeling:SharedModel
        lint: {F005: "foo and bar are the same network, registered twice on purpose"}

An architecture file's top-level ``lint:`` applies to all of its entries and
rules. F001-F003 and F013 need ``--import`` (F014 in part); the others read the table only.
F013 builds each native model of an architecture with a parallel plan on the meta device, from
its default config (nothing is allocated); the pack's plans are transformers' own and are not
meta-built here.

| code | severity | finding | example that triggers it |
|------|----------|---------|--------------------------|
| F001 | error | a target does not import (``--import``) | ``model: mypkg.modeling:MyModle`` (typo) |
| F002 | error | a config class's ``model_type`` differs from its architecture key (``--import``) | ``architecture: foo`` with ``config: mypkg:BarConfig`` whose ``model_type = "bar"`` |
| F003 | error | a model class's ``config_class`` is not the architecture's registered config (``--import``) | ``FooModel.config_class = BarConfig`` but ``config: mypkg:FooConfig`` |
| F004 | warning | a Hub checkpoint is pinned to a branch or tag (or nothing), not a 40-hex commit | ``hub: {repo: org/model, revision: main}`` |
| F005 | warning | two architectures point at the same target without ``shares_targets_with`` | ``foo`` and ``bar`` both register ``model: mypkg:Model`` |
| F006 | warning | an override changes nothing: the entry it shadows is identical | ``target: factory.models.bert:BertModel`` with ``override: ...`` over the same target |
| F007 | warning, error | a deprecated entry; an error once the table's version reaches ``remove_in`` | ``deprecated: {since: "0.1", remove_in: "0.1"}`` |
| F008 | warning | an architecture file's name does not match its ``architecture`` key | ``models/bert-base.yaml`` containing ``architecture: bert`` |
| F009 | error | a dispatch rule's ``dispatch_as`` is not a registered architecture | ``rules: [{when: {has_key: x}, dispatch_as: nosuch}]`` |
| F010 | warning | a plugin registers a target outside its own distribution (allowed, flagged) | plugin ``acme-models`` registering ``transformers.models.bert:BertModel`` |
| F011 | warning | a ``lint:`` suppression that suppresses nothing here, or names an unknown code | ``lint: {F004: "..."}`` on an entry that F004 does not flag |
| F012 | error, warning | a parallel-plan style the architecture's builder cannot apply (error for the native builder: its builds refuse; warning for the pack) | ``parallel: {tp: {layers.*.norm: sequence_parallel}}`` in a native file |
| F013 | error | a parallel-plan path that names no module or parameter of any of the architecture's meta-built models, or one its style cannot split (``--import``) | ``layers.*.self_attn.qproj: colwise`` (typo) |
| F014 | error | a ``divisible`` rule that is not well-formed: its ``modules`` are not tensor-parallel entries of the plan, or (``--import``) its key is not an integer of the config | ``divisible: {num_kv_heads: tp}`` where the config calls it ``num_key_value_heads`` |

Components (tokenizer, feature-extractor, image-processor, processor) are not
checked by F005: one tokenizer class commonly serves many architectures.

*The table's version* (F007) is the version of whoever ships the entry: the
plugin distribution's version for entries of an installed plugin, else
``factory.__version__``. ``--as-of VERSION`` replaces both, to see what a
coming release will reject. An entry fails once that version is at least
``remove_in`` (PEP 440 ordering). A stale override (one that shadows nothing
any more) is not a lint finding: the merge rejects it (``OverrideError``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.build import contract, targets, transformers_builder
from factory.errors import FactoryError, MissingDependencyError, TargetImportError
from factory.paths import display_path
from factory.registry.table import Checkpoint, Provenance, Registration, Table

#: code -> (default severity, what it flags)
CODES: dict[str, tuple[str, str]] = {
    "F001": ("error", "a target does not import"),
    "F002": ("error", "config class model_type differs from the architecture key"),
    "F003": ("error", "model class config_class is not the registered config"),
    "F004": ("warning", "checkpoint pinned to a branch or tag, not a commit"),
    "F005": ("warning", "two architectures share a target without shares_targets_with"),
    "F006": ("warning", "override changes nothing"),
    "F007": ("warning", "deprecated entry (error once its remove_in version is reached)"),
    "F008": ("warning", "architecture file name does not match its architecture key"),
    "F009": ("error", "dispatch rule names an unregistered architecture"),
    "F010": ("warning", "plugin target outside the plugin's distribution"),
    "F011": ("warning", "lint suppression that suppresses nothing"),
    "F012": ("error", "parallel-plan style the builder cannot apply"),
    "F013": ("error", "parallel-plan path that names nothing in the meta-built models, or cannot be split"),
    "F014": ("error", "divisible rule that is not well-formed"),
}
IMPORT_CODES = ("F001", "F002", "F003", "F013")
#: What ``validate --import`` reports: the import checks and the plans' divisibility rules.
VALIDATE_IMPORT_CODES = (*IMPORT_CODES, "F014")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Finding:
    """One lint finding; ``suppressed`` holds the YAML reason when an entry suppresses it."""

    code: str
    severity: str  # error | warning
    message: str
    file: str | None = None
    line: int | None = None
    hint: str | None = None
    suppressed: str | None = None

    @property
    def counts(self) -> bool:
        return self.suppressed is None

    def as_dict(self) -> dict[str, Any]:
        """The shape of :func:`factory.cli.finding_dict`, for :func:`factory.cli.format_findings`."""
        out = {
            "severity": "suppressed" if self.suppressed else self.severity,
            "code": self.code,
            "file": display_path(self.file) if self.file else None,
            "line": self.line,
            "column": None,
            "message": self.message + (f" [suppressed: {self.suppressed}]" if self.suppressed else ""),
            "hint": self.hint,
        }
        if self.suppressed:
            out["suppressed"] = self.suppressed
            out["suppressed_severity"] = self.severity
        return out


Scope = tuple[tuple[str, Any], Mapping[str, str]]  # (owner, lint map)


class _Linter:
    def __init__(self, table: Table, as_of: str | None) -> None:
        self.table = table
        self.as_of = as_of
        self.findings: list[Finding] = []
        self.used: set[tuple[tuple[str, Any], str]] = set()

    def add(
        self,
        code: str,
        message: str,
        prov: Provenance | None,
        scopes: Iterable[Scope],
        hint: str | None = None,
        severity: str | None = None,
    ) -> None:
        reason = None
        for owner, lint in scopes:
            if code in lint:
                reason = lint[code]
                self.used.add((owner, code))
                break
        self.findings.append(
            Finding(
                code,
                severity or CODES[code][0],
                message,
                prov.file if prov else None,
                prov.line if prov else None,
                hint,
                reason,
            )
        )

    def reg_scopes(self, reg: Registration) -> list[Scope]:
        arch = self.table.architectures.get(reg.architecture)
        return [(("registration", reg.key), reg.lint)] + ([(("architecture", arch.name), arch.lint)] if arch else [])

    def arch_scopes(self, name: str) -> list[Scope]:
        arch = self.table.architectures.get(name)
        return [(("architecture", name), arch.lint)] if arch else []

    @staticmethod
    def ckpt_scopes(ckpt: Checkpoint) -> list[Scope]:
        return [(("checkpoint", ckpt.name), ckpt.lint)]


def lint_table(
    table: Table, *, imports: bool = False, as_of: str | None = None, only: Callable[[str | None], bool] | None = None
) -> list[Finding]:
    """Every lint finding of ``table``, suppressed ones included, sorted by place.

    ``only(file)``: import only the targets of the files it accepts (and their architectures' configs).
    """
    linter = _Linter(table, as_of)
    if imports:
        _check_imports(linter, only)
    _check_pins(linter)
    _check_shared_targets(linter)
    _check_useless_overrides(linter)
    _check_deprecated(linter)
    _check_file_names(linter)
    _check_rules(linter)
    _check_plugin_targets(linter)
    _check_plans(linter, imports)
    _check_suppressions(linter, imports)
    return sorted(linter.findings, key=lambda f: (f.file or "", f.line or 0, f.code, f.message))


def has_failures(findings: Iterable[Finding | Mapping[str, Any]], *, strict: bool = False) -> bool:
    """True when a finding should fail the run: an error, or with ``strict`` a warning too."""
    failing = ("error", "warning") if strict else ("error",)
    for f in findings:
        severity = ("suppressed" if f.suppressed else f.severity) if isinstance(f, Finding) else f["severity"]
        if severity in failing:
            return True
    return False


# --- the checks ---------------------------------------------------------------------
def _import(reg: Registration) -> Any:
    """Import a registration's target the way building would (pack entries through hf_builder)."""
    if reg.builder == "transformers":
        return transformers_builder.import_target(reg)
    return targets.import_target(reg)


def _config_for_check(
    lt: _Linter, reg: Registration, imported: Mapping[tuple[str, str], Any]
) -> tuple[Any, Registration | None]:
    """The config class (and its registration) a registration is built with; pack entries use the pack's."""
    config_reg = lt.table.registrations.get(("config", reg.architecture))
    if reg.builder == "transformers" and config_reg is not None and config_reg.builder != "transformers":
        config_reg = next((s for s in config_reg.shadows if s.builder == "transformers"), None)
        try:
            return (_import(config_reg) if config_reg is not None else None), config_reg
        except FactoryError:
            return None, config_reg
    return imported.get(("config", reg.architecture)), config_reg


def _to_import(table: Table, only: Callable[[str | None], bool] | None) -> list[tuple[tuple[str, str], Registration]]:
    """The registrations whose targets an import check imports: all, or those of ``only``'s files plus configs."""
    if only is None:
        return list(table.registrations.items())
    chosen = {key: reg for key, reg in table.registrations.items() if only(reg.provenance.file)}
    for arch in {a for _, a in chosen}:
        if ("config", arch) in table.registrations:
            chosen.setdefault(("config", arch), table.registrations[("config", arch)])
    return list(chosen.items())


def _check_imports(lt: _Linter, only: Callable[[str | None], bool] | None = None) -> None:
    """F001-F003. An optional package missing for a pack entry is a warning: it cannot be checked here."""
    import warnings

    imported: dict[tuple[str, str], Any] = {}
    for key, reg in _to_import(lt.table, only):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imported[key] = _import(reg)
        except MissingDependencyError as err:
            lt.add("F001", err.message, reg.provenance, lt.reg_scopes(reg), err.hint, severity="warning")
        except TargetImportError as err:
            lt.add("F001", err.message, reg.provenance, lt.reg_scopes(reg), err.hint)
    for (task, arch), obj in imported.items():
        reg = lt.table.registrations[(task, arch)]
        if task == "config":
            model_type = contract.model_type_of(obj)
            if model_type and model_type != arch:
                lt.add(
                    "F002",
                    f"config class {reg.target} has model_type {model_type!r}, but is registered "
                    f"for architecture {arch!r}",
                    reg.provenance,
                    lt.reg_scopes(reg),
                    "the model_type attribute must equal the architecture key",
                )
            continue
        config_cls, config_reg = _config_for_check(lt, reg, imported)
        declared = contract.conflicting_config_class(obj, config_cls)
        if declared is not None:
            lt.add(
                "F003",
                f"{reg.target} declares config_class {declared.__module__}.{declared.__qualname__}, "
                f"but architecture {arch!r} registers config {config_reg.target if config_reg else config_cls}",
                reg.provenance,
                lt.reg_scopes(reg),
                "register the model's config_class as the architecture's config, or fix config_class",
            )


def _check_pins(lt: _Linter) -> None:
    for ckpt in lt.table.checkpoints.values():
        if not ckpt.hub:
            continue
        revision = ckpt.hub.get("revision")
        if revision and COMMIT.match(revision):
            continue
        found = f"revision {revision!r}, a branch or tag" if revision else "no revision (the default branch)"
        lt.add(
            "F004",
            f"checkpoint {ckpt.name!r} ({ckpt.hub['repo']}) is pinned to {found}, not a commit: "
            "what it loads can change without a change here",
            ckpt.provenance,
            lt.ckpt_scopes(ckpt),
            "pin the 40-hex commit, e.g. huggingface_hub.HfApi().model_info(repo, revision='main').sha",
        )


def _normal_target(target: str) -> str:
    return target.replace(":", ".")


def _check_shared_targets(lt: _Linter) -> None:
    table = lt.table
    by_target: dict[str, list[Registration]] = {}
    for reg in table.registrations.values():
        task = table.tasks.get(reg.task)
        if task is not None and task.group == "component" and reg.task != "config":
            continue
        by_target.setdefault(_normal_target(reg.target), []).append(reg)

    def declared(a: str, b: str) -> bool:
        return b in table.architectures[a].shares_targets_with or a in table.architectures[b].shares_targets_with

    for regs in by_target.values():
        archs = sorted({r.architecture for r in regs})
        for i, arch in enumerate(archs):
            earlier = [a for a in archs[:i] if not declared(arch, a)]
            if not earlier:
                continue
            reg = min((r for r in regs if r.architecture == arch), key=lambda r: r.task)
            others = ", ".join(f"{r.task} / {r.architecture}" for r in regs if r.architecture in earlier)
            lt.add(
                "F005",
                f"{reg.task} / {arch} -> {reg.target} is also the target of {others}",
                reg.provenance,
                lt.reg_scopes(reg),
                f"if intended, add `shares_targets_with: [{', '.join(earlier)}]` to the {arch!r} file; "
                "otherwise point it at its own class",
            )


def _check_useless_overrides(lt: _Linter) -> None:
    for reg in lt.table.registrations.values():
        if (
            reg.override
            and reg.shadows
            and (reg.shadows[0].target, reg.shadows[0].builder) == (reg.target, reg.builder)
        ):
            s = reg.shadows[0]
            lt.add(
                "F006",
                f"override of {reg.task} / {reg.architecture} changes nothing: it shadows the same target "
                f"{s.target} ({s.provenance.file}:{s.provenance.line})",
                reg.provenance,
                lt.reg_scopes(reg),
                "remove the overriding entry",
            )
    strip = ("override", "lint", "summary")
    for ckpt in lt.table.checkpoints.values():
        if ckpt.override and ckpt.shadows:
            shadowed = ckpt.shadows[0]
            same = {k: v for k, v in shadowed.content().items() if k not in strip} == {
                k: v for k, v in ckpt.content().items() if k not in strip
            }
            if same:
                lt.add(
                    "F006",
                    f"override of checkpoint {ckpt.name!r} changes nothing: it shadows an identical "
                    f"entry ({shadowed.provenance.file}:{shadowed.provenance.line})",
                    ckpt.provenance,
                    lt.ckpt_scopes(ckpt),
                    "remove the overriding entry",
                )
    for task in lt.table.tasks.values():
        if task.override and task.shadows:
            first = task.shadows[0]
            if {k: v for k, v in first.content().items() if k != "override"} == {
                k: v for k, v in task.content().items() if k != "override"
            }:
                lt.add(
                    "F006",
                    f"override of task {task.name!r} changes nothing: it shadows an identical entry "
                    f"({first.provenance.file}:{first.provenance.line})",
                    task.provenance,
                    [],
                    "remove the overriding entry",
                )


def table_version(prov: Provenance, as_of: str | None = None) -> str:
    """The version an entry's ``remove_in`` is compared with (see the module docstring)."""
    if as_of:
        return as_of
    if prov.source == "plugin" and prov.version:
        return prov.version
    from factory import __version__

    return __version__


def _check_deprecated(lt: _Linter) -> None:
    from packaging.version import InvalidVersion, Version

    entries: list[tuple[str, Any, list[Scope]]] = [
        (f"{r.task} / {r.architecture} -> {r.target}", r, lt.reg_scopes(r))
        for r in lt.table.registrations.values()
        if r.deprecated
    ]
    entries += [(f"checkpoint {c.name!r}", c, lt.ckpt_scopes(c)) for c in lt.table.checkpoints.values() if c.deprecated]
    for what, entry, scopes in entries:
        dep = entry.deprecated
        use = f"; use {dep.replacement}" if dep.replacement else ""
        if not dep.remove_in:
            lt.add(
                "F007",
                f"{what} is deprecated since {dep.since}{use}",
                entry.provenance,
                scopes,
                "add remove_in to say when it goes",
            )
            continue
        current = table_version(entry.provenance, lt.as_of)
        try:
            due = Version(current) >= Version(dep.remove_in)
        except InvalidVersion:
            lt.add(
                "F007",
                f"{what}: deprecated.remove_in {dep.remove_in!r} is not a version (or {current!r} is not)",
                entry.provenance,
                scopes,
                "write a PEP 440 version such as 0.3 or 1.0.0",
                severity="error",
            )
            continue
        if due:
            lt.add(
                "F007",
                f"{what} was to be removed in {dep.remove_in} and the table is at {current}{use}",
                entry.provenance,
                scopes,
                "remove the entry (and point users at its replacement)",
                severity="error",
            )
        else:
            lt.add(
                "F007",
                f"{what} is deprecated since {dep.since}, removed in {dep.remove_in}{use}",
                entry.provenance,
                scopes,
            )


def _check_file_names(lt: _Linter) -> None:
    for arch in lt.table.architectures.values():
        for prov in arch.files:
            name = Path(prov.file).name
            stem = name.rsplit(".", 1)[0] if name.endswith((".yaml", ".yml")) else name
            if stem != arch.name:
                lt.add(
                    "F008",
                    f"file {name!r} defines architecture {arch.name!r}: the file name does not match the key",
                    prov,
                    lt.arch_scopes(arch.name),
                    f"rename it to {arch.name}.yaml",
                )


def _check_rules(lt: _Linter) -> None:
    for arch in lt.table.architectures.values():
        for rule in arch.rules:
            if rule.dispatch_as not in lt.table.architectures:
                lt.add(
                    "F009",
                    f"dispatch rule '{rule.describe()}' names architecture {rule.dispatch_as!r}, "
                    "which is not registered: a matching config cannot be built",
                    rule.provenance,
                    lt.arch_scopes(arch.name),
                    "register that architecture (or enable the pack providing it), or fix dispatch_as",
                )


def _normal_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_plugin_targets(lt: _Linter) -> None:
    regs = [r for r in lt.table.registrations.values() if r.provenance.source == "plugin" and r.provenance.distribution]
    if not regs:
        return
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    for reg in regs:
        top = reg.module.split(".")[0]
        dist = reg.provenance.distribution
        providers = sorted({_normal_dist(d) for d in owners.get(top, [])})
        if dist is None or _normal_dist(dist) not in providers:
            by = f"distribution {', '.join(providers)}" if providers else "no installed distribution"
            lt.add(
                "F010",
                f"plugin {dist} registers {reg.task} / {reg.architecture} -> {reg.target}, whose "
                f"package {top!r} belongs to {by}, not to {dist}",
                reg.provenance,
                lt.reg_scopes(reg),
                f"fine if intended (say why with `lint: {{F010: <reason>}}`); otherwise ship the class in {dist}",
            )


def _check_plans(lt: _Linter, imports: bool) -> None:
    """F012 (styles), F014 (divisible rules) and, with ``imports``, F013 (paths against meta-built models)."""
    from factory.build import plan as P

    for arch in lt.table.architectures.values():
        for plan in arch.parallel:
            scopes = lt.arch_scopes(arch.name)
            supported = P.supported_styles(plan.builder)
            for entry in plan.tp:
                if entry.style not in supported:
                    lt.add(
                        "F012",
                        f"{arch.name}: parallel style {entry.style!r} of {entry.path} is not applied by the "
                        f"{plan.builder} builder",
                        entry.provenance,
                        scopes,
                        f"styles it applies: {', '.join(sorted(supported))}",
                        severity="error" if plan.builder == "native" else "warning",
                    )
            paths = {e.path for e in plan.tp}
            for rule in plan.divisible:
                for module in rule.modules:
                    if module not in paths:
                        lt.add(
                            "F014",
                            f"{arch.name}: divisible rule {rule.key} names module {module}, which is not a "
                            "tensor-parallel entry of the plan",
                            rule.provenance,
                            scopes,
                            f"list paths written under tp: ({', '.join(sorted(paths)) or 'none'})",
                        )
            if imports and plan.builder == "native":
                _check_plan_against_models(lt, plan, scopes)


def _check_plan_against_models(lt: _Linter, plan: Any, scopes: list[Scope]) -> None:
    """F013/F014 on the meta-built models (default config) of the architecture's native registrations."""
    import warnings

    from factory.build import meta
    from factory.build import plan as P
    from factory.build.builder import make_config

    config_reg = lt.table.registrations.get(("config", plan.architecture))
    if config_reg is None or config_reg.builder != "native":
        return
    try:
        config_cls = targets.import_target(config_reg)
    except FactoryError:
        return  # F001 reports it
    regs = [
        r
        for r in lt.table.registrations.values()
        if r.architecture == plan.architecture
        and r.builder == "native"
        and lt.table.tasks[r.task].group != "component"
        and r.task != "config"
    ]
    names: set[str] = set()
    problems: dict[tuple[str, int | None, str], Any] = {}
    for reg in regs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = meta.empty_model(targets.import_target(reg), make_config(config_cls, {}, {}, None))
                meta.apply_ties(model, meta.tie_map(model))
        except FactoryError:
            continue  # F001 (import) or a config error: reported elsewhere
        except Exception as exc:  # a model that cannot be constructed from its default config
            lt.add(
                "F013",
                f"{reg.target} cannot be built on the meta device from its default config: {type(exc).__name__}: {exc}",
                plan.provenance,
                scopes,
            )
            continue
        names.update(n for n, _ in model.named_modules())
        names.update(n for n, _ in model.named_parameters(remove_duplicate=False))
        prefix = getattr(model, "base_model_prefix", "") or ""
        names.update(f"{prefix}.{n}" for n in list(names) if prefix and not n.startswith(prefix + "."))
        sp = P.compute(
            model, plan, model.config if hasattr(model, "config") else None, 1, task=reg.task, target=reg.target
        )
        for problem in sp.problems:
            if problem.kind in ("structure", "divisible"):
                problems[(problem.file or "", problem.line, problem.message)] = problem
    if not regs:
        return
    for entry in P.unmatched(plan.tp, names, ""):
        lt.add(
            "F013",
            f"{plan.architecture}: parallel plan path {entry.path} names no module or parameter of "
            f"{', '.join(sorted({r.attribute for r in regs}))} (built on the meta device from the default config)",
            entry.provenance,
            scopes,
            "write the path as in named_modules() (trunk-relative or as in the head model), * for a layer index",
        )
    for unit in plan.fsdp:
        if not P.resolve_path(unit.path, names, ""):
            lt.add(
                "F013",
                f"{plan.architecture}: FSDP unit {unit.path} names no module of the meta-built models",
                unit.provenance,
                scopes,
            )
    for problem in problems.values():
        code = "F014" if problem.kind == "divisible" else "F013"
        prov = Provenance(problem.file, problem.line or 0, "builtin") if problem.file else plan.provenance
        lt.add(code, f"{plan.architecture}: {problem.message}", prov, scopes, problem.hint)


def _check_suppressions(lt: _Linter, imports: bool) -> None:
    table = lt.table
    owners: list[tuple[tuple[str, Any], Mapping[str, str], Provenance | None]] = []
    owners += [(("registration", r.key), r.lint, r.provenance) for r in table.registrations.values()]
    owners += [
        (("architecture", a.name), a.lint, a.files[0] if a.files else None) for a in table.architectures.values()
    ]
    owners += [(("checkpoint", c.name), c.lint, c.provenance) for c in table.checkpoints.values()]
    for owner, lint, prov in owners:
        for code in sorted(lint):
            if (owner, code) in lt.used:
                continue
            label = " / ".join(owner[1]) if isinstance(owner[1], tuple) else owner[1]
            what = f"{owner[0]} {label}"
            if code not in CODES:
                lt.add(
                    "F011",
                    f"{what}: lint suppression names unknown code {code}",
                    prov,
                    [],
                    f"known codes: {', '.join(CODES)}",
                )
            elif code in IMPORT_CODES and not imports:
                continue  # not checked in this run
            else:
                lt.add(
                    "F011",
                    f"{what}: lint suppression of {code} suppresses nothing here",
                    prov,
                    [],
                    "remove it; a suppression must not outlive its reason",
                )


def check_imports(table: Table, only: Callable[[str | None], bool] | None = None) -> list[dict[str, Any]]:
    """``validate --import``: lint's F001-F003 (import, model_type, config_class), F013 and F014 (parallel
    plans against the meta-built models), as finding dicts.

    Suppressed findings are reported as such and never fail the run. ``only(file)``: check the entries of
    the files it accepts, and report only their findings.
    """
    found = lint_table(table, imports=True, only=only)
    return [f.as_dict() for f in found if f.code in VALIDATE_IMPORT_CODES and (only is None or only(f.file))]


__all__ = ["CODES", "Finding", "check_imports", "has_failures", "lint_table", "table_version"]
