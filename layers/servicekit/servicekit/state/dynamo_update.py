"""An ``UpdateItem`` request built clause by clause: every attribute name and value a placeholder
(DynamoDB reserves words like ``status``; names such as ``f#interactive#alice`` need one anyway)."""

from __future__ import annotations

from typing import Any

from servicekit.state.dynamo import to_item


class Update:
    """An ``UpdateItem`` of the item ``key`` (the table's key attribute is ``id``)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.clauses: dict[str, list[str]] = {"SET": [], "ADD": [], "DELETE": [], "REMOVE": []}
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.conditions: list[str] = []

    def name(self, attribute: str) -> str:
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value if isinstance(value, set | frozenset) else to_item({"v": value})["v"]
        return placeholder

    def request(self) -> dict[str, Any]:
        expression = " ".join(f"{verb} {', '.join(parts)}" for verb, parts in self.clauses.items() if parts)
        request: dict[str, Any] = {"Key": {"id": self.key}, "UpdateExpression": expression}
        if self.names:
            request["ExpressionAttributeNames"] = self.names
        if self.values:
            request["ExpressionAttributeValues"] = self.values
        if self.conditions:
            request["ConditionExpression"] = " AND ".join(self.conditions)
        return request
