"""Kefu: the routing table. Every handler is one line of wiring into chalicelib/."""
import logging

from chalice import Chalice, Rate, Response

from chalicelib import admin, http, observability, outbox, protocol, sweep
from chalicelib.config import settings

app = Chalice(app_name="kefu")
app.experimental_feature_flags.update(["WEBSOCKETS"])  # chalice package/deploy still ask for it
app.log.setLevel(logging.INFO)  # chalicelib logs under "kefu.*": drops, sweeps, failures
observability.install(app)  # JSON logs with the invocation's ids; one EMF metrics line per invocation


@app.on_ws_connect()
def ws_connect(event):
    return Response(body="", status_code=protocol.connect(
        event.connection_id, http.query_params(event.to_dict()), http.event_headers(event.to_dict())))


@app.on_ws_message()
def ws_message(event):
    http.note_websocket_endpoint(event.to_dict())
    protocol.message(event.connection_id, event.body)


@app.on_ws_disconnect()
def ws_disconnect(event):
    protocol.disconnect(event.connection_id)


@app.route("/v1/visitor/session", methods=["POST"], cors=True)
def visitor_session():
    return http.respond(app.current_request, http.visitor_session)


@app.route("/v1/visitor/contact", methods=["POST"], cors=True)
def visitor_contact():
    return http.respond(app.current_request, http.visitor_contact)


# Agents' routes answer browsers only from KEFU_CONSOLE_ORIGINS (http.console_preflight).
@app.route("/v1/agent/session", methods=["POST"])
def agent_session():
    return http.respond(app.current_request, http.agent_session, console_only=True)


@app.route("/v1/agent/session", methods=["OPTIONS"])
def agent_session_preflight():
    return http.console_preflight(app.current_request)


@app.route("/v1/conversations", methods=["GET"])
def list_conversations():
    return http.respond(app.current_request, http.list_conversations, console_only=True)


@app.route("/v1/conversations", methods=["OPTIONS"])
def list_conversations_preflight():
    return http.console_preflight(app.current_request)


@app.route("/v1/conversations/{conversation_id}/messages", methods=["POST"], cors=True)
def post_message(conversation_id):
    return http.respond(app.current_request, http.post_message, conversation_id)


@app.route("/v1/conversations/{conversation_id}/messages", methods=["GET"], cors=True)
def get_messages(conversation_id):
    return http.respond(app.current_request, http.get_messages, conversation_id)


# Socket actions over REST, for clients that cannot keep a socket (docs/protocol.md, section 4).
@app.route("/v1/state", methods=["GET"], cors=True)
def get_state():
    return http.respond(app.current_request, http.get_state)


@app.route("/v1/conversations/{conversation_id}/read", methods=["POST"], cors=True)
def mark_read(conversation_id):
    return http.respond(app.current_request, http.post_read, conversation_id)


@app.route("/v1/conversations/{conversation_id}/typing", methods=["POST"], cors=True)
def post_typing(conversation_id):
    return http.respond(app.current_request, http.post_typing, conversation_id)


@app.route("/v1/conversations/{conversation_id}/rating", methods=["POST"], cors=True)
def rate_conversation(conversation_id):
    return http.respond(app.current_request, http.post_rating, conversation_id)


@app.route("/v1/uploads", methods=["POST"], cors=True)
def create_upload():
    return http.respond(app.current_request, http.create_upload)


@app.route("/v1/conversations/{conversation_id}/attachments/url", methods=["GET"], cors=True)
def attachment_url(conversation_id):
    return http.respond(app.current_request, http.attachment_url, conversation_id)


# Site owners' routes (chalicelib/admin.py): CORS like the agents' (KEFU_CONSOLE_ORIGINS).
@app.route("/v1/admin/site", methods=["GET"])
def admin_get_site():
    return http.respond(app.current_request, admin.rest_get_site, console_only=True)


@app.route("/v1/admin/site", methods=["PATCH"])
def admin_update_site():
    return http.respond(app.current_request, admin.rest_update_site, console_only=True)


@app.route("/v1/admin/site", methods=["OPTIONS"])
def admin_site_preflight():
    return http.console_preflight(app.current_request)


@app.route("/v1/admin/site/secret", methods=["GET"])
def admin_reveal_secret():
    return http.respond(app.current_request, admin.rest_reveal_secret, console_only=True)


@app.route("/v1/admin/site/secret", methods=["POST"])
def admin_rotate_secret():
    return http.respond(app.current_request, admin.rest_rotate_secret, console_only=True)


@app.route("/v1/admin/site/secret", methods=["OPTIONS"])
def admin_secret_preflight():
    return http.console_preflight(app.current_request)


@app.route("/v1/admin/snippet", methods=["GET"])
def admin_snippet():
    return http.respond(app.current_request, admin.rest_snippet, console_only=True)


@app.route("/v1/admin/snippet", methods=["OPTIONS"])
def admin_snippet_preflight():
    return http.console_preflight(app.current_request)


@app.route("/v1/admin/agents", methods=["GET"])
def admin_list_agents():
    return http.respond(app.current_request, admin.rest_list_agents, console_only=True)


@app.route("/v1/admin/agents", methods=["POST"])
def admin_create_agent():
    return http.respond(app.current_request, admin.rest_create_agent, console_only=True)


@app.route("/v1/admin/agents", methods=["OPTIONS"])
def admin_agents_preflight():
    return http.console_preflight(app.current_request)


@app.route("/v1/admin/agents/{agent_id}", methods=["PATCH"])
def admin_update_agent(agent_id):
    return http.respond(app.current_request, admin.rest_update_agent, agent_id, console_only=True)


@app.route("/v1/admin/agents/{agent_id}", methods=["OPTIONS"])
def admin_agent_preflight(agent_id):
    return http.console_preflight(app.current_request)


@app.route("/v1/canned", methods=["GET"])
def list_canned():
    return http.respond(app.current_request, http.list_canned, console_only=True)


@app.route("/v1/canned", methods=["POST"])
def save_canned():
    return http.respond(app.current_request, http.save_canned, console_only=True)


@app.route("/v1/canned", methods=["OPTIONS"])
def canned_preflight():
    return http.console_preflight(app.current_request)


@app.route("/v1/canned/{shortcut}", methods=["DELETE"])
def delete_canned(shortcut):
    return http.respond(app.current_request, http.delete_canned, shortcut, console_only=True)


@app.route("/v1/canned/{shortcut}", methods=["OPTIONS"])
def canned_item_preflight(shortcut):
    return http.console_preflight(app.current_request)


@app.route("/v1/reports", methods=["GET"])
def get_reports():
    return http.respond(app.current_request, http.get_reports, console_only=True)


@app.route("/v1/reports", methods=["OPTIONS"])
def reports_preflight():
    return http.console_preflight(app.current_request)


# The search index (chalicelib/search.py) is kept from the messages table's stream, off the chat path.
# infra/build.py points this event source at the table's real stream; locally local/streams.py feeds it.
MESSAGES_STREAM = "arn:aws:dynamodb:us-east-1:000000000000:table/kefu-messages/stream/set-by-infra-build"


@app.on_dynamodb_record(stream_arn=MESSAGES_STREAM, batch_size=100, starting_position="TRIM_HORIZON",
                        maximum_batching_window_in_seconds=1)
def index_messages(event):
    from chalicelib import search  # only this function loads the index's code

    search.index_records(event.to_dict()["Records"])


# CloudWatch schedules go down to one minute; the local stack runs it every KEFU_SWEEP_INTERVAL seconds.
@app.schedule(Rate(max(1, settings().sweep_interval // 60), unit=Rate.MINUTES))
def heartbeat_sweep(event):
    sweep.sweep(getattr(event.context, "get_remaining_time_in_millis", None))


# Email, off the chat path (chalicelib/outbox.py); the local stack runs it every KEFU_MAIL_INTERVAL seconds.
@app.schedule(Rate(1, unit=Rate.MINUTES))
def deliver_mail(event):
    outbox.deliver_due(getattr(event.context, "get_remaining_time_in_millis", None))
