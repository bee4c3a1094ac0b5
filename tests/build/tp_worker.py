"""A torchrun worker for tests/build/test_parallel.py: builds each scenario of a JSON spec split over
the ranks and saves what it computed (``python -m torch.distributed.run ... tp_worker.py SPEC``).

Per scenario: the logits of the given inputs, the greedy continuation (KV cache), the bytes this
rank read against what ``factory.plan`` said it would read, every DTensor's local shape against
the shape DTensor computes for its placements, and any FactoryError (type, message, whether a
single slice had been read before it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

import factory
from factory.build import parallel
from tests.build.torchrun import save_result


def local_shapes_agree(model: torch.nn.Module) -> list[str]:
    """Names of the DTensors whose local shard is not the shape DTensor computes for its placements."""
    bad = []
    for name, param in model.named_parameters():
        if isinstance(param, DTensor):
            expected, _ = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
            if tuple(param.to_local().shape) != tuple(expected):
                bad.append(name)
    return bad


def run(scenario: dict[str, Any]) -> dict[str, Any]:
    reads: list[int] = []
    original = parallel._Slices.read

    def counting(self: Any, *args: Any) -> torch.Tensor:
        reads.append(1)
        return original(self, *args)

    parallel._Slices.read = counting  # type: ignore[method-assign]
    try:
        options: dict[str, Any] = {}
        if scenario.get("mesh"):
            names = tuple(scenario.get("mesh_names", ("dp_shard", "tp")))
            options["mesh"] = init_device_mesh("cpu", tuple(scenario["mesh"]), mesh_dim_names=names)
        elif scenario.get("mesh_1d"):
            options["mesh"] = init_device_mesh("cpu", (dist.get_world_size(),))
        else:
            options["tp_size"] = scenario.get("tp", dist.get_world_size())
        if "device" in scenario:
            options["device"] = scenario["device"]
        try:
            model = factory.build(scenario["task"], scenario["path"], **options)
        except factory.FactoryError as err:
            return {"error": type(err).__name__, "message": str(err), "slices_read": len(reads)}
    finally:
        parallel._Slices.read = original  # type: ignore[method-assign]
    out: dict[str, Any] = {"local_shape_mismatches": local_shapes_agree(model)}
    inputs = {k: torch.tensor(v) for k, v in scenario["inputs"].items()}
    with torch.no_grad():
        result = model(**inputs)
    out["logits"] = result.logits
    if scenario.get("generate"):
        out["generated"] = model.generate(**inputs, max_new_tokens=scenario["generate"])
    if scenario.get("backward"):  # training: every rank's gradients of its own shards
        with torch.enable_grad():
            model(**inputs, labels=inputs["input_ids"]).loss.backward()
        rank, world = dist.get_rank(), dist.get_world_size()
        out["grads"] = {
            n: (p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad).clone()
            for n, p in model.named_parameters()
        }
        out["boxes"] = {t.name: (t.boxes(world, rank), t.placement.dim) for t in model.factory_shard_plan.tensors}
    report = getattr(model, "factory_load_report", None)
    shard_plan = getattr(model, "factory_shard_plan", None)
    if report is not None and shard_plan is not None and not scenario.get("mesh"):
        rank, world = dist.get_rank(), dist.get_world_size()
        out["read"] = report.bytes
        out["planned_read"] = shard_plan.ranks()[rank][0]
        out["sharded_read"] = sum(t.read(world, rank) for t in shard_plan.sharded)
        out["sharded_total"] = sum(t.read(1, 0) for t in shard_plan.sharded)
    out["params"] = {
        name: (type(p).__name__, tuple(p.to_local().shape) if isinstance(p, DTensor) else tuple(p.shape))
        for name, p in model.named_parameters(remove_duplicate=False)
    }
    return out


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    dist.init_process_group("gloo")
    try:
        save_result({s["name"]: run(s) for s in spec})
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
