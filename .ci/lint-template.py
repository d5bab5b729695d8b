#!/usr/bin/env python3
"""Lints infra/template.yaml the way CloudFormation will see it: the SAM
transform is applied first (aws-sam-translator, offline), then cfn-lint
checks the resulting CloudFormation. Plain cfn-lint on a SAM template does
not look inside AWS::Serverless::Function properties, so an undefined !Ref
in Environment or Policies, a misspelt event property or `rate(1 dai)` would
pass it.

  .ci/lint-template.py              lint the template
  .ci/lint-template.py --self-test  also check that each of those mistakes,
                                    planted in a copy, fails the lint
"""
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform

# The transform needs a region to build ARNs; nothing is sent anywhere.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"


class OfflinePolicies:
    """The managed-policy lookup without AWS: the template names no managed
    policy by name (SAM policy templates and ARNs need no lookup)."""

    def load(self):
        return {}


def translate(template):
    # Parameters without defaults get placeholder values for the transform.
    values = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
              "AWS::Partition": "aws", "AWS::StackName": "syncline"}
    for name, spec in template.get("Parameters", {}).items():
        if "Default" not in spec:
            values[name] = "placeholder"
    template = copy.deepcopy(template)
    # What `sam package` does: local code paths become S3 locations.
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://syncline-artifacts/{name}.zip"
    return transform(template, values, OfflinePolicies())


RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\((\S+ ){5}\S+\)$")
AT = re.compile(r"^at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)$")


def schedule_errors(translated):
    """Schedule expressions EventBridge would refuse. cfn-lint checks those
    of AWS::Events::Rule but not of AWS::Scheduler::Schedule (what SAM's
    ScheduleV2 events become), so both are checked here."""
    errors = []
    for name, resource in translated.get("Resources", {}).items():
        if resource.get("Type") not in ("AWS::Scheduler::Schedule", "AWS::Events::Rule"):
            continue
        expression = resource.get("Properties", {}).get("ScheduleExpression")
        if not isinstance(expression, str):
            continue  # an intrinsic function: resolved at deploy time
        rate = RATE.match(expression)
        valid = (
            (rate is not None and int(rate.group(1)) >= 1
             and (int(rate.group(1)) == 1) == (not rate.group(2).endswith("s")))
            or CRON.match(expression) is not None
            or (resource["Type"] == "AWS::Scheduler::Schedule" and AT.match(expression) is not None)
        )
        if not valid:
            errors.append(f"{name}: ScheduleExpression {expression!r} is not rate(N unit), cron(...) or at(...)")
    return errors


def lint(template):
    """cfn-lint findings (error level) for the translated template."""
    try:
        translated = translate(template)
    except Exception as e:  # the transform itself refusing is a finding
        return [f"SAM transform: {e}"]
    schedules = schedule_errors(translated)
    if schedules:
        return schedules
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(translated, f, default=str)
        path = f.name
    run = subprocess.run(
        ["cfn-lint", "--format", "parseable", "--non-zero-exit-code", "error", path],
        capture_output=True, text=True)
    findings = [line for line in run.stdout.splitlines() if line.strip()]
    errors = [line for line in findings if ":E" in line or ":error" in line.lower()]
    if run.returncode != 0 and not errors:
        errors = findings or [run.stderr.strip() or f"cfn-lint exited {run.returncode}"]
    return errors


def function(template, name):
    return template["Resources"][name]["Properties"]


def planted_mistakes(template):
    """(description, broken copy) for each mistake plain cfn-lint misses."""
    cases = []
    t = copy.deepcopy(template)
    env = function(t, "WebhookFunction").setdefault("Environment", {}).setdefault("Variables", {})
    env["BROKEN"] = {"Ref": "NoSuchThing"}
    cases.append(("undefined !Ref in a function's Environment", t))
    t = copy.deepcopy(template)
    function(t, "WebhookFunction").setdefault("Policies", []).append(
        {"DynamoDBReadPolicy": {"TableName": {"Ref": "NoSuchTable"}}})
    cases.append(("undefined !Ref in a function's Policies", t))
    t = copy.deepcopy(template)
    events = function(t, "ScheduledSyncFunction")["Events"]
    schedule = next(e for e in events.values() if e["Type"].startswith("Schedule"))
    schedule["Properties"]["ScheduleExpresion"] = schedule["Properties"].pop("ScheduleExpression")
    cases.append(("misspelt event property (ScheduleExpresion)", t))
    t = copy.deepcopy(template)
    events = function(t, "ScheduledSyncFunction")["Events"]
    schedule = next(e for e in events.values() if e["Type"].startswith("Schedule"))
    schedule["Properties"]["ScheduleExpression"] = "rate(1 dai)"
    cases.append(("rate(1 dai)", t))
    return cases


def main():
    template = cfn_yaml.load(str(TEMPLATE))
    errors = lint(template)
    if errors:
        print("infra/template.yaml fails the lint after the SAM transform:")
        print("\n".join(errors))
        return 1
    resources = translate(template)["Resources"]
    print(f"infra/template.yaml: SAM transform and cfn-lint clean "
          f"({len(resources)} CloudFormation resources)")
    if "--self-test" in sys.argv:
        failed = False
        for description, broken in planted_mistakes(template):
            found = lint(broken)
            print(f"  planted {description}: {'caught' if found else 'NOT caught'}")
            if found:
                print(f"    {found[0][:200]}")
            failed |= not found
        if failed:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
