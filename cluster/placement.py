"""Placement groups: SPREAD service instances and swarms across Ray nodes (PACK on one node)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cluster.topology import PlacementPlan, ScalePreset, plan_placement

log = logging.getLogger(__name__)

DEFAULT_READY_TIMEOUT_S = 120.0


def alive_node_count(required: Mapping[str, float] | None = None) -> int:
    """Alive Ray nodes that offer CPU and every resource of `required` (node labels such as
    `tmws_instance`); the head of a CPU-less cluster is not counted."""
    required = required or {}
    return sum(
        1
        for n in ray.nodes()
        if n.get("Alive")
        and n.get("Resources", {}).get("CPU", 0) > 0
        and all(n.get("Resources", {}).get(k, 0) >= v for k, v in required.items())
    )


@dataclass
class Placement:
    """The two placement groups of a run and a scheduling strategy per actor slot."""

    plan: PlacementPlan
    instances: PlacementGroup
    swarms: PlacementGroup

    def for_instance(self, index: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(self.instances, placement_group_bundle_index=index)

    def for_swarm(self, index: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(self.swarms, placement_group_bundle_index=index)

    def remove(self) -> None:
        """Release both groups (their actors must be gone or are killed by Ray)."""
        for group in (self.instances, self.swarms):
            try:
                remove_placement_group(group)
            except Exception as exc:  # already removed, or Ray already shut down
                log.debug("placement group removal failed: %s", exc)


def create_placement(
    preset: ScalePreset, name: str, ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
) -> Placement:
    """Create and wait for the instance and swarm groups of `preset` on the current cluster."""
    plan = plan_placement(preset, alive_node_count(preset.instance_resources))
    if plan.single_node:
        log.warning("placement: %s", plan.reason)
    else:
        log.info("placement: %s; swarms %s", plan.reason, plan.swarm_strategy)
    instances = placement_group(
        list(plan.instance_bundles), strategy=plan.instance_strategy, name=f"{name}-instances"
    )
    swarms = placement_group(
        list(plan.swarm_bundles), strategy=plan.swarm_strategy, name=f"{name}-swarms"
    )
    placement = Placement(plan, instances, swarms)
    ready, _ = ray.wait([instances.ready(), swarms.ready()], num_returns=2, timeout=ready_timeout_s)
    if len(ready) != 2:
        placement.remove()
        raise TimeoutError(
            f"placement groups not ready after {ready_timeout_s:.0f}s: the cluster lacks the CPU "
            f"for {len(plan.instance_bundles)} x {plan.instance_bundles[0]} + "
            f"{len(plan.swarm_bundles)} x {plan.swarm_bundles[0]} ({plan.reason})"
        )
    return placement
