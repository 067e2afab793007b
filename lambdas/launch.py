"""Launches a job's next attempt: the caps checked, its run spec to S3, a launch template version holding its user
data, then one CreateFleet per option set (spot, then on-demand, as the spec's spot mode says) until one places it.

The guarded QUEUED|INTERRUPTED → LAUNCHING transition is the gate, so a repeated `Job Queued` launches
nothing. Whatever fails after the gate ends as a FAILED job plus a `Job Error` on the bus, and never
leaves an instance running. The decisions (option sets, what a fleet's errors mean, the caps, the resume
point, the message the channel reads) are pure functions over plain data, at the top of this module.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.userdata import render_user_data
from spotter import catalog, cost, layout
from spotter.aws import client
from spotter.config import LauncherSettings, Settings
from spotter.events import SOURCE_LAUNCHER, Bus, ErrorKind, JobError, JobLaunched
from spotter.models import ModelRegistry
from spotter.spec import JobSpec, ResumeFrom, RunSpec, SpotMode
from spotter.status import JobStatus
from spotter.store import Failure, JobRecord, JobsStore, TransitionError

log = logging.getLogger(__name__)

Market = Literal["spot", "on-demand"]
Result = Literal["launched", "failed", "skipped"]
# Why a pool (instance type × zone in one market) gave no instance.
Reason = Literal["capacity", "quota", "launch"]

TAG_APP = "spotter:app"
TAG_JOB = "spotter:job"
TAG_ATTEMPT = "spotter:attempt"
APP = "spotter"
LAUNCHABLE = frozenset({JobStatus.QUEUED, JobStatus.INTERRUPTED})
SPOT_ALLOCATION = "price-capacity-optimized"
ON_DEMAND_ALLOCATION = "lowest-price"
SPOT_PRODUCTS = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]
MESSAGE_MAX = 2000
CLIENT_TOKEN_MAX = 64  # CreateFleet's limit
# States an instance of a failed attempt may be in and still cost money.
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
# States in which an instance counts against the concurrent instance cap.
CAP_STATES = ["pending", "running"]
# Only when no subnet names the instance's zone: how long to wait for a new instance to be visible.
INSTANCE_VISIBLE_DELAY_SECONDS = 2
INSTANCE_VISIBLE_ATTEMPTS = 15

# CreateFleet error codes (in `Errors[]`, or as the call's own error) meaning EC2 had nothing to give in that pool
# now: another market, type or zone may have. See the EC2 API's error codes.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",  # also "There is no Spot capacity available that matches your request."
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "UnfulfillableCapacity",
        "SpotMaxPriceTooLow",
        "Unsupported",  # the type is not offered in that zone
        "InsufficientFreeAddressesInSubnet",
    }
)
# The account's quota for the market is used up (spot and on-demand quotas are separate).
QUOTA_CODES = frozenset({"VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "InstanceLimitExceeded"})


class LaunchFailed(Exception):
    """EC2 gave no instance, a cap refused it, or an input the launch needs is missing; the message is for people."""

    def __init__(self, message: str, kind: ErrorKind = "launch", market: Market | None = None) -> None:
        super().__init__(message)
        self.message, self.kind, self.market = message, kind, market


@dataclass(frozen=True)
class Outcome:
    job_id: str
    result: Result
    attempt: int | None = None
    market: Market | None = None
    instance_id: str | None = None
    message: str = ""


# -- option sets: which CreateFleet calls a launch makes, in order -------------------------------------------


@dataclass(frozen=True)
class OptionSet:
    """One CreateFleet: one market over every instance type the spec allows, in every subnet."""

    market: Market
    instance_types: tuple[str, ...]


def option_sets(spot: SpotMode, instance_types: Sequence[str]) -> tuple[OptionSet, ...]:
    """auto: spot, then on-demand if spot has nothing anywhere; true: spot only; false: on-demand only."""
    types = tuple(instance_types)
    spot_set, on_demand = OptionSet("spot", types), OptionSet("on-demand", types)
    return {"auto": (spot_set, on_demand), "true": (spot_set,), "false": (on_demand,)}[spot]


def client_token(job_id: str, attempt: int, option: OptionSet) -> str:
    """Idempotency per attempt and option set: a retried call returns the same instance, the next set asks anew."""
    token = f"{job_id}-{attempt}-{option.market}"
    return token if len(token) <= CLIENT_TOKEN_MAX else hashlib.sha256(token.encode()).hexdigest()[:CLIENT_TOKEN_MAX]


# -- what a fleet answer without an instance means ------------------------------------------------------------


@dataclass(frozen=True)
class Tried:
    """One pool a fleet asked for and got nothing from, with EC2's reason."""

    market: Market
    instance_type: str
    zone: str
    code: str | None  # None: EC2 placed nothing there and named no error
    message: str = ""

    @property
    def reason(self) -> Reason:
        return reason_of(self.code)


def reason_of(code: str | None) -> Reason:
    if code is None or code in CAPACITY_CODES:
        return "capacity"
    return "quota" if code in QUOTA_CODES else "launch"


def tried_pools(
    market: Market, overrides: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]], zones: dict[str, str]
) -> list[Tried]:
    """Every override of a fleet that placed no instance, with the errors EC2 named for it.

    An error naming no override (or the call's own refusal) applies to every override no error names.
    """

    def where(o: dict[str, Any]) -> str:
        subnet = o.get("SubnetId") or ""
        return zones.get(subnet) or o.get("AvailabilityZone") or subnet or "any zone"

    def names(o: dict[str, Any], named: dict[str, Any]) -> bool:
        if named.get("InstanceType") not in (None, o["InstanceType"]):
            return False
        return not named.get("SubnetId") or named["SubnetId"] == o.get("SubnetId")

    named = [(e, e["LaunchTemplateAndOverrides"]["Overrides"]) for e in errors if _named_overrides(e)]
    general = [e for e in errors if not _named_overrides(e)]
    out: list[Tried] = []
    for o in overrides:
        # One fleet asks one market: its errors are that market's, whatever their Lifecycle says.
        errs = [e for e, n in named if names(o, n)] or general
        reasons = dict.fromkeys((e.get("ErrorCode"), e.get("ErrorMessage") or "") for e in errs) or {(None, ""): None}
        out.extend(Tried(market, o["InstanceType"], where(o), code, text) for code, text in reasons)
    return out


def _named_overrides(error: dict[str, Any]) -> bool:
    return bool(error.get("LaunchTemplateAndOverrides", {}).get("Overrides"))


def falls_through(tried: Sequence[Tried]) -> bool:
    """Whether the next option set may succeed where this one failed: EC2 lacked capacity or quota, nothing else."""
    return bool(tried) and all(t.reason != "launch" for t in tried)


def failure_kind(tried: Sequence[Tried]) -> ErrorKind:
    """A launch EC2 refused for other reasons is a `launch` failure; a quota to raise comes before waiting."""
    reasons = {t.reason for t in tried}
    if "launch" in reasons:
        return "launch"
    return "quota" if "quota" in reasons else "capacity"


# -- the message the channel reads (Slack mrkdwn) -------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    name: str
    code: str


# EC2's vCPU-based quotas, by market and instance family (Service Quotas → Amazon EC2).
QUOTAS: dict[tuple[Market, str], Quota] = {
    ("spot", "G"): Quota("All G and VT Spot Instance Requests", "L-3819A6DF"),
    ("spot", "P"): Quota("All P Spot Instance Requests", "L-7212CCBC"),
    ("spot", "Standard"): Quota("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", "L-34B43A08"),
    ("on-demand", "G"): Quota("Running On-Demand G and VT instances", "L-DB2E81BA"),
    ("on-demand", "P"): Quota("Running On-Demand P instances", "L-417A185B"),
    ("on-demand", "Standard"): Quota("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "L-1216C47A"),
}
_SIZE_RE = re.compile(r"^(\d*)xlarge$")


def quota_family(instance_type: str) -> str:
    family = instance_type.split(".", 1)[0]
    if family.startswith(("g", "vt")):
        return "G"
    return "P" if family.startswith("p") else "Standard"


def vcpus(instance_type: str) -> int | None:
    """vCPUs of a size EC2 names by its xlarge multiple (4 per xlarge: g4dn.xlarge 4, g5.12xlarge 48)."""
    size = instance_type.partition(".")[2]
    if size == "large":
        return 2
    m = _SIZE_RE.match(size)
    return 4 * int(m.group(1) or 1) if m else None


def quota_console_url(region: str, quota: Quota) -> str:
    return f"https://{region}.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/{quota.code}"


def quota_advice(market: Market, instance_types: Sequence[str], region: str) -> str:
    """Which Service Quota to raise, where, and by how much at least, for the types that hit it."""
    quota = QUOTAS[(market, quota_family(instance_types[0]))]
    sized = sorted((n, t) for t in instance_types if (n := vcpus(t)) is not None)
    need = (
        f"; the smallest type asked for, `{sized[0][1]}`, needs {sized[0][0]} vCPUs on top of what runs"
        if sized
        else ""
    )
    return (
        f"To run {market}, raise the EC2 quota *{quota.name}* ({quota.code}) in *{region}*: it counts vCPUs{need}. "
        f"Service Quotas console → AWS services → Amazon EC2 → <{quota_console_url(region, quota)}|{quota.name}> "
        "→ Request increase at account level."
    )


def _escape(text: str) -> str:
    """EC2's words in mrkdwn: &, < and > are Slack's control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _market_summary(tried: Sequence[Tried]) -> str:
    reasons = {t.reason for t in tried}
    if "launch" in reasons:
        return "EC2 refused the request"
    if reasons == {"quota"}:
        return "over the account's quota"
    return "no capacity in any type × zone tried" + (" (and over quota in some)" if "quota" in reasons else "")


def failure_message(job_id: str, tried: Sequence[Tried], region: str) -> str:
    """Every type × zone tried per market with EC2's reason, then what to do about it."""
    by_market: dict[Market, list[Tried]] = {}
    for t in tried:
        by_market.setdefault(t.market, []).append(t)
    head = "; ".join(f"{market}: {_market_summary(ts)}" for market, ts in by_market.items())
    lines = [f"*No instance for `{job_id}`* — {head}."]
    for market, ts in by_market.items():
        groups: dict[tuple[str | None, str], dict[str, list[str]]] = {}
        for t in ts:
            zones = groups.setdefault((t.code, t.message), {}).setdefault(t.instance_type, [])
            if t.zone not in zones:
                zones.append(t.zone)
        lines.append(f"*{market}*")
        for (code, text), by_type in groups.items():
            pools = "; ".join(f"`{name}` in {', '.join(zones)}" for name, zones in by_type.items())
            why = f"{code}: {_escape(text)}" if code and text else code or "EC2 placed no instance and named no error"
            lines.append(f"• {pools} — {why}")
    for market, ts in by_market.items():
        over = list(dict.fromkeys(t.instance_type for t in ts if t.reason == "quota"))
        for family in dict.fromkeys(quota_family(name) for name in over):
            lines.append(quota_advice(market, [n for n in over if quota_family(n) == family], region))
    if any(t.reason == "capacity" for t in tried):
        markets = set(by_market)
        hint = "" if "on-demand" in markets else ", or `spot=auto` to fall back to on-demand"
        lines.append(
            "Capacity for GPU types comes and goes: try again later, another type with `instance=`" + hint + "."
        )
    return _clip("\n".join(lines))


def _clip(message: str) -> str:
    return message if len(message) <= MESSAGE_MAX else message[: MESSAGE_MAX - 1] + "…"


# -- caps and resume --------------------------------------------------------------------------------------------


def over_caps(job_id: str, live_instances: int, spent_today_usd: float, settings: Settings) -> str | None:
    """Why the launch must not go ahead (a cap is reached), or None."""
    cap = settings.max_concurrent_instances
    if live_instances >= cap:
        return _clip(
            f"*Over the instance cap*: {live_instances} Spotter instance(s) are starting or running and the cap is "
            f"{cap} (template parameter `MaxConcurrentInstances`). `{job_id}` was not launched: start it again when "
            "one finishes, or raise the cap."
        )
    budget = settings.max_daily_spend_usd
    if spent_today_usd >= budget:
        return _clip(
            f"*Over the daily spend cap*: ${spent_today_usd:,.2f} spent today (UTC) and the cap is ${budget:,.2f} "
            f"(template parameter `MaxDailySpendUsd`). `{job_id}` was not launched: start it again tomorrow, "
            "or raise the cap."
        )
    return None


def resume_from(rec: JobRecord, attempt: int) -> ResumeFrom | None:
    """The checkpoint a relaunch starts from; None for a first attempt or when nothing was saved."""
    cp = rec.resumable_checkpoint
    if attempt <= 1 or cp is None:
        return None
    return ResumeFrom(key=cp.key, sha256=cp.sha256, size=cp.size, current=cp.current, attempt=cp.attempt)


# -- EC2 request shapes -----------------------------------------------------------------------------------------


def _request_shaped(value: Any, shape: Any) -> Any:
    """Keep only what a request shape accepts: describe answers carry read-only fields (MetadataOptions.State)."""
    if shape.type_name == "structure":
        return {k: _request_shaped(v, shape.members[k]) for k, v in value.items() if k in shape.members}
    if shape.type_name == "list":
        return [_request_shaped(v, shape.member) for v in value]
    return value


def _merge_tags(
    specs: Iterable[dict[str, Any]], tags: dict[str, str], resource_types: Iterable[str]
) -> list[dict[str, Any]]:
    """The template's TagSpecifications with this attempt's tags added to each resource type."""
    by_type = {s["ResourceType"]: {t["Key"]: t["Value"] for t in s.get("Tags", [])} for s in specs}
    for rt in resource_types:
        by_type[rt] = {**by_type.get(rt, {}), **tags}
    return [{"ResourceType": rt, "Tags": [{"Key": k, "Value": v} for k, v in kv.items()]} for rt, kv in by_type.items()]


def fleet_request(
    job_id: str, attempt: int, option: OptionSet, subnets: Sequence[str], template_id: str, version: int
) -> dict[str, Any]:
    """CreateFleet arguments: one instance of the option set's market, any of its types in any of the subnets."""
    overrides = [{"InstanceType": t, "SubnetId": s} for t in option.instance_types for s in subnets]
    request: dict[str, Any] = {
        "Type": "instant",
        "ClientToken": client_token(job_id, attempt, option),
        "LaunchTemplateConfigs": [
            {
                "LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": str(version)},
                "Overrides": overrides or [{"InstanceType": t} for t in option.instance_types],
            }
        ],
        "TargetCapacitySpecification": {"TotalTargetCapacity": 1, "DefaultTargetCapacityType": option.market},
        "TagSpecifications": [
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": TAG_JOB, "Value": job_id},
                    {"Key": TAG_ATTEMPT, "Value": str(attempt)},
                    {"Key": TAG_APP, "Value": APP},
                ],
            }
        ],
    }
    if option.market == "spot":
        request["SpotOptions"] = {"AllocationStrategy": SPOT_ALLOCATION}
    else:
        request["OnDemandOptions"] = {"AllocationStrategy": ON_DEMAND_ALLOCATION}
    return request


# -- the launcher -----------------------------------------------------------------------------------------------


@dataclass
class Launcher:
    settings: LauncherSettings
    store: JobsStore
    bus: Bus
    ec2: Any
    s3: Any
    clock: Callable[[], float] = field(default=time.time)

    @classmethod
    def from_settings(cls, settings: LauncherSettings) -> Launcher:
        return cls(
            settings,
            JobsStore(settings.jobs_table, record_days=settings.job_record_days),
            Bus(settings.bus_name),
            client("ec2", settings.region),
            client("s3", settings.region),
        )

    def launch(self, job_id: str, *, after_attempt: int | None = None) -> Outcome:
        """Launch the job's next attempt, or return `skipped` if it is not waiting for one.

        `after_attempt`: only if the job is still on that attempt (a relaunch asked for after it was interrupted).
        """
        rec = self.store.find(job_id)
        if rec is None:
            return Outcome(job_id, "skipped", message="no such job")
        if rec.status not in LAUNCHABLE:
            return Outcome(job_id, "skipped", rec.attempt, message=f"job is {rec.status.value}")
        if after_attempt is not None and rec.attempt != after_attempt:
            return Outcome(
                job_id, "skipped", rec.attempt, message=f"job is on attempt {rec.attempt}, not {after_attempt}"
            )
        attempt = rec.attempt + 1
        try:
            self.store.mark_launching(job_id, attempt)
        except TransitionError as e:
            return Outcome(job_id, "skipped", attempt, message=str(e))  # another delivery took it
        options = option_sets(rec.spec.params.spot, rec.spec.instance_types())
        try:
            event = self._launch(rec, attempt, options)
        except LaunchFailed as e:
            return self._fail(job_id, attempt, e.market, e.message, e.kind)
        except Exception as e:
            log.exception("launch failed", extra={"attempt": attempt})
            return self._fail(job_id, attempt, None, f"The launcher failed: {type(e).__name__}: {e}", "launch")
        return Outcome(job_id, "launched", attempt, event.market, event.instance_id)

    # -- the steps ----------------------------------------------------------------------------------

    def _launch(self, rec: JobRecord, attempt: int, options: Sequence[OptionSet]) -> JobLaunched:
        spec = rec.spec
        self._check_caps(spec.job_id)
        resume = resume_from(rec, attempt)
        spec_uri = self._write_run_spec(spec, attempt, resume)
        user_data = render_user_data(
            job_id=spec.job_id,
            spec_uri=spec_uri,
            agent_uri=layout.s3_uri(self.settings.bucket, self.settings.agent_key),
            agent_sha256=self._agent_sha256(),
            max_minutes=spec.max_minutes,
            region=self.settings.region,
        )
        zones = self._subnet_zones()
        template_id, version = self._create_version(spec.job_id, attempt, user_data)
        try:
            return self._fleets(spec, attempt, options, template_id, version, zones, resume)
        finally:
            self._delete_version(template_id, version)

    def _check_caps(self, job_id: str) -> None:
        now = self.clock()
        spent = cost.spend_since(self.store.list_since(cost.day_start(now)), now)
        refusal = over_caps(job_id, self._live_instances(job_id), spent, self.settings)
        if refusal:
            raise LaunchFailed(refusal, kind="budget")

    def _live_instances(self, job_id: str) -> int:
        """Spotter instances starting or running, other than this job's own (an attempt may still be going)."""
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": f"tag:{TAG_APP}", "Values": [APP]},
                {"Name": "instance-state-name", "Values": CAP_STATES},
            ]
        )
        instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        return sum(1 for i in instances if {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get(TAG_JOB) != job_id)

    def _write_run_spec(self, spec: JobSpec, attempt: int, resume: ResumeFrom | None) -> str:
        run = RunSpec(
            spec=spec,
            attempt=attempt,
            bucket=self.settings.bucket,
            bus_name=self.settings.bus_name,
            region=self.settings.region,
            classes=catalog.dataset(spec.dataset).classes,
            resume=resume,
            initial_weights=(
                ModelRegistry(self.s3, self.settings.bucket).initial_weights(spec.dataset, spec.model)
                if spec.params.from_ == "promoted"
                else None
            ),
        )
        key = layout.run_spec(spec.job_id)
        self.s3.put_object(
            Bucket=self.settings.bucket,
            Key=key,
            Body=run.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
        return layout.s3_uri(self.settings.bucket, key)

    def _agent_sha256(self) -> str:
        where = layout.s3_uri(self.settings.bucket, self.settings.agent_key)
        try:
            head = self.s3.head_object(Bucket=self.settings.bucket, Key=self.settings.agent_key)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "?")
            raise LaunchFailed(
                f"The agent package {where} cannot be read ({code}); publish it with `python -m infra.package publish`."
            ) from None
        sha256 = head.get("Metadata", {}).get("sha256")
        if not sha256:
            raise LaunchFailed(
                f"The agent package {where} has no sha256 metadata; publish it with `python -m infra.package publish`."
            )
        return str(sha256)

    def _subnet_zones(self) -> dict[str, str]:
        if not self.settings.subnets:
            return {}
        subnets = self.ec2.describe_subnets(SubnetIds=list(self.settings.subnets))["Subnets"]
        return {s["SubnetId"]: s["AvailabilityZone"] for s in subnets}

    def _template_ref(self) -> dict[str, str]:
        name = self.settings.launch_template
        return {"LaunchTemplateId": name} if name.startswith("lt-") else {"LaunchTemplateName": name}

    def _create_version(self, job_id: str, attempt: int, user_data: str) -> tuple[str, int]:
        """A version with the template's default data plus this attempt's user data and tags.

        The whole data is written out rather than using SourceVersion, so the version stands on its own.
        """
        default = self.ec2.describe_launch_template_versions(**self._template_ref(), Versions=["$Default"])
        current = default["LaunchTemplateVersions"][0]
        shape = self.ec2.meta.service_model.shape_for("RequestLaunchTemplateData")
        data = _request_shaped(current["LaunchTemplateData"], shape)
        tags = {TAG_APP: APP, TAG_JOB: job_id, TAG_ATTEMPT: str(attempt)}
        data["TagSpecifications"] = _merge_tags(data.get("TagSpecifications", []), tags, ("instance", "volume"))
        data["UserData"] = base64.b64encode(user_data.encode()).decode()
        created = self.ec2.create_launch_template_version(
            LaunchTemplateId=current["LaunchTemplateId"],
            LaunchTemplateData=data,
            VersionDescription=f"{job_id} attempt {attempt}",
            ClientToken=f"{job_id}-{attempt}",
        )["LaunchTemplateVersion"]
        return created["LaunchTemplateId"], int(created["VersionNumber"])

    def _delete_version(self, template_id: str, version: int) -> None:
        """Best effort: the instance has its user data already; a leftover version only takes a slot."""
        try:
            resp = self.ec2.delete_launch_template_versions(LaunchTemplateId=template_id, Versions=[str(version)])
            for failed in resp.get("UnsuccessfullyDeletedLaunchTemplateVersions", []):
                log.warning("launch template version not deleted", extra={"version": version, "error": failed})
        except Exception as e:
            log.warning("launch template version not deleted", extra={"version": version, "error": repr(e)})

    def _fleets(
        self,
        spec: JobSpec,
        attempt: int,
        options: Sequence[OptionSet],
        template_id: str,
        version: int,
        zones: dict[str, str],
        resume: ResumeFrom | None,
    ) -> JobLaunched:
        """One fleet per option set until one places the instance, or say everything that was tried."""
        tried: list[Tried] = []
        for option in options:
            placed = self._fleet(spec, attempt, option, template_id, version, zones, resume)
            if isinstance(placed, JobLaunched):
                return placed
            tried.extend(placed)
            log.info("no instance", extra={"market": option.market, "reasons": sorted({t.reason for t in placed})})
            if not falls_through(placed):
                break
        markets = list(dict.fromkeys(t.market for t in tried))
        raise LaunchFailed(
            failure_message(spec.job_id, tried, self.settings.region),
            kind=failure_kind(tried),
            market=markets[-1] if markets else None,
        )

    def _create_fleet(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            resp: dict[str, Any] = self.ec2.create_fleet(**request)
        except ClientError as e:
            # Some refusals (quotas, bad parameters) come as the call's error rather than in `Errors`.
            err = e.response.get("Error", {})
            return {"Instances": [], "Errors": [{"ErrorCode": err.get("Code"), "ErrorMessage": err.get("Message")}]}
        return resp

    def _fleet(
        self,
        spec: JobSpec,
        attempt: int,
        option: OptionSet,
        template_id: str,
        version: int,
        zones: dict[str, str],
        resume: ResumeFrom | None,
    ) -> JobLaunched | list[Tried]:
        """The option set's CreateFleet: the launched instance recorded and announced, or the pools that gave none."""
        request = fleet_request(spec.job_id, attempt, option, self.settings.subnets, template_id, version)
        launched: list[str] = []
        try:
            resp = self._create_fleet(request)
            instances = [i for i in resp.get("Instances", []) if i.get("InstanceIds")]
            if resp.get("Errors"):
                log.info("fleet errors", extra={"errors": resp["Errors"], "launched": bool(instances)})
            if not instances:
                overrides = request["LaunchTemplateConfigs"][0]["Overrides"]
                return tried_pools(option.market, overrides, resp.get("Errors", []), zones)
            instance = instances[0]
            launched = list(instance["InstanceIds"])
            overrides = instance.get("LaunchTemplateAndOverrides", {}).get("Overrides", {})
            instance_type = instance.get("InstanceType") or overrides["InstanceType"]
            zone = (
                instance.get("AvailabilityZone")
                or zones.get(overrides.get("SubnetId", ""))
                or overrides.get("AvailabilityZone")
                or self._instance_zone(launched[0])
            )
            got: Market = "spot" if instance.get("Lifecycle", option.market) == "spot" else "on-demand"
            event = JobLaunched(
                job_id=spec.job_id,
                attempt=attempt,
                instance_id=launched[0],
                instance_type=instance_type,
                availability_zone=zone,
                market=got,
                price_usd_hour=self._price(instance_type, zone, got),
                resumed_from=resume.current if resume is not None else None,
            )
            self.store.record_launch(event)
            self.bus.put(event)
        except Exception:
            self._terminate(spec.job_id, attempt, launched)
            raise
        log.info(
            "launched",
            extra={
                "instance_id": event.instance_id,
                "instance_type": instance_type,
                "availability_zone": zone,
                "market": got,
                "price_usd_hour": event.price_usd_hour,
            },
        )
        return event

    def _instance_zone(self, instance_id: str) -> str:
        self.ec2.get_waiter("instance_exists").wait(
            InstanceIds=[instance_id],
            WaiterConfig={"Delay": INSTANCE_VISIBLE_DELAY_SECONDS, "MaxAttempts": INSTANCE_VISIBLE_ATTEMPTS},
        )
        found = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        return str(found["Placement"]["AvailabilityZone"])

    def _price(self, instance_type: str, zone: str, market: Market) -> float | None:
        """USD per hour: the zone's current spot price, or the catalog's on-demand list price."""
        if market == "on-demand":
            return cost.on_demand_price(instance_type)
        try:
            history = self.ec2.describe_spot_price_history(
                InstanceTypes=[instance_type],
                ProductDescriptions=SPOT_PRODUCTS,
                StartTime=datetime.now(UTC),
                Filters=[{"Name": "availability-zone", "Values": [zone]}],
            )["SpotPriceHistory"]
        except (ClientError, BotoCoreError) as e:
            log.warning("no spot price", extra={"instance_type": instance_type, "error": repr(e)})
            return None
        latest = max(history, key=lambda p: p["Timestamp"], default=None)
        return float(latest["SpotPrice"]) if latest else None

    def _terminate(self, job_id: str, attempt: int, known: list[str]) -> None:
        """Terminate whatever this attempt launched (by id, and by tag for a call that failed midway)."""
        try:
            found = self.ec2.describe_instances(
                Filters=[
                    {"Name": f"tag:{TAG_JOB}", "Values": [job_id]},
                    {"Name": f"tag:{TAG_ATTEMPT}", "Values": [str(attempt)]},
                    {"Name": "instance-state-name", "Values": LIVE_STATES},
                ]
            )
            ids = set(known) | {i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]}
            if ids:
                self.ec2.terminate_instances(InstanceIds=sorted(ids))
                log.warning("terminated the failed attempt's instances", extra={"instance_ids": sorted(ids)})
        except (ClientError, BotoCoreError):
            log.exception(
                "could not terminate the failed attempt's instances (their dead-man switch still will)",
                extra={"instance_ids": known},
            )

    def _fail(self, job_id: str, attempt: int, market: Market | None, message: str, kind: ErrorKind) -> Outcome:
        message = _clip(message)
        log.warning("launch failed", extra={"attempt": attempt, "kind": kind, "reason": message})
        try:
            self.store.mark_failed(job_id, Failure(phase="launch", kind=kind, message=message), attempt=attempt)
        except TransitionError as e:
            # Decided meanwhile (e.g. cancelled): that outcome stands and is announced by whoever made it.
            log.warning("job not marked failed", extra={"reason": str(e)})
        else:
            error = JobError(job_id=job_id, attempt=attempt, phase="launch", kind=kind, message=message)
            self.bus.put(error, source=SOURCE_LAUNCHER)
        return Outcome(job_id, "failed", attempt, market, message=message)
