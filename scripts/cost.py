#!/usr/bin/env python3
"""What the bakery costs on AWS for a month of orders, at list prices.

    scripts/cost.py                                  # 1,000,000 orders a month
    scripts/cost.py --orders 250000 --results bench/results/latest.json
    scripts/cost.py --customer-gets 5 --partners webhook

Reads the deployment's settings from template.yaml (memory size,
architecture, batch sizes and windows, shard count, tracing) and the
measured handler times and message sizes from the benchmark summary
(bench/results/latest.json, written by scripts/bench.sh). The request
counts per order follow the code paths of the seven functions over the AWS
adapters (crates/aws-adapters); each count below names the call it stands
for. Free tiers are left out (a real first bill is lower); data transfer is
ignored. Prints a markdown table.
"""

import argparse
import json
import math
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------
# Price table: AWS list prices, us-east-1, in USD. Taken from the public
# pricing pages named in "source" as they stood in 2025 (DynamoDB after the
# November 2024 on-demand price cut); written down on 2026-11-24. This
# machine cannot reach AWS's pages: check them before relying on a figure.
PRICES_AS_OF = "2025 list prices (DynamoDB on-demand after the 2024-11-01 cut), recorded 2026-11-24"
PRICES = {
    "lambda_request": {
        "usd": 0.20 / 1e6,
        "unit": "request",
        "source": "aws.amazon.com/lambda/pricing: $0.20 per 1M requests",
    },
    "lambda_gb_s_arm64": {
        "usd": 0.0000133334,
        "unit": "GB-second",
        "source": "aws.amazon.com/lambda/pricing: Arm, first 7.5B GB-s/month",
    },
    "lambda_gb_s_x86_64": {
        "usd": 0.0000166667,
        "unit": "GB-second",
        "source": "aws.amazon.com/lambda/pricing: x86, first 6B GB-s/month",
    },
    "http_api_request": {
        "usd": 1.00 / 1e6,
        "unit": "request",
        "source": "aws.amazon.com/api-gateway/pricing: HTTP APIs, first 300M requests/month",
    },
    "kinesis_shard_hour": {
        "usd": 0.015,
        "unit": "shard-hour",
        "source": "aws.amazon.com/kinesis/data-streams/pricing: provisioned mode",
    },
    "kinesis_put_payload_unit": {
        "usd": 0.014 / 1e6,
        "unit": "PUT payload unit (25 KB)",
        "source": "aws.amazon.com/kinesis/data-streams/pricing: provisioned mode",
    },
    "dynamodb_wru": {
        "usd": 0.625 / 1e6,
        "unit": "write request unit",
        "source": "aws.amazon.com/dynamodb/pricing/on-demand: Standard table class",
    },
    "dynamodb_cdc_unit": {
        "usd": 0.10 / 1e6,
        "unit": "change data capture unit (1 KB) for Kinesis Data Streams",
        "source": "aws.amazon.com/dynamodb/pricing/on-demand: change data capture for Kinesis Data Streams",
    },
    "dynamodb_rru": {
        "usd": 0.125 / 1e6,
        "unit": "read request unit",
        "source": "aws.amazon.com/dynamodb/pricing/on-demand: Standard table class",
    },
    "dynamodb_storage_gb_month": {
        "usd": 0.25,
        "unit": "GB-month",
        "source": "aws.amazon.com/dynamodb/pricing/on-demand: storage beyond 25 GB free",
    },
    "sqs_request": {
        "usd": 0.40 / 1e6,
        "unit": "request (64 KB chunk)",
        "source": "aws.amazon.com/sqs/pricing: standard queues, after the first 1M/month",
    },
    "ses_email": {
        "usd": 0.10 / 1000,
        "unit": "email",
        "source": "aws.amazon.com/ses/pricing: outbound email",
    },
    "xray_trace": {
        "usd": 5.00 / 1e6,
        "unit": "trace recorded",
        "source": "aws.amazon.com/xray/pricing: traces recorded beyond 100k/month",
    },
}

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600


# ---------------------------------------------------------------------------
# template.yaml, read with regular expressions (CloudFormation's !Sub, !Ref
# and !If tags are not plain YAML).

def read_template(path):
    text = path.read_text()
    globals_match = re.search(r"^Globals:\n  Function:\n((?:    .*\n)+)", text, re.M)
    glob = globals_match.group(1) if globals_match else ""

    def value(block, key, default=None):
        m = re.search(rf"^\s+{key}:\s*(.+)$", block, re.M)
        return m.group(1).strip() if m else default

    settings = {
        "memory_mb": int(value(glob, "MemorySize", "128")),
        "architecture": "arm64" if "arm64" in (value(glob, "Architectures", "") or "") else "x86_64",
        "tracing": (value(glob, "Tracing", "PassThrough") or "") == "Active",
        "shards": int(value(text, "ShardCount", "1")),
        "functions": {},
    }
    # Resources sit at two spaces of indentation; a function's block runs
    # to the next resource.
    blocks = re.split(r"^  (?=[A-Za-z0-9]+:\n)", text.split("\nResources:\n", 1)[1], flags=re.M)
    for block in blocks:
        if "Type: AWS::Serverless::Function" not in block:
            continue
        name = re.search(r"FunctionName: !Sub \$\{NamePrefix\}-([a-z-]+)", block)
        if not name:
            continue
        function = {
            "memory_mb": int(value(block, "MemorySize", settings["memory_mb"])),
            "batch_size": None,
            "batch_window_s": 0.0,
            "trigger": "http",
        }
        if "Type: Kinesis" in block:
            function["trigger"] = "kinesis"
        elif "Type: SQS" in block and "Queue: !GetAtt" in block:
            function["trigger"] = "sqs"
        batch = value(block, "BatchSize")
        if batch:
            function["batch_size"] = int(batch)
        window = value(block, "MaximumBatchingWindowInSeconds")
        if window:
            function["batch_window_s"] = float(window)
        settings["functions"][name.group(1)] = function
    return settings


# ---------------------------------------------------------------------------
# Measurements from bench/results/latest.json.

def measured(results):
    summary = json.loads(results.read_text())
    latency = summary.get("latency", {})
    if "aws-lifecycle" in latency:
        source = "aws-lifecycle"
        origin = ("the runner on the AWS adapters against moto on the benchmark machine "
                  "(p50 of each endpoint; consumer steps: p50 propagation less half the "
                  "poll interval)")
    elif "lifecycle-half" in latency:
        source = "lifecycle-half"
        origin = ("the embedded runner at half load (p50 of each endpoint and propagation "
                  "step): SQLite on local disk, faster than network calls to DynamoDB, "
                  "so these durations are optimistic")
    else:
        sys.exit(f"{results}: no lifecycle latencies; run scripts/bench.sh first")
    series = latency[source]
    poll_ms = 0.0
    for note in summary.get("notes", []):
        m = re.search(r"aws-poll-ms=(\d+)", note)
        if m and source == "aws-lifecycle":
            poll_ms = float(m.group(1))

    def p50(key):
        return series.get(key, {}).get("p50_ms")

    def step(key):
        value = p50(key)
        return None if value is None else max(value - poll_ms / 2, 1.0)

    durations = {
        "order": p50("POST /order"),
        # A run that long-polled (the embedded runner) has no plain GET;
        # reading one order then costs about what placing one does.
        "order-get": p50("GET /order/{id}") or p50("POST /order"),
        "fulfilled": p50("POST /order/fulfilled"),
        "delivered": p50("POST /order/delivered"),
        "notify-baker": step("placed->baker_notified"),
        # The delivery step covers dispatch and notify-delivery, one after
        # the other: split it evenly between the two.
        "dispatch": None,
        "notify-delivery": None,
        "feedback": step("delivered->customer_service_notified"),
    }
    both = step("fulfilled->delivery_notified")
    if both is not None:
        durations["dispatch"] = both / 2
        durations["notify-delivery"] = both / 2
    missing = [k for k, v in durations.items() if v is None]
    if missing:
        sys.exit(f"{results}: no measurement for {', '.join(missing)}")

    sizes = next((r for r in summary.get("runs", []) if r.get("kind") == "sizes"), None)
    return summary, source, origin, durations, sizes


# ---------------------------------------------------------------------------

def units(size_bytes, unit_bytes):
    return max(1, math.ceil(size_bytes / unit_bytes))


def model(args, template, durations, sizes):
    n = args.orders
    rate = n / SECONDS_PER_MONTH  # orders per second, spread evenly
    fns = template["functions"]

    # Item sizes: the order's JSON (measured in the benchmark's database,
    # when it was recorded) plus the item's other attributes (pk, orderId,
    # status, createdAt, tokenHash, version and the attribute names).
    placed_json = (sizes or {}).get("placed_json_bytes", 410)
    finished_json = (sizes or {}).get("finished_json_bytes", 860)
    event_bytes = (sizes or {}).get("event_bytes", 600)
    attributes = 200
    # Seven timeline steps take the JSON from placed to finished; the item
    # written at update k (1..6) lies in between.
    item_at = [placed_json + attributes + (finished_json - placed_json) * k / 6 for k in range(7)]

    def update_wru(k):
        # An update is billed on the larger of the item before and after.
        return units(max(item_at[k - 1], item_at[k]), 1024)

    # --- DynamoDB, per order -------------------------------------------------
    # Reads are GetItem with ConsistentRead (DynamoStore::read): 1 RRU per 4 KB.
    # Writes: a change of the order is a conditional UpdateItem (1 WRU per
    # KB), or a TransactWriteItems with its event item when it announces one
    # (2 WRU per KB each, dynamo.rs), plus the by-status GSI (projection ALL,
    # 1 WRU per KB per index write): a status change deletes and puts the
    # index entry (2 index writes), a step that keeps the status rewrites it (1).
    wru = 0.0
    rru = 0.0
    # Every write of the table is a change record on the Kinesis stream (the
    # table feeds it): one CDC unit per KB, and one PUT payload unit each.
    changes_kb = 0.0
    changes = 0
    event_kb = units(event_bytes + 100, 1024)  # the event JSON and its key, type, order id, TTL

    def step(k, index_writes, announces=False):
        nonlocal wru, changes_kb, changes
        wru += (2 if announces else 1) * update_wru(k) + index_writes * update_wru(k)
        changes_kb += update_wru(k)
        changes += 1
        if announces:
            wru += 2 * event_kb
            changes_kb += event_kb
            changes += 1

    # 1 order: TransactWriteItems, put order + its event item + idempotency
    #   key, each 2 WRU per KB, + the GSI entry of the new order.
    wru += 2 * units(item_at[0], 1024) + 2 * event_kb + 2 * 1 + units(item_at[0], 1024)
    changes_kb += units(item_at[0], 1024) + event_kb + 1
    changes += 3
    # 2 notify-baker: get (notify) + record_step: read + update (+GSI rewrite).
    rru += 2
    step(1, 1)
    # 3 fulfilled: advance = read + update with its event item (GSI 2).
    rru += 1
    step(2, 2, announces=True)
    # 4 dispatch: advance to out_for_delivery = read + update (GSI 2).
    rru += 1
    step(3, 2)
    # 5 notify-delivery: notify_once: get + record_step (read + update, GSI 1).
    rru += 2
    step(4, 1)
    # 6 delivered: get (token check) + advance (read + update, GSI 2).
    rru += 2
    step(5, 2)
    # 7 feedback: notify_once: get + record_step (read + update, GSI 1).
    rru += 2
    step(6, 1)
    # TTL deletes of the two event items and the key (free as writes, but
    # change records on the stream too).
    changes_kb += 2 * event_kb + 1
    changes += 3
    # Customers following their order: GET /order/{id} is one consistent read.
    rru += args.customer_gets

    # --- Lambda invocations per order -----------------------------------------
    def stream_batch(fn):
        # The first record opens the batching window; more arrive meanwhile.
        f = fns.get(fn, {})
        return min(f.get("batch_size") or 1, 1 + rate * f.get("batch_window_s", 0.0))

    invocations = {
        "order": 1 + args.customer_gets + args.catalog_gets,
        "fulfilled": 1,
        "delivered": 1,
        # FilterCriteria: notify-baker sees only order_placed, dispatch only
        # order_fulfilled, so each is invoked for its own event only.
        "notify-baker": 1 / stream_batch("notify-baker"),
        "dispatch": 1 / stream_batch("dispatch"),
        # SQS mappings without a batching window take what is there: one
        # message at this rate.
        "notify-delivery": 1,
        "feedback": 1,
    }
    duration_ms = {
        "order": (durations["order"] + (args.customer_gets + args.catalog_gets) * durations["order-get"])
        / invocations["order"],
        **{k: durations[k] for k in ("fulfilled", "delivered", "notify-delivery", "feedback")},
        # A batch of b records takes about b times one record's time.
        "notify-baker": durations["notify-baker"] * stream_batch("notify-baker"),
        "dispatch": durations["dispatch"] * stream_batch("dispatch"),
    }

    # The cake maker's, the customer's confirmation when they gave an
    # address, and the partners' when they take email.
    emails = 1 + args.confirmations + (2 if args.partners == "email" else 0)
    sqs_per_order = 2 * 3  # two queues: SendMessage, ReceiveMessage, DeleteMessage
    # Each SQS event source mapping long-polls even when idle: 5 pollers, a
    # ReceiveMessage every 20 s each, per queue (delivery, feedback).
    sqs_idle = 2 * 5 * SECONDS_PER_MONTH / 20

    lines = []

    def line(item, quantity, price_key, note=""):
        price = PRICES[price_key]
        lines.append({
            "item": item,
            "quantity": quantity,
            "unit": price["unit"],
            "unit_usd": price["usd"],
            "usd": quantity * price["usd"],
            "note": note,
        })

    total_invocations = sum(invocations.values()) * n
    line("Lambda requests", total_invocations, "lambda_request",
         ", ".join(f"{k} {v:.2f}" for k, v in invocations.items()) + " per order")
    gb_s = 0.0
    parts = []
    for fn, count in invocations.items():
        name = "order" if fn == "order" else fn
        memory_gb = fns.get(name, {}).get("memory_mb", template["memory_mb"]) / 1024
        billed_ms = math.ceil(duration_ms[fn])  # billed per 1 ms
        gb_s += count * n * billed_ms / 1000 * memory_gb
        parts.append(f"{fn} {billed_ms} ms")
    line(f"Lambda compute ({template['architecture']}, {template['memory_mb']} MB)", gb_s,
         f"lambda_gb_s_{template['architecture']}", "billed ms per invocation: " + ", ".join(parts))
    api_requests = (3 + args.customer_gets + args.catalog_gets) * n
    line("API Gateway HTTP API requests", api_requests, "http_api_request",
         f"3 POSTs + {args.customer_gets} GET /order + {args.catalog_gets} GET /products per order")
    line("Kinesis shard-hours", template["shards"] * HOURS_PER_MONTH, "kinesis_shard_hour",
         f"{template['shards']} shard(s), provisioned, all month")
    line("Kinesis PUT payload units", changes * n, "kinesis_put_payload_unit",
         f"{changes} change records per order (the table feeds the stream), each under 25 KB")
    line("DynamoDB change data capture units", changes_kb * n, "dynamodb_cdc_unit",
         f"{changes_kb:.0f} KB of changes per order to the Kinesis stream")
    line("DynamoDB write request units", wru * n, "dynamodb_wru", f"{wru:.0f} WRU per order")
    line("DynamoDB read request units", rru * n, "dynamodb_rru", f"{rru:.0f} RRU per order (consistent reads)")
    stored_gb = n * (item_at[6] * 2 + 150) / 1e9  # order item + its GSI copy + idempotency item
    line("DynamoDB storage (this month's orders)", stored_gb, "dynamodb_storage_gb_month",
         "grows by this much every month")
    line("SQS requests", sqs_per_order * n + sqs_idle, "sqs_request",
         f"{sqs_per_order} per order + {sqs_idle / 1e6:.2f}M idle long polls")
    line("SES emails", emails * n, "ses_email",
         "baker"
         + (f" + customer confirmation ({args.confirmations:.0%} of orders)" if args.confirmations else "")
         + (" + delivery company + customer service" if args.partners == "email" else " (partners by webhook)"))
    if template["tracing"]:
        # Default sampling: the first request each second and 5 % of the
        # rest, per function; traffic spread evenly over the month.
        traces = 0.0
        for fn, count in invocations.items():
            per_second = count * rate
            sampled = min(per_second, 1.0) + 0.05 * max(per_second - 1.0, 0.0)
            traces += sampled * SECONDS_PER_MONTH
        line("X-Ray traces (Tracing: Active)", traces, "xray_trace", "default sampling rule")
    return lines


def fmt_quantity(q):
    if q >= 1e6:
        return f"{q / 1e6:,.2f}M"
    if q >= 1e3:
        return f"{q:,.0f}"
    return f"{q:,.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders a month")
    parser.add_argument("--results", type=pathlib.Path, default=ROOT / "bench/results/latest.json")
    parser.add_argument("--template", type=pathlib.Path, default=ROOT / "template.yaml")
    parser.add_argument("--customer-gets", type=int, default=2,
                        help="GET /order/{id} a customer makes per order (tracking)")
    parser.add_argument("--catalog-gets", type=int, default=1, help="GET /products per order")
    parser.add_argument("--partners", choices=["email", "webhook"], default="email",
                        help="how the delivery company and customer service are told")
    parser.add_argument("--confirmations", type=float, default=1.0,
                        help="share of orders whose customer gives an email address and gets a confirmation")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args()

    template = read_template(args.template)
    summary, source, origin, durations, sizes = measured(args.results)
    lines = model(args, template, durations, sizes)
    total = sum(line["usd"] for line in lines)

    if args.json:
        print(json.dumps({"orders": args.orders, "lines": lines, "total_usd": total,
                          "prices_as_of": PRICES_AS_OF, "durations_ms": durations,
                          "duration_source": origin}, indent=2))
        return

    commit = (summary.get("machine", {}).get("git_commit") or "unknown")[:12]
    print(f"AWS cost of {args.orders:,} orders a month, us-east-1, {PRICES_AS_OF}.\n")
    print(f"Settings from {args.template.name}: {template['architecture']}, "
          f"{template['memory_mb']} MB, {template['shards']} Kinesis shard(s), "
          + ", ".join(f"{k} batch {v['batch_size']}" + (f"/{v['batch_window_s']:g} s" if v['batch_window_s'] else "")
                      for k, v in template["functions"].items() if v["batch_size"])
          + f"; tracing {'on' if template['tracing'] else 'off'}.")
    print(f"Handler durations from {args.results.name} (commit {commit}): {origin}.")
    print(f"Partners told by {args.partners}; {args.customer_gets} tracking GETs and "
          f"{args.catalog_gets} catalog GET per order. Free tiers and data transfer left out.\n")
    print("| item | quantity | unit price (USD) | USD / month | how counted |")
    print("|---|---:|---:|---:|---|")
    for line in lines:
        print(f"| {line['item']} | {fmt_quantity(line['quantity'])} | "
              f"{line['unit_usd']:.10f}".rstrip("0") + f" per {line['unit']} | "
              f"{line['usd']:,.2f} | {line['note']} |")
    print(f"| **total** | | | **{total:,.2f}** | {total / args.orders * 1000:.3f} USD per 1,000 orders |")
    print("\nPrices (us-east-1):")
    for key, price in PRICES.items():
        print(f"- {key}: {price['usd']:.10f}".rstrip("0") + f" USD per {price['unit']} ({price['source']})")


if __name__ == "__main__":
    main()
