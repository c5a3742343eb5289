"""Every setting Kefu reads, from environment variables, in one place.

Each field documents its variable and default. Call ``settings()`` wherever a value is needed;
tests that change the environment call ``settings.cache_clear()``.
"""
from __future__ import annotations

import functools
import os
from typing import Dict, Optional


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _str(name: str, default: Optional[str]) -> Optional[str]:
    raw = os.environ.get(name)
    return raw if raw not in (None, "") else default


class Settings:
    """A plain class, not a dataclass: generating a dataclass's __init__ for fifty fields cost
    every cold start 2.3 ms (bench/cold_start.py). Treat it as read-only."""

    def __init__(self) -> None:
        # AWS region for DynamoDB and the Management API client (AWS_REGION, then AWS_DEFAULT_REGION).
        self.region: str = _str("AWS_REGION", None) or _str("AWS_DEFAULT_REGION", "us-east-1")
        # KEFU_TABLE_PREFIX: prefix of every DynamoDB table name, e.g. "kefu-dev-" -> "kefu-dev-sites".
        self.table_prefix: str = _str("KEFU_TABLE_PREFIX", "kefu-")
        # KEFU_DYNAMODB_ENDPOINT: a DynamoDB-compatible endpoint (local stack, DynamoDB Local); unset = AWS.
        self.dynamodb_endpoint: Optional[str] = _str("KEFU_DYNAMODB_ENDPOINT", None)
        # KEFU_WS_MANAGEMENT_ENDPOINT: API Gateway Management API endpoint,
        # https://{api}.execute-api.{region}.amazonaws.com/{stage}.
        # Unset: derived from the WebSocket event (domainName/stage) where there is one.
        self.ws_management_endpoint: Optional[str] = _str("KEFU_WS_MANAGEMENT_ENDPOINT", None)
        # KEFU_PUBLIC_WEBSOCKET_URL: the wss:// URL browsers connect to, handed out with every session.
        self.public_websocket_url: Optional[str] = _str("KEFU_PUBLIC_WEBSOCKET_URL", None)
        # AWS_ENDPOINT_URL_SSM (then AWS_ENDPOINT_URL), as botocore reads them: where secrets named by
        # *_PARAM variables are read (chalicelib/ssm.py). Unset: https://ssm.{region}.amazonaws.com(.cn).
        self.ssm_endpoint: str = (
            _str("AWS_ENDPOINT_URL_SSM", None) or _str("AWS_ENDPOINT_URL", None)
            or f"https://ssm.{self.region}.amazonaws.com{'.cn' if self.region.startswith('cn-') else ''}")
        # KEFU_VISITOR_TOKEN_TTL / KEFU_AGENT_TOKEN_TTL: token lifetimes, seconds.
        self.visitor_token_ttl: int = _int("KEFU_VISITOR_TOKEN_TTL", 3600)
        self.agent_token_ttl: int = _int("KEFU_AGENT_TOKEN_TTL", 12 * 3600)
        # KEFU_CONNECTION_TTL: DynamoDB TTL backstop on connection records (API Gateway's 2 h maximum).
        self.connection_ttl: int = _int("KEFU_CONNECTION_TTL", 2 * 3600 + 600)
        # KEFU_CONSOLE_ORIGINS: comma-separated origins the agent console is served from. None by
        # default: agent routes answer browsers only from these ("*" = any, for development only).
        self.console_origins: tuple = tuple(o.strip().rstrip("/") for o in _str("KEFU_CONSOLE_ORIGINS", "").split(",")
                                            if o.strip())
        # KEFU_HEARTBEAT_INTERVAL: a ping refreshes last-seen at most once per this many seconds.
        self.heartbeat_interval: int = _int("KEFU_HEARTBEAT_INTERVAL", 30)
        # KEFU_HEARTBEAT_TIMEOUT: a connection silent for longer than this is swept.
        self.heartbeat_timeout: int = _int("KEFU_HEARTBEAT_TIMEOUT", 120)
        # KEFU_SWEEP_INTERVAL: how often the sweep runs (rate, seconds).
        self.sweep_interval: int = _int("KEFU_SWEEP_INTERVAL", 60)
        # KEFU_SWEEP_SHARDS: shards of the last-seen index (spreads the write load of heartbeats).
        self.sweep_shards: int = _int("KEFU_SWEEP_SHARDS", 4)
        # KEFU_MAX_TEXT: longest message text, characters.
        self.max_text: int = _int("KEFU_MAX_TEXT", 4000)
        # KEFU_MAX_ATTRIBUTES_BYTES: largest JSON of a visitor's custom attributes.
        self.max_attributes_bytes: int = _int("KEFU_MAX_ATTRIBUTES_BYTES", 4096)
        # KEFU_RATE_LIMIT / KEFU_RATE_WINDOW: at most this many sends per visitor (all their sockets
        # and REST together) and per agent connection, per window (seconds).
        self.rate_limit: int = _int("KEFU_RATE_LIMIT", 20)
        self.rate_window: int = _int("KEFU_RATE_WINDOW", 10)
        # KEFU_SESSION_LIMIT / KEFU_SESSION_WINDOW: visitor sessions per client IP per window (seconds).
        self.session_limit: int = _int("KEFU_SESSION_LIMIT", 60)
        self.session_window: int = _int("KEFU_SESSION_WINDOW", 60)
        # KEFU_LOGIN_IP_LIMIT / KEFU_LOGIN_IP_WINDOW: agent login attempts per client IP per window.
        self.login_ip_limit: int = _int("KEFU_LOGIN_IP_LIMIT", 30)
        self.login_ip_window: int = _int("KEFU_LOGIN_IP_WINDOW", 900)
        # KEFU_TYPING_LIMIT / KEFU_PAGE_VIEW_LIMIT: typing and page_view frames per visitor per
        # KEFU_RATE_WINDOW.
        self.typing_limit: int = _int("KEFU_TYPING_LIMIT", 10)
        self.page_view_limit: int = _int("KEFU_PAGE_VIEW_LIMIT", 10)
        # KEFU_SYNC_PAGE: messages per sync page (clients may ask for fewer; pages also stop at 96 KB).
        self.sync_page: int = _int("KEFU_SYNC_PAGE", 50)
        # KEFU_SEQ_GAP_SECONDS: a seq left empty this long is a gap for good (its writer died); at
        # least twice the functions' timeout, so no live writer can still fill it.
        self.seq_gap_seconds: int = _int("KEFU_SEQ_GAP_SECONDS", 90)
        # KEFU_AGENT_REQUEUE_GRACE: seconds after an agent's last connection closed before their open
        # conversations go back to the queue (a reload must not reshuffle them).
        self.agent_requeue_grace: int = _int("KEFU_AGENT_REQUEUE_GRACE", 60)
        # KEFU_SWEEP_THREADS: stale connections the sweep drops at once (under pynamodb's pool of 10).
        self.sweep_threads: int = _int("KEFU_SWEEP_THREADS", 8)
        # KEFU_DELIVERY_THREADS: concurrent post_to_connection calls per invocation.
        self.delivery_threads: int = _int("KEFU_DELIVERY_THREADS", 8)
        # Uploads (Aliyun OSS + STS). KEFU_OSS_ENDPOINT e.g. https://oss-cn-hangzhou.aliyuncs.com.
        self.oss_endpoint: Optional[str] = _str("KEFU_OSS_ENDPOINT", None)
        self.oss_bucket: Optional[str] = _str("KEFU_OSS_BUCKET", None)
        self.oss_region: str = _str("KEFU_OSS_REGION", "cn-hangzhou")
        self.oss_prefix: str = _str("KEFU_OSS_PREFIX", "uploads/")
        self.sts_endpoint: Optional[str] = _str("KEFU_STS_ENDPOINT", None)
        self.sts_role_arn: Optional[str] = _str("KEFU_STS_ROLE_ARN", None)
        self.aliyun_access_key_id: Optional[str] = _str("KEFU_ALIYUN_ACCESS_KEY_ID", None)
        self.upload_url_ttl: int = _int("KEFU_UPLOAD_URL_TTL", 300)
        self.download_url_ttl: int = _int("KEFU_DOWNLOAD_URL_TTL", 600)
        self.upload_max_bytes: int = _int("KEFU_UPLOAD_MAX_BYTES", 10 * 1024 * 1024)
        # Upload quotas, counted at grant time in the limits table (chalicelib/attachments.py), each
        # refused with 429 `rate_limited`: KEFU_UPLOAD_FILES_PER_HOUR / KEFU_UPLOAD_BYTES_PER_HOUR per
        # visitor (or agent) per clock hour, KEFU_SITE_UPLOAD_FILES_PER_DAY /
        # KEFU_SITE_UPLOAD_BYTES_PER_DAY per site per UTC day. Bytes are the sizes declared in grants
        # (a grant's form takes no more than its declared size).
        self.upload_files_per_hour: int = _int("KEFU_UPLOAD_FILES_PER_HOUR", 20)
        self.upload_bytes_per_hour: int = _int("KEFU_UPLOAD_BYTES_PER_HOUR", 100 * 1024 ** 2)
        self.site_upload_files_per_day: int = _int("KEFU_SITE_UPLOAD_FILES_PER_DAY", 2000)
        self.site_upload_bytes_per_day: int = _int("KEFU_SITE_UPLOAD_BYTES_PER_DAY", 5 * 1024 ** 3)
        # KEFU_SITE_CACHE_SECONDS: how long a warm function reuses a site's item (its agents' roster)
        # on the paths that read it for every frame (send, typing, read, page_view); an agent's
        # $connect answers no sooner than this after joining the roster, so no push can miss it once
        # it is open. 0 reads the item every time. docs/scale.md: the site item is the hottest key
        # of a busy site.
        self.site_cache_seconds: float = float(_str("KEFU_SITE_CACHE_SECONDS", "1"))
        # KEFU_SEARCH_RETENTION_DAYS: how long a message stays searchable (the search index's DynamoDB
        # TTL, from the message's date); 0 keeps it for ever. The messages themselves are kept regardless.
        self.search_retention_days: int = _int("KEFU_SEARCH_RETENTION_DAYS", 730)
        # Email (chalicelib/mailer.py, chalicelib/outbox.py). KEFU_MAIL_FROM: the From address, an SES
        # verified identity in the cloud; unset, mails are still queued but fail (logged and counted).
        # KEFU_SMTP_HOST / KEFU_SMTP_PORT: send through this SMTP server instead of SES (the local stack's).
        self.mail_from: Optional[str] = _str("KEFU_MAIL_FROM", None)
        self.smtp_host: Optional[str] = _str("KEFU_SMTP_HOST", None)
        self.smtp_port: int = _int("KEFU_SMTP_PORT", 25)
        # KEFU_MAIL_UNANSWERED_MINUTES: agents are emailed about a visitor waiting this long unanswered.
        self.mail_unanswered_minutes: int = _int("KEFU_MAIL_UNANSWERED_MINUTES", 5)
        # KEFU_MAIL_REPLY_DELAY: seconds an agent's reply to a visitor who has left waits before it is
        # emailed (replies written meanwhile go in the same email; nothing is sent if they read it).
        self.mail_reply_delay: int = _int("KEFU_MAIL_REPLY_DELAY", 60)
        # KEFU_MAIL_MAX_ATTEMPTS: tries per email (backing off) before it is marked failed.
        self.mail_max_attempts: int = _int("KEFU_MAIL_MAX_ATTEMPTS", 6)
        # KEFU_CONSOLE_URL: the agent console's address, linked from agents' emails (optional).
        self.console_url: Optional[str] = _str("KEFU_CONSOLE_URL", None)
        # KEFU_AUTO_CLOSE_HOURS: an open conversation with no message for this many hours is closed by
        # the sweep (chalicelib/autoclose.py); 0 never closes. Fractions allowed. The owners' admin app
        # will expose it per site; until then it is one value for every site.
        self.auto_close_hours: float = float(_str("KEFU_AUTO_CLOSE_HOURS", "24"))
        # Secrets read so far (see ``secret``): each function pays only for the ones it uses.
        self._secrets: Dict[str, Optional[str]] = {}

    def secret(self, variable: str) -> Optional[str]:
        """``variable`` from the environment, or else the SSM SecureString that ``{variable}_PARAM``
        names (deployed stages: a Lambda environment cannot take SecureString values from the
        template), fetched the first time it is asked for, then kept for the warm function. None
        if neither exists. Nothing is fetched at import: $disconnect, $default and the sweep need
        no secret and never pay for one (bench/cold_start.py). (Starting the fetch on a thread as the
        function imports was measured slower: 176 vs 158 ms median, the two contending for the GIL
        and the import locks.)"""
        if variable not in self._secrets:
            value, param = _str(variable, None), _str(f"{variable}_PARAM", None)
            if value is None and param:
                from chalicelib import ssm

                value = ssm.get_parameter(param) or None
            self._secrets[variable] = value
        return self._secrets[variable]

    def missing_secret_reason(self, variable: str) -> Optional[str]:
        """Why ``secret(variable)`` is None, for the one log line that says so."""
        if self.secret(variable):
            return None
        param = _str(f"{variable}_PARAM", None)
        if param:
            return f"{variable} is unset and the SSM parameter {param} named by {variable}_PARAM does not exist"
        return f"{variable} is unset (and {variable}_PARAM names no SSM parameter)"

    @property
    def token_secret(self) -> Optional[str]:
        """KEFU_TOKEN_SECRET (or KEFU_TOKEN_SECRET_PARAM): key that signs visitor and agent tokens
        (HS256). No default: without it no token is issued or accepted and every such request
        answers 503 `misconfigured`. The local stack makes one."""
        return self.secret("KEFU_TOKEN_SECRET")

    @property
    def aliyun_access_key_secret(self) -> Optional[str]:
        """KEFU_ALIYUN_ACCESS_KEY_SECRET (or KEFU_ALIYUN_ACCESS_KEY_SECRET_PARAM): the long-term key
        that asks STS for upload credentials; read on the upload and attachment paths only."""
        return self.secret("KEFU_ALIYUN_ACCESS_KEY_SECRET")


@functools.lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()
