"""Tool registry: named async handlers with pydantic-validated arguments and JSON Schemas.

Transport-free: both the WebSocket JSON-RPC endpoint and the Streamable HTTP MCP endpoint call
`ToolRegistry.call`. Argument validation failures become `InvalidParams` naming the field;
NUL characters, lone surrogates and non-finite numbers are refused before any model sees them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from service.context import CallContext
from service.errors import InvalidParams, MethodNotFound
from service.tools.arguments import check_values


class ToolArgs(BaseModel):
    """Base for tool argument models: unknown fields are rejected, types are strict-ish."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


Handler = Callable[[CallContext, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    args_model: type[ToolArgs]
    handler: Handler

    def input_schema(self) -> dict[str, Any]:
        schema = self.args_model.model_json_schema()
        schema.setdefault("type", "object")
        schema.pop("title", None)
        return schema


class ToolRegistry:
    """Holds the tools a server exposes, validates arguments and runs handlers."""

    def __init__(self) -> None:
        self._tools: dict[str, ToolSpec] = {}

    def register(self, spec: ToolSpec) -> None:
        if spec.name in self._tools:
            raise ValueError(f"tool {spec.name!r} registered twice")
        self._tools[spec.name] = spec

    def tool(
        self, name: str, description: str, args_model: type[ToolArgs]
    ) -> Callable[[Handler], Handler]:
        """Decorator form of `register`."""

        def wrap(handler: Handler) -> Handler:
            self.register(ToolSpec(name, description, args_model, handler))
            return handler

        return wrap

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> ToolSpec:
        try:
            return self._tools[name]
        except KeyError:
            raise MethodNotFound(f"unknown tool or method: {name!r}", {"method": name}) from None

    def describe(self) -> list[dict[str, Any]]:
        """MCP `tools/list` entries: name, description, inputSchema."""
        return [
            {"name": s.name, "description": s.description, "inputSchema": s.input_schema()}
            for s in sorted(self._tools.values(), key=lambda s: s.name)
        ]

    def validate(self, name: str, arguments: Any) -> ToolArgs:
        spec = self.get(name)
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise InvalidParams(
                f"params for {name!r} must be an object, got {type(arguments).__name__}",
                field="params",
            )
        check_values(arguments)
        try:
            return spec.args_model.model_validate(arguments)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            raise InvalidParams(
                f"invalid params for {name!r}: {where}: {first['msg']}", field=where
            ) from None

    async def call(self, name: str, arguments: Any, ctx: CallContext) -> dict[str, Any]:
        """Validate and run one tool; errors propagate as `TMWSError` subclasses."""
        args = self.validate(name, arguments)
        return await self.get(name).handler(ctx, args)
