"""The ticket router on its own (no server, no queue)."""

from __future__ import annotations

from ticket_router import Route, Ticket, TicketRouter

from modalkit_pipeline import ItemError
from modalkit_pipeline.testing import run_pipeline


def test_tickets_go_to_the_team_with_the_most_keywords() -> None:
    results = run_pipeline(
        TicketRouter,
        [
            {"text": "I was charged twice, please refund me"},
            {"text": "The API returns error 500 after a timeout"},
            {"text": "Locked out: password reset email never came"},
            {"text": "Do you have an office in Lyon?"},
        ],
    )

    assert [(r.team, r.matched) for r in results if isinstance(r, Route)] == [
        ("billing", ["refund", "charged"]),
        ("technical", ["error", "timeout", "api", "500"]),
        ("account", ["password", "email", "locked"]),
        ("general", []),
    ]


def test_a_tie_goes_to_the_team_listed_first() -> None:
    [route] = run_pipeline(TicketRouter, [{"text": "refund for the crash"}])

    assert isinstance(route, Route)
    assert (route.team, route.matched) == ("billing", ["refund"])


def test_a_ticket_without_words_fails_alone() -> None:
    results = run_pipeline(TicketRouter, [{"text": "?!"}, {"text": "login broken"}])

    assert isinstance(results[0], ItemError)
    assert results[0].error == "the ticket has no words to route by"
    assert isinstance(results[1], Route)


def test_the_model_entry_can_replace_the_keywords() -> None:
    [route] = run_pipeline(
        TicketRouter, [{"text": "Where is my parcel?"}], model_entry={"teams": {"shipping": ["Parcel"]}}
    )

    assert isinstance(route, Route)
    assert (route.team, route.matched) == ("shipping", ["parcel"])


def test_declared_models() -> None:
    assert TicketRouter.io_models() == (Ticket, Route)
