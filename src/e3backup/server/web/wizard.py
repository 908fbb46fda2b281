"""The job wizard's form, turned into the jobs API's ``JobCreate`` and back into field errors.

The browser posts a plain HTML form whose input names are the API's field paths
(``destination.bucket``, ``schedule.cron``, ``policy.parallel_disk_reads``). :func:`spec_from_form`
builds the JSON the jobs API takes; only the chosen engine's fields are included, so hidden
fields of another engine never trip the "only for disk_image jobs" rule. The job is then saved by
the jobs service, so the wizard and ``POST /api/jobs`` follow exactly the same rules, and each
error is shown next to the input it names (:func:`form_field`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from e3backup.api.common import Engine
from e3backup.server.problems import FieldError

ENGINES = (
    (Engine.FILES.value, "Files", "Files and folders, deduplicated and encrypted."),
    (Engine.DISK_IMAGE.value, "Disk Image", "A whole disk or volume, for bare-metal restore."),
    (Engine.HYPERV.value, "Hyper-V", "Virtual machines on a Hyper-V host, with RCT incrementals."),
    (Engine.SYNC.value, "Sync", "Mirror files to the destination as they are."),
)
ENGINE_LABELS = {value: label for value, label, _ in ENGINES}

# every input of the wizard, by name (errors naming anything else are shown above the form)
INPUTS = (
    "name",
    "agent_id",
    "engine",
    "source_paths",
    "exclude",
    "share_credentials.username",
    "share_credentials.password",
    "share_credentials.remove",
    "disk_source_volume",
    "disk_image_format",
    "disk_temp_dir",
    "hyperv_config.vms",
    "hyperv_config.enable_rct",
    "hyperv_config.consistency_level",
    "destination.type",
    "destination_id",
    "destination.endpoint",
    "destination.bucket",
    "destination.prefix",
    "destination.region",
    "destination.access_key_id",
    "destination.secret_access_key",
    "destination.path",
    "destination.repository_password",
    "storage_mode",
    "schedule.preset",
    "schedule.at",
    "schedule.every",
    "schedule.day",
    "schedule.cron",
    "schedule.timezone",
    "retention.keep_last",
    "retention.keep_daily",
    "retention.keep_weekly",
    "retention.keep_monthly",
    "policy.disk_image_cbt",
    "policy.disk_image_bitmap",
    "policy.disk_image_strict_read_errors",
    "policy.parallel_disk_reads",
    "policy.sync_delete",
    "policy.sync_compare",
    "policy.sync_max_delete",
    "policy.limit_upload",
    "policy.disk_image_stall_seconds",
    "policy.disk_image_fail_on_stall",
    "policy.verify_boot",
    "policy.verify_boot_marker",
    "enabled",
)
_ALIASES = {
    "source_path": "source_paths",
    "hyperv_config": "hyperv_config.vms",
    "destination": "destination.type",
    "schedule": "schedule.cron",
}
RETENTION_KEYS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")
CHECKBOXES = ("hyperv_config.enable_rct", "policy.disk_image_cbt", "policy.disk_image_bitmap",
              "policy.sync_delete", "enabled")


def default_form() -> dict[str, str]:
    """What a new wizard shows: files engine, S3, the seeds' disk defaults, checkboxes on."""
    return {
        "engine": Engine.FILES.value,
        "destination.type": "s3",
        "disk_image_format": "vhdx",
        "hyperv_config.consistency_level": "application",
        "schedule.timezone": "UTC",
        **{name: "on" for name in CHECKBOXES},
    }


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _number(text: str) -> int | str:
    """A whole number, or the text as typed (the API then says what is wrong with it)."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def _picked_vms(form: Mapping[str, str], typed: list[str]) -> list[str]:
    """The VMs ticked in the discovered list (``hyperv_vm.N``), then the typed ones, once each."""
    picked = [str(v).strip() for k, v in sorted(form.items()) if k.startswith("hyperv_vm.") and str(v).strip()]
    return list(dict.fromkeys(picked + typed))


def spec_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The ``JobCreate`` JSON for a submitted wizard form."""

    def get(name: str) -> str:
        return str(form.get(name, "")).strip()

    def checked(name: str) -> bool:
        return get(name) in ("on", "true", "1")

    engine = get("engine")
    agent = get("agent_id")
    spec: dict[str, Any] = {
        "name": get("name"),
        "engine": engine,
        "agent_id": _number(agent) if agent else None,
        "enabled": checked("enabled"),
    }
    if engine == Engine.DISK_IMAGE.value:
        spec["disk_source_volume"] = get("disk_source_volume")
        spec["disk_image_format"] = get("disk_image_format") or None
        spec["disk_temp_dir"] = get("disk_temp_dir") or None
        policy: dict[str, Any] = {
            "disk_image_cbt": checked("policy.disk_image_cbt"),
            "disk_image_bitmap": checked("policy.disk_image_bitmap"),
        }
        # unchecked is *unset*, not false: the agent then falls back to its
        # AGENT_DISK_IMAGE_STRICT_READ_ERRORS (the seeds' rule), else best effort
        if checked("policy.disk_image_strict_read_errors"):
            policy["disk_image_strict_read_errors"] = True
        for name in ("parallel_disk_reads", "disk_image_stall_seconds"):
            if get(f"policy.{name}"):
                policy[name] = _number(get(f"policy.{name}"))
        if checked("policy.disk_image_fail_on_stall"):
            policy["disk_image_fail_on_stall"] = True
        spec["policy"] = policy
    elif engine == Engine.HYPERV.value:
        spec["hyperv_config"] = {
            "vms": _picked_vms(form, _lines(get("hyperv_config.vms"))),
            "enable_rct": checked("hyperv_config.enable_rct"),
            "consistency_level": get("hyperv_config.consistency_level") or "application",
        }
    else:
        spec["source_paths"] = [line.strip() for line in get("source_paths").splitlines() if line.strip()]
        spec["exclude"] = [line.strip() for line in get("exclude").splitlines() if line.strip()]
        # a UNC share's login: new when a user name is typed, removed when asked, else kept
        if engine == Engine.FILES.value and checked("share_credentials.remove"):
            spec["share_credentials"] = {"username": ""}
        elif engine == Engine.FILES.value and get("share_credentials.username"):
            spec["share_credentials"] = {
                "username": get("share_credentials.username"),
                "password": str(form.get("share_credentials.password", "")),  # spaces are the user's
            }
        if engine == Engine.SYNC.value:
            spec["policy"] = {"sync_delete": checked("policy.sync_delete"),
                              "sync_compare": get("policy.sync_compare") or "mtime"}
            if get("policy.sync_max_delete"):
                spec["policy"]["sync_max_delete"] = _number(get("policy.sync_max_delete"))
    if get("policy.limit_upload"):
        spec.setdefault("policy", {})["limit_upload"] = _number(get("policy.limit_upload"))
    if engine in (Engine.FILES.value, Engine.DISK_IMAGE.value) and get("policy.verify_boot"):
        spec.setdefault("policy", {})["verify_boot"] = get("policy.verify_boot")
    if engine == Engine.DISK_IMAGE.value and get("policy.verify_boot_marker"):
        spec.setdefault("policy", {})["verify_boot_marker"] = get("policy.verify_boot_marker")
    dest_type = get("destination.type")
    # direct or gateway, for a repository (not sync) in a bucket or a saved destination; a folder
    # of the agent machine is always direct (the gateway serves only folders of the server)
    if engine != Engine.SYNC.value and dest_type != "local" and get("storage_mode") in ("direct", "gateway"):
        spec["storage_mode"] = get("storage_mode")
    if dest_type == "saved":  # a storage destination defined once (its own page)
        chosen = get("destination_id")
        spec["destination_id"] = int(chosen) if chosen.isdigit() else None
    elif dest_type == "local":
        spec["destination"] = {
            "type": "local",
            "path": get("destination.path"),
            "repository_password": get("destination.repository_password") or None,
        }
    else:
        spec["destination"] = {
            "type": dest_type or "s3",
            **{key: get(f"destination.{key}") for key in ("endpoint", "bucket", "prefix", "region", "access_key_id")},
            "secret_access_key": get("destination.secret_access_key") or None,
            "repository_password": get("destination.repository_password") or None,
        }
    try:
        cron = preset_cron(get("schedule.preset"), get("schedule.at"), get("schedule.every"), get("schedule.day"))
    except PresetError:
        cron = ""  # presubmit_errors names the input
    if cron or get("schedule.cron"):
        spec["schedule"] = {"cron": cron or get("schedule.cron"), "timezone": get("schedule.timezone") or "UTC"}
    spec["retention"] = {k: _number(get(f"retention.{k}")) for k in RETENTION_KEYS if get(f"retention.{k}")}
    return spec


class PresetError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def preset_cron(preset: str, at: str, every: str, day: str) -> str:
    """The cron expression of a schedule preset ("" for none): daily at HH:MM, every N hours,
    weekly on a weekday at HH:MM. Bad input raises ``PresetError`` naming the input."""
    if not preset:
        return ""
    if preset == "hours":
        if not every.isdigit() or not 1 <= int(every) <= 23:
            raise PresetError("schedule.every", "a whole number of hours from 1 to 23")
        return f"0 */{int(every)} * * *"
    hour, _, minute = (at or "").partition(":")
    if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
        raise PresetError("schedule.at", "a time as HH:MM, e.g. 22:00")
    if preset == "daily":
        return f"{int(minute)} {int(hour)} * * *"
    if preset == "weekly":
        if day not in {str(d) for d in range(7)}:
            raise PresetError("schedule.day", "a weekday")
        return f"{int(minute)} {int(hour)} * * {day}"
    raise PresetError("schedule.preset", f"unknown preset {preset!r}")


def form_from_job(spec: Mapping[str, Any]) -> dict[str, str]:
    """The wizard's form for an existing job (``jobs.spec_of``): the edit page. Secrets are never
    put in the form: left empty, the job keeps them."""
    form = default_form()
    form.update({"name": spec["name"], "engine": spec["engine"], "agent_id": str(spec["agent_id"] or "")})
    paths = spec.get("source_paths") or ([spec["source_path"]] if spec.get("source_path") else [])
    form["source_paths"] = "\n".join(paths)
    form["exclude"] = "\n".join(spec.get("exclude") or [])
    for name in ("disk_source_volume", "disk_image_format", "disk_temp_dir"):
        if spec.get(name):
            form[name] = str(spec[name])
    if spec.get("hyperv_config"):
        form["hyperv_config.vms"] = "\n".join(spec["hyperv_config"].get("vms", []))
        form["hyperv_config.consistency_level"] = spec["hyperv_config"].get("consistency_level", "application")
        if not spec["hyperv_config"].get("enable_rct", True):
            form.pop("hyperv_config.enable_rct", None)
    if spec.get("destination_id") is not None:
        form["destination.type"] = "saved"
        form["destination_id"] = str(spec["destination_id"])
    dest = spec.get("destination") or {}
    for key, value in dest.items():
        if key not in ("secret_access_key", "repository_password") and value is not None:
            form[f"destination.{key}"] = str(value)
    if spec.get("storage_mode"):
        form["storage_mode"] = str(spec["storage_mode"])
    if spec.get("schedule"):
        form["schedule.cron"] = spec["schedule"]["cron"]
        form["schedule.timezone"] = spec["schedule"]["timezone"]
    for key, value in (spec.get("retention") or {}).items():
        form[f"retention.{key}"] = str(value)
    policy = spec.get("policy") or {}
    for key in ("disk_image_cbt", "disk_image_bitmap", "sync_delete"):
        if policy.get(key) is False:
            form.pop(f"policy.{key}", None)
    for key in ("disk_image_strict_read_errors", "disk_image_fail_on_stall"):
        if policy.get(key):
            form[f"policy.{key}"] = "on"
    for key in ("parallel_disk_reads", "disk_image_stall_seconds", "limit_upload", "sync_max_delete", "sync_compare",
                "verify_boot", "verify_boot_marker"):
        if policy.get(key) is not None:
            form[f"policy.{key}"] = str(policy[key])
    if not spec.get("enabled", True):
        form.pop("enabled", None)
    return form


def form_field(api_field: str) -> str:
    """The wizard input an API error names (``source_paths.0`` -> ``source_paths``), or ``""``."""
    parts = [p for p in api_field.split(".") if not p.isdigit()]
    if len(parts) > 1 and parts[0] == "destination" and parts[1] in ("s3", "local"):
        del parts[1]  # the discriminated union's tag is not a field
    while parts:
        name = ".".join(parts)
        if name in INPUTS:
            return name
        if name in _ALIASES:
            return _ALIASES[name]
        parts.pop()
    return ""


SECRET_INPUTS = ("destination.secret_access_key", "destination.repository_password", "share_credentials.password")
LABELS = {
    "name": "Job name",
    "agent_id": "Agent",
    "engine": "Backup type",
    "source_paths": "Folders to back up",
    "exclude": "Exclude",
    "disk_source_volume": "Disk or volume",
    "disk_image_format": "Image format",
    "disk_temp_dir": "Temporary folder",
    "hyperv_config.vms": "Virtual machines",
    "destination.type": "Destination",
    "destination_id": "Saved destination",
    "destination.endpoint": "S3 endpoint",
    "destination.bucket": "Bucket",
    "destination.prefix": "Prefix",
    "destination.region": "Region",
    "destination.access_key_id": "Access key ID",
    "destination.secret_access_key": "Secret access key",
    "destination.path": "Folder on the agent",
    "destination.repository_password": "Repository password",
    "storage_mode": "Storage access",
    "share_credentials.username": "Share user name",
    "share_credentials.password": "Share password",
    "schedule.cron": "Schedule",
    "schedule.timezone": "Time zone",
}


def label(name: str) -> str:
    """What the form calls an input (``policy.parallel_disk_reads`` -> "Parallel disk reads")."""
    return LABELS.get(name) or name.rpartition(".")[2].replace("_", " ").capitalize()


def _message(error: Any) -> str:
    """Pydantic's message, in the form's words where it has better ones."""
    if error.get("type") in ("missing", "string_too_short") and not error.get("input"):
        return "Required."
    return str(error.get("msg", ""))


def presubmit_errors(form: Mapping[str, str], secrets_kept: bool = False) -> list[FieldError]:
    """The jobs service's checks that do not need the rest of the form to be valid (schedule,
    time zone, destination secrets), so one submit lists every problem, not one at a time."""
    from e3backup.server.schemas import Schedule
    from e3backup.server.services.jobs import SECRETS_BY_TYPE, validate_schedule

    found: list[FieldError] = []
    try:
        preset = preset_cron(*(str(form.get(f"schedule.{k}", "")).strip() for k in ("preset", "at", "every", "day")))
    except PresetError as e:
        found.append(FieldError(e.field, str(e)))
        preset = ""
    cron = preset or str(form.get("schedule.cron", "")).strip()
    if cron:
        tz = str(form.get("schedule.timezone", "")).strip() or "UTC"
        try:
            validate_schedule(Schedule.model_construct(cron=cron, timezone=tz))
        except FieldError as e:
            found.append(e)
    dest_type = str(form.get("destination.type", "")).strip() or "s3"
    if dest_type == "saved" and not str(form.get("destination_id", "")).strip().isdigit():
        found.append(FieldError("destination_id", "Choose a saved destination."))
    for name in () if secrets_kept else SECRETS_BY_TYPE.get(dest_type, ()):
        if not str(form.get(f"destination.{name}", "")).strip():
            found.append(FieldError(f"destination.{name}", "Required."))
    share_user = str(form.get("share_credentials.username", "")).strip()
    if form.get("share_credentials.password") and not share_user:
        found.append(FieldError("share_credentials.username", "Required with a share password."))
    if share_user and form.get("share_credentials.remove"):
        found.append(FieldError("share_credentials.remove", "Either a new share login or its removal, not both."))
    return found


def field_errors(error: ValidationError | FieldError | None, more: list[FieldError] = ()) -> dict[str, str]:  # type: ignore[assignment]
    """Errors by wizard input name; errors on no input are keyed ``""`` (shown above the form)."""
    from e3backup.server.problems import _field_name

    pairs: list[tuple[str, str]] = []
    if isinstance(error, FieldError):
        pairs = [(error.field, error.message)]
    elif error is not None:
        pairs = [(_field_name(e.get("loc", ())), _message(e)) for e in error.errors()]
    pairs.extend((e.field, e.message) for e in more)
    errors: dict[str, str] = {}
    for api_field, message in pairs:
        if form_field(api_field) in errors and message in errors[form_field(api_field)]:
            continue
        name = form_field(api_field)
        text = message if name else f"{api_field}: {message}" if api_field else message
        errors[name] = f"{errors[name]}; {text}" if name in errors else text
    return errors


__all__ = [
    "CHECKBOXES",
    "ENGINES",
    "ENGINE_LABELS",
    "INPUTS",
    "LABELS",
    "SECRET_INPUTS",
    "PresetError",
    "default_form",
    "field_errors",
    "form_field",
    "form_from_job",
    "label",
    "preset_cron",
    "presubmit_errors",
    "spec_from_form",
]
