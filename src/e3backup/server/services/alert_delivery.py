"""Sending alerts: email over SMTP, JSON webhooks signed with HMAC-SHA256, retried with back-off,
and the daily or weekly summary per tenant. Runs on the scheduler's thread (never inside a
request): :meth:`AlertWorker.tick` evaluates the time-based rules, queues due summaries and sends
what is due.

Webhook signature (verify before trusting the body): the header
``X-E3backup-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
``HMAC-SHA256(secret, "<t>." + raw body)``; also ``X-E3backup-Delivery: <delivery id>`` (the
same on every retry, so a receiver can drop duplicates).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from e3backup.server.clock import Clock
from e3backup.server.db.models import AlertChannel, AlertDelivery, Tenant
from e3backup.server.security import SecretBox
from e3backup.server.services import alerts, quotas
from e3backup.server.services.fleet import fleet_health

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)
SIGNATURE_HEADER = "X-E3backup-Signature"


def webhook_secret_aad(channel_id: int) -> str:
    return f"alert-webhook:{channel_id}"


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    sender: str
    starttls: bool = False
    username: str | None = None
    password: str | None = None


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min... up to an hour between attempts."""
    wait: timedelta = FIRST_RETRY * (2 ** max(attempts - 1, 0))
    return min(wait, LAST_RETRY)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """What a receiver does (and the tests): recompute and compare in constant time."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if "t" not in parts or not parts["t"].isdigit():
        return False
    return hmac.compare_digest(sign(secret, int(parts["t"]), body), header)


def email_text(p: dict[str, Any]) -> tuple[str, str]:
    """Subject and body of an incident email."""
    if p["event"] == "summary":
        return p["subject"], p["text"]
    state = "CLEARED" if p["event"] == "cleared" else "ALERT"
    subject = f"[e3backup] {state}: {p['title']}"[:250]
    lines = [
        f"{p['rule_title']} ({p['tenant']})",
        p["title"],
        f"Since: {p['opened_at']}",
    ]
    if p["event"] == "cleared":
        lines.append(f"Cleared: {p['cleared_at']}")
    return subject, "\n".join(lines) + "\n"


def send_email(mail: MailSettings, to: str, p: dict[str, Any]) -> None:
    subject, text = email_text(p)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = mail.sender, to, subject
    msg.set_content(text)
    if p["event"] == "summary":
        msg.add_alternative(p["html"], subtype="html")
    with smtplib.SMTP(mail.host, mail.port, timeout=30) as smtp:
        if mail.starttls:
            smtp.starttls()
        if mail.username:
            smtp.login(mail.username, mail.password or "")
        smtp.send_message(msg)


def send_webhook(
    client: httpx.Client, url: str, secret: str, delivery_id: int, p: dict[str, Any], now: datetime
) -> None:
    body = json.dumps(p, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, int(now.timestamp()), body),
        "X-E3backup-Delivery": str(delivery_id),
    }
    r = client.post(url, content=body, headers=headers)
    if r.status_code >= 300:
        raise RuntimeError(f"webhook answered {r.status_code}")


# -- summaries ------------------------------------------------------------------------------------


def next_summary(kind: str, after: datetime) -> datetime | None:
    """07:00 UTC the next day (daily) or the next Monday (weekly)."""
    if kind not in ("daily", "weekly"):
        return None
    day = (after + timedelta(days=1)).replace(hour=7, minute=0, second=0, microsecond=0)
    if kind == "weekly":
        day += timedelta(days=(7 - day.weekday()) % 7)
    return day


def summary_payload(session: Session, channel: AlertChannel, now: datetime, offline_after: float) -> dict[str, Any]:
    tenant = session.get(Tenant, channel.tenant_id) if channel.tenant_id is not None else None
    fleet = fleet_health(session, now, offline_after, [tenant.id] if tenant else None)
    who = tenant.name if tenant else "all customers"
    period = "Daily" if channel.summary == "daily" else "Weekly"
    rows = []
    for h in fleet.agents:
        state = "online" if h.online else "offline"
        last = min((j.last_success_at for j in h.jobs if j.last_success_at), default=None)
        rows.append((h.tenant_name, h.agent.hostname, state, last.strftime("%Y-%m-%d %H:%M") if last else "never",
                     h.failures_24h, h.warnings_24h, "; ".join(h.reasons) or "ok"))
    head = ("Customer", "Machine", "Agent", "Oldest last success (UTC)", "Failed 24 h", "Warnings 24 h", "Attention")
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    table = (
        "<table border=1 cellpadding=4 cellspacing=0><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + f"</tr></thead><tbody>{cells}</tbody></table>"
    )
    totals = (f"{len(fleet.agents)} machines, {fleet.offline} offline, {fleet.failures_24h} failed runs and "
              f"{fleet.warnings_24h} with warnings in 24 h, {fleet.rpo_missed} jobs past their RPO")
    return {
        "event": "summary",
        "subject": f"[e3backup] {period} summary for {who}: {totals}"[:250],
        "text": f"{period} summary for {who} ({now:%Y-%m-%d})\n{totals}\n"
        + "\n".join(" | ".join(str(c) for c in row) for row in rows) + "\n",
        "html": f"<html><body><h1>{period} summary for {html.escape(who)}</h1><p>{totals}</p>{table}</body></html>",
        "tenant_id": channel.tenant_id,
        "totals": {"machines": len(fleet.agents), "offline": fleet.offline, "failed_24h": fleet.failures_24h,
                   "warnings_24h": fleet.warnings_24h, "rpo_missed": fleet.rpo_missed},
    }


def queue_summaries(session: Session, now: datetime, offline_after: float) -> int:
    due = session.scalars(
        select(AlertChannel).where(
            AlertChannel.enabled.is_(True), AlertChannel.next_summary_at.is_not(None),
            AlertChannel.next_summary_at <= now,
        )
    ).all()
    for channel in due:
        session.add(AlertDelivery(channel_id=channel.id, event="summary",
                                  payload=summary_payload(session, channel, now, offline_after),
                                  status="pending", attempts=0, next_attempt_at=now, created_at=now))
        channel.next_summary_at = next_summary(channel.summary, now)
    return len(due)


# -- the worker -----------------------------------------------------------------------------------


class AlertWorker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        box: SecretBox,
        mail: MailSettings | None,
        offline_after_seconds: float,
        offline_minutes: float,
        http: httpx.Client | None = None,
        local_roots: list[Path] | None = None,
    ) -> None:
        self._local_roots = local_roots or []  # the repositories the server may read (quotas)
        self._sessions = sessions
        self._clock = clock
        self._box = box
        self.mail = mail
        self._offline_after = offline_after_seconds
        self._offline_minutes = offline_minutes
        self._http = http or httpx.Client(timeout=10.0, follow_redirects=False)

    def tick(self) -> int:
        """Evaluate, queue summaries, send what is due; returns the number sent."""
        now = self._clock.now()
        quotas.measure_due(self._sessions, self._box, self._local_roots, now)
        with self._sessions() as session:
            alerts.evaluate(session, now, self._offline_after, self._offline_minutes)
            quotas.evaluate(session, now)
            queue_summaries(session, now, self._offline_after)
            session.commit()
        return self.deliver_due()

    def deliver_due(self, limit: int = 100) -> int:
        now = self._clock.now()
        sent = 0
        with self._sessions() as session:
            due = session.scalars(
                select(AlertDelivery)
                .where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
                .order_by(AlertDelivery.id)
                .limit(limit)
            ).all()
            for d in due:
                channel = session.get(AlertChannel, d.channel_id)
                if channel is None:
                    continue
                try:
                    self._send(channel, d, now)
                except Exception as e:  # any failure of the far end: retried
                    d.attempts += 1
                    d.last_error = f"{type(e).__name__}: {e}"[:2000]
                    if d.attempts >= MAX_ATTEMPTS:
                        d.status = "failed"
                        log.error("alert delivery %s to channel %s gave up: %s", d.id, channel.id, d.last_error)
                    else:
                        d.next_attempt_at = now + backoff(d.attempts)
                        log.warning("alert delivery %s failed (attempt %s): %s", d.id, d.attempts, d.last_error)
                else:
                    d.attempts += 1
                    d.status, d.sent_at = "sent", now
                    sent += 1
                session.commit()
        return sent

    def _send(self, channel: AlertChannel, d: AlertDelivery, now: datetime) -> None:
        if channel.kind == "email":
            if self.mail is None:
                raise RuntimeError("no SMTP server configured (smtp_host)")
            send_email(self.mail, channel.target, d.payload)
            return
        secret = self._box.open(channel.secret_sealed or "", webhook_secret_aad(channel.id))["secret"]
        send_webhook(self._http, channel.target, str(secret), d.id, d.payload, now)


__all__ = [
    "SIGNATURE_HEADER",
    "AlertWorker",
    "MailSettings",
    "backoff",
    "next_summary",
    "queue_summaries",
    "send_email",
    "send_webhook",
    "sign",
    "summary_payload",
    "verify",
    "webhook_secret_aad",
]
