"""POST /orders and GET /health.

POST /orders {"orderId":"17","customerId":"k3","lineNo":5,"fail":false}
  one transaction (transaction.atomic) saves the order and publishes its
  OrderPlaced event through jaiminho (orders.events.publish_order_placed):
  201 committed; 422 rolled back on request ("fail": true: everything is done,
  then an exception rolls the transaction back); 409 certainly not committed
  (an error before COMMIT, e.g. IntegrityError on a duplicate orderId or no
  database connection, or a COMMIT the server refused with SQLSTATE class 40
  or 23); 500 otherwise (the COMMIT's outcome was not seen, or something
  failed after it); 400 a malformed body.
"""
import json
import logging
import re
import uuid

from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from orders.events import publish_order_placed
from orders.models import Order

log = logging.getLogger("orders")

ORDER_ID = re.compile(r"[0-9]{1,18}")


class BadRequest(ValueError):
    pass


class RollbackRequested(Exception):
    """Raised inside the transaction when the request asks for a rollback."""


@require_GET
def health(request):
    return HttpResponse("ok\n", content_type="text/plain")


def parse_order(body):
    try:
        o = json.loads(body)
    except ValueError:
        raise BadRequest("the body is not JSON")
    if not isinstance(o, dict):
        raise BadRequest("the body is not a JSON object")
    order_id = o.get("orderId")
    if isinstance(order_id, int) and not isinstance(order_id, bool):
        order_id = str(order_id)
    if not isinstance(order_id, str) or not ORDER_ID.fullmatch(order_id):
        raise BadRequest("orderId must be a string of digits")
    customer_id = o.get("customerId")
    if not isinstance(customer_id, str) or customer_id == "":
        raise BadRequest("customerId must be a non-empty string")
    line_no = o.get("lineNo")
    if not isinstance(line_no, int) or isinstance(line_no, bool):
        raise BadRequest("lineNo must be an integer")
    fail = o.get("fail", False)
    if not isinstance(fail, bool):
        raise BadRequest("fail must be a boolean")
    return order_id, customer_id, line_no, fail


def sqlstate(exc):
    """The SQLSTATE of a database error (Django wraps psycopg's error)."""
    for e in (exc, exc.__cause__):
        code = getattr(e, "sqlstate", None)
        if isinstance(code, str):
            return code
    return ""


@csrf_exempt
@require_POST
def place_order(request):
    try:
        order_id, customer_id, line_no, fail = parse_order(request.body)
    except BadRequest as exc:
        return JsonResponse({"error": str(exc)}, status=400)

    body_done = False  # the block ran to its end: Django is committing
    committed = []  # set by an on-commit hook: the COMMIT succeeded
    event = None
    try:
        with transaction.atomic():
            # Registered first, so it runs first once COMMIT has succeeded
            # (before jaiminho's own on-commit hook, under publish-on-commit).
            transaction.on_commit(lambda: committed.append(True))
            Order.objects.create(id=int(order_id), customer_id=customer_id, line_no=line_no)
            event = {
                "type": "OrderPlaced",
                "orderId": order_id,
                "customerId": customer_id,
                "lineNo": line_no,
                "eventId": str(uuid.uuid4()),
            }
            publish_order_placed(event)
            if fail:
                raise RollbackRequested()
            body_done = True
    except RollbackRequested:
        return JsonResponse({"orderId": order_id, "rolledBack": True}, status=422)
    except Exception as exc:
        if not body_done:
            # Raised inside the block: atomic() rolled the transaction back.
            log.warning("order %s: not stored: %r", order_id, exc)
            return JsonResponse({"error": f"order {order_id} not stored: {exc}"}, status=409)
        if not committed and sqlstate(exc)[:2] in ("40", "23"):
            log.warning("order %s: COMMIT refused: %r", order_id, exc)
            return JsonResponse({"error": f"order {order_id}: COMMIT refused: {exc}"}, status=409)
        where = "after COMMIT" if committed else "COMMIT outcome unknown"
        log.error("order %s: %s: %r", order_id, where, exc)
        return JsonResponse({"error": f"order {order_id}: {where}: {exc}"}, status=500)
    return JsonResponse({"orderId": order_id, "eventId": event["eventId"]}, status=201)
