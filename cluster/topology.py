"""Scale presets and the topology they describe (pure: no Ray, no I/O beyond reading a preset).

A preset (`configs/scale/<name>.yaml`) says how many service instances and swarms to run, how many
agents each swarm holds, the CPU share each actor asks for, phase durations and the default
workload. `build_topology` turns it into concrete ids and agent→instance assignments;
`plan_placement` decides how the bundles go onto the nodes Ray reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCALE_DIR = PROJECT_ROOT / "configs" / "scale"
PRESETS = ("ci", "laptop", "cloud")

Strategy = Literal["STRICT_SPREAD", "SPREAD", "PACK"]
Assignment = Literal["round_robin", "by_swarm"]


@dataclass(frozen=True)
class Durations:
    """Wall-time bounds of the phases, seconds."""

    warmup_s: float = 10.0
    load_s: float = 30.0
    drain_s: float = 10.0


@dataclass(frozen=True)
class ScalePreset:
    """One scale: counts of actors and agents, their CPU shares, durations, workload."""

    name: str
    instances: int = 3
    swarms: int = 3
    agents_per_swarm: int = 100
    instance_cpus: float = 0.5
    swarm_cpus: float = 0.5
    local_num_cpus: int | None = None
    assignment: Assignment = "round_robin"
    durations: Durations = field(default_factory=Durations)
    workload: Mapping[str, Any] = field(default_factory=dict)
    warmup_workload: Mapping[str, Any] = field(default_factory=dict)
    #: TMWS_* settings every service instance of this scale runs with (e.g. pool sizes).
    instance_env: Mapping[str, str] = field(default_factory=dict)
    #: Custom Ray resources an instance / a swarm bundle asks for besides CPU: node labels. The
    #: cloud preset asks `tmws_instance: 1`, which only instance nodes offer (one each), and
    #: `tmws_swarm: 1`, which swarm nodes offer; laptop presets ask none.
    instance_resources: Mapping[str, float] = field(default_factory=dict)
    swarm_resources: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("instances", "swarms", "agents_per_swarm"):
            if getattr(self, name) < 1:
                raise ValueError(f"scale {self.name!r}: {name} must be >= 1")
        if self.instance_cpus < 0 or self.swarm_cpus < 0:
            raise ValueError(f"scale {self.name!r}: CPU shares must not be negative")
        for name in ("instance_resources", "swarm_resources"):
            for key, amount in getattr(self, name).items():
                if key in ("CPU", "GPU", "memory") or amount <= 0:
                    raise ValueError(
                        f"scale {self.name!r}: {name} takes custom resources with positive "
                        f"amounts, got {key}: {amount}"
                    )

    @property
    def total_agents(self) -> int:
        return self.swarms * self.agents_per_swarm

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScalePreset:
        """Build from a mapping; unknown keys fail naming the key."""
        allowed = set(cls.__dataclass_fields__)
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown scale keys: {sorted(unknown)}")
        values = dict(data)
        if "durations" in values:
            values["durations"] = Durations(**values["durations"])
        if "instance_env" in values:
            values["instance_env"] = {str(k): str(v) for k, v in values["instance_env"].items()}
        for name in ("instance_resources", "swarm_resources"):
            if name in values:
                values[name] = {str(k): float(v) for k, v in values[name].items()}
        return cls(**values)


def load_preset(name_or_path: str | Path) -> ScalePreset:
    """A preset by name (`ci`, `laptop`, `cloud`) or by YAML path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCALE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no scale preset {name_or_path!r} (looked for {path})")
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("name", path.stem)
    return ScalePreset.from_dict(data)


@dataclass(frozen=True)
class SwarmSpec:
    """One swarm: its id, its agents and the index of each agent's first instance."""

    swarm_id: str
    agent_ids: tuple[str, ...]
    home_instances: tuple[int, ...]
    #: Each agent's rank among all agents of the run with the same home instance (teams).
    agent_slots: tuple[int, ...] = ()


@dataclass(frozen=True)
class Topology:
    """Concrete ids for one run: instance ids, swarms with agents, agent→instance assignment."""

    preset: ScalePreset
    run_id: str
    instance_ids: tuple[str, ...]
    swarms: tuple[SwarmSpec, ...]

    @property
    def agent_count(self) -> int:
        return sum(len(s.agent_ids) for s in self.swarms)


def assign_instances(n_agents: int, n_instances: int, offset: int, how: Assignment) -> list[int]:
    """Home instance index of each agent of a swarm.

    round_robin spreads every swarm's agents over all instances (global agent index mod n);
    by_swarm sends a whole swarm to one instance (swarm index mod n).
    """
    if n_instances < 1:
        raise ValueError("need at least one instance")
    if how == "by_swarm":
        return [offset % n_instances] * n_agents
    return [(offset + i) % n_instances for i in range(n_agents)]


def build_topology(
    preset: ScalePreset, run_id: str, agents_per_swarm: int | None = None
) -> Topology:
    """Instance ids, swarms and agent assignments for `preset` (agent ids are unique per run)."""
    per_swarm = agents_per_swarm or preset.agents_per_swarm
    instance_ids = tuple(f"{run_id}-inst-{i}" for i in range(preset.instances))
    swarms = []
    per_home = [0] * preset.instances
    for s in range(preset.swarms):
        agent_ids = tuple(f"{run_id}-s{s}-a{a:04d}" for a in range(per_swarm))
        offset = s if preset.assignment == "by_swarm" else s * per_swarm
        homes = assign_instances(per_swarm, preset.instances, offset, preset.assignment)
        slots = []
        for home in homes:
            slots.append(per_home[home])
            per_home[home] += 1
        swarms.append(SwarmSpec(f"{run_id}-swarm-{s}", agent_ids, tuple(homes), tuple(slots)))
    return Topology(preset, run_id, instance_ids, tuple(swarms))


@dataclass(frozen=True)
class PlacementPlan:
    """How bundles go onto nodes: one group for instances, one for swarms."""

    instance_strategy: Strategy
    swarm_strategy: Strategy
    instance_bundles: tuple[dict[str, float], ...]
    swarm_bundles: tuple[dict[str, float], ...]
    reason: str

    @property
    def single_node(self) -> bool:
        return self.instance_strategy == "PACK"


def bundle(cpus: float, resources: Mapping[str, float]) -> dict[str, float]:
    """One placement-group bundle: the CPU share (never zero: an empty bundle is refused) plus
    the custom resources that pin it to labelled nodes."""
    return {"CPU": cpus or 0.01, **resources}


def plan_placement(preset: ScalePreset, alive_nodes: int) -> PlacementPlan:
    """Spread instances (strictly, when there are enough nodes) and swarms; PACK on one node.

    `alive_nodes` counts the nodes that can host an instance bundle: alive, with CPU, and
    offering the preset's instance resources (its node labels).
    """
    if alive_nodes < 1:
        labels = f" and {dict(preset.instance_resources)}" if preset.instance_resources else ""
        raise ValueError(f"no alive Ray node offers CPU{labels} for a service instance")
    instance_bundles = tuple(
        bundle(preset.instance_cpus, preset.instance_resources) for _ in range(preset.instances)
    )
    swarm_bundles = tuple(
        bundle(preset.swarm_cpus, preset.swarm_resources) for _ in range(preset.swarms)
    )
    if alive_nodes == 1:
        return PlacementPlan(
            "PACK",
            "PACK",
            instance_bundles,
            swarm_bundles,
            "one Ray node: instances and swarms PACKed onto it (no spreading possible)",
        )
    if alive_nodes >= preset.instances:
        inst: Strategy = "STRICT_SPREAD"
        why = f"{alive_nodes} nodes >= {preset.instances} instances: one instance per node"
    else:
        inst = "SPREAD"
        why = f"{alive_nodes} nodes < {preset.instances} instances: best-effort SPREAD"
    return PlacementPlan(inst, "SPREAD", instance_bundles, swarm_bundles, why)
