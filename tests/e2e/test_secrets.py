"""The Slack credentials stay in Secrets Manager: across a whole run on the local stack (a job that trains, one that
fails, a bad command, a cancelled job, a click, bad signatures) neither the bot token nor the signing secret appears
in any log, user data, job record, bus event, S3 object or Slack text.

The run is a child process (the stack sets its environment); it prints where each credential was found. It is also
looked for where it must be (the secret's value), so a search that finds nothing cannot pass by accident.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import base64, json, os, sys, tempfile
    from pathlib import Path

    # Every log line of the run (the in-process functions' stdout and stderr) goes to a file searched at the end.
    result = os.fdopen(os.dup(1), "w")
    logs = tempfile.NamedTemporaryFile(prefix="secrets-logs-", delete=False)
    os.dup2(logs.fileno(), 1)
    os.dup2(logs.fileno(), 2)
    import boto3
    from infra.local.stack import LocalStack
    from spotter.status import JobStatus

    lines = []
    stack = LocalStack(trainer="standin", emit=lambda r: lines.append(json.dumps(r, default=str)))
    stack.start()
    try:
        sqs, events = boto3.client("sqs"), boto3.client("events")
        tap = sqs.create_queue(QueueName="secrets-tap")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for bus in (stack.resources.bus_name, "default"):
            events.put_rule(Name=f"tap-{bus}", EventBusName=bus, EventPattern=json.dumps({"account": [{"exists": True}]}))
            events.put_targets(Rule=f"tap-{bus}", EventBusName=bus, Targets=[{"Id": "tap", "Arn": tap_arn}])

        stack.slash("shapes yolov8n epochs=2")
        stack.wait(stack.jobs[-1], JobStatus.SUCCEEDED, 300)
        stack.slash("shapes yolov8n epochs=3 batch=128 img=640")  # dies of CUDA OOM
        stack.wait(stack.jobs[-1], JobStatus.FAILED, 300)
        stack.slash("shapes yolov8n epochs=2 nonsense=1")  # refused with an ephemeral error
        stack.slash("shapes yolov8n epochs=2", signature="bad")
        stack.slash("shapes yolov8n epochs=2", signature="stale")
        stack.slash("shapes yolov8n epochs=20")
        stack.wait(stack.jobs[-1], JobStatus.RUNNING, 300)
        stack.click("cancel", job=stack.jobs[-1])
        stack.wait(stack.jobs[-1], JobStatus.CANCELLED, 300)
        stack.slash("list", command="/train")
        stack.settle()

        sys.stdout.flush(), sys.stderr.flush()
        places = {"stack output": "\\n".join(lines), "logs": Path(logs.name).read_text("utf-8", "replace")}
        for f in sorted(Path(stack.hosts.root).rglob("*")):  # consoles, agent logs, user data, job folders
            if f.is_file():
                places[f"host file {f.relative_to(stack.hosts.root)}"] = f.read_bytes().decode("utf-8", "replace")
        ec2 = boto3.client("ec2")
        for res in ec2.describe_instances()["Reservations"]:
            for inst in res["Instances"]:
                raw = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")
                value = raw["UserData"].get("Value", "")
                places[f"user data {inst['InstanceId']}"] = base64.b64decode(value).decode() if value else ""
        for v in ec2.describe_launch_template_versions(LaunchTemplateId=stack.resources.launch_template_id)[
            "LaunchTemplateVersions"
        ]:
            places[f"launch template v{v['VersionNumber']}"] = json.dumps(v["LaunchTemplateData"], default=str)
            data = v["LaunchTemplateData"].get("UserData")
            if data:
                places[f"launch template v{v['VersionNumber']} user data"] = base64.b64decode(data).decode()
        items = boto3.client("dynamodb").scan(TableName=stack.resources.table)["Items"]
        places["job records"] = json.dumps(items)
        s3 = boto3.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.resources.bucket):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=stack.resources.bucket, Key=obj["Key"])["Body"].read()
                places[f"s3 {obj['Key']}"] = body.decode("utf-8", "replace")
        bus = []
        while True:
            got = sqs.receive_message(QueueUrl=tap, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not got:
                break
            bus += [m["Body"] for m in got]
            sqs.delete_message_batch(
                QueueUrl=tap, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
            )
        places["bus events"] = "\\n".join(bus)
        places["slack"] = json.dumps([c for c in stack.slack.calls], default=str)
        vault = boto3.client("secretsmanager").get_secret_value(SecretId=stack.resources.secret_id)["SecretString"]
        creds = {"bot token": stack.slack.bot_token, "signing secret": stack.signing_secret}
        out = {
            "found": {name: [p for p, text in places.items() if value in text] for name, value in creds.items()},
            "in the secret": {name: value in vault for name, value in creds.items()},
            "sizes": {
                "bus events": len(bus), "job records": len(items), "slack calls": len(stack.slack.calls),
                "user data": sum(1 for p in places if p.startswith("user data")),
                "host files": sum(1 for p in places if p.startswith("host file")),
                "s3 objects": sum(1 for p in places if p.startswith("s3 ")),
                "output lines": len(lines), "log bytes": len(places["logs"]),
            },
            "statuses": [stack.store.get(j).status.value for j in stack.jobs],
        }
    finally:
        stack.stop()
    result.write(json.dumps(out) + "\\n")
    result.flush()
    """
)


def test_the_slack_credentials_appear_nowhere_but_in_their_secret() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["statuses"] == ["SUCCEEDED", "FAILED", "CANCELLED"], out
    assert out["in the secret"] == {"bot token": True, "signing secret": True}
    # Everything the run left was looked at: each kind of place holds something.
    assert all(n > 0 for n in out["sizes"].values()), out["sizes"]
    leaked = {name: places for name, places in out["found"].items() if places}
    assert leaked == {}, leaked
