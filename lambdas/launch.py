"""Launches a queued job: its run spec to S3, a launch template version holding its user data, one CreateFleet.

The guarded QUEUED|INTERRUPTED → LAUNCHING transition is the gate, so a repeated `Job Queued` launches
nothing. Whatever fails after the gate ends as a FAILED job plus a `Job Error` on the bus, and never
leaves an instance running.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from infra.bootstrap import render_user_data
from spotter import catalog
from spotter.aws import client
from spotter.config import LauncherSettings
from spotter.events import SOURCE_LAUNCHER, Bus, JobError, JobLaunched
from spotter.spec import JobSpec, RunSpec
from spotter.status import JobStatus
from spotter.store import Failure, JobsStore, TransitionError

log = logging.getLogger(__name__)

Market = Literal["spot", "on-demand"]
Result = Literal["launched", "failed", "skipped"]

TAG_APP = "spotter:app"
TAG_JOB = "spotter:job"
TAG_ATTEMPT = "spotter:attempt"
APP = "spotter"
LAUNCHABLE = frozenset({JobStatus.QUEUED, JobStatus.INTERRUPTED})
SPOT_ALLOCATION = "price-capacity-optimized"
ON_DEMAND_ALLOCATION = "lowest-price"
SPOT_PRODUCTS = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]
MESSAGE_MAX = 2000
# States an instance of a failed attempt may be in and still cost money.
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
# Only when no subnet names the instance's zone: how long to wait for a new instance to be visible.
INSTANCE_VISIBLE_DELAY_SECONDS = 2
INSTANCE_VISIBLE_ATTEMPTS = 15


class LaunchFailed(Exception):
    """EC2 gave no instance, or an input the launch needs is missing; the message is for people."""


@dataclass(frozen=True)
class Outcome:
    job_id: str
    result: Result
    attempt: int | None = None
    market: Market | None = None
    instance_id: str | None = None
    message: str = ""


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


def _names(values: Iterable[str | None]) -> str:
    return ", ".join(dict.fromkeys(v for v in values if v))


@dataclass
class Launcher:
    settings: LauncherSettings
    store: JobsStore
    bus: Bus
    ec2: Any
    s3: Any

    @classmethod
    def from_settings(cls, settings: LauncherSettings) -> Launcher:
        return cls(
            settings,
            JobsStore(settings.jobs_table),
            Bus(settings.bus_name),
            client("ec2", settings.region),
            client("s3", settings.region),
        )

    def launch(self, job_id: str) -> Outcome:
        """Launch the job's next attempt, or return `skipped` if it is not waiting for one."""
        rec = self.store.find(job_id)
        if rec is None:
            return Outcome(job_id, "skipped", message="no such job")
        if rec.status not in LAUNCHABLE:
            return Outcome(job_id, "skipped", rec.attempt, message=f"job is {rec.status.value}")
        attempt = rec.attempt + 1
        try:
            self.store.mark_launching(job_id, attempt)
        except TransitionError as e:
            return Outcome(job_id, "skipped", attempt, message=str(e))  # another delivery took it
        market: Market = "spot" if rec.spec.params.spot else "on-demand"
        try:
            event = self._launch(rec.spec, attempt, market)
        except LaunchFailed as e:
            return self._fail(job_id, attempt, market, str(e))
        except Exception as e:
            log.exception("launch failed", extra={"attempt": attempt})
            return self._fail(job_id, attempt, market, f"The launcher failed: {type(e).__name__}: {e}")
        return Outcome(job_id, "launched", attempt, event.market, event.instance_id)

    # -- the steps ----------------------------------------------------------------------------------

    def _launch(self, spec: JobSpec, attempt: int, market: Market) -> JobLaunched:
        spec_uri = self._write_run_spec(spec, attempt)
        user_data = render_user_data(
            job_id=spec.job_id,
            spec_uri=spec_uri,
            agent_uri=f"s3://{self.settings.bucket}/{self.settings.agent_key}",
            agent_sha256=self._agent_sha256(),
            max_minutes=spec.max_minutes,
            region=self.settings.region,
        )
        zones = self._subnet_zones()
        template_id, version = self._create_version(spec.job_id, attempt, user_data)
        try:
            return self._fleet(spec, attempt, market, template_id, version, zones)
        finally:
            self._delete_version(template_id, version)

    def _write_run_spec(self, spec: JobSpec, attempt: int) -> str:
        run = RunSpec(
            spec=spec,
            attempt=attempt,
            bucket=self.settings.bucket,
            bus_name=self.settings.bus_name,
            region=self.settings.region,
            classes=catalog.dataset(spec.dataset).classes,
        )
        key = f"{run.prefix}job.json"
        self.s3.put_object(
            Bucket=self.settings.bucket,
            Key=key,
            Body=run.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
        return f"s3://{self.settings.bucket}/{key}"

    def _agent_sha256(self) -> str:
        where = f"s3://{self.settings.bucket}/{self.settings.agent_key}"
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

    def _fleet_request(
        self, spec: JobSpec, attempt: int, market: Market, template_id: str, version: int
    ) -> dict[str, Any]:
        """CreateFleet arguments: one instance, any of the spec's types in any of the subnets."""
        types = spec.instance_types()
        overrides = [{"InstanceType": t, "SubnetId": s} for t in types for s in self.settings.subnets]
        request: dict[str, Any] = {
            "Type": "instant",
            "ClientToken": f"{spec.job_id}-{attempt}",  # a retried call returns the first call's instance
            "LaunchTemplateConfigs": [
                {
                    "LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": str(version)},
                    "Overrides": overrides or [{"InstanceType": t} for t in types],
                }
            ],
            "TargetCapacitySpecification": {"TotalTargetCapacity": 1, "DefaultTargetCapacityType": market},
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": TAG_JOB, "Value": spec.job_id},
                        {"Key": TAG_ATTEMPT, "Value": str(attempt)},
                        {"Key": TAG_APP, "Value": APP},
                    ],
                }
            ],
        }
        if market == "spot":
            request["SpotOptions"] = {"AllocationStrategy": SPOT_ALLOCATION}
        else:
            request["OnDemandOptions"] = {"AllocationStrategy": ON_DEMAND_ALLOCATION}
        return request

    def _create_fleet(
        self, spec: JobSpec, market: Market, request: dict[str, Any], zones: dict[str, str]
    ) -> dict[str, Any]:
        try:
            resp: dict[str, Any] = self.ec2.create_fleet(**request)
        except ClientError as e:
            # Some refusals (limits, bad parameters) come as an error rather than in `Errors`.
            err = e.response.get("Error", {})
            failed = [{"ErrorCode": err.get("Code"), "ErrorMessage": err.get("Message")}]
            raise LaunchFailed(_no_capacity_message(spec, market, request, failed, zones)) from e
        return resp

    def _fleet(
        self, spec: JobSpec, attempt: int, market: Market, template_id: str, version: int, zones: dict[str, str]
    ) -> JobLaunched:
        request = self._fleet_request(spec, attempt, market, template_id, version)
        launched: list[str] = []
        try:
            resp = self._create_fleet(spec, market, request, zones)
            instances = [i for i in resp.get("Instances", []) if i.get("InstanceIds")]
            if resp.get("Errors"):
                log.info("fleet errors", extra={"errors": resp["Errors"], "launched": bool(instances)})
            if not instances:
                raise LaunchFailed(_no_capacity_message(spec, market, request, resp.get("Errors", []), zones))
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
            got: Market = "spot" if instance.get("Lifecycle", market) == "spot" else "on-demand"
            event = JobLaunched(
                job_id=spec.job_id,
                attempt=attempt,
                instance_id=launched[0],
                instance_type=instance_type,
                availability_zone=zone,
                market=got,
                price_usd_hour=self._price(instance_type, zone, got),
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
            gpu = catalog.GPU_TYPES.get(instance_type)
            return gpu.on_demand_usd_hour if gpu else None
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

    def _fail(self, job_id: str, attempt: int, market: Market, message: str) -> Outcome:
        message = message[:MESSAGE_MAX]
        log.warning("launch failed", extra={"attempt": attempt, "reason": message})
        try:
            self.store.mark_failed(job_id, Failure(phase="launch", kind="launch", message=message), attempt=attempt)
        except TransitionError as e:
            # Decided meanwhile (e.g. cancelled): that outcome stands and is announced by whoever made it.
            log.warning("job not marked failed", extra={"reason": str(e)})
        else:
            error = JobError(job_id=job_id, attempt=attempt, phase="launch", kind="launch", message=message)
            self.bus.put(error, source=SOURCE_LAUNCHER)
        return Outcome(job_id, "failed", attempt, market, message=message)


def _no_capacity_message(
    spec: JobSpec, market: Market, request: dict[str, Any], errors: list[dict[str, Any]], zones: dict[str, str]
) -> str:
    """Which types and zones were tried and what EC2 said, one line per error code."""
    tried = request["LaunchTemplateConfigs"][0]["Overrides"]
    types = _names(o["InstanceType"] for o in tried)
    where = _names(zones.get(o.get("SubnetId", ""), o.get("SubnetId")) for o in tried) or "the default subnets"
    lines = [f"No {market} instance for {spec.job_id}: tried {types} in {where}."]
    by_code: dict[str, tuple[list[str], str]] = {}
    for err in errors:
        choices, _ = by_code.setdefault(err.get("ErrorCode") or "Unknown", ([], err.get("ErrorMessage") or ""))
        o = err.get("LaunchTemplateAndOverrides", {}).get("Overrides")
        if o:
            zone = zones.get(o.get("SubnetId", "")) or o.get("AvailabilityZone") or o.get("SubnetId") or "?"
            choices.append(f"{o.get('InstanceType', '?')} in {zone}")
    for code, (choices, text) in by_code.items():
        lines.append(code + (f" ({_names(choices)})" if choices else "") + (f": {text}" if text else ""))
    if not errors:
        lines.append("EC2 returned no instance and no error.")
    return "\n".join(lines)
