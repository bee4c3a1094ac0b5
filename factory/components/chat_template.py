"""Chat templates: Jinja compiled in transformers' sandbox, with its helper globals.

A template comes from a checkpoint and is untrusted: it runs in jinja2's immutable sandbox
(>= 3.1.6), sees only plain JSON-like values, and cannot set underscore attributes.

It also runs on a budget, so that no template can hang ``apply_chat_template`` or exhaust
memory (each render starts a fresh budget):

* :data:`MAX_STEPS` steps: every loop iteration, call, filter, attribute or item lookup,
  ``range`` item and intercepted operator costs one;
* :data:`MAX_SECONDS` of wall-clock time, checked at every step;
* ``range()`` of at most :data:`MAX_RANGE` items (jinja's own sandbox limit);
* values the template makes (``*``, ``+``, ``~``, ``%`` and ``**`` results, widths and counts
  passed to string methods and filters) of at most :data:`MAX_VALUE` items or characters;
* at most :data:`MAX_OUTPUT` characters of rendered text.

Exceeding any of them is a :class:`~factory.errors.TokenizerError` that names the limit.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from factory.errors import MissingDependencyError, TokenizerError

MAX_STEPS = 1_000_000
MAX_SECONDS = 5.0
MAX_RANGE = 100_000
MAX_VALUE = 1_000_000
MAX_OUTPUT = 10_000_000
#: ``**`` results of at most this many bits (a 4096-bit integer has 1233 digits).
MAX_POWER_BITS = 4096

_WIDTH = re.compile(r"(\d{7,})")  # a width or precision of a million or more, in a format string


class TemplateBudgetError(TokenizerError):
    """A chat template went over one of its budgets (steps, time, sizes)."""


class _Budget:
    """What one render may still spend."""

    def __init__(self, steps: int | None = None, seconds: float | None = None) -> None:
        self.steps = MAX_STEPS if steps is None else steps
        self.seconds = MAX_SECONDS if seconds is None else seconds
        self.start()

    def start(self) -> None:
        self.left = self.steps
        self.deadline = time.monotonic() + self.seconds

    def tick(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _over(f"more than {self.steps:,} steps (loop iterations, calls, lookups)")
        if time.monotonic() > self.deadline:
            raise _over(f"more than {self.seconds:g} s of rendering")

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.tick()
            yield item


def _over(what: str) -> TemplateBudgetError:
    return TemplateBudgetError(
        f"the chat template went over its budget: {what}",
        hint="a chat template renders a conversation in well under a thousand steps; this one loops without "
        "end or builds huge values: fix or replace the template (chat_template.jinja / tokenizer_config.json)",
    )


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


def _check_value(value: Any) -> Any:
    if _size(value) > MAX_VALUE:
        raise _over(f"a value of {_size(value):,} items or characters (the limit is {MAX_VALUE:,})")
    return value


def _check_arguments(args: Iterable[Any], fmt: Any = None) -> None:
    """Counts and widths given to string methods and filters stay below MAX_VALUE."""
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_VALUE:
            raise _over(f"an argument of {arg:,} (widths and counts are limited to {MAX_VALUE:,})")
    width = _WIDTH.search(fmt) if isinstance(fmt, str) else None
    if width is not None:
        raise _over(f"a format width or precision of {width.group(1)} (limited to {MAX_VALUE:,})")


class _RangeView:
    """``range()`` in a template: at most MAX_RANGE items, each one a budget step when iterated."""

    def __init__(self, budget: _Budget, *args: int) -> None:
        self._range = range(*args)
        if len(self._range) > MAX_RANGE:
            raise _over(f"range() of {len(self._range):,} items (the limit is {MAX_RANGE:,})")
        self._budget = budget

    def __len__(self) -> int:
        return len(self._range)

    def __iter__(self) -> Iterator[int]:
        return self._budget.iterate(self._range)

    def __reversed__(self) -> Iterator[int]:
        return self._budget.iterate(reversed(self._range))

    def __getitem__(self, index: Any) -> Any:
        item = self._range[index]
        return list(self._budget.iterate(item)) if isinstance(item, range) else item

    def __contains__(self, value: Any) -> bool:
        return value in self._range

    def __repr__(self) -> str:
        return repr(self._range)


class ChatTemplate:
    """A compiled chat template: :meth:`render` runs it under a fresh budget."""

    def __init__(self, template: Any, budget: _Budget) -> None:
        self._template = template
        self._budget = budget

    def render(self, **context: Any) -> str:
        self._budget.start()
        parts: list[str] = []
        length = 0
        for chunk in self._template.generate(**context):
            length += len(chunk)
            if length > MAX_OUTPUT:
                raise _over(f"more than {MAX_OUTPUT:,} characters of output")
            parts.append(chunk)
        return "".join(parts)


def compile_chat_template(template: str) -> ChatTemplate:
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

    budget = _Budget()
    env = _budgeted_environment(jinja2, ImmutableSandboxedEnvironment, budget)(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    env.globals["range"] = lambda *args: _RangeView(budget, *args)
    env.filters = {name: _budgeted_filter(func, budget) for name, func in env.filters.items()}
    try:
        return ChatTemplate(env.from_string(template), budget)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise TokenizerError(
            f"the chat template is not valid Jinja: {exc.message} (template line {exc.lineno})",
            hint="fix chat_template.jinja / the chat_template entry",
        ) from exc


def _budgeted_filter(func: Any, budget: _Budget) -> Any:
    import functools

    @functools.wraps(func)
    def filtered(*args: Any, **kwargs: Any) -> Any:
        budget.tick()
        _check_arguments([*args[1:], *kwargs.values()], args[0] if func.__name__ == "do_format" and args else None)
        return _check_value(func(*args, **kwargs))

    return filtered


def _budgeted_environment(jinja2: Any, base: type, budget: _Budget) -> type:
    """The sandbox, with every step it can see counted and every value it makes bounded."""
    from jinja2.compiler import CodeGenerator, optimizeconst

    class Generator(CodeGenerator):
        def visit_For(self, node: Any, frame: Any) -> None:
            # every loop iterates through the budget: an empty loop body costs steps too
            node.iter = jinja2.nodes.Call(
                jinja2.nodes.EnvironmentAttribute("budget_iterate"), [node.iter], [], None, None, lineno=node.lineno
            )
            super().visit_For(node, frame)

        @optimizeconst
        def visit_Concat(self, node: Any, frame: Any) -> None:
            self.write("environment.budget_concat((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class Environment(base):  # type: ignore[misc]
        code_generator_class = Generator
        intercepted_binops = frozenset(("*", "+", "%", "**", "//"))

        def budget_iterate(self, iterable: Any) -> Any:
            return budget.iterate(iterable) if not isinstance(iterable, _RangeView) else iterable

        def budget_concat(self, parts: tuple[Any, ...]) -> str:
            budget.tick()
            texts = [str(part) for part in parts]
            total = sum(map(len, texts))
            if total > MAX_VALUE:
                raise _over(f"a concatenation of {total:,} characters (the limit is {MAX_VALUE:,})")
            return "".join(texts)

        def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
            budget.tick()
            if op == "*":
                count = right if isinstance(right, int) else left if isinstance(left, int) else 1
                sized = left if _size(left) else right
                if _size(sized) * max(count, 0) > MAX_VALUE:
                    raise _over(f"a repetition to {_size(sized) * count:,} items (the limit is {MAX_VALUE:,})")
            elif op == "+" and _size(left) + _size(right) > MAX_VALUE:
                raise _over(f"a sum of {_size(left) + _size(right):,} items (the limit is {MAX_VALUE:,})")
            elif op == "%" and isinstance(left, str):
                _check_arguments(right if isinstance(right, (tuple, list)) else [right], left)
            elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
                bits = abs(left).bit_length() * right if abs(left) > 1 else 0
                if bits > MAX_POWER_BITS:
                    raise _over(f"a power of about {bits:,} bits (the limit is {MAX_POWER_BITS:,})")
            return _check_value(self.binop_table[op](left, right))

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            budget.tick()
            owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
            if isinstance(owner, str):  # str.center(10**9), "{:>1000000000}".format(...)
                _check_arguments([*args, *kwargs.values()], owner)
            return _check_value(super().call(__context, __obj, *args, **kwargs))

        def getattr(self, obj: Any, attribute: str) -> Any:
            budget.tick()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            budget.tick()
            return super().getitem(obj, argument)

    return Environment


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
