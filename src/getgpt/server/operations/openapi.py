"""The server's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Written by hand rather than generated: the chat endpoints are plain ASGI callables, and the
document should say what the wire carries (an envelope, an event stream), not what Python types
happen to hold it. Schema tools such as schemathesis read it to test the server.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR_STATUSES = {
    "400": "The body is not JSON, the envelope (signature) is malformed, the chat request is invalid, "
    "or it asks for what the backend cannot honour; the error's param names the field at fault.",
    "401": "A configured API key check refused the request: no key, or one unknown, revoked "
    "(revoked_api_key) or expired (expired_api_key).",
    "403": "The key may not use the model asked for (model_not_allowed; param: model).",
    "408": "The request body did not arrive in time.",
    "409": "A request check refused the request (a replayed request id, say).",
    "413": "The request body is larger than the server accepts.",
    "415": "The body is not declared as application/json.",
    "429": "Too many requests, or the key's requests or tokens a minute (rate_limit_exceeded), or its "
    "token budget spent (insufficient_quota, saying when it resets): see Retry-After.",
    "500": "The server or its backend failed.",
    "502": "The upstream failed, broke the protocol, or refused this server's credentials.",
    "503": "Over the concurrent-reply limit, or the shared state or database unreachable under a "
    "closed policy: retry after Retry-After seconds.",
    "504": "The upstream timed out.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors() -> dict[str, Any]:
    return {
        status: {"description": text, "content": _json(_ref("Error"))}
        for status, text in _ERROR_STATUSES.items()
    }


def _chat_reply(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "text/event-stream": {
                # Each event: `data:` a chat.completion.chunk's JSON (first with delta.role, then content,
                # last with finish_reason), or `{"error": ...}` after the start; the last is `[DONE]`.
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
                }
            },
            **_json(_ref("ChatCompletion")),
        },
    }


_NUMBER_RANGES = {
    "frequency_penalty": (-2, 2),
    "presence_penalty": (-2, 2),
    "temperature": (0, 2),
    "top_p": (0, 1),
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def _request_schema(roles: list[str], extra: dict[str, Any], *, nullable: bool) -> dict[str, Any]:
    # The messages of the common case; any OpenAI message (a tool's answer, an assistant's tool
    # calls, content parts) is taken too, and any other OpenAI parameter after these.
    properties: dict[str, Any] = {
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string", "enum": roles},
                    "content": {"type": "string"},
                    "name": {"type": ["string", "null"] if nullable else "string"},
                },
            },
        },
        "model": {"type": "string", "minLength": 1, "maxLength": 256},
    }
    parameters: dict[str, Any] = {
        "max_tokens": {"type": "integer", "minimum": 1},
        "stream": {"type": "boolean"},
        **{
            name: {"type": "number", "minimum": lo, "maximum": hi}
            for name, (lo, hi) in _NUMBER_RANGES.items()
        },
        **extra,
    }
    if nullable:  # OpenAI's API takes null for "not given"
        parameters = {name: _nullable(schema) for name, schema in parameters.items()}
    return {"type": "object", "required": ["messages"], "properties": {**properties, **parameters}}


def _schemas() -> dict[str, Any]:
    usage = {
        "type": "object",
        "properties": {
            "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "integer", "null"]},
                    },
                }
            },
        },
        "Envelope": {
            "type": "object",
            "required": ["signature"],
            "description": "AES-128-CBC ciphertext of a GetGptRequest's JSON, as hex, then the 16-character "
            "key and the 16-character IV.",
            "properties": {"signature": {"type": "string", "minLength": 64, "pattern": "^[0-9a-fA-F]+$"}},
        },
        "GetGptRequest": _request_schema(
            ["system", "user", "assistant"],
            {"uuid": {"type": "string", "minLength": 1, "maxLength": 128}},
            nullable=False,
        ),
        "OpenAIChatRequest": _request_schema(
            ["system", "developer", "user", "assistant"],
            {
                "max_completion_tokens": {"type": "integer", "minimum": 1},
                "n": {"type": "integer", "minimum": 1, "maximum": 128},
                "stream_options": {
                    "type": "object",
                    "properties": {"include_usage": {"type": ["boolean", "null"]}},
                },
            },
            nullable=True,
        ),
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"type": "string", "enum": ["chat.completion"]},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "message": {
                                "type": "object",
                                "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
                            },
                            "finish_reason": {"type": ["string", "null"]},
                        },
                    },
                },
                "usage": usage,
            },
        },
    }


_USAGE_ROW = {
    "type": "object",
    "description": "The ledger added up for one key, model, upstream, day or route (named by the grouping).",
    "properties": {
        "requests": {"type": "integer"},
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "cached_tokens": {"type": "integer"},
        "reasoning_tokens": {"type": "integer"},
        "estimated": {"type": "integer", "description": "requests charged the server's estimate"},
        "errors": {"type": "integer", "description": "requests answered with a status of 400 or more"},
    },
}
_KEY = {
    "type": "object",
    "required": ["id", "name", "status"],
    "properties": {
        "id": {"type": "string", "description": "the 12 hex digits after gg- in the key itself"},
        "name": {"type": "string"},
        "models": {"type": ["array", "null"], "items": {"type": "string"}},
        "rpm": {"type": ["integer", "null"]},
        "tpm": {"type": ["integer", "null"]},
        "budget_tokens": {"type": ["integer", "null"]},
        "budget_period": {"type": ["string", "null"], "enum": ["day", "month", "total", None]},
        "created_at": {"type": "string"},
        "expires_at": {"type": ["string", "null"]},
        "revoked_at": {"type": ["string", "null"]},
        "rotated_from": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": ["active", "revoked", "expired"]},
        "key": {"type": "string", "description": "the key itself: only in the answer that made it"},
    },
}
_QUERY = [
    {"name": "since", "in": "query", "schema": {"type": "string", "pattern": "^[0-9.]+[smhdw]?$"}},
    {
        "name": "by",
        "in": "query",
        "schema": {"type": "string", "enum": ["key", "model", "upstream", "day", "route"]},
    },
]


def _usage_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": _json(
            {
                "type": "object",
                "required": ["object", "data"],
                "properties": {
                    "object": {"type": "string", "enum": ["usage"]},
                    "by": {"type": "string"},
                    "data": {"type": "array", "items": _USAGE_ROW},
                },
            }
        ),
    }


def _key_paths() -> dict[str, Any]:
    """GET /v1/usage: with --db."""
    return {
        "/v1/usage": {
            "get": {
                "operationId": "ownUsage",
                "summary": "The calling key's own usage from the ledger, and its budget (with --db)",
                "parameters": _QUERY,
                "responses": {
                    "200": _usage_answer("The key's requests and tokens, added up; its budget and limits."),
                    "401": {"description": "No valid key.", "content": _json(_ref("Error"))},
                    "503": {"description": "The database is unreachable.", "content": _json(_ref("Error"))},
                },
            }
        }
    }


def _admin_paths() -> dict[str, Any]:
    """The admin API: with --db and GETGPT_ADMIN_KEY, which every route needs as a Bearer key."""
    key_id = [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    refused = {
        "401": {"description": "Not the admin key.", "content": _json(_ref("Error"))},
        "503": {"description": "The database is unreachable.", "content": _json(_ref("Error"))},
    }
    missing = {"404": {"description": "No such key.", "content": _json(_ref("Error"))}}
    one = {"description": "The key (without its secret).", "content": _json(_KEY)}
    made = {"description": "The key made, with the key itself (shown this once).", "content": _json(_KEY)}
    create = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "models": {"type": "array", "items": {"type": "string"}},
            "rpm": {"type": "integer", "minimum": 1},
            "tpm": {"type": "integer", "minimum": 1},
            "budget_tokens": {"type": "integer", "minimum": 1},
            "budget_period": {"type": "string", "enum": ["day", "month", "total"]},
            "expires": {"type": "string", "description": "a duration: 30d, 12h, 90m, 45s, 2w"},
        },
        "additionalProperties": False,
    }
    bad = {"400": {"description": "A setting that makes no sense.", "content": _json(_ref("Error"))}}
    return {
        "/admin/keys": {
            "get": {
                "operationId": "listKeys",
                "responses": {
                    "200": {
                        "description": "Every key, without secrets.",
                        "content": _json(
                            {"type": "object", "properties": {"data": {"type": "array", "items": _KEY}}}
                        ),
                    },
                    **refused,
                },
            },
            "post": {
                "operationId": "createKey",
                "requestBody": {"required": True, "content": _json(create)},
                "responses": {"201": made, **bad, **refused},
            },
        },
        "/admin/keys/{key_id}": {
            "get": {
                "operationId": "showKey",
                "parameters": key_id,
                "responses": {"200": one, **missing, **refused},
            }
        },
        "/admin/keys/{key_id}/revoke": {
            "post": {
                "operationId": "revokeKey",
                "parameters": key_id,
                "responses": {"200": one, **missing, **refused},
            }
        },
        "/admin/keys/{key_id}/rotate": {
            "post": {
                "operationId": "rotateKey",
                "parameters": key_id,
                "requestBody": {
                    "content": _json({"type": "object", "properties": {"grace": {"type": "string"}}})
                },
                "responses": {"201": made, **bad, **missing, **refused},
            }
        },
        "/admin/usage": {
            "get": {
                "operationId": "usage",
                "parameters": [*_QUERY, {"name": "key", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _usage_answer("The ledger added up."), **bad, **refused},
            }
        },
    }


def openapi_document(version: str, *, usage: bool = False, admin: bool = False) -> dict[str, Any]:
    """The document, for the server of package version ``version``; ``usage`` adds ``GET /v1/usage``
    (``--db``), ``admin`` the admin API (``GETGPT_ADMIN_KEY``)."""
    chat_reply = _chat_reply(
        "The reply: an event stream, or one chat.completion object when stream is false."
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "getgpt server",
            "version": version,
            "description": "The GetGpt chat protocol and an OpenAI-compatible gateway.",
        },
        "paths": {
            "/api/chat/stream": {
                "post": {
                    "operationId": "getgptChat",
                    "summary": "GetGpt protocol: an encrypted chat request in, OpenAI chunks out",
                    "requestBody": {"required": True, "content": _json(_ref("Envelope"))},
                    "responses": {"200": chat_reply, **_errors()},
                }
            },
            "/v1/chat/completions": {
                "post": {
                    "operationId": "createChatCompletion",
                    "summary": "OpenAI-compatible chat completions (stream false by default)",
                    "requestBody": {"required": True, "content": _json(_ref("OpenAIChatRequest"))},
                    "responses": {"200": chat_reply, **_errors()},
                }
            },
            "/v1/models": {
                "get": {
                    "operationId": "listModels",
                    "responses": {
                        "200": {
                            "description": "The models this server offers.",
                            "content": _json(
                                {
                                    "type": "object",
                                    "required": ["object", "data"],
                                    "properties": {
                                        "object": {"type": "string", "enum": ["list"]},
                                        "data": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "required": ["id", "object"],
                                                "properties": {
                                                    "id": {"type": "string"},
                                                    "object": {"type": "string"},
                                                    "created": {"type": "integer"},
                                                    "owned_by": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                }
                            ),
                        }
                    },
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "operationId": "retrieveModel",
                    "parameters": [
                        {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "The model.",
                            "content": _json({"type": "object", "required": ["id"]}),
                        },
                        "404": {"description": "No such model.", "content": _json(_ref("Error"))},
                    },
                }
            },
            **{
                "/v1" + route: {
                    "post": {
                        "operationId": operation,
                        "summary": f"OpenAI's {route[1:]}: forwarded to the upstream as they are (openai "
                        "backend); 400 from the others",
                        "requestBody": {"required": True, "content": _json({"type": "object"})},
                        "responses": {
                            "200": {
                                "description": "The upstream's answer, as it came.",
                                "content": _json({}),
                            },
                            **_errors(),
                        },
                    }
                }
                for route, operation in (
                    ("/embeddings", "createEmbedding"),
                    ("/completions", "createCompletion"),
                    ("/responses", "createResponse"),
                )
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "responses": {
                        "200": {
                            "description": "The server is up; counters of its chat requests.",
                            "content": _json(
                                {
                                    "type": "object",
                                    "required": ["status", "active_slots", "backend"],
                                    "properties": {
                                        "status": {"type": "string", "enum": ["ok"]},
                                        "active_slots": {"type": "integer", "minimum": 0},
                                        "active_streams": {
                                            "type": "integer",
                                            "minimum": 0,
                                            "deprecated": True,
                                            "description": "The old name of active_slots, until 0.2.",
                                        },
                                        "backend": {
                                            "type": "string",
                                            "description": "The backend answering chat requests "
                                            "(echo, openai, ...); the web page says so when it is "
                                            "the echo.",
                                        },
                                    },
                                }
                            ),
                        }
                    },
                }
            },
            **(_key_paths() if usage else {}),
            **(_admin_paths() if admin else {}),
        },
        "components": {"schemas": _schemas()},
    }
