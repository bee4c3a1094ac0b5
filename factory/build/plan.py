"""Who reads and holds what under tensor parallelism, computed before anything is read.

A registry :class:`~factory.registry.table.ParallelPlan` (the ``parallel:`` section of an
architecture file) says which style splits which module. Matched against a meta-built model
(its module paths, kinds and shapes) and, when there is a checkpoint, its safetensors headers,
it becomes a :class:`ShardPlan`: for every tensor its placement and, for every rank, the boxes
of the checkpoint tensor that rank reads and holds. The offsets follow DTensor's ``Shard``
semantics exactly (ceil-sized chunks, the last ranks shorter or empty), so an odd vocabulary
splits the way DTensor would split it; the distributed build (:mod:`factory.build.parallel`)
reads exactly these boxes and checks them against the DTensors it creates.

Nothing here initialises ``torch.distributed`` or reads a tensor: ``factory.plan`` and
``factory explain TASK NAME --tp N`` run on any machine. The module itself imports no torch;
the functions that look at a model take an already built one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.errors import ParallelError
from factory.paths import display_path
from factory.registry.table import DivisibleRule, ParallelPlan, PlanEntry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

#: Styles the native builder (:mod:`factory.build.parallel`) applies.
NATIVE_STYLES = frozenset(
    {
        "colwise",
        "colwise_gather_output",
        "colwise_rep",
        "rowwise",
        "rowwise_split_input",
        "rowwise_rep",
        "embedding_rowwise",
        "embedding_colwise",
        "packed_colwise",
        "packed_rowwise",
        "replicate",
        "replicated_with_grad_allreduce",
    }
)
#: Styles transformers 5.23 applies (``transformers.distributed.parallel_utils.ALL_PARALLEL_STYLES``;
#: a test checks the installed transformers against this list).
TRANSFORMERS_STYLES = frozenset(
    {
        *NATIVE_STYLES,
        "sequence_parallel",
        "local_params",
        "all_reduce",
        "mla_kv_a_proj",
        "moe_tp_experts",
        "moe_identity_expert",
        "ep_dispatch_experts",
        "grouped_gemm",
    }
)
COLWISE = frozenset({"colwise", "colwise_gather_output", "colwise_rep", "packed_colwise"})
ROWWISE = frozenset({"rowwise", "rowwise_split_input", "rowwise_rep", "packed_rowwise"})
#: Styles that shard the parameters of the module they name (the others keep them whole).
SHARDING = COLWISE | ROWWISE | {"embedding_rowwise", "embedding_colwise"}


def supported_styles(builder: str) -> frozenset[str]:
    """The styles the ``builder`` of a registration can apply."""
    return TRANSFORMERS_STYLES if builder == "transformers" else NATIVE_STYLES


# --- placements and the boxes they give each rank ---------------------------------------------
@dataclass(frozen=True)
class Placement:
    """How one tensor is laid out over the tensor-parallel ranks.

    ``replicate``: whole on every rank. ``shard``: split along ``dim`` (DTensor ``Shard(dim)``).
    ``packed``: ``dim`` holds ``parts`` equal parts (q|k|v), each split over the ranks; a rank's
    shard is its piece of every part, in order. ``group``: ``dim`` holds ``units`` equal units
    (kv heads) fewer than the ranks; rank ``r`` keeps unit ``r // (tp // units)`` (kv replication).
    """

    kind: str  # replicate | shard | packed | group
    dim: int = 0
    parts: int = 1
    units: int = 0

    def describe(self) -> str:
        if self.kind == "shard":
            return f"Shard({self.dim})"
        if self.kind == "packed":
            return f"Shard({self.dim}) of each of {self.parts} parts"
        if self.kind == "group":
            return f"1 of {self.units} units of dim {self.dim} (replicated over ranks)"
        return "Replicate"


REPLICATE = Placement("replicate")
Box = tuple[tuple[int, int], ...]  # (start, stop) per dimension


def shard_range(size: int, world: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of ``rank``'s chunk of ``size`` split over ``world`` ranks, as DTensor's
    ``Shard`` computes it: chunks of ``ceil(size / world)``, the last ranks shorter or empty."""
    chunk = -(-size // world) if size else 0
    start = min(chunk * rank, size)
    return start, min(start + chunk, size)


def boxes(shape: Sequence[int], placement: Placement, world: int, rank: int) -> list[Box]:
    """The boxes of the full tensor (``shape``) that ``rank`` holds, in the order its local shard
    concatenates them along ``placement.dim``."""
    full = tuple((0, n) for n in shape)
    if placement.kind == "replicate" or world == 1:
        return [full]
    dim = placement.dim
    size = shape[dim]
    if placement.kind == "shard":
        ranges = [shard_range(size, world, rank)]
    elif placement.kind == "packed":
        part = size // placement.parts
        ranges = []
        for p in range(placement.parts):
            start, stop = shard_range(part, world, rank)
            ranges.append((p * part + start, p * part + stop))
    elif placement.kind == "group":
        unit = size // placement.units
        index = rank // (world // placement.units)
        ranges = [(index * unit, (index + 1) * unit)]
    else:  # pragma: no cover - the kinds above are all there is
        raise AssertionError(placement.kind)
    return [full[:dim] + (r,) + full[dim + 1 :] for r in ranges]


def box_numel(box: Box) -> int:
    return math.prod(stop - start for start, stop in box)


def local_shape(shape: Sequence[int], placement: Placement, world: int, rank: int) -> tuple[int, ...]:
    """The shape of ``rank``'s local shard."""
    parts = boxes(shape, placement, world, rank)
    out = [stop - start for start, stop in parts[0]]
    if len(parts) > 1:
        out[placement.dim] = sum(b[placement.dim][1] - b[placement.dim][0] for b in parts)
    return tuple(out)


def module_kind(module: Any) -> str:
    """``linear`` (weight ``[out, in]``), ``conv1d`` (GPT-2's ``[in, out]``), ``embedding`` or ``other``."""
    from torch import nn

    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        return "conv1d"
    return "other"


def placement_for(style: str, kind: str, leaf: str, ndim: int, parts: int | None = None) -> Placement:
    """The placement ``style`` gives parameter ``leaf`` (``ndim`` dimensions) of a ``kind`` module.

    nn.Linear weights are ``[out, in]``: colwise splits dim 0 (outputs), rowwise dim 1 (inputs), and
    the bias follows the outputs (colwise) or stays whole (rowwise, added after the reduction).
    GPT-2's Conv1D weights are ``[in, out]``: the other way round. Embeddings: rowwise splits the
    vocabulary (dim 0), colwise the hidden dim. A parameter named on its own (``ndim`` known,
    no module kind) is treated like a linear weight, 1-d like a bias.
    """
    if style not in SHARDING:
        return REPLICATE
    is_vector = ndim == 1
    if style in ("embedding_rowwise", "embedding_colwise") or kind == "embedding":
        rowwise = style == "embedding_rowwise" or (kind == "embedding" and style in ROWWISE)
        return Placement("shard", 0 if rowwise else ndim - 1)
    colwise = style in COLWISE
    if is_vector:
        if not colwise:
            return REPLICATE
        dim = 0
    elif kind == "conv1d":
        dim = ndim - 1 if colwise else ndim - 2
    else:
        dim = ndim - 2 if colwise else ndim - 1
    if style in ("packed_colwise", "packed_rowwise"):
        return Placement("packed", dim, parts=parts or 2)
    return Placement("shard", dim)


# --- matching plan paths to a model ------------------------------------------------------------
def _pattern(path: str) -> re.Pattern[str]:
    return re.compile(r"\.".join(r"\d+" if part == "*" else re.escape(part) for part in path.split(".")))


def candidate_paths(path: str, prefix: str) -> list[str]:
    """``path`` as written, then with the model's ``base_model_prefix`` added (a trunk path in a head
    model) or removed (a head-model path in the bare trunk)."""
    out = [path]
    if prefix:
        out.append(path[len(prefix) + 1 :] if path.startswith(prefix + ".") else f"{prefix}.{path}")
    return out


def match(entries: Iterable[PlanEntry], names: Iterable[str], prefix: str) -> dict[str, PlanEntry]:
    """Concrete module or parameter name -> the plan entry that names it (the first form of the
    entry's path that matches anything wins; a later entry for the same name wins over an earlier)."""
    names = list(names)
    out: dict[str, PlanEntry] = {}
    for entry in entries:
        for candidate in candidate_paths(entry.path, prefix):
            regex = _pattern(candidate)
            found = [n for n in names if regex.fullmatch(n)]
            if found:
                out.update(dict.fromkeys(found, entry))
                break
    return out


def unmatched(entries: Iterable[PlanEntry], names: Iterable[str], prefix: str) -> list[PlanEntry]:
    """The entries that match no name (in any of their forms)."""
    names = list(names)
    return [
        e for e in entries if not any(_pattern(c).fullmatch(n) for c in candidate_paths(e.path, prefix) for n in names)
    ]


def resolve_path(path: str, names: Iterable[str], prefix: str) -> list[str]:
    """The concrete names a plan path (``fsdp`` unit, ``divisible`` module) stands for in a model."""
    names = list(names)
    for candidate in candidate_paths(path, prefix):
        regex = _pattern(candidate)
        found = [n for n in names if regex.fullmatch(n)]
        if found:
            return found
    return []


# --- the plan of one build ---------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A reason the plan cannot be applied, with the file:line of the rule that says so."""

    message: str
    file: str | None = None
    line: int | None = None
    hint: str | None = None
    kind: str = "structure"  # plan (none) | style (not applied by the builder) | divisible | structure

    @property
    def where(self) -> str:
        return f"{display_path(self.file)}:{self.line}" if self.file else ""

    @classmethod
    def at(
        cls, message: str, rule: PlanEntry | DivisibleRule | None, hint: str | None = None, kind: str = "structure"
    ) -> Problem:
        """A problem located at ``rule``'s file:line."""
        if rule is None:
            return cls(message, hint=hint, kind=kind)
        return cls(message, rule.provenance.file, rule.provenance.line, hint, kind)


@dataclass
class TensorPlan:
    """One parameter or persistent buffer: where it comes from and what each rank keeps of it."""

    name: str  # the model's name (a tied destination is listed under its source)
    shape: tuple[int, ...]
    itemsize: int  # bytes per element once built
    placement: Placement
    entry: PlanEntry | None  # the rule that placed it; None: not in the plan (replicated)
    module: str  # the module that owns it
    style: str | None
    checkpoint_key: str | None = None  # the key read, when there is a checkpoint
    checkpoint_itemsize: int | None = None
    file: Path | None = None
    tied: tuple[str, ...] = ()  # other names of the same tensor

    def boxes(self, world: int, rank: int) -> list[Box]:
        return boxes(self.shape, self.placement, world, rank)

    def held(self, world: int, rank: int) -> int:
        return sum(box_numel(b) for b in self.boxes(world, rank)) * self.itemsize

    def read(self, world: int, rank: int) -> int:
        if self.checkpoint_key is None or self.checkpoint_itemsize is None:
            return 0
        return sum(box_numel(b) for b in self.boxes(world, rank)) * self.checkpoint_itemsize

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


@dataclass
class ShardPlan:
    """What a tensor-parallel build of one registration does on each of ``tp_size`` ranks."""

    task: str
    architecture: str
    target: str
    builder: str
    tp_size: int
    dtype: str
    plan: ParallelPlan | None
    tensors: list[TensorPlan] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: list[PlanEntry] = field(default_factory=list)  # entries naming nothing in this model
    module_styles: dict[str, PlanEntry] = field(default_factory=dict)  # module -> the entry that styles it
    replicated_units: dict[str, DivisibleRule] = field(default_factory=dict)  # module -> kv-replicate rule
    checkpoint: str | None = None
    checkpoint_bytes: int = 0

    def ranks(self) -> list[tuple[int, int]]:
        """(bytes read from the checkpoint, bytes held) per rank."""
        return [
            (sum(t.read(self.tp_size, r) for t in self.tensors), sum(t.held(self.tp_size, r) for t in self.tensors))
            for r in range(self.tp_size)
        ]

    @property
    def sharded(self) -> list[TensorPlan]:
        return [t for t in self.tensors if t.placement.kind != "replicate"]

    @property
    def replicated(self) -> list[TensorPlan]:
        return [t for t in self.tensors if t.placement.kind == "replicate"]

    def raise_problems(self) -> None:
        """:class:`ParallelError` listing every problem, before any tensor is read."""
        if not self.problems:
            return
        first = self.problems[0]
        lines = [f"{p.where + ': ' if p.where else ''}{p.message}" for p in self.problems]
        raise ParallelError(
            f"{self.task} / {self.architecture} cannot be split over tp_size={self.tp_size}: "
            + ("; ".join(lines) if len(lines) > 1 else first.message),
            file=first.file,
            line=first.line,
            hint=first.hint or "choose a tp_size that divides the values named (factory explain ... --tp N)",
            problems=[p.message for p in self.problems],
        )

    def as_dict(self) -> dict[str, Any]:
        def at(e: PlanEntry | DivisibleRule | None) -> str | None:
            return f"{display_path(e.provenance.file)}:{e.provenance.line}" if e is not None else None

        return {
            "task": self.task,
            "architecture": self.architecture,
            "target": self.target,
            "builder": self.builder,
            "tp_size": self.tp_size,
            "dtype": self.dtype,
            "plan": at_plan(self.plan),
            "checkpoint": self.checkpoint,
            "ranks": [{"rank": r, "read": rd, "held": hd} for r, (rd, hd) in enumerate(self.ranks())],
            "tensors": [
                {
                    "name": t.name,
                    "shape": list(t.shape),
                    "placement": t.placement.describe(),
                    "style": t.style,
                    "rule": at(t.entry),
                    "bytes": t.nbytes,
                    "held_per_rank": [t.held(self.tp_size, r) for r in range(self.tp_size)],
                    "tied": list(t.tied),
                }
                for t in self.tensors
            ],
            "replicated_units": {m: at(r) for m, r in self.replicated_units.items()},
            "skipped": [{"rule": e.describe(), "at": at(e)} for e in self.skipped],
            "problems": [{"message": p.message, "at": p.where or None, "hint": p.hint} for p in self.problems],
        }

    def __str__(self) -> str:
        return format_plan(self)


def at_plan(plan: ParallelPlan | None) -> str | None:
    return f"{display_path(plan.provenance.file)}:{plan.provenance.line}" if plan is not None else None


def _config_value(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)


def check_divisible(
    plan: ParallelPlan, config: Any, tp: int, names: Sequence[str], prefix: str
) -> tuple[list[Problem], dict[str, DivisibleRule]]:
    """The ``divisible`` rules against the config: problems, and the modules whose units are
    replicated (``else: replicate`` with a value below ``tp`` that divides it)."""
    problems: list[Problem] = []
    replicated: dict[str, DivisibleRule] = {}
    for rule in plan.divisible:
        value = _config_value(config, rule.key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(
                Problem.at(
                    f"config value {rule.key}={value!r} is not a positive integer, so the rule "
                    f"'{rule.describe()}' cannot be checked",
                    rule,
                    hint=f"the config class must have the integer attribute {rule.key}",
                    kind="divisible",
                )
            )
            continue
        if value % tp == 0:
            continue
        if rule.otherwise == "replicate" and value < tp and tp % value == 0:
            for path in rule.modules:
                for name in resolve_path(path, names, prefix):
                    replicated[name] = rule
            continue
        if rule.otherwise == "replicate":
            why = (
                f"{rule.key}={value} is not divisible by tp_size={tp}, and tp_size is not a multiple of it "
                "(each rank would need part of a unit)"
            )
        else:
            why = f"{rule.key}={value} is not divisible by tp_size={tp}"
        divisors = [d for d in range(2, value + 1) if value % d == 0][:6]
        problems.append(
            Problem.at(
                why,
                rule,
                hint=f"use a tp_size that divides {rule.key}={value}"
                + (f" (e.g. {', '.join(map(str, divisors))})" if divisors else ""),
                kind="divisible",
            )
        )
    return problems, replicated


def compute(
    model: nn.Module,
    plan: ParallelPlan | None,
    config: Any,
    tp_size: int,
    *,
    task: str,
    target: str,
    builder: str = "native",
    dtype: Any = None,
    checkpoint: Any = None,
) -> ShardPlan:
    """The :class:`ShardPlan` of ``model`` (meta-built) under ``plan`` over ``tp_size`` ranks.

    ``checkpoint`` is the weights' match (:func:`factory.build.weights.match_checkpoint`) when the
    model is to be loaded: reads are then counted in the checkpoint's dtype. Divisibility problems
    and styles the builder cannot apply are listed in ``problems``.
    """
    from factory.build.meta import tie_map

    arch = plan.architecture if plan is not None else getattr(config, "model_type", "?")
    out = ShardPlan(task, arch, target, builder, tp_size, str(dtype).removeprefix("torch."), plan)
    if tp_size < 1:
        raise ParallelError(f"tp_size must be a positive integer, got {tp_size!r}")
    if plan is None:
        out.problems.append(
            Problem(
                f"architecture {arch!r} has no parallel plan for the {builder} builder",
                hint="add a `parallel:` section to its architecture file (README: 'Big models')",
                kind="plan",
            )
        )
        plan_entries: tuple[PlanEntry, ...] = ()
    else:
        plan_entries = plan.tp
    prefix = getattr(model, "base_model_prefix", "") or ""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters(remove_duplicate=False))
    names = [*modules, *params]
    supported = supported_styles(builder)
    for entry in plan_entries:
        if entry.style not in supported:
            out.problems.append(
                Problem.at(
                    f"style {entry.style!r} of {entry.path} is not applied by the {builder} builder",
                    entry,
                    hint=f"styles it applies: {', '.join(sorted(supported))}",
                    kind="style",
                )
            )
    matched = match(plan_entries, names, prefix)
    out.skipped = unmatched(plan_entries, names, prefix)
    if plan is not None:
        problems, out.replicated_units = check_divisible(plan, config, tp_size, names, prefix)
        out.problems += problems

    ties = tie_map(model)
    state = model.state_dict(keep_vars=True)
    mapped = checkpoint.mapped if checkpoint is not None else {}
    placements: dict[str, Placement] = {}
    for name, tensor in state.items():
        placement, style_entry = _place(name, tuple(tensor.shape), matched, modules, params, tp_size, builder, out)
        owner = name.rpartition(".")[0]
        if owner in out.replicated_units and placement.kind == "shard":
            rule = out.replicated_units[owner]
            placement = Placement("group", placement.dim, units=int(_config_value(config, rule.key)))
        placements[name] = placement
        if name in ties:
            continue
        ckpt = mapped.get(name)
        out.tensors.append(
            TensorPlan(
                name=name,
                shape=tuple(tensor.shape),
                itemsize=_dtype_of(dtype, tensor).itemsize,
                placement=placement,
                entry=style_entry,
                module=owner,
                style=style_entry.style if style_entry is not None else None,
                checkpoint_key=ckpt.key if ckpt is not None else None,
                checkpoint_itemsize=ckpt.dtype.itemsize if ckpt is not None else None,
                file=ckpt.file if ckpt is not None else None,
                tied=tuple(sorted(d for d, s in ties.items() if s == name)),
            )
        )
    out.module_styles = {m: e for m, e in matched.items() if m in modules}
    for dest, source in ties.items():
        if dest in placements and source in placements and placements[dest] != placements[source]:
            tie_rule = (
                matched.get(dest)
                or matched.get(dest.rpartition(".")[0])
                or matched.get(source)
                or matched.get(source.rpartition(".")[0])
            )
            out.problems.append(
                Problem.at(
                    f"{dest} is tied to {source}, but the plan splits them differently "
                    f"({placements[dest].describe()} vs {placements[source].describe()})",
                    tie_rule,
                    hint="give both styles that shard them alike (embedding_rowwise with colwise*, as transformers' "
                    "plans do), or untie them (tie_word_embeddings: false)",
                )
            )
    if checkpoint is not None:
        out.checkpoint_bytes = sum(e.nbytes for e in checkpoint.entries.values())
    return out


def _place(
    name: str,
    shape: tuple[int, ...],
    matched: Mapping[str, PlanEntry],
    modules: Mapping[str, Any],
    params: Mapping[str, Any],
    tp: int,
    builder: str,
    out: ShardPlan,
) -> tuple[Placement, PlanEntry | None]:
    """The placement of one tensor, and the rule that decided it (None: not in the plan)."""
    owner, _, leaf = name.rpartition(".")
    own = matched.get(name)  # a rule naming the parameter itself
    entry = own if own is not None else matched.get(owner)
    if entry is None or name not in params:
        return REPLICATE, entry
    module = modules.get(owner)
    kind = "other" if own is not None or module is None else module_kind(module)
    placement = placement_for(entry.style, kind, leaf, len(shape), entry.parts)
    problem = None
    if builder == "native" and own is None and kind == "other" and entry.style in SHARDING:
        problem = Problem.at(
            f"{entry.style} on {_generic(owner)} ({type(module).__name__}): the native builder shards nn.Linear, "
            "GPT-2's Conv1D and nn.Embedding modules, or a parameter named on its own",
            entry,
        )
    elif placement.kind == "packed" and shape[placement.dim] % placement.parts:
        problem = Problem.at(
            f"{name} {list(shape)}: dim {placement.dim} does not split into {placement.parts} equal parts",
            entry,
            hint="fix `parts` of the rule",
        )
    if problem is not None:
        if problem not in out.problems:
            out.problems.append(problem)
        return REPLICATE, entry
    return placement, entry


def _dtype_of(dtype: Any, tensor: Any) -> Any:
    return dtype if dtype is not None and tensor.dtype.is_floating_point else tensor.dtype


# --- presenting a plan -------------------------------------------------------------------------
def _generic(name: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".*", name)


def _runs(values: Sequence[tuple[int, int]]) -> list[tuple[int, int, tuple[int, int]]]:
    """Consecutive ranks with equal figures, as (first, last, figures)."""
    out: list[tuple[int, int, tuple[int, int]]] = []
    for rank, value in enumerate(values):
        if out and out[-1][2] == value:
            out[-1] = (out[-1][0], rank, value)
        else:
            out.append((rank, rank, value))
    return out


def format_plan(sp: ShardPlan) -> str:
    """The text ``factory explain TASK NAME --tp N`` prints."""
    from factory.build.placement import format_bytes

    tp = sp.tp_size
    lines = [
        f"tensor-parallel plan: {sp.task} / {sp.architecture} -> {sp.target} (builder: {sp.builder}), "
        f"tp_size={tp}, dtype {sp.dtype}",
    ]
    if sp.plan is not None:
        lines.append(f"  parallel plan at {at_plan(sp.plan)}")
    total = sum(t.nbytes for t in sp.tensors)
    if sp.checkpoint:
        lines.append(
            f"  checkpoint {sp.checkpoint}: {format_bytes(sp.checkpoint_bytes)} in its files (headers read, no tensor)"
        )
    else:
        lines.append("  no checkpoint: a fresh model (nothing is read)")
    lines.append(f"  model: {format_bytes(total)} in {len(sp.tensors)} tensors once built")
    lines.append("per rank (read from the checkpoint / held once built):")
    for first, last, (read, held) in _runs(sp.ranks()):
        who = f"rank {first}" if first == last else f"ranks {first}-{last}"
        share = f" ({held / total:.1%} of the model)" if total else ""
        lines.append(f"  {who:<11} reads {format_bytes(read):>10}, holds {format_bytes(held):>10}{share}")

    groups: dict[tuple[str, str], list[TensorPlan]] = {}
    for t in sp.sharded:
        groups.setdefault((_generic(t.name), t.placement.describe()), []).append(t)
    if groups:
        lines.append("sharded (each rank holds its part; per rank):")
        for (pattern, placement), items in groups.items():
            per_rank = [sum(t.held(tp, r) for t in items) for r in range(tp)]
            low, high = min(per_rank), max(per_rank)
            spread = format_bytes(low) if low == high else f"{format_bytes(low)}-{format_bytes(high)}"
            rule: PlanEntry | DivisibleRule | None = sp.replicated_units.get(items[0].module, items[0].entry)
            at = f"{display_path(rule.provenance.file)}:{rule.provenance.line}" if rule is not None else ""
            count = f" x{len(items)}" if len(items) > 1 else ""
            tied = f" (tied: {', '.join(items[0].tied)})" if items[0].tied else ""
            lines.append(
                f"  {pattern} [{'x'.join(map(str, items[0].shape))}]{count}{tied}: {items[0].style} -> "
                f"{placement}, {spread}  [{at}]"
            )
    rep = sp.replicated
    if rep:
        nbytes = sum(t.nbytes for t in rep)
        lines.append(f"replicated (whole on every rank): {len(rep)} tensors, {format_bytes(nbytes)} per rank")
        by_pattern: dict[str, list[TensorPlan]] = {}
        for t in rep:
            by_pattern.setdefault(_generic(t.name), []).append(t)
        for pattern, items in sorted(by_pattern.items(), key=lambda kv: -sum(t.nbytes for t in kv[1]))[:12]:
            why = (
                f"{items[0].style}, {display_path(items[0].entry.provenance.file)}:{items[0].entry.provenance.line}"
                if items[0].entry is not None
                else "not in the plan"
            )
            lines.append(f"  {pattern} ({len(items)} x {format_bytes(items[0].nbytes)}): {why}")
        if len(by_pattern) > 12:
            lines.append(f"  ... and {len(by_pattern) - 12} more patterns")
    if sp.replicated_units:
        rules = {id(r): r for r in sp.replicated_units.values()}
        for rule in rules.values():
            lines.append(
                f"kv replication: {rule.describe()} [{display_path(rule.provenance.file)}:{rule.provenance.line}]"
            )
    if sp.skipped:
        lines.append("rules naming nothing in this model (another task's head; skipped):")
        for e in sp.skipped:
            lines.append(f"  {e.describe()}  [{display_path(e.provenance.file)}:{e.provenance.line}]")
    if sp.problems:
        lines.append("problems (the build refuses before reading):")
        for p in sp.problems:
            lines.append(
                f"  {p.message}" + (f"  [{p.where}]" if p.where else "") + (f"\n    hint: {p.hint}" if p.hint else "")
            )
    else:
        checks = [r.describe() for r in (sp.plan.divisible if sp.plan else ())]
        lines.append("divisibility: ok" + (f" ({'; '.join(checks)})" if checks else ""))
    return "\n".join(lines)
