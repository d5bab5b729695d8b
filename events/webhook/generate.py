#!/usr/bin/env python3
"""Writes the webhook sample events: API Gateway HTTP API (v2) requests signed
with the local test secrets of sources.json. Signatures are computed here, in
Python, independently of syncline's verifiers. Run from this folder."""
import base64, hashlib, hmac, json

NOW = 1795316400            # 2026-11-22T11:00:00Z; sources.json tolerates 10 years for samples
EXPIRED = 978307200         # 2001-01-01: outside the tolerance, in the past
FUTURE = 4102444800         # 2100-01-01: outside the tolerance, in the future

CALENDLY = "calendly-local-test-secret"
STRIPE_OLD = "whsec_stripe_local_test_secret_old"
STRIPE_NEW = "whsec_stripe_local_test_secret_new"
ORDERS = "whsec_" + base64.b64encode(b"syncline-local-standard-webhooks-key").decode()
SHOP = "shop-local-test-secret"


def sign_hex(key: bytes, *parts: bytes) -> str:
    return hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest()


def request(source, headers, body, request_id):
    headers = {"content-type": "application/json", **headers}
    return {
        "version": "2.0",
        "routeKey": "POST /v1/webhooks/{source}",
        "rawPath": f"/v1/webhooks/{source}",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": "POST", "path": f"/v1/webhooks/{source}", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": f"{source}-sample"},
            "requestId": request_id,
            "routeKey": "POST /v1/webhooks/{source}",
            "stage": "$default",
            "time": "22/Nov/2026:11:00:00 +0000",
            "timeEpoch": NOW * 1000,
        },
        "pathParameters": {"source": source},
        "body": body,
        "isBase64Encoded": False,
    }


def t_signed(secret, t, body):
    return f"t={t},v1={sign_hex(secret.encode(), str(t).encode(), b'.', body.encode())}"


def calendly(event, uri, extra, t=NOW):
    body = json.dumps({
        "event": event,
        "created_at": "2026-11-22T10:59:58.000000Z",
        "created_by": "https://api.calendly.com/users/AAAA",
        "payload": {
            "uri": uri,
            "email": "pat@example.com",
            "name": "Pat Example",
            "status": "active" if event == "invitee.created" else "canceled",
            "scheduled_event": {
                "uri": "https://api.calendly.com/scheduled_events/EV1001",
                "start_time": "2026-11-23T09:00:00.000000Z",
                "end_time": "2026-11-23T10:00:00.000000Z",
            },
            **extra,
        },
    })
    return body, {"calendly-webhook-signature": t_signed(CALENDLY, t, body)}


def stripe(event_id, kind, obj, secret=STRIPE_NEW, t=NOW):
    body = json.dumps({"id": event_id, "object": "event", "type": kind, "created": NOW,
                       "data": {"object": obj}})
    return body, {"stripe-signature": t_signed(secret, t, body)}


def standard(msg_id, body_obj, t=NOW):
    body = json.dumps(body_obj)
    key = base64.b64decode(ORDERS[len("whsec_"):])
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{t}.".encode() + body.encode(), hashlib.sha256).digest()).decode()
    return body, {"webhook-id": msg_id, "webhook-timestamp": str(t), "webhook-signature": f"v1,{sig}"}


def generic(body_obj):
    body = json.dumps(body_obj)
    return body, {"x-shop-signature": "sha256=" + sign_hex(SHOP.encode(), body.encode())}


samples = {}
invitee = "https://api.calendly.com/scheduled_events/EV1001/invitees/INV1001"
body, h = calendly("invitee.created", invitee, {})
samples["calendly-invitee-created"] = ("calendly", h, body)
samples["calendly-duplicate"] = ("calendly", h, body)
body, h = calendly("invitee.canceled", invitee,
                   {"cancellation": {"canceled_by": "Pat Example", "reason": "conflict",
                                     "canceled_at": "2026-11-22T10:59:00.000000Z"}})
samples["calendly-invitee-canceled"] = ("calendly", h, body)

pi = {"id": "pi_1001", "object": "payment_intent", "amount": 12500, "currency": "eur",
      "status": "succeeded", "customer": "cus_1001"}
body, h = stripe("evt_1001", "payment_intent.succeeded", pi)
samples["stripe-payment-succeeded"] = ("stripe", h, body)
body, h = stripe("evt_1002", "charge.refunded",
                 {"id": "ch_1001", "object": "charge", "payment_intent": "pi_1001", "amount_refunded": 12500},
                 secret=STRIPE_OLD)
samples["stripe-charge-refunded-old-secret"] = ("stripe", h, body)
body, h = stripe("evt_1003", "payment_intent.succeeded", {**pi, "id": "pi_1003"})
samples["stripe-tampered"] = ("stripe", h, body.replace("12500", "1"))
body, h = stripe("evt_1004", "payment_intent.succeeded", {**pi, "id": "pi_1004"}, t=EXPIRED)
samples["stripe-expired"] = ("stripe", h, body)
body, h = stripe("evt_1005", "payment_intent.succeeded", {**pi, "id": "pi_1005"}, t=FUTURE)
samples["stripe-future"] = ("stripe", h, body)
invalid = {k: v for k, v in pi.items() if k != "currency"}
body, h = stripe("evt_1006", "payment_intent.succeeded", {**invalid, "id": "pi_1006"})
samples["stripe-invalid-payment"] = ("stripe", h, body)

body, h = standard("msg_2001", {"type": "order.updated", "timestamp": "2026-11-22T10:59:59Z",
                                 "data": {"id": "ord_2001", "total": 99.5, "state": "paid"}})
samples["standard-order-updated"] = ("orders", h, body)
body, h = generic({"id": "shop-evt-3001", "topic": "product.updated",
                   "product": {"id": "prod_3001", "title": "Crew helmet", "price": 42}})
samples["generic-product-updated"] = ("shop", h, body)
body, h = generic({"id": "shop-evt-3002", "topic": "product.updated", "product": {"id": "x"}})
samples["unknown-source"] = ("nobody", h, body)

for i, (name, (source, headers, body)) in enumerate(sorted(samples.items())):
    with open(f"{name}.json", "w") as f:
        json.dump(request(source, headers, body, f"sample-{i:04d}"), f, indent=2)
        f.write("\n")
