"""Distributional tasks: MoralChoice (moral judgements) and GlobalOpinionQA (a country's survey answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from modplural.method_base import Query
from modplural.metrics import bootstrap, js_distance
from modplural.tasks.base import Item, Task, per_group, survey_row


class DistributionalTask(Task):
    """Mean Jensen-Shannon distance between the predicted and the population distribution, overall and per attribute."""

    mode = "distribution"
    primary = ("js_distance", False)

    def __init__(self, name: str, country_persona: bool) -> None:
        self.name = name
        self.country_persona = country_persona

    def parse(self, path: Path, index: int, row: dict) -> Item | str:
        survey = survey_row(path, index, row)
        if isinstance(survey, str):
            return survey
        persona = f"You are from the country of {survey.attribute}." if self.country_persona else None
        query = Query(survey.question, options=survey.options, persona=persona)
        return Item(f"{survey.id}|{survey.attribute}", query, {"distribution": survey.gold}, group=survey.attribute)

    def item_metrics(self, item: Item, result: dict, scorer=None) -> dict[str, float]:
        return {"js_distance": js_distance(item.gold["distribution"], result["distribution"])}

    def aggregate(self, items: Sequence[Item], records: Sequence[dict]) -> dict:
        return {"js_distance": bootstrap([r["js_distance"] for r in records]).as_dict(), "per_attribute_js_distance": per_group(items, records, "js_distance")}
