"""A refusal becomes the same answer wherever it is raised: a GraphQL error with its message,
its code and the request id, over HTTP with its status (and Retry-After when it has one)."""

from __future__ import annotations

import json

from cqrs_flow.nodes.gateway.limits import Busy, LimitExceeded, TooManyRequests
from cqrs_flow.nodes.gateway.refusals import (
    Refused,
    coerced,
    error_entry,
    http_answer,
    internal,
    with_request_id,
)


def test_an_http_answer_carries_message_code_request_id_and_status():
    answer = http_answer(Refused("request body is not valid JSON"), "r-1")
    assert answer.status == 400 and "Retry-After" not in answer.headers
    assert json.loads(answer.text) == {
        "data": None,
        "errors": [
            {
                "message": "request body is not valid JSON",
                "extensions": {"code": "BAD_REQUEST", "request_id": "r-1"},
            }
        ],
    }


def test_the_limits_refusals_carry_their_own_code_and_status():
    assert (LimitExceeded("x").code, LimitExceeded("x").status) == ("LIMIT_EXCEEDED", 400)
    assert (Busy("x").code, Busy("x").status) == ("BUSY", 503)
    too_many = http_answer(TooManyRequests("slow down", 0.2), "r-2")
    assert too_many.status == 429 and too_many.headers["Retry-After"] == "1"
    assert json.loads(too_many.text)["errors"][0]["extensions"]["code"] == "TOO_MANY_REQUESTS"


def test_a_refusal_in_a_resolver_keeps_the_error_path_and_gains_its_code():
    error = {"message": "boom", "path": ["contact"], "locations": [{"line": 1, "column": 3}]}
    assert coerced(error, Refused("the reader is unavailable; try again", "UNAVAILABLE")) == {
        "message": "the reader is unavailable; try again",
        "path": ["contact"],
        "locations": [{"line": 1, "column": 3}],
        "extensions": {"code": "UNAVAILABLE"},
    }


def test_an_internal_error_names_only_the_request():
    refused = internal("r-3")
    assert (refused.code, refused.status) == ("INTERNAL", 500)
    assert error_entry(refused, "r-3") == {
        "message": "internal error (request r-3; details are in the gateway log)",
        "extensions": {"code": "INTERNAL", "request_id": "r-3"},
    }


def test_every_error_of_a_result_gets_the_request_id():
    result = {"data": None, "errors": [{"message": "a", "extensions": {"code": "X"}}, "odd"]}
    assert with_request_id(result, "r-4")["errors"] == [
        {"message": "a", "extensions": {"code": "X", "request_id": "r-4"}},
        "odd",
    ]
