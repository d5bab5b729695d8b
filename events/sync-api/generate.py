#!/usr/bin/env python3
"""Writes the sync-api sample events: API Gateway HTTP API (v2) requests with
HS256 bearer tokens signed by the documented local secret. Run from here."""
import base64, hashlib, hmac, json

SECRET = b"syncline-local-jwt-secret"
EXP = 4102444800  # 2100-01-01


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(tenant, sub):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "tenant": tenant, "exp": EXP}).encode())
    sig = b64(hmac.new(SECRET, f"{header}.{claims}".encode(), hashlib.sha256).digest())
    return f"{header}.{claims}.{sig}"


def request(method, path, body, tok, i):
    headers = {"content-type": "application/json"}
    if tok:
        headers["authorization"] = f"Bearer {tok}"
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "syncline-sample"},
            "requestId": f"sync-sample-{i:04d}", "routeKey": f"{method} {path}",
            "stage": "$default", "time": "22/Nov/2026:11:00:00 +0000", "timeEpoch": 1795316400000,
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


phone = token("demo", "user-1")
tablet = token("demo", "user-2")
samples = {
    "push": ("POST", "/v1/sync/push", {"client_id": "phone-1", "mutations": [
        {"id": 1, "op": "upsert", "entity": "job", "record_id": "j1",
         "data": {"crew": "crew-a", "start": "2026-11-23T09:00:00Z"}, "timestamp": "2026-11-22T10:00:00Z"},
        {"id": 2, "op": "upsert", "entity": "task", "record_id": "t1",
         "data": {"title": "Pack the van", "done": False}, "timestamp": "2026-11-22T10:00:01Z"},
    ]}, phone),
    "conflict": ("POST", "/v1/sync/push", {"client_id": "tablet-1", "mutations": [
        {"id": 1, "op": "upsert", "entity": "job", "record_id": "j1",
         "data": {"crew": "crew-b", "start": "2026-11-23T09:00:00Z"}, "timestamp": "2026-11-22T10:00:05Z"},
    ]}, tablet),
    "pull": ("POST", "/v1/sync/pull", {"entities": ["job", "task"], "limit": 100, "client_id": "phone-1"}, phone),
    "conflicts": ("GET", "/v1/sync/conflicts", None, phone),
    "unauthorized": ("POST", "/v1/sync/pull", {"entities": ["task"]}, None),
    "legacy-push": ("POST", "/api/client/sync/push", {"changes": {
        "end_user": [{"id": "u-1001", "name": "John Doe", "email": "john@example.com",
                      "sync_status": "pending", "server_synced": 0, "version": 1}],
        "interactions": [{"id": "i-2001", "type": "call", "title": "Follow up call",
                          "date": "2024-01-01T10:00:00Z", "status": "pending"}]}}, phone),
    "legacy-pull": ("POST", "/api/client/sync/pull",
                    {"lastSyncTimestamp": "2024-01-01T00:00:00.000Z", "entityTypes": ["end_user", "interactions"]}, phone),
    "legacy-pull-pending": ("POST", "/api/client/sync/pull-pending", {"entityTypes": ["end_user", "interactions"]}, phone),
}
for i, (name, (method, path, body, tok)) in enumerate(samples.items()):
    with open(f"{name}.json", "w") as f:
        json.dump(request(method, path, body, tok, i), f, indent=2)
        f.write("\n")
