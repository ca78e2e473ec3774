"""Distributional tasks: MoralChoice (moral judgements) and GlobalOpinionQA (a country's survey answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from modplural.metrics import bootstrap, js_distance
from modplural.protocol import Protocol
from modplural.tasks.base import Item, Task, per_group, survey_item, survey_row
from modplural.types import Query


class DistributionalTask(Task):
    """Mean Jensen-Shannon distance between the predicted and the population distribution, overall and per attribute."""

    mode = "distributional"
    primary = ("js_distance", False)
    headline = "js_distance"

    def __init__(self, name: str, country_persona: bool) -> None:
        self.name = name
        self.country_persona = country_persona

    def parse(self, path: Path, index: int, row: dict, protocol: Protocol) -> Item | str:
        survey = survey_row(path, index, row, protocol)
        if isinstance(survey, str):
            return survey
        persona = f"You are from the country of {survey.attribute}." if self.country_persona else None
        frame = ("country", survey.attribute) if self.country_persona else ("choice",)
        query = Query(survey.question, options=survey.options, persona=persona, frame=frame) if len(survey.options) > 1 else None
        return survey_item(f"{survey.id}|{survey.attribute}", survey, query, survey.attribute)

    def item_metrics(self, item: Item, result: dict, protocol: Protocol, scorer=None) -> dict[str, float]:
        return {"js_distance": js_distance(item.gold["distribution"], result["distribution"])}

    def aggregate(self, items: Sequence[Item], records: Sequence[dict], protocol: Protocol) -> dict:
        return {"js_distance": bootstrap([r["js_distance"] for r in records]).as_dict(), "per_attribute_js_distance": per_group(items, records, "js_distance")}
