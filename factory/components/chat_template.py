"""Chat templates: Jinja compiled in transformers' sandbox, with its helper globals.

A template comes from a checkpoint and is untrusted: it runs in jinja2's immutable sandbox
(>= 3.1.6), sees only plain JSON-like values, and cannot set underscore attributes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from factory.errors import MissingDependencyError, TokenizerError


def compile_chat_template(template: str) -> Any:
    """Compile like transformers: sandboxed jinja2, trim/lstrip blocks, loop controls, its helper globals."""
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:
        raise MissingDependencyError(
            "apply_chat_template needs jinja2, which is not installed",
            hint="pip install 'jinja2>=3.1.6' (torch normally brings it)",
        ) from exc
    version = tuple(int(p) for p in jinja2.__version__.split(".")[:3] if p.isdigit())
    if version < (3, 1, 6):
        raise MissingDependencyError(
            f"apply_chat_template needs jinja2>=3.1.6 (older versions have sandbox escapes), "
            f"found {jinja2.__version__}",
            hint="pip install -U 'jinja2>=3.1.6'",
        )
    from datetime import datetime

    class GenerationTag(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` renders its body (assistant masks are not tracked)."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller: Any) -> str:
            return str(caller())

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
    ) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    class TemplateDict:
        def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            TemplateNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"chat templates cannot set underscore attributes ({name!r})")

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise TokenizerError(
            f"the chat template is not valid Jinja: {exc.message} (template line {exc.lineno})",
            hint="fix chat_template.jinja / the chat_template entry",
        ) from exc


def plain_template_input(value: Any) -> Any:
    """Rebuild template inputs from plain JSON types, so the sandbox never sees rich objects."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_template_input(k): plain_template_input(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_template_input(v) for v in value]
    return f"<{type(value).__name__}>"
