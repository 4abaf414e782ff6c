#!/usr/bin/env python3
"""Writes src/api/openapi.json, the management API's OpenAPI 3.0 document.

Run after changing a route or a response shape; tests check the document
against the running API, so a stale one fails CI.
"""
import json, os

def s(t, **kw):
    d = {"type": t}
    d.update(kw)
    return d

def nullable(t, **kw):
    return s(t, nullable=True, **kw)

def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}

def obj(props, required=None):
    return {"type": "object", "additionalProperties": False,
            "required": sorted(props) if required is None else required, "properties": props}

def envelope(result):
    return obj({"success": s("boolean"), "errors": s("array", items=ref("Error")),
                "messages": s("array", items=ref("Error")), "result": result})

FORMATS = ["generic", "slack", "discord", "gchat", "teams", "pagerduty"]
AUTHS = ["none", "basic", "querystring", "authheader", "header", "bearer"]
TIME = nullable("string", format="date-time")

schemas = {
    "Error": obj({"code": s("integer"), "message": s("string")}),
    "ErrorEnvelope": obj({"success": s("boolean", enum=[False]), "errors": s("array", items=ref("Error")),
                          "messages": s("array", items=ref("Error")), "result": nullable("object")}),
    "DestinationInput": {
        "type": "object", "additionalProperties": False,
        "description": "A webhook destination. url (or endpoint) is required. Auth rules: none takes no "
                       "userName/password/token; basic needs userName and password and no token; "
                       "querystring/authheader/header/bearer need a token and no userName/password.",
        "properties": {
            "name": nullable("string", maxLength=100),
            "url": nullable("string", description="http or https URL"),
            "endpoint": nullable("string", description="alias of url"),
            "type": nullable("string", enum=FORMATS),
            "isAlertHook": nullable("boolean"),
            "authType": nullable("string", enum=AUTHS),
            "userName": nullable("string"),
            "password": nullable("string", writeOnly=True),
            "token": nullable("string", writeOnly=True),
            "headerName": nullable("string"),
            "queryParam": nullable("string"),
            "secret": nullable("string", writeOnly=True, description="whsec_ + base64 of 24-64 bytes; generated when absent"),
            "timeout": nullable("string", example="10s"),
            "retry_for": nullable("string", example="24h"),
            "backoff": nullable("string", example="1s"),
            "backoff_max": nullable("string", example="5m"),
            "max_per_minute": nullable("integer", minimum=0),
        },
    },
    "Destination": obj({
        "id": s("string"), "name": s("string"), "url": s("string"), "endpoint": s("string"),
        "type": s("string", enum=FORMATS), "isAlertHook": s("boolean"), "authType": s("string", enum=AUTHS),
        "userName": nullable("string"), "password": nullable("string", enum=["********"]),
        "token": nullable("string", enum=["********"]), "headerName": nullable("string"),
        "queryParam": nullable("string"),
        "secret": s("string", description="\"********\", except the generated secret in its create response"),
        "created_at": TIME, "last_success": TIME, "last_failure": TIME, "last_error": nullable("string"),
        "pending": s("integer", minimum=0), "disabled": s("boolean"), "source": s("string", enum=["config", "api"]),
        "readOnly": s("boolean"),
    }),
    "Id": obj({"id": s("string")}),
    "TestResult": obj({"id": s("string"), "webhook_id": s("string"), "delivered": s("boolean"),
                       "status": nullable("integer"), "latency_ms": s("number"), "error": nullable("string")}),
    "Status": obj({
        "version": s("string"), "started_at": s("string", format="date-time"), "uptime_s": s("number"),
        "last_sample_at": TIME,
        "postback": obj({
            "url": nullable("string"), "last_attempt_at": TIME, "last_outcome": nullable("string"),
            "last_status": nullable("integer"), "delivered": s("integer"), "failed_attempts": s("integer"),
            "rejected": s("integer"), "dropped": s("integer"), "queued": s("integer"), "oldest_queued_at": TIME}),
        "alerts": obj({"rules": s("integer"), "firing": s("integer")}),
        "webhooks": s("array", items=obj({
            "id": s("string"), "name": s("string"), "source": s("string", enum=["config", "api"]),
            "pending": s("integer"), "last_success": TIME, "last_failure": TIME,
            "last_error": nullable("string"), "disabled": s("boolean")})),
    }),
    "AlertState": obj({
        "rule": s("string"), "metric": s("string"), "series": s("string"),
        "labels": {"type": "object", "additionalProperties": s("string")},
        "state": s("string", enum=["ok", "pending", "firing"]),
        "severity": nullable("string", enum=["warning", "critical"]),
        "started_at": TIME, "value": nullable("number"), "fingerprint": s("string"),
    }),
}
for name, result in [("DestinationEnvelope", ref("Destination")),
                     ("DestinationListEnvelope", s("array", items=ref("Destination"))),
                     ("IdEnvelope", ref("Id")), ("TestEnvelope", ref("TestResult")),
                     ("StatusEnvelope", ref("Status")),
                     ("AlertsEnvelope", s("array", items=ref("AlertState")))]:
    schemas[name] = envelope(result)

def resp(desc, schema, headers=None):
    r = {"description": desc, "content": {"application/json": {"schema": ref(schema)}}}
    if headers:
        r["headers"] = headers
    return r

ERR = {
    "400": ("Validation failed: every violated rule is listed", "ErrorEnvelope"),
    "404": ("No such destination", "ErrorEnvelope"),
    "409": ("The destination is defined in the configuration file (read-only)", "ErrorEnvelope"),
    "413": ("Body larger than 64 KiB", "ErrorEnvelope"),
    "415": ("Body is not application/json", "ErrorEnvelope"),
}
COMMON = {
    "401": resp("Missing or wrong bearer token", "ErrorEnvelope"),
    "429": resp("Over the API's rate limit", "ErrorEnvelope",
                {"Retry-After": {"description": "Seconds to wait", "schema": s("integer")}}),
    "500": resp("Internal error (no details)", "ErrorEnvelope"),
}

def op(op_id, summary, ok, errors=(), body=False, params=()):
    responses = {code: resp(*v) for code, v in ok.items()}
    responses.update({c: resp(*ERR[c]) for c in errors})
    responses.update(COMMON)
    o = {"operationId": op_id, "summary": summary, "responses": dict(sorted(responses.items()))}
    if params:
        o["parameters"] = [{"name": p, "in": "path", "required": True, "schema": s("string")} for p in params]
    if body:
        o["requestBody"] = {"required": True,
                            "content": {"application/json": {"schema": ref("DestinationInput")}}}
    return o

paths = {}
for prefix, tag, base in [("/webhooks", "", ()),
                          ("/accounts/{account_id}/alerting/v3/destinations/webhooks", "Cf", ("account_id",))]:
    paths[prefix] = {
        "get": op(f"listWebhooks{tag}", "List destinations", {"200": ("Every destination", "DestinationListEnvelope")}, params=base),
        "post": op(f"createWebhook{tag}", "Create a destination",
                   {"201": ("Created; a generated secret is shown this once", "DestinationEnvelope")},
                   ["400", "413", "415"], body=True, params=base),
    }
    paths[prefix + "/{id}"] = {
        "get": op(f"getWebhook{tag}", "One destination", {"200": ("The destination", "DestinationEnvelope")}, ["404"], params=base + ("id",)),
        "put": op(f"replaceWebhook{tag}", "Replace a destination (an omitted secret is kept)",
                  {"200": ("Replaced", "IdEnvelope")}, ["400", "404", "409", "413", "415"], body=True, params=base + ("id",)),
        "delete": op(f"deleteWebhook{tag}", "Delete a destination", {"200": ("Deleted", "IdEnvelope")}, ["404", "409"], params=base + ("id",)),
    }
    paths[prefix + "/{id}/test"] = {
        "post": op(f"testWebhook{tag}", "Send a test notification now and report the outcome",
                   {"200": ("The outcome", "TestEnvelope")}, ["404"], params=base + ("id",)),
    }
paths["/status"] = {"get": op("getStatus", "Agent status", {"200": ("Status", "StatusEnvelope")})}
paths["/alerts"] = {"get": op("listAlerts", "Every alert series and its state", {"200": ("Alerts", "AlertsEnvelope")})}
paths["/openapi.json"] = {"get": {"operationId": "getOpenApi", "summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.0 document",
                                                        "content": {"application/json": {"schema": s("object")}}},
                                                **COMMON}}}

doc = {
    "openapi": "3.0.3",
    "info": {"title": "hostbeat management API", "version": "1",
             "description": "Webhook destinations, status and alerts of one hostbeat agent. Loopback only by default; every request needs the bearer token."},
    "servers": [{"url": "http://127.0.0.1:8631"}],
    "security": [{"bearerAuth": []}],
    "paths": paths,
    "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}, "schemas": schemas},
}
out = os.path.join(os.path.dirname(__file__), "..", "src", "api", "openapi.json")
with open(out, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
    f.write("\n")
