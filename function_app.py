"""Azure Functions entry point (Python v2 model): triggers wired to `shared.entrypoints`, nothing else."""

from __future__ import annotations

import azure.functions as func

from shared import entrypoints

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.timer_trigger(schedule="%HEALER_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def detect(timer: func.TimerRequest) -> None:
    entrypoints.timer_tick(past_due=timer.past_due)


@app.queue_trigger(arg_name="msg", queue_name="%HEALER_QUEUE_NAME%", connection="AzureWebJobsStorage")
def remediate(msg: func.QueueMessage) -> None:
    entrypoints.queue_message(msg.get_body(), msg.dequeue_count or 1)


def _respond(req: func.HttpRequest, route: str) -> func.HttpResponse:
    answer = entrypoints.http(req.method, route, dict(req.params), dict(req.headers), req.get_body())
    return func.HttpResponse(
        answer.text, status_code=answer.status, headers=answer.headers, mimetype="application/json"
    )


@app.route(route="heal", methods=["POST"])
def heal(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(req, "heal")


@app.route(route="targets", methods=["GET"])
def targets(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(req, "targets")


# No function key: an action group's secure webhook sends an Entra token, checked in shared/http/webhook_auth.py.
@app.route(route="alerts", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def alerts(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(req, "alerts")


@app.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(req, "health")
