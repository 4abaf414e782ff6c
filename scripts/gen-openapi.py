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

# The shapes the agent's validator checks by hand (src/webhook/mod.rs url_shape,
# sign::decode_secret, config::duration::parse): a body valid for this schema
# is accepted, and one the schema rejects is refused with 400.
OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
LABEL = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
HOST = f"(({OCTET}\\.){{3}}{OCTET}|({LABEL}\\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?)"
PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
URL_PATTERN = f"^https?://{HOST}(:{PORT})?([/?#][\\x21-\\x7E]*)?$"
B64 = "[A-Za-z0-9+/]"
SECRET_PATTERN = (f"^whsec_((?:{B64}{{4}}){{8,20}}(?:{B64}[AQgw]==|{B64}{{2}}[AEIMQUYcgkosw048]=)?"
                  f"|(?:{B64}{{4}}){{21}}(?:{B64}[AQgw]==)?)$")
UNIT = "(ms|s|m|h|d)"
NUMBER = "(0|[1-9][0-9]{0,8})"
DURATION = f"^({NUMBER}{UNIT})+$"
NONZERO_DURATION = f"^(0{UNIT})*[1-9][0-9]{{0,8}}{UNIT}({NUMBER}{UNIT})*$"
HEADER_NAME = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
NULL = {"type": "string", "nullable": True, "enum": [None]}
EMPTY = {"type": "string", "nullable": True, "maxLength": 0}
NOT_PAGERDUTY = {"type": "string", "nullable": True, "enum": [f for f in FORMATS if f != "pagerduty"] + [None]}


def destination_input():
    """The request body: every field, then the url/endpoint and auth rules."""
    auth = [
        {"title": "none", "properties": {"authType": {"type": "string", "nullable": True, "enum": ["none", None]},
                                          "userName": EMPTY, "password": EMPTY, "token": EMPTY,
                                          "headerName": NULL, "queryParam": NULL, "type": NOT_PAGERDUTY}},
        {"title": "basic", "required": ["authType", "userName", "password"],
         "properties": {"authType": {"type": "string", "enum": ["basic"]},
                        "userName": {"type": "string", "minLength": 1}, "password": {"type": "string", "minLength": 1},
                        "token": EMPTY, "headerName": NULL, "queryParam": NULL, "type": NOT_PAGERDUTY}},
        {"title": "querystring", "required": ["authType", "token"],
         "properties": {"authType": {"type": "string", "enum": ["querystring"]},
                        "token": {"type": "string", "minLength": 1}, "userName": EMPTY, "password": EMPTY,
                        "headerName": NULL, "queryParam": {"type": "string", "nullable": True, "minLength": 1}}},
        {"title": "header", "required": ["authType", "token"],
         "properties": {"authType": {"type": "string", "enum": ["header"]},
                        "token": {"type": "string", "minLength": 1}, "userName": EMPTY, "password": EMPTY,
                        "headerName": {"type": "string", "nullable": True, "pattern": HEADER_NAME},
                        "queryParam": NULL}},
        {"title": "authheader or bearer", "required": ["authType", "token"],
         "properties": {"authType": {"type": "string", "enum": ["authheader", "bearer"]},
                        "token": {"type": "string", "minLength": 1}, "userName": EMPTY, "password": EMPTY,
                        "headerName": NULL, "queryParam": NULL}},
    ]
    target = [
        {"title": "url", "required": ["url"], "not": {"required": ["endpoint"]}},
        {"title": "endpoint", "required": ["endpoint"], "not": {"required": ["url"]}},
    ]
    return {
        "type": "object", "additionalProperties": False,
        "description": "A webhook destination: url (or its alias endpoint, not both) and the auth rules: none "
                       "takes no userName/password/token; basic needs userName and password and no token; "
                       "querystring/authheader/header/bearer need a token and no userName/password; "
                       "headerName goes with header, queryParam with querystring; pagerduty needs a token "
                       "(its routing key).",
        "properties": {
            "name": nullable("string", minLength=1, maxLength=100),
            "url": s("string", pattern=URL_PATTERN),
            "endpoint": s("string", pattern=URL_PATTERN, description="alias of url"),
            "type": nullable("string", enum=FORMATS + [None]),
            "isAlertHook": nullable("boolean"),
            "authType": nullable("string", enum=AUTHS + [None]),
            "userName": nullable("string"),
            "password": nullable("string", writeOnly=True),
            "token": nullable("string", writeOnly=True),
            "headerName": nullable("string"),
            "queryParam": nullable("string"),
            "secret": nullable("string", writeOnly=True, pattern=SECRET_PATTERN,
                               description="whsec_ + base64 of 24-64 bytes; generated when absent"),
            "timeout": nullable("string", pattern=NONZERO_DURATION, example="10s"),
            "retry_for": nullable("string", pattern=DURATION, example="24h"),
            "backoff": nullable("string", pattern=NONZERO_DURATION, example="1s"),
            "backoff_max": nullable("string", pattern=DURATION, example="5m"),
            "max_per_minute": nullable("integer", minimum=1, maximum=4294967295),
        },
        "allOf": [{"oneOf": target}, {"oneOf": auth}],
    }

AUTHS = ["none", "basic", "querystring", "authheader", "header", "bearer"]
TIME = nullable("string", format="date-time")

schemas = {
    "Error": obj({"code": s("integer"), "message": s("string")}),
    "ErrorEnvelope": obj({"success": s("boolean", enum=[False]), "errors": s("array", items=ref("Error")),
                          "messages": s("array", items=ref("Error")), "result": nullable("object")}),
    "DestinationInput": destination_input(),
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
            "rejected": s("integer"), "dropped": s("integer"), "corrupt": s("integer"),
            "memory_only": s("integer"), "queued": s("integer"), "oldest_queued_at": TIME}),
        "alerts": obj({"rules": s("integer"), "firing": s("integer")}),
        "webhooks": s("array", items=obj({
            "id": s("string"), "name": s("string"), "source": s("string", enum=["config", "api"]),
            "pending": s("integer"), "last_success": TIME, "last_failure": TIME,
            "last_error": nullable("string"), "disabled": s("boolean")})),
    }),
    "MetricsInput": {
        "type": "object", "minProperties": 1, "maxProperties": 1000,
        "description": "{metric: number | string}; metric names are 1 to 128 letters, digits, '_', '-' "
                       "or '.' (not first or last); numbers must be finite",
        "additionalProperties": {"oneOf": [s("number"), s("string")]},
    },
    "Pushed": obj({"group": s("string"), "metrics": s("array", items=s("string")),
                   "expires_at": s("string", format="date-time")}),
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
                     ("AlertsEnvelope", s("array", items=ref("AlertState"))),
                     ("PushedEnvelope", ref("Pushed"))]:
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

def op(op_id, summary, ok, errors=(), body=False, params=(), err_desc=None, param_schema=None):
    responses = {code: resp(*v) for code, v in ok.items()}
    responses.update({c: resp(*((err_desc or {}).get(c) or ERR[c])) for c in errors})
    responses.update(COMMON)
    o = {"operationId": op_id, "summary": summary, "responses": dict(sorted(responses.items()))}
    if params:
        o["parameters"] = [{"name": p, "in": "path", "required": True,
                            "schema": (param_schema or {}).get(p) or s("string")} for p in params]
    if body:
        schema = "DestinationInput" if body is True else body
        o["requestBody"] = {"required": True,
                            "content": {"application/json": {"schema": ref(schema)}}}
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
    link_params = {"id": "$response.body#/result/id"}
    if base:
        link_params["account_id"] = "$request.path.account_id"
    paths[prefix]["post"]["responses"]["201"]["links"] = {
        name: {"operationId": f"{verb}Webhook{tag}", "parameters": link_params}
        for name, verb in [("GetCreated", "get"), ("ReplaceCreated", "replace"),
                           ("TestCreated", "test"), ("DeleteCreated", "delete")]
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
paths["/metrics/{group}"] = {"post": op(
    "pushMetrics", "Push custom metrics: they replace the group's, go into the next payloads as "
    "plugins.GROUP and into the catalogue as plugin.GROUP.METRIC (numbers), until api.push_ttl passes",
    {"200": ("Accepted", "PushedEnvelope")}, ["400", "409", "413", "415"], body="MetricsInput",
    params=("group",), param_schema={"group": s("string", pattern="^[A-Za-z0-9_-]{1,128}$")},
    err_desc={"400": ("The body is not {metric: number | string}: every problem is listed", "ErrorEnvelope"),
              "409": ("The group belongs to a [[plugin]] of the configuration", "ErrorEnvelope")})}
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
