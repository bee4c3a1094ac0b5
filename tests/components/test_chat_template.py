"""Chat templates run on a budget: no template hangs apply_chat_template or exhausts memory."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from factory.components import chat_template as ct
from factory.components.chat_template import TemplateBudgetError, compile_chat_template
from factory.components.tokenizer import Tokenizer
from factory.errors import TokenizerError

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def render(template: str, **context) -> str:
    return compile_chat_template(template).render(messages=CHAT, **context)


@pytest.mark.parametrize(
    ("template", "limit"),
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "1,000,000 steps"),
        ("{% for i in range(10**7) %}{% endfor %}", "range() of 10,000,000 items"),
        ("{{ 'x' * 10**9 }}", "a repetition to 1,000,000,000 items"),
        ("{{ [1, 2] * 10**8 }}", "a repetition"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "a sum of",
        ),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "a concatenation of",
        ),
        ("{% set a = 'x' * 999999 %}{{ a ~ a }}", "a concatenation of 1,999,998 characters"),
        ("{{ 'x'|center(10**9) }}", "an argument of 1,000,000,000"),
        ("{{ 'x'|indent(10**9) }}", "an argument of"),
        ("{{ 'x'.ljust(10**9) }}", "an argument of"),
        ("{{ 'x'.zfill(10**8) }}", "an argument of"),
        ("{{ '{:>1000000000}'.format(1) }}", "a format width or precision of 1000000000"),
        ("{{ '%1000000000s' % 'x' }}", "a format width"),
        ("{{ '%*s' % (10**9, 'x') }}", "an argument of"),
        ("{{ '%s'|format('x') }}{{ '%9999999d'|format(1) }}", "a format width"),
        ("{{ 2 ** 100000 }}", "a power of about"),
        ("{{ (10 ** 100) ** 100 }}", "a power of about 33,300 bits"),
        ("{% for i in range(100000) %}{{ 'x' * 999 }}{% endfor %}", "10,000,000 characters of output"),
    ],
)
def test_templates_that_would_hang_or_explode_stop_at_a_budget(template, limit):
    started = time.monotonic()
    pattern = re.escape(limit).replace(re.escape("1,000,000 steps"), "(1,000,000 steps|5 s of rendering)")
    with pytest.raises(TemplateBudgetError, match=f"the chat template went over its budget: .*{pattern}"):
        render(template)
    assert time.monotonic() - started < ct.MAX_SECONDS + 3


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for m in messages %}{% for c in m.content %}{% endfor %}{% endfor %}"
        "{% endfor %}",
        "{% set xs = 'ab' * 500000 %}{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}",
        "{% for m in messages %}{% for i in range(100000) %}{{ m.role }}{% endfor %}{% endfor %}",
        "{% set d = dict(a=1, b=2) %}{% for i in range(100000) %}{% for k, v in d.items() %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% if messages|selectattr('role', 'equalto', 'x')|list %}{% endif %}{% endfor %}",
    ],
    ids=["over-strings", "over-a-made-string", "lookups", "dict-items", "filters"],
)
def test_every_kind_of_step_counts(monkeypatch, template):
    monkeypatch.setattr(ct, "MAX_STEPS", 20_000)  # the same accounting as 1,000,000, reached sooner
    with pytest.raises(TemplateBudgetError, match="more than 20,000 steps"):
        render(template)


def test_the_time_budget(monkeypatch):
    monkeypatch.setattr(ct, "MAX_SECONDS", 0.2)
    monkeypatch.setattr(ct, "MAX_STEPS", 10**12)
    started = time.monotonic()
    with pytest.raises(TemplateBudgetError, match="more than 0.2 s of rendering"):
        render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    assert time.monotonic() - started < 3


def test_each_render_starts_a_fresh_budget(monkeypatch):
    monkeypatch.setattr(ct, "MAX_STEPS", 5000)
    compiled = compile_chat_template("{% for i in range(3000) %}{% endfor %}{{ messages|length }}")
    assert [compiled.render(messages=CHAT) for _ in range(3)] == ["2", "2", "2"]


def test_ordinary_templates_render_as_jinja_renders_them():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m.content | trim }}{% if not loop.last %}\n{% endif %}"
        "{% endfor %}{% for i in range(3)|reverse %}{{ i }}{% endfor %}|{{ range(4)|list }}|{{ range(10)[2] }}|"
        "{{ range(5)|length }}|{% for i in range(2) %}{{ loop.index }}/{{ loop.length }} {% endfor %}|"
        "{{ 'ab' * 3 }}|{{ [1] + [2] }}|{{ '%05d' % 42 }}|{{ '{:>4}'.format('x') }}|{{ 2 ** 10 }}|{{ 'a' ~ 'b' }}|"
        "{{ 'x'|center(5) }}|{{ messages[::-1][0].role }}|{{ 7 // 2 }}|{{ range(2, 9, 3)|list }}|{{ 3 in range(5) }}"
    )
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template)
    expected = plain.render(messages=CHAT)
    assert "<|assistant|>hello210|[0, 1, 2, 3]|2|5|1/2 2/2 |ababab|[1, 2]|00042|   x|1024|ab|  x  |" in expected
    assert render(template) == expected


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "went over its budget"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "failed to render: RecursionError"),
        ("{{ 'x' * 10**10 }}", "went over its budget: a repetition"),
    ],
    ids=["loops", "recursion", "memory"],
)
def test_apply_chat_template_reports_the_checkpoint(tmp_path: Path, template, match):
    from tokenizers import Tokenizer as Backend
    from tokenizers.models import WordLevel

    Backend(WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]")).save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "chat_template.jinja").write_text(template)
    tok = Tokenizer.from_directory(tmp_path)
    started = time.monotonic()
    with pytest.raises(TokenizerError, match=match) as info:
        tok.apply_chat_template(CHAT, tokenize=False)
    assert info.value.file == str(tmp_path)
    assert time.monotonic() - started < ct.MAX_SECONDS + 3
