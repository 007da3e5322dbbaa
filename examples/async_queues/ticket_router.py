"""A support-ticket router: which team should answer a ticket, by the keywords it contains.

A stand-in for a model whose answers nobody waits for: tickets are sent with ``/predict_async`` and each
routing decision is delivered to a queue (SQS or taskiq) that the help-desk system consumes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError

DEFAULT_TEAMS: dict[str, list[str]] = {
    "billing": ["invoice", "refund", "charge", "charged", "payment", "price", "billing"],
    "technical": ["error", "crash", "crashes", "bug", "timeout", "broken", "api", "500"],
    "account": ["password", "login", "account", "email", "2fa", "locked"],
}
FALLBACK_TEAM = "general"

_WORD = re.compile(r"[a-z0-9]+")


class Ticket(BaseModel):
    """One support ticket."""

    text: str = Field(min_length=1, max_length=10_000, examples=["I was charged twice, please refund me"])
    """What the customer wrote."""


class Route(InferenceOutputModel):
    """Where a ticket goes."""

    team: str
    """The team with the most matching keywords (``general`` when none match)."""
    matched: list[str]
    """The keywords that decided it, in the order the team lists them."""


class TicketRouter(InferencePipeline[Ticket, Route]):
    """Routes tickets by keyword.

    Model entry settings:
        teams: Team name -> keywords (lowercase words), replacing the defaults.
    """

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        teams = kwargs.get("teams") or DEFAULT_TEAMS
        self.teams: dict[str, list[str]] = {str(team): [str(k).lower() for k in words] for team, words in teams.items()}

    def preprocess(self, input_list: list[Ticket]) -> dict[str, Any]:
        return {"words": [set(_WORD.findall(item.text.lower())) for item in input_list]}

    def predict(self, input_list: list[Ticket], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        hits: list[dict[str, list[str]] | None] = []
        for words in preprocessed_data["words"]:
            if not words:
                hits.append(None)
                continue
            hits.append({team: [k for k in keywords if k in words] for team, keywords in self.teams.items()})
        return {"hits": hits}

    def postprocess(self, input_list: list[Ticket], raw_output: dict[str, Any]) -> list[Route | ItemError]:
        results: list[Route | ItemError] = []
        for index, hits in enumerate(raw_output["hits"]):
            if hits is None:
                # Punctuation or whitespace only: this ticket goes to the failure queue, its batch does not.
                results.append(self.item_error("the ticket has no words to route by", index=index))
                continue
            team, matched = max(hits.items(), key=lambda pair: len(pair[1]))  # ties: the first team listed
            results.append(Route(team=team, matched=matched) if matched else Route(team=FALLBACK_TEAM, matched=[]))
        return results
