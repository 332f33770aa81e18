"""Structural rules over template.yaml (SAM) and serverless.yml (Serverless v3).

Run by scripts/check-templates.sh, which also lints both files. The rules
here are the ones a linter does not know: the seven functions and what each
one is given (environment, IAM, triggers), and that both files say the same.

When BAKERY_SLS_TEMPLATE names the CloudFormation that `serverless package`
compiled from serverless.yml, the IAM and event-source rules are checked on
it too (the script sets it). The SAM template is translated in process with
the SAM translator, offline.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
import yaml

# BAKERY_TEMPLATES_DIR lets a check run on a changed copy of the two files.
ROOT = Path(os.environ.get("BAKERY_TEMPLATES_DIR") or Path(__file__).resolve().parents[2])

CRATES = ["order", "notify-baker", "fulfilled", "dispatch", "notify-delivery", "delivered", "feedback"]

# --------------------------------------------------------------------------
# The table of functions (docs/deploy.md and the design say the same).

# crate -> (always set, optional, pairs of which exactly one is set)
ENV = {
    "order": (
        {
            "ORDERS_TABLE",
            "BAKER_TOKEN_PARAMETER",
            "CUSTOMER_TOKEN_SECRET_PARAMETER",
        },
        {"CATALOG_JSON"},
        [],
    ),
    "notify-baker": (
        {"ORDERS_TABLE", "MAIL_FROM", "BAKER_EMAIL", "STREAM_FAILURES_BUCKET", "CUSTOMER_TOKEN_SECRET_PARAMETER"},
        {"PUBLIC_URL"},
        [],
    ),
    # The table feeds the stream: fulfilled never writes to it.
    "fulfilled": ({"ORDERS_TABLE", "BAKER_TOKEN_PARAMETER"}, set(), []),
    "dispatch": ({"ORDERS_TABLE", "DELIVERY_QUEUE_URL", "STREAM_FAILURES_BUCKET"}, set(), []),
    "notify-delivery": (
        {"ORDERS_TABLE", "MAIL_FROM", "DEAD_LETTER_QUEUE_URL"},
        {"WEBHOOK_SECRET_PARAMETER"},
        [("DELIVERY_WEBHOOK_URL", "DELIVERY_EMAIL")],
    ),
    "delivered": ({"ORDERS_TABLE", "FEEDBACK_QUEUE_URL"}, set(), []),
    "feedback": (
        {"ORDERS_TABLE", "MAIL_FROM", "DEAD_LETTER_QUEUE_URL"},
        {"WEBHOOK_SECRET_PARAMETER"},
        [("CUSTOMER_SERVICE_WEBHOOK_URL", "CUSTOMER_SERVICE_EMAIL")],
    ),
}

# The secrets are SecureString parameters in SSM under the SecretsPath
# parameter; the environment names them (variable -> name after the path).
SECRET_PARAMETERS = {
    "BAKER_TOKEN_PARAMETER": "baker-token",
    "CUSTOMER_TOKEN_SECRET_PARAMETER": "customer-token-secret",
    "WEBHOOK_SECRET_PARAMETER": "webhook-secret",
}
# The webhook secret is only named (and granted) with a webhook.
WEBHOOK_CONDITION = {"notify-delivery": "HasDeliveryWebhook", "feedback": "HasCustomerServiceWebhook"}
# What the environment held before the secrets moved to SSM: never again.
PLAIN_SECRET_VARIABLES = {"BAKER_TOKEN", "CUSTOMER_TOKEN_SECRET", "WEBHOOK_SECRET"}

# The web pages (crate web), which the order function serves on AWS: the
# customer's and the cake maker's, not the operator's (no operator powers on
# the internet-facing functions; OperatorPolicy is for the operator's own
# credentials).
WEB_ROUTES = {
    ("GET", "/"),
    ("POST", "/shop/order"),
    ("GET", "/track/{orderId}"),
    ("GET", "/baker"),
    ("GET", "/baker/orders"),
    ("GET", "/static/{file}"),
}

HTTP_ROUTES = {
    "order": {("POST", "/order"), ("GET", "/order/{orderId}"), ("GET", "/products")} | WEB_ROUTES,
    "fulfilled": {("POST", "/order/fulfilled")},
    "delivered": {("POST", "/order/delivered")},
}
STREAM_CONSUMERS = {"notify-baker": "order_placed", "dispatch": "order_fulfilled"}
QUEUE_CONSUMERS = {"notify-delivery": "DeliveryQueue", "feedback": "FeedbackQueue"}

KINESIS_READ = {
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
}
SQS_CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
BASE = {
    "logs:CreateLogStream": {"log-group"},
    "logs:PutLogEvents": {"log-group"},
    "xray:PutTraceSegments": {"*"},
    "xray:PutTelemetryRecords": {"*"},
}


def _grant(actions, resources):
    return {a: set(resources) for a in actions}


# The order function's index: the cake maker's page lists orders by status.
STATUS_INDEX = "OrdersTable/index/by-status"

# The stream-failures bucket's objects (`${StreamFailuresBucket.Arn}/*`).
FAILURE_OBJECTS = "StreamFailuresBucket/*"

# crate -> {action: {resource}}; a resource is a logical id, "ses-identity",
# "log-group" (the function's own), STATUS_INDEX, "ssm:<name>" (a secret
# parameter under SecretsPath) or "*". No kms:Decrypt: the parameters use the
# AWS managed key alias/aws/ssm.
IAM = {
    "order": {
        **_grant(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:ConditionCheckItem"], ["OrdersTable"]),
        "dynamodb:Query": {STATUS_INDEX},
        "ssm:GetParameters": {"ssm:baker-token", "ssm:customer-token-secret"},
    },
    "notify-baker": {
        **_grant(KINESIS_READ, ["OrderStream"]),
        **_grant(["dynamodb:GetItem", "dynamodb:UpdateItem"], ["OrdersTable"]),
        # The cake maker and customers (their confirmations).
        "ses:SendEmail": {"ses-identity"},
        "ssm:GetParameters": {"ssm:customer-token-secret"},
        # The mapping's S3 on-failure destination, and the function's own
        # keeping of a record that can never succeed.
        "s3:ListBucket": {"StreamFailuresBucket"},
        "s3:PutObject": {FAILURE_OBJECTS},
    },
    "fulfilled": {
        # The move and its event item, one transaction; no stream write.
        **_grant(["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"], ["OrdersTable"]),
        "ssm:GetParameters": {"ssm:baker-token"},
    },
    "dispatch": {
        **_grant(KINESIS_READ, ["OrderStream"]),
        **_grant(["dynamodb:GetItem", "dynamodb:UpdateItem"], ["OrdersTable"]),
        "sqs:SendMessage": {"DeliveryQueue"},
        "s3:ListBucket": {"StreamFailuresBucket"},
        "s3:PutObject": {FAILURE_OBJECTS},
    },
    "notify-delivery": {
        **_grant(SQS_CONSUME, ["DeliveryQueue"]),
        # a message that can never succeed, with its reason
        "sqs:SendMessage": {"DeliveryDeadLetterQueue"},
        **_grant(["dynamodb:GetItem", "dynamodb:UpdateItem"], ["OrdersTable"]),
        "ses:SendEmail": {"ses-identity"},
        # only with a webhook (WEBHOOK_CONDITION)
        "ssm:GetParameters": {"ssm:webhook-secret"},
    },
    "delivered": {
        **_grant(["dynamodb:GetItem", "dynamodb:UpdateItem"], ["OrdersTable"]),
        "sqs:SendMessage": {"FeedbackQueue"},
    },
    "feedback": {
        **_grant(SQS_CONSUME, ["FeedbackQueue"]),
        "sqs:SendMessage": {"FeedbackDeadLetterQueue"},
        **_grant(["dynamodb:GetItem", "dynamodb:UpdateItem"], ["OrdersTable"]),
        "ses:SendEmail": {"ses-identity"},
        # only with a webhook (WEBHOOK_CONDITION)
        "ssm:GetParameters": {"ssm:webhook-secret"},
    },
}
for _grants in IAM.values():
    _grants.update(copy.deepcopy(BASE))

# Actions AWS only grants on Resource "*" (they have no resource type).
STAR_RESOURCE_ALLOWED = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}

DATA_RESOURCES = [
    "OrdersTable",
    "OrderStream",
    "DeliveryQueue",
    "DeliveryDeadLetterQueue",
    "FeedbackQueue",
    "FeedbackDeadLetterQueue",
    "StreamFailuresBucket",
]

# --------------------------------------------------------------------------
# Loading: CloudFormation short tags become their long form.


class CfnLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader, tag_suffix, node):
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def load(path: Path):
    with path.open() as fh:
        return yaml.load(fh, Loader=CfnLoader)


@pytest.fixture(scope="module")
def sam():
    return load(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def sls():
    return load(ROOT / "serverless.yml")


@pytest.fixture(scope="module")
def sls_compiled():
    path = os.environ.get("BAKERY_SLS_TEMPLATE")
    if not path:
        pytest.skip("BAKERY_SLS_TEMPLATE not set (scripts/check-templates.sh sets it)")
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def sam_translated(sam):
    """The CloudFormation that the SAM transform makes of template.yaml."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            raise AssertionError("the transform wanted to look up managed policies")

    tpl = copy.deepcopy(sam)
    for res in tpl["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://bucket/" + res["Properties"]["CodeUri"].strip("/").replace("/", "-")
    return transform(tpl, {}, NoManagedPolicies())


# --------------------------------------------------------------------------
# A common view of one function in either file.


def getatt_id(value):
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else target.split(".")[0]
    return None


def sam_functions(sam):
    globals_ = sam.get("Globals", {}).get("Function", {})
    out = {}
    for logical_id, res in sam["Resources"].items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        props = {**globals_, **res["Properties"]}
        m = re.fullmatch(r"target/lambda/([a-z-]+)/", props["CodeUri"])
        assert m, f"{logical_id}: CodeUri {props['CodeUri']!r} is not target/lambda/<crate>/"
        crate = m.group(1)
        role_id = getatt_id(props.get("Role"))
        out[crate] = {
            "logical_id": logical_id,
            "runtime": props["Runtime"],
            "architectures": props["Architectures"],
            "handler": props["Handler"],
            "timeout": props["Timeout"],
            "env": props.get("Environment", {}).get("Variables", {}),
            "events": props.get("Events", {}),
            "role_id": role_id,
            "role": sam["Resources"][role_id] if role_id else None,
            "log_group": props.get("LoggingConfig", {}).get("LogGroup"),
        }
    return out


def sls_functions(sls):
    provider = sls["provider"]
    out = {}
    for name, fn in sls["functions"].items():
        role_id = fn.get("role")
        out[name] = {
            "artifact": fn["package"]["artifact"],
            "runtime": fn.get("runtime", provider["runtime"]),
            "architecture": fn.get("architecture", provider.get("architecture")),
            "handler": fn["handler"],
            "timeout": fn.get("timeout", provider.get("timeout", 6)),
            "env": fn.get("environment", {}),
            "events": fn.get("events", []),
            "role_id": role_id,
            "role": sls["resources"]["Resources"].get(role_id) if role_id else None,
        }
    return out


def statements(role):
    """Every statement, those under an Fn::If condition included."""
    for policy in role["Properties"].get("Policies", []):
        stmts = policy["PolicyDocument"]["Statement"]
        for st in stmts if isinstance(stmts, list) else [stmts]:
            if "Fn::If" in st:
                _, yes, no = st["Fn::If"]
                yield from (b for b in (yes, no) if b != {"Ref": "AWS::NoValue"})
            else:
                yield st


def conditional_statements(role):
    """condition -> the statements that only hold under it."""
    out = {}
    for policy in role["Properties"].get("Policies", []):
        for st in as_list(policy["PolicyDocument"]["Statement"]):
            if "Fn::If" in st:
                condition, yes, no = st["Fn::If"]
                assert no == {"Ref": "AWS::NoValue"}, st
                out.setdefault(condition, []).append(yes)
    return out


def as_list(value):
    return value if isinstance(value, list) else [value]


def resource_keys(value):
    """Names a policy Resource the way IAM above does."""
    if isinstance(value, list):
        return set().union(*(resource_keys(v) for v in value)) if value else set()
    if value == "*":
        return {"*"}
    if isinstance(value, dict):
        if value == {"Ref": "AWS::NoValue"}:
            return set()
        if "Fn::If" in value:
            _, a, b = value["Fn::If"]
            return resource_keys(a) | resource_keys(b)
        target = getatt_id(value)
        if target:
            return {"log-group" if target.endswith("LogGroup") else target}
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            index = re.fullmatch(
                r"arn:\$\{AWS::Partition\}:dynamodb:\$\{AWS::Region\}:\$\{AWS::AccountId\}"
                r":table/\$\{(\w+)\}/index/([\w.-]+)",
                text,
            )
            if index:
                return {f"{index.group(1)}/index/{index.group(2)}"}
            if ":ses:" in text and ":identity/" in text:
                return {"ses-identity"}
            if ":logs:" in text and ":log-group:" in text:
                return {"log-group"}
            parameter = re.fullmatch(
                r"arn:\$\{AWS::Partition\}:ssm:\$\{AWS::Region\}:\$\{AWS::AccountId\}"
                r":parameter\$\{SecretsPath\}/([a-z-]+)",
                text,
            )
            if parameter:
                return {f"ssm:{parameter.group(1)}"}
            objects = re.fullmatch(r"\$\{(\w+)\.Arn\}/\*", text)
            if objects:
                return {f"{objects.group(1)}/*"}
    raise AssertionError(f"unexpected policy resource {value!r}")


def grants(role):
    out: dict[str, set] = {}
    for st in statements(role):
        assert st["Effect"] == "Allow"
        for action in as_list(st["Action"]):
            out.setdefault(action, set()).update(resource_keys(st["Resource"]))
    return out


# --------------------------------------------------------------------------
# Both files: the seven functions.


def test_sam_has_the_seven_functions_on_arm64_al2023(sam):
    fns = sam_functions(sam)
    assert sorted(fns) == sorted(CRATES)
    for crate, fn in fns.items():
        assert fn["runtime"] == "provided.al2023", crate
        assert fn["architectures"] == ["arm64"], crate
        assert fn["handler"] == "bootstrap", crate


def test_sam_globals(sam):
    g = sam["Globals"]["Function"]
    assert g["MemorySize"] == 128
    assert g["Timeout"] == 10
    assert g["Tracing"] == "Active"
    assert sam["Transform"] == "AWS::Serverless-2016-10-31"


def test_serverless_has_the_seven_functions_on_arm64_al2023(sls):
    assert sls["frameworkVersion"] == "3"
    assert sls["provider"]["name"] == "aws"
    fns = sls_functions(sls)
    assert sorted(fns) == sorted(CRATES)
    for crate, fn in fns.items():
        assert fn["runtime"] == "provided.al2023", crate
        assert fn["architecture"] == "arm64", crate
        assert fn["handler"] == "bootstrap", crate
        assert fn["artifact"] == f"target/lambda/{crate}/bootstrap.zip", crate


# --------------------------------------------------------------------------
# Environment.


def check_env(crate, env):
    always, optional, pairs = ENV[crate]
    allowed = always | optional | {k for pair in pairs for k in pair}
    assert set(env) - allowed == set(), f"{crate}: variables not in the table: {set(env) - allowed}"
    assert always - set(env) == set(), f"{crate}: missing {always - set(env)}"
    for url, email in pairs:
        assert url in env and email in env, f"{crate}: needs both {url} and {email}, one of them unset by a condition"
        cond_a, a_then, a_else = env[url]["Fn::If"]
        cond_b, b_then, b_else = env[email]["Fn::If"]
        assert cond_a == cond_b, f"{crate}: {url} and {email} hang on different conditions"
        assert a_else == {"Ref": "AWS::NoValue"} and b_then == {"Ref": "AWS::NoValue"}, crate
    assert PLAIN_SECRET_VARIABLES & set(env) == set(), f"{crate}: a secret's value in the environment"
    for key, value in env.items():
        if key not in SECRET_PARAMETERS:
            continue
        name = {"Fn::Sub": f"${{SecretsPath}}/{SECRET_PARAMETERS[key]}"}
        if crate in WEBHOOK_CONDITION:
            assert value == {"Fn::If": [WEBHOOK_CONDITION[crate], name, {"Ref": "AWS::NoValue"}]}, (crate, key)
        else:
            assert value == name, f"{crate}: {key} does not name its parameter under SecretsPath: {value!r}"


def test_sam_env_matches_the_table(sam):
    for crate, fn in sam_functions(sam).items():
        check_env(crate, fn["env"])


def test_serverless_env_matches_the_table(sls):
    for crate, fn in sls_functions(sls).items():
        check_env(crate, fn["env"])


def test_both_files_give_the_same_variables(sam, sls):
    a, b = sam_functions(sam), sls_functions(sls)
    for crate in CRATES:
        assert set(a[crate]["env"]) == set(b[crate]["env"]), crate


# --------------------------------------------------------------------------
# Secrets.


def check_secrets_path(param):
    assert param["Type"] == "String"
    assert "NoEcho" not in param, "a path is not a secret"
    pattern = re.compile(param["AllowedPattern"])
    assert pattern.fullmatch("/bakery/prod") and not pattern.fullmatch("bakery/prod")
    assert not pattern.fullmatch("/bakery/prod/"), "the names are put after the path with a /"


def test_no_secret_is_a_template_parameter(sam, sls):
    """The secrets live in SSM: the stacks take only where they are."""
    for params in (sam["Parameters"], sls["resources"]["Parameters"]):
        assert {"BakerToken", "CustomerTokenSecret", "WebhookSecret"} & set(params) == set()
        assert not [name for name, p in params.items() if p.get("NoEcho")]
    assert {"bakerToken", "customerTokenSecret", "webhookSecret"} & set(sls["params"]["default"]) == set()


def test_sam_secrets_path(sam):
    param = sam["Parameters"]["SecretsPath"]
    check_secrets_path(param)
    assert param["Default"] == "/bakery/prod"


def test_serverless_secrets_path(sls):
    param = sls["resources"]["Parameters"]["SecretsPath"]
    check_secrets_path(param)
    assert param["Default"] == "${param:secretsPath}"
    assert sls["params"]["default"]["secretsPath"] == "/${self:service}/${sls:stage}"


def check_secret_grants(crate, fn):
    """A function may read exactly the parameters its environment names,
    with a webhook's secret granted under the same condition as it is named."""
    named = {SECRET_PARAMETERS[k] for k in fn["env"] if k in SECRET_PARAMETERS}
    granted = {r.removeprefix("ssm:") for r in grants(fn["role"]).get("ssm:GetParameters", set())}
    assert named == granted, crate
    conditional = conditional_statements(fn["role"])
    if crate in WEBHOOK_CONDITION:
        assert set(conditional) == {WEBHOOK_CONDITION[crate]}, crate
        (st,) = conditional[WEBHOOK_CONDITION[crate]]
        assert st["Action"] == "ssm:GetParameters" and resource_keys(st["Resource"]) == {"ssm:webhook-secret"}
    else:
        assert conditional == {}, crate
    for st in statements(fn["role"]):
        for action in as_list(st["Action"]):
            assert not action.startswith("kms:"), f"{crate}: alias/aws/ssm needs no KMS grant"


def test_sam_secret_grants_match_the_parameters_named(sam):
    for crate, fn in sam_functions(sam).items():
        check_secret_grants(crate, fn)


def test_serverless_secret_grants_match_the_parameters_named(sls):
    for crate, fn in sls_functions(sls).items():
        check_secret_grants(crate, fn)


def test_sam_optional_parameters_default_to_empty(sam):
    params = sam["Parameters"]
    for name in ["DeliveryWebhookUrl", "CustomerServiceWebhookUrl", "PublicUrl"]:
        assert params[name]["Default"] == ""
    for name in ["MailFrom", "BakerEmail", "DeliveryEmail", "CustomerServiceEmail"]:
        assert name in params


def test_sam_either_webhook_or_email_is_required(sam):
    rules = sam["Rules"]
    assert {"DeliveryTargetGiven", "CustomerServiceTargetGiven"} <= set(rules)


SECRET_LITERAL = re.compile(r"whsec_[A-Za-z0-9+/=]{8,}|(?i:(token|secret)\s*[:=]\s*['\"]?[A-Za-z0-9+/=_-]{16,})")


@pytest.mark.parametrize("name", ["template.yaml", "serverless.yml"])
def test_no_secret_literal_in_the_files(name):
    text = (ROOT / name).read_text()
    hits = [m.group(0) for m in SECRET_LITERAL.finditer(text)]
    assert hits == [], f"{name} holds what looks like a secret: {hits}"


# --------------------------------------------------------------------------
# Triggers and event source mappings.


def test_sam_http_routes(sam):
    fns = sam_functions(sam)
    for crate in CRATES:
        routes = {
            (ev["Properties"]["Method"], ev["Properties"]["Path"])
            for ev in fns[crate]["events"].values()
            if ev["Type"] == "HttpApi"
        }
        assert routes == HTTP_ROUTES.get(crate, set()), crate
        for ev in fns[crate]["events"].values():
            if ev["Type"] == "HttpApi":
                assert ev["Properties"]["ApiId"] == {"Ref": "HttpApi"}


def test_serverless_http_routes(sls):
    for crate, fn in sls_functions(sls).items():
        routes = {(e["httpApi"]["method"], e["httpApi"]["path"]) for e in fn["events"] if "httpApi" in e}
        assert routes == HTTP_ROUTES.get(crate, set()), crate


def check_stream_mapping(crate, p, event_type):
    assert p["StartingPosition"] == "TRIM_HORIZON", crate
    assert p["BatchSize"] == 100, crate
    assert 0 <= p["MaximumBatchingWindowInSeconds"] <= 1, crate
    assert "ReportBatchItemFailures" in p["FunctionResponseTypes"], crate
    assert p["BisectBatchOnFunctionError"] is True, crate
    assert 0 <= p["MaximumRetryAttempts"] <= 10, crate
    assert 60 <= p["MaximumRecordAgeInSeconds"] <= 24 * 3600, crate
    assert getatt_id(p["DestinationConfig"]["OnFailure"]["Destination"]) == "StreamFailuresBucket", crate
    patterns = [json.loads(f["Pattern"]) for f in p["FilterCriteria"]["Filters"]]
    # The table feeds the stream: only new event items of this type.
    assert patterns == [
        {"data": {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"eventType": {"S": [event_type]}}}}}
    ], crate


def check_queue_mapping(crate, p):
    assert p["BatchSize"] == 10, crate
    assert "ReportBatchItemFailures" in p["FunctionResponseTypes"], crate
    assert 2 <= p["ScalingConfig"]["MaximumConcurrency"] <= 1000, crate


def test_sam_event_source_mappings(sam):
    for crate, fn in sam_functions(sam).items():
        pulls = [ev for ev in fn["events"].values() if ev["Type"] in ("Kinesis", "SQS", "DynamoDB")]
        kinesis = [ev["Properties"] for ev in pulls if ev["Type"] == "Kinesis"]
        sqs = [ev["Properties"] for ev in pulls if ev["Type"] == "SQS"]
        assert len(kinesis) == (crate in STREAM_CONSUMERS), crate
        assert len(sqs) == (crate in QUEUE_CONSUMERS), crate
        for p in kinesis:
            assert getatt_id(p["Stream"]) == "OrderStream"
            check_stream_mapping(crate, p, STREAM_CONSUMERS[crate])
        for p in sqs:
            assert getatt_id(p["Queue"]) == QUEUE_CONSUMERS[crate]
            check_queue_mapping(crate, p)


def test_serverless_event_source_mappings(sls):
    for crate, fn in sls_functions(sls).items():
        streams = [e["stream"] for e in fn["events"] if "stream" in e]
        queues = [e["sqs"] for e in fn["events"] if "sqs" in e]
        assert len(streams) == (crate in STREAM_CONSUMERS), crate
        assert len(queues) == (crate in QUEUE_CONSUMERS), crate
        for s in streams:
            assert s["type"] == "kinesis"
            assert getatt_id(s["arn"]) == "OrderStream"
            # The bucket is the destination, set in resources.extensions.
            assert "destinations" not in s
            extension = sls["resources"]["extensions"][SLS_MAPPING_IDS[crate]]
            check_stream_mapping(
                crate,
                {
                    "StartingPosition": s["startingPosition"],
                    "BatchSize": s["batchSize"],
                    "MaximumBatchingWindowInSeconds": s["batchWindow"],
                    "FunctionResponseTypes": [s["functionResponseType"]],
                    "BisectBatchOnFunctionError": s["bisectBatchOnFunctionError"],
                    "MaximumRetryAttempts": s["maximumRetryAttempts"],
                    "MaximumRecordAgeInSeconds": s["maximumRecordAgeInSeconds"],
                    "DestinationConfig": extension["Properties"]["DestinationConfig"],
                    "FilterCriteria": {"Filters": [{"Pattern": json.dumps(p)} for p in s["filterPatterns"]]},
                },
                STREAM_CONSUMERS[crate],
            )
        for q in queues:
            assert getatt_id(q["arn"]) == QUEUE_CONSUMERS[crate]
            check_queue_mapping(
                crate,
                {
                    "BatchSize": q["batchSize"],
                    "FunctionResponseTypes": [q["functionResponseType"]],
                    "ScalingConfig": {"MaximumConcurrency": q["maximumConcurrency"]},
                },
            )


# The logical ids the framework gives the stream mappings.
SLS_MAPPING_IDS = {
    "notify-baker": "NotifyDashbakerEventSourceMappingKinesisOrderStream",
    "dispatch": "DispatchEventSourceMappingKinesisOrderStream",
}


def compiled_mappings(template):
    return {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::EventSourceMapping"}


def check_compiled_mappings(template):
    """Every mapping in generated CloudFormation (SAM transform or serverless package)."""
    mappings = compiled_mappings(template)
    assert len(mappings) == 4
    kinds = {"kinesis": 0, "sqs": 0}
    for logical_id, res in mappings.items():
        p = res["Properties"]
        assert "ReportBatchItemFailures" in p.get("FunctionResponseTypes", []), logical_id
        source = getatt_id(p["EventSourceArn"])
        if source == "OrderStream":
            kinds["kinesis"] += 1
            assert p["BisectBatchOnFunctionError"] is True, logical_id
            assert 0 <= p["MaximumRetryAttempts"] <= 10, logical_id
            assert getatt_id(p["DestinationConfig"]["OnFailure"]["Destination"]) == "StreamFailuresBucket"
        else:
            kinds["sqs"] += 1
            assert source in QUEUE_CONSUMERS.values(), logical_id
            assert p["BatchSize"] == 10
            assert p["ScalingConfig"]["MaximumConcurrency"] >= 2
    assert kinds == {"kinesis": 2, "sqs": 2}


def test_sam_translated_mappings(sam_translated):
    check_compiled_mappings(sam_translated)


def test_serverless_compiled_mappings(sls_compiled):
    check_compiled_mappings(sls_compiled)


# --------------------------------------------------------------------------
# Queues, table, stream, API.


def check_queues(resources, functions_timeout):
    for queue, dlq in [("DeliveryQueue", "DeliveryDeadLetterQueue"), ("FeedbackQueue", "FeedbackDeadLetterQueue")]:
        p = resources[queue]["Properties"]
        redrive = p["RedrivePolicy"]
        assert getatt_id(redrive["deadLetterTargetArn"]) == dlq, queue
        assert redrive["maxReceiveCount"] == 5, queue
        assert resources[dlq]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600, dlq
        consumer = next(c for c, q in QUEUE_CONSUMERS.items() if q == queue)
        assert p["VisibilityTimeout"] >= 6 * functions_timeout[consumer], queue
    bucket = resources["StreamFailuresBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    # Kept until an operator acts: no lifecycle expiry, kept with the stack.
    assert "LifecycleConfiguration" not in bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    # Not versioned: a redriven batch is gone, and the daily object count
    # the alarm reads falls back to 0.
    assert "VersioningConfiguration" not in bucket["Properties"]
    assert all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())


def test_sam_queues_have_dead_letter_queues(sam):
    check_queues(sam["Resources"], {c: f["timeout"] for c, f in sam_functions(sam).items()})


def test_serverless_queues_have_dead_letter_queues(sls):
    check_queues(sls["resources"]["Resources"], {c: f["timeout"] for c, f in sls_functions(sls).items()})


def test_table_stream_and_queues_are_the_same_in_both_files(sam, sls):
    for name in DATA_RESOURCES + ["SenderIdentity"]:
        a, b = sam["Resources"][name], sls["resources"]["Resources"][name]
        if name == "SenderIdentity":
            assert a["Properties"]["EmailIdentity"] == {"Ref": "MailFrom"}
            assert b["Properties"]["EmailIdentity"] == "${param:mailFrom}"
            continue
        assert a == b, name


def test_table_schema(sam):
    p = sam["Resources"]["OrdersTable"]["Properties"]
    assert p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert p["SSESpecification"]["SSEEnabled"] is True
    # Idempotency keys expire (the adapter writes expiresAt, epoch seconds).
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    (gsi,) = p["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "by-status"
    assert gsi["KeySchema"] == [
        {"AttributeName": "status", "KeyType": "HASH"},
        {"AttributeName": "createdAt", "KeyType": "RANGE"},
    ]
    assert gsi["Projection"] == {"ProjectionType": "ALL"}
    types = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
    assert types == {"pk": "S", "status": "S", "createdAt": "S"}


def test_the_table_feeds_the_stream_in_both_files(sam, sls):
    """No dual write: the steps write the table, and the table the stream."""
    for resources in (sam["Resources"], sls["resources"]["Resources"]):
        spec = resources["OrdersTable"]["Properties"]["KinesisStreamSpecification"]
        assert getatt_id(spec["StreamArn"]) == "OrderStream"
        assert spec["ApproximateCreationDateTimePrecision"] == "MILLISECOND"
    # No function puts records on the stream itself (only an operator's
    # redrive does, with OperatorPolicy).
    for functions in (sam_functions(sam), sls_functions(sls)):
        writers = {c for c, f in functions.items() if "kinesis:PutRecord" in grants(f["role"])}
        assert writers == set()


# What an operator may do, and only an operator (OperatorPolicy).
OPERATOR = {
    **_grant(
        ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
        ["DeliveryQueue", "FeedbackQueue", "DeliveryDeadLetterQueue", "FeedbackDeadLetterQueue"],
    ),
    **_grant(
        ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
        ["DeliveryDeadLetterQueue", "FeedbackDeadLetterQueue"],
    ),
    "sqs:SendMessage": {"DeliveryQueue", "FeedbackQueue"},
    "s3:ListBucket": {"StreamFailuresBucket"},
    **_grant(["s3:GetObject", "s3:DeleteObject"], [FAILURE_OBJECTS]),
    **_grant(["kinesis:PutRecord", "kinesis:DescribeStreamSummary"], ["OrderStream"]),
}
OPERATOR_POWERS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "s3:GetObject",
    "s3:DeleteObject",
    "kinesis:PutRecord",
} | KINESIS_READ


def test_operator_powers_are_the_operators_alone(sam, sls):
    for resources, functions in ((sam["Resources"], sam_functions(sam)), (sls["resources"]["Resources"], sls_functions(sls))):
        policy = resources["OperatorPolicy"]
        assert policy["Type"] == "AWS::IAM::ManagedPolicy"
        granted: dict[str, set] = {}
        for st in as_list(policy["Properties"]["PolicyDocument"]["Statement"]):
            assert st["Effect"] == "Allow"
            for action in as_list(st["Action"]):
                granted.setdefault(action, set()).update(resource_keys(st["Resource"]))
        assert granted == OPERATOR
        # The functions the internet reaches hold none of it.
        for crate in HTTP_ROUTES:
            held = set(grants(functions[crate]["role"])) & OPERATOR_POWERS
            assert held == set(), f"{crate} holds {sorted(held)}"


def test_stream(sam):
    p = sam["Resources"]["OrderStream"]["Properties"]
    assert p["RetentionPeriodHours"] == 24
    assert p["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert p["StreamModeDetails"]["StreamMode"] == "PROVISIONED" and p["ShardCount"] == 1


def test_sam_http_api(sam):
    api = sam["Resources"]["HttpApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    p = api["Properties"]
    assert "CorsConfiguration" not in p
    assert p["DefaultRouteSettings"]["ThrottlingBurstLimit"] > 0
    assert p["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    assert getatt_id(p["AccessLogSettings"]["DestinationArn"]) == "HttpApiAccessLogs"
    assert sam["Resources"]["HttpApiAccessLogs"]["Properties"]["RetentionInDays"]


def test_serverless_http_api(sls):
    assert "cors" not in sls["provider"]["httpApi"]
    assert sls["provider"]["logs"]["httpApi"]
    stage = sls["resources"]["extensions"]["HttpApiStage"]["Properties"]["DefaultRouteSettings"]
    assert stage["ThrottlingBurstLimit"] > 0 and stage["ThrottlingRateLimit"] > 0
    assert sls["provider"]["logRetentionInDays"] > 0


def test_sam_log_group_per_function(sam):
    for crate, fn in sam_functions(sam).items():
        ref = fn["log_group"]
        assert isinstance(ref, dict) and "Ref" in ref, crate
        group = sam["Resources"][ref["Ref"]]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{NamePrefix}}-{crate}"}
        assert group["Properties"]["RetentionInDays"]


def test_sam_outputs(sam):
    outputs = set(sam["Outputs"])
    assert {
        "ApiUrl",
        "OrdersTableName",
        "OrderStreamName",
        "DeliveryQueueUrl",
        "DeliveryDeadLetterQueueUrl",
        "FeedbackQueueUrl",
        "FeedbackDeadLetterQueueUrl",
        "StreamFailuresBucketName",
        "OperatorPolicyArn",
    } <= outputs


# --------------------------------------------------------------------------
# IAM: least privilege, per function.


def check_statement(where, st):
    if st.get("Effect") != "Allow":
        return
    actions = as_list(st.get("Action", []))
    assert "NotAction" not in st and "NotResource" not in st, where
    for action in actions:
        assert isinstance(action, str), where
        assert action != "*" and not action.endswith(":*"), f"{where}: wildcard action {action}"
    if "*" in as_list(st.get("Resource", [])):
        wide = set(actions) - STAR_RESOURCE_ALLOWED
        assert wide == set(), f"{where}: Resource '*' for {sorted(wide)}"


def check_no_wildcards(resources):
    seen = 0
    for logical_id, res in resources.items():
        if res["Type"] == "AWS::IAM::Role":
            assert not res["Properties"].get("ManagedPolicyArns"), f"{logical_id} has managed policies"
            for st in statements(res):
                check_statement(logical_id, st)
                seen += 1
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for st in as_list(res["Properties"]["PolicyDocument"]["Statement"]):
                check_statement(logical_id, st)
                seen += 1
    assert seen > 0


def test_sam_no_wildcards(sam):
    check_no_wildcards(sam["Resources"])


def test_serverless_no_wildcards(sls):
    check_no_wildcards(sls["resources"]["Resources"])


def test_sam_translated_roles_are_only_ours(sam_translated):
    roles = [k for k, r in sam_translated["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert sorted(roles) == sorted(f["role_id"] for f in sam_functions_from_ids(sam_translated))
    check_no_wildcards(sam_translated["Resources"])


def sam_functions_from_ids(template):
    for res in template["Resources"].values():
        if res["Type"] == "AWS::Lambda::Function":
            yield {"role_id": getatt_id(res["Properties"]["Role"])}


def test_serverless_compiled_has_no_shared_role(sls_compiled):
    resources = sls_compiled["Resources"]
    assert "IamRoleLambdaExecution" not in resources
    check_no_wildcards(resources)
    fns = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(fns) == 7
    roles = {getatt_id(f["Properties"]["Role"]) for f in fns}
    assert len(roles) == 7, "each function has its own role"
    for f in fns:
        assert f["Properties"]["Architectures"] == ["arm64"]
        assert f["Properties"]["Runtime"] == "provided.al2023"


def test_sam_each_function_has_exactly_its_grants(sam):
    for crate, fn in sam_functions(sam).items():
        assert fn["role"] and fn["role"]["Type"] == "AWS::IAM::Role", crate
        assert grants(fn["role"]) == IAM[crate], crate
        own_log = fn["log_group"]["Ref"]
        logs = [st for st in statements(fn["role"]) if as_list(st["Action"])[0].startswith("logs:")]
        assert [getatt_id(st["Resource"]) for st in logs] == [own_log], crate


def test_serverless_each_function_has_exactly_its_grants(sls):
    for crate, fn in sls_functions(sls).items():
        assert fn["role"] and fn["role"]["Type"] == "AWS::IAM::Role", crate
        assert grants(fn["role"]) == IAM[crate], crate
        logs = [st for st in statements(fn["role"]) if as_list(st["Action"])[0].startswith("logs:")]
        assert [st["Resource"]["Fn::Sub"].endswith(f"-{crate}:*") for st in logs] == [True], crate


def test_only_the_order_function_reads_the_index(sam, sls):
    """The cake maker's page (served by the order function) queries
    by-status; no other function touches an index, and no function may
    query the table itself."""
    for fns in (sam_functions(sam), sls_functions(sls)):
        for crate, fn in fns.items():
            text = json.dumps(fn["role"])
            if crate == "order":
                assert text.count("/index/") == 1, crate
            else:
                assert "/index/" not in text, f"{crate} is given an index"
            for action, resources in grants(fn["role"]).items():
                if action == "dynamodb:Query":
                    assert resources == {STATUS_INDEX}, crate
                elif action.startswith("dynamodb:"):
                    assert STATUS_INDEX not in resources, (crate, action)


def test_roles_are_assumed_by_lambda_only(sam, sls):
    roles = [r for r in sam["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    roles += [r for r in sls["resources"]["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 14
    for role in roles:
        (st,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert st["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert st["Action"] == "sts:AssumeRole"


def test_serverless_compiled_names_the_stages_secrets(sls_compiled):
    """`serverless package` resolved the path to /bakery/<stage>, and the
    compiled functions name their parameters under it, no value."""
    default = sls_compiled["Parameters"]["SecretsPath"]["Default"]
    assert re.fullmatch(r"/bakery/[a-z0-9-]+", default), default
    for res in sls_compiled["Resources"].values():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        env = res["Properties"].get("Environment", {}).get("Variables", {})
        assert PLAIN_SECRET_VARIABLES & set(env) == set()
        for key in set(env) & set(SECRET_PARAMETERS):
            assert f"${{SecretsPath}}/{SECRET_PARAMETERS[key]}" in json.dumps(env[key]), key


# --------------------------------------------------------------------------
# Operations: alarms, their topic, the dashboard, JSON logs (docs/deploy.md,
# "Alarms and dashboard").

# crate -> logical id of its function in each file (serverless.yml: the id
# the framework gives the compiled function).
SAM_FUNCTION_IDS = {
    "order": "OrderFunction",
    "notify-baker": "NotifyBakerFunction",
    "fulfilled": "FulfilledFunction",
    "dispatch": "DispatchFunction",
    "notify-delivery": "NotifyDeliveryFunction",
    "delivered": "DeliveredFunction",
    "feedback": "FeedbackFunction",
}
SLS_FUNCTION_IDS = {
    "order": "OrderLambdaFunction",
    "notify-baker": "NotifyDashbakerLambdaFunction",
    "fulfilled": "FulfilledLambdaFunction",
    "dispatch": "DispatchLambdaFunction",
    "notify-delivery": "NotifyDashdeliveryLambdaFunction",
    "delivered": "DeliveredLambdaFunction",
    "feedback": "FeedbackLambdaFunction",
}
HTTP_FUNCTIONS = set(HTTP_ROUTES)
API = [("ApiId", {"Ref": "HttpApi"}), ("Stage", "$default")]


def _camel(crate):
    return "".join(part.capitalize() for part in crate.split("-"))


def _fn(crate):
    return [("FunctionName", {"Ref": f"fn:{crate}"})]


# logical id -> (namespace, metric, dimensions, statistic, period, evaluation
# periods, datapoints to alarm, threshold, comparison). Function dimensions
# name the function as {"Ref": "fn:<crate>"} (normalized from either file).
ALARMS = {
    "DeliveryDeadLetterQueueAlarm": (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible",
        [("QueueName", {"Fn::GetAtt": ["DeliveryDeadLetterQueue", "QueueName"]})],
        "Maximum", 300, 1, 1, 0, "GreaterThanThreshold",
    ),
    "FeedbackDeadLetterQueueAlarm": (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible",
        [("QueueName", {"Fn::GetAtt": ["FeedbackDeadLetterQueue", "QueueName"]})],
        "Maximum", 300, 1, 1, 0, "GreaterThanThreshold",
    ),
    # S3 storage metrics are daily.
    "StreamFailuresAlarm": (
        "AWS/S3", "NumberOfObjects",
        [("BucketName", {"Ref": "StreamFailuresBucket"}), ("StorageType", "AllStorageTypes")],
        "Maximum", 86400, 1, 1, 0, "GreaterThanThreshold",
    ),
    **{
        f"{_camel(c)}IteratorAgeAlarm": (
            "AWS/Lambda", "IteratorAge", _fn(c), "Maximum", 60, 5, 5, 60000, "GreaterThanThreshold",
        )
        for c in STREAM_CONSUMERS
    },
    **{
        f"{_camel(c)}ErrorsAlarm": (
            "AWS/Lambda", "Errors", _fn(c), "Sum", 300, 1, 1,
            5 if c in HTTP_FUNCTIONS else 1, "GreaterThanOrEqualToThreshold",
        )
        for c in CRATES
    },
    **{
        f"{_camel(c)}ThrottlesAlarm": (
            "AWS/Lambda", "Throttles", _fn(c), "Sum", 300, 1, 1, 0, "GreaterThanThreshold",
        )
        for c in CRATES
    },
    "ApiLatencyAlarm": ("AWS/ApiGateway", "Latency", API, "p99", 60, 5, 3, 2000, "GreaterThanThreshold"),
    "SesRejectAlarm": ("AWS/SES", "Reject", [], "Sum", 300, 1, 1, 0, "GreaterThanThreshold"),
    # A rate, not a count: customers' own addresses (their confirmations)
    # bounce now and then.
    "SesBounceAlarm": (
        "AWS/SES", "Reputation.BounceRate", [], "Maximum", 3600, 1, 1, 0.04, "GreaterThanOrEqualToThreshold",
    ),
}
# The API's 5xx rate is metric math (5xx / Count), checked on its own.
METRIC_MATH_ALARMS = {"ApiServerErrorRateAlarm"}


def normalize(value, function_ids):
    """Either file's references to its functions become {"Ref": "fn:<crate>"}
    (and ${fn:<crate>} in Fn::Sub text), so the two files can be compared."""
    by_id = {v: k for k, v in function_ids.items()}
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in by_id:
            return {"Ref": f"fn:{by_id[value['Ref']]}"}
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            text = re.sub(
                r"\$\{(\w+)\}",
                lambda m: f"${{fn:{by_id[m.group(1)]}}}" if m.group(1) in by_id else m.group(0),
                value["Fn::Sub"],
            )
            return {"Fn::Sub": text}
        return {k: normalize(v, function_ids) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, function_ids) for v in value]
    return value


def sam_resources(sam):
    return sam["Resources"]


def sls_resources(sls):
    return sls["resources"]["Resources"]


def alarms_of(resources, function_ids):
    return {
        k: normalize(r, function_ids) for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def check_alarms(resources, function_ids):
    alarms = alarms_of(resources, function_ids)
    assert set(alarms) == set(ALARMS) | METRIC_MATH_ALARMS
    for logical_id, res in alarms.items():
        p = res["Properties"]
        assert p["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert p["OKActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert p["TreatMissingData"] == "notBreaching", logical_id
        assert p["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), logical_id
        if logical_id in METRIC_MATH_ALARMS:
            continue
        namespace, metric, dims, stat, period, evals, dta, threshold, op = ALARMS[logical_id]
        assert (p["Namespace"], p["MetricName"]) == (namespace, metric), logical_id
        assert [(d["Name"], d["Value"]) for d in p.get("Dimensions", [])] == dims, logical_id
        assert p.get("ExtendedStatistic" if stat.startswith("p") else "Statistic") == stat, logical_id
        assert (p["Period"], p["EvaluationPeriods"], p["DatapointsToAlarm"]) == (period, evals, dta), logical_id
        assert (p["Threshold"], p["ComparisonOperator"]) == (threshold, op), logical_id
    # Every function has its errors and throttles alarm, every stream
    # consumer its iterator age, every dead-letter queue its alarm.
    named = {
        d["Value"]["Ref"]
        for res in alarms.values()
        for d in res["Properties"].get("Dimensions", [])
        if isinstance(d["Value"], dict) and "Ref" in d["Value"]
    }
    assert {f"fn:{c}" for c in CRATES} <= named


def check_api_error_rate(resources, function_ids):
    p = alarms_of(resources, function_ids)["ApiServerErrorRateAlarm"]["Properties"]
    queries = {q["Id"]: q for q in p["Metrics"]}
    stats = {
        q["MetricStat"]["Metric"]["MetricName"]: q["MetricStat"] for q in queries.values() if "MetricStat" in q
    }
    assert set(stats) == {"5xx", "Count"}
    for stat in stats.values():
        assert stat["Metric"]["Namespace"] == "AWS/ApiGateway"
        assert [(d["Name"], d["Value"]) for d in stat["Metric"]["Dimensions"]] == API
        assert stat["Stat"] == "Sum" and stat["Period"] == 300
    (expr,) = [q for q in queries.values() if q.get("ReturnData", True)]
    # percent of 5xx, once there are enough requests to speak of a rate
    assert re.fullmatch(r"IF\(requests >= \d+, 100 \* errors / requests, 0\)", expr["Expression"]), expr
    assert (p["Threshold"], p["ComparisonOperator"], p["EvaluationPeriods"]) == (1, "GreaterThanThreshold", 1)


def check_alarm_topic(resources, conditions):
    topic = resources["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    # Encrypted with a key CloudWatch may use (not alias/aws/sns, whose
    # policy does not let alarms publish).
    assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    key = resources["AlarmTopicKey"]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    (cloudwatch,) = [
        st
        for st in key["Properties"]["KeyPolicy"]["Statement"]
        if st.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert set(as_list(cloudwatch["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    sub = resources["AlarmEmailSubscription"]
    assert sub["Type"] == "AWS::SNS::Subscription"
    assert sub["Condition"] == "HasAlarmEmail"
    assert conditions["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    assert sub["Properties"] == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}


def test_sam_alarms(sam):
    check_alarms(sam_resources(sam), SAM_FUNCTION_IDS)
    check_api_error_rate(sam_resources(sam), SAM_FUNCTION_IDS)


def test_serverless_alarms(sls):
    check_alarms(sls_resources(sls), SLS_FUNCTION_IDS)
    check_api_error_rate(sls_resources(sls), SLS_FUNCTION_IDS)


def test_serverless_alarms_name_the_compiled_functions(sls_compiled):
    functions = {k for k, r in sls_compiled["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}
    assert functions == set(SLS_FUNCTION_IDS.values())
    check_alarms(sls_compiled["Resources"], SLS_FUNCTION_IDS)


def test_sam_translated_alarms_name_the_functions(sam_translated):
    functions = {k for k, r in sam_translated["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}
    assert functions == set(SAM_FUNCTION_IDS.values())
    check_alarms(sam_translated["Resources"], SAM_FUNCTION_IDS)


def test_alarms_and_dashboard_are_the_same_in_both_files(sam, sls):
    for logical_id in ["AlarmTopicKey", "AlarmTopic", "AlarmEmailSubscription", "Dashboard"]:
        a = normalize(sam_resources(sam)[logical_id], SAM_FUNCTION_IDS)
        b = normalize(sls_resources(sls)[logical_id], SLS_FUNCTION_IDS)
        assert a == b, logical_id
    assert alarms_of(sam_resources(sam), SAM_FUNCTION_IDS) == alarms_of(sls_resources(sls), SLS_FUNCTION_IDS)


def test_sam_alarm_topic(sam):
    check_alarm_topic(sam_resources(sam), sam["Conditions"])
    param = sam["Parameters"]["AlarmEmail"]
    assert param["Default"] == ""
    pattern = re.compile(param["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("ops@example.com") and not pattern.fullmatch("ops")
    assert {"AlarmTopicArn", "DashboardName"} <= set(sam["Outputs"])


def test_serverless_alarm_topic(sls):
    check_alarm_topic(sls_resources(sls), sls["resources"]["Conditions"])
    assert sls["params"]["default"]["alarmEmail"] == ""
    assert sls["resources"]["Parameters"]["AlarmEmail"]["Default"] == "${param:alarmEmail}"
    assert {"AlarmTopicArn", "DashboardName"} <= set(sls["resources"]["Outputs"])


def test_serverless_compiled_alarm_email_is_a_stack_parameter(sls_compiled):
    # check-templates.sh gives no alarmEmail: no subscription by default.
    assert sls_compiled["Parameters"]["AlarmEmail"]["Default"] == ""
    assert sls_compiled["Resources"]["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


STEPS = [
    "placed",
    "baker_notified",
    "fulfilled",
    "out_for_delivery",
    "delivery_notified",
    "delivered",
    "customer_service_notified",
]


def dashboard_widgets(resources, function_ids):
    """The dashboard's body, ${...} left as text, parsed."""
    body = normalize(resources["Dashboard"], function_ids)["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(body)["widgets"], body


def check_dashboard(resources, function_ids):
    assert resources["Dashboard"]["Type"] == "AWS::CloudWatch::Dashboard"
    widgets, body = dashboard_widgets(resources, function_ids)
    metrics = [tuple(x for x in m if not isinstance(x, dict)) for w in widgets for m in w["properties"]["metrics"]]
    for queue in ["DeliveryQueue", "DeliveryDeadLetterQueue", "FeedbackQueue", "FeedbackDeadLetterQueue"]:
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", f"${{{queue}.QueueName}}") in metrics
    for crate in STREAM_CONSUMERS:
        assert ("AWS/Lambda", "IteratorAge", "FunctionName", f"${{fn:{crate}}}") in metrics
    for crate in CRATES:
        for metric in ["Duration", "Errors", "Throttles"]:
            assert ("AWS/Lambda", metric, "FunctionName", f"${{fn:{crate}}}") in metrics, (crate, metric)
    for metric in ["Count", "4xx", "5xx", "Latency"]:
        assert ("AWS/ApiGateway", metric, "ApiId", "${HttpApi}", "Stage", "$default") in metrics, metric
    # The names the functions write (lambda_kit::metrics); the first step
    # has no step before it, so no latency.
    emitted = (Path(__file__).resolve().parents[2] / "crates/lambda-kit/src/metrics.rs").read_text()
    names = dict(re.findall(r'pub const (\w+): &str = "([^"]+)";', emitted))
    namespace, placed, latency = names["NAMESPACE"], names["ORDERS_PLACED"], names["STEP_LATENCY"]
    assert (namespace, placed) in metrics
    for step in STEPS[1:]:
        assert (namespace, latency, "Step", step) in metrics, step
    assert (namespace, latency, "Step", STEPS[0]) not in metrics
    # Only what Fn::Sub knows: the stack's own resources (HttpApi is the
    # framework's in serverless.yml) and pseudo parameters.
    for name in re.findall(r"\$\{([^}]+)\}", body):
        known = name.startswith(("fn:", "AWS::")) or name == "HttpApi" or name.split(".")[0] in resources
        assert known, name


def test_sam_dashboard(sam):
    check_dashboard(sam_resources(sam), SAM_FUNCTION_IDS)


def test_serverless_dashboard(sls):
    check_dashboard(sls_resources(sls), SLS_FUNCTION_IDS)


def test_sam_functions_log_json(sam, sam_translated):
    for logical_id in SAM_FUNCTION_IDS.values():
        config = sam_resources(sam)[logical_id]["Properties"]["LoggingConfig"]
        assert config["LogFormat"] == "JSON", logical_id
        compiled = sam_translated["Resources"][logical_id]["Properties"]["LoggingConfig"]
        assert compiled["LogFormat"] == "JSON" and compiled["LogGroup"] == config["LogGroup"], logical_id


def test_serverless_functions_log_json(sls, sls_compiled):
    extensions = sls["resources"]["extensions"]
    for logical_id in SLS_FUNCTION_IDS.values():
        assert extensions[logical_id] == {"Properties": {"LoggingConfig": {"LogFormat": "JSON"}}}, logical_id
        compiled = sls_compiled["Resources"][logical_id]["Properties"]
        # the framework's log group, /aws/lambda/<name>
        assert compiled["LoggingConfig"] == {"LogFormat": "JSON"}, logical_id
        assert compiled["FunctionName"].startswith("bakery-")
        group = f"{logical_id.removesuffix('LambdaFunction')}LogGroup"
        assert sls_compiled["Resources"][group]["Properties"]["LogGroupName"] == f"/aws/lambda/{compiled['FunctionName']}"


def test_samconfig_deploys_without_questions(sam):
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["stack_name"] == "bakery"
    assert deploy["confirm_changeset"] is False
    assert deploy["fail_on_empty_changeset"] is False
    assert deploy["resolve_s3"] is True
    # The roles have generated names: CAPABILITY_IAM is enough.
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert not [r for r in sam_resources(sam).values() if r["Type"] == "AWS::IAM::Role" and "RoleName" in r["Properties"]]
    overrides = dict(pair.split("=", 1) for pair in deploy["parameter_overrides"].split())
    assert set(overrides) <= set(sam["Parameters"])
    # What has no default is given; and a target for each partner (Rules).
    required = {name for name, p in sam["Parameters"].items() if "Default" not in p}
    assert required <= set(overrides)
    assert {"DeliveryWebhookUrl", "DeliveryEmail"} & set(overrides)
    assert {"CustomerServiceWebhookUrl", "CustomerServiceEmail"} & set(overrides)
    for name, value in overrides.items():
        param = sam["Parameters"][name]
        if "AllowedPattern" in param:
            assert re.fullmatch(param["AllowedPattern"], value), (name, value)
        if "@" in value:
            assert value.endswith("@example.com"), f"{name}: an example address, for the user to change"
