//! What a record on the order stream carries, and reading the event out of
//! it.
//!
//! The stream contract is the [`Event`] JSON (the README's "Stream and
//! queue contracts"). It reaches the stream in one of two envelopes:
//!
//! - **The event itself.** The embedded backend commits an order and its
//!   event in one SQLite transaction and puts the event JSON on its stream.
//! - **A DynamoDB change record of an event item.** On AWS the order table
//!   feeds the Kinesis stream (Kinesis Data Streams for DynamoDB): a step
//!   writes the order and an *event item* in one `TransactWriteItems`, and
//!   DynamoDB puts every change of the table on the stream, so there is no
//!   second write that could fail after the first (no dual write). An event
//!   item's key starts with [`EVENT_ITEM_PREFIX`] and its
//!   [`EVENT_ATTRIBUTE`] string is the event JSON. The change records of
//!   everything else in the table (orders, idempotency keys, event items
//!   being rewritten or expiring) are not events: the event source
//!   mappings filter them out ([`EVENT_FILTER_PATTERN`]), and a consumer
//!   that meets one anyway skips it ([`Decoded::NotAnEvent`]).
//!
//! Only the fields needed are read from a change record, so what DynamoDB
//! adds to it later changes nothing here.

use std::collections::HashMap;

use domain::events::Event;
use serde::Deserialize;

/// The start of an event item's key (`pk`): `event#<eventId>`.
pub const EVENT_ITEM_PREFIX: &str = "event#";

/// The attribute of an event item that holds the event's JSON (a string).
pub const EVENT_ATTRIBUTE: &str = "event";

/// The Lambda event filter (a Kinesis event source mapping's
/// `FilterCriteria` pattern) that lets only new event items through; both
/// templates use it, and the local runner's mappings apply the same rule
/// by skipping [`Decoded::NotAnEvent`].
pub const EVENT_FILTER_PATTERN: &str =
    r#"{"data":{"eventName":["INSERT"],"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"event#"}]}}}}}"#;

/// What one record's data turned out to be.
#[derive(Debug)]
pub enum Decoded {
    Event(Box<Event>),
    /// A change record of something other than a new event item: nothing
    /// for a consumer to do.
    NotAnEvent,
}

/// A DynamoDB change record, as the table feed puts it on the stream.
#[derive(Deserialize)]
struct ChangeRecord {
    #[serde(rename = "eventName")]
    event_name: String,
    dynamodb: Change,
}

#[derive(Deserialize)]
struct Change {
    #[serde(rename = "Keys")]
    keys: Option<HashMap<String, Attribute>>,
    #[serde(rename = "NewImage")]
    new_image: Option<HashMap<String, Attribute>>,
}

/// One attribute value; only strings matter here.
#[derive(Deserialize)]
struct Attribute {
    #[serde(rename = "S")]
    s: Option<String>,
}

/// Reads the event a record carries, in either envelope. `Err` is a record
/// that is neither, or an event of a version newer than this code knows
/// ([`Event::VERSION`]): it can never succeed here.
pub fn decode(data: &[u8]) -> Result<Decoded, String> {
    match envelope(data)? {
        Decoded::Event(event) if event.version > Event::VERSION => Err(format!(
            "record is not an order event: version {} is newer than this consumer's {}",
            event.version,
            Event::VERSION
        )),
        decoded => Ok(decoded),
    }
}

/// Just enough of a record to tell the two envelopes apart.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "eventSource")]
    event_source: Option<String>,
}

fn envelope(data: &[u8]) -> Result<Decoded, String> {
    // The usual record is the event itself: read it straight into an
    // Event. Building a tree of JSON values first allocates for every
    // field, a few per cent of the bakery's CPU under load. Whatever does
    // not read this way, errors included, takes the general path below,
    // so what that answers is unchanged.
    if let Ok(Envelope { event_source }) = serde_json::from_slice(data) {
        if event_source.as_deref() != Some("aws:dynamodb") {
            if let Ok(event) = Event::from_json(data) {
                return Ok(Decoded::Event(Box::new(event)));
            }
        }
    }
    let value: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| format!("record is not an order event: not JSON: {e}"))?;
    if value.get("eventSource").and_then(|s| s.as_str()) != Some("aws:dynamodb") {
        return Event::deserialize(&value)
            .map(|event| Decoded::Event(Box::new(event)))
            .map_err(|e| format!("record is not an order event: {e}"));
    }
    let record = ChangeRecord::deserialize(&value)
        .map_err(|e| format!("record is not an order event: a broken change record: {e}"))?;
    let is_event_item = record
        .dynamodb
        .keys
        .as_ref()
        .and_then(|keys| keys.get("pk"))
        .and_then(|pk| pk.s.as_deref())
        .is_some_and(|pk| pk.starts_with(EVENT_ITEM_PREFIX));
    if record.event_name != "INSERT" || !is_event_item {
        return Ok(Decoded::NotAnEvent);
    }
    let json = record
        .dynamodb
        .new_image
        .as_ref()
        .and_then(|image| image.get(EVENT_ATTRIBUTE))
        .and_then(|a| a.s.as_deref())
        .ok_or_else(|| {
            format!("record is not an order event: an event item without {EVENT_ATTRIBUTE}")
        })?;
    Event::from_json(json.as_bytes())
        .map(|event| Decoded::Event(Box::new(event)))
        .map_err(|e| {
            format!("record is not an order event: the event item's {EVENT_ATTRIBUTE}: {e}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event_json() -> String {
        let event = json!({
            "eventId": "6f1c1b5e-8e0e-5b8a-9a57-3f0b2c1f0d11",
            "eventType": "order_placed",
            "orderId": "01936a4e-0000-7000-8000-000000000001",
            "occurredAt": "2026-12-04T10:00:00Z",
            "order": {
                "orderId": "01936a4e-0000-7000-8000-000000000001",
                "status": "placed",
                "name": "Ada",
                "address": "1 Cake Street",
                "productId": 1,
                "productName": "Chocolate cake",
                "quantity": 1,
                "unitPriceCents": 2500,
                "totalCents": 2500,
                "currency": "EUR",
                "timeline": [{"step": "placed", "at": "2026-12-04T10:00:00Z"}]
            }
        });
        event.to_string()
    }

    fn change(event_name: &str, pk: &str, image: serde_json::Value) -> Vec<u8> {
        json!({
            "awsRegion": "eu-west-1",
            "eventID": "a1b2",
            "eventName": event_name,
            "userIdentity": null,
            "recordFormat": "application/json",
            "tableName": "bakery-orders",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_764_842_400_000_u64,
                "Keys": {"pk": {"S": pk}},
                "NewImage": image,
                "SizeBytes": 700
            },
            "eventSource": "aws:dynamodb"
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_event_itself_is_read_as_it_is() {
        let decoded = decode(event_json().as_bytes());
        assert!(matches!(decoded, Ok(Decoded::Event(e)) if e.order.name == "Ada"));
    }

    #[test]
    fn a_record_from_the_table_feed_is_never_read_as_the_event_itself() {
        // An event's fields plus the table feed's eventSource: the envelope
        // decides, as it did before events were read without a JSON tree.
        let mut record: serde_json::Value = serde_json::from_str(&event_json()).unwrap();
        record["eventSource"] = json!("aws:dynamodb");
        let decoded = decode(record.to_string().as_bytes());
        assert!(
            matches!(&decoded, Err(e) if e.contains("a broken change record")),
            "{decoded:?}"
        );
    }

    #[test]
    fn a_new_event_item_gives_its_event() {
        let data = change(
            "INSERT",
            "event#6f1c",
            json!({"pk": {"S": "event#6f1c"}, "event": {"S": event_json()}}),
        );
        assert!(matches!(decode(&data), Ok(Decoded::Event(e)) if e.order.name == "Ada"));
    }

    #[test]
    fn other_changes_of_the_table_are_not_events() {
        let image = json!({"pk": {"S": "event#6f1c"}, "event": {"S": event_json()}});
        for data in [
            change("MODIFY", "event#6f1c", image.clone()),
            change("REMOVE", "event#6f1c", json!(null)),
            change("INSERT", "order#0193", json!({"pk": {"S": "order#0193"}})),
            change("INSERT", "idem#key-1", json!({"pk": {"S": "idem#key-1"}})),
        ] {
            assert!(matches!(decode(&data), Ok(Decoded::NotAnEvent)));
        }
    }

    #[test]
    fn versions_are_read_up_to_this_codes_own() {
        let mut event: serde_json::Value = serde_json::from_str(&event_json()).unwrap();
        // Written before the field existed: version 1.
        assert!(
            matches!(decode(event.to_string().as_bytes()), Ok(Decoded::Event(e)) if e.version == 1)
        );
        event["version"] = json!(Event::VERSION);
        assert!(matches!(
            decode(event.to_string().as_bytes()),
            Ok(Decoded::Event(_))
        ));
        event["version"] = json!(Event::VERSION + 1);
        let newer = decode(event.to_string().as_bytes());
        assert!(matches!(newer, Err(m) if m.contains("newer than this consumer")));
    }

    #[test]
    fn records_that_are_neither_are_errors() {
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"hello": 1}"#).is_err());
        let broken = change("INSERT", "event#1", json!({"event": {"S": "{oops"}}));
        assert!(decode(&broken).is_err());
        let missing = change("INSERT", "event#1", json!({"pk": {"S": "event#1"}}));
        assert!(decode(&missing).is_err());
    }

    #[test]
    fn the_filter_pattern_is_json_and_names_the_prefix() {
        let pattern: serde_json::Value = serde_json::from_str(EVENT_FILTER_PATTERN).unwrap();
        assert_eq!(
            pattern["data"]["dynamodb"]["Keys"]["pk"]["S"][0]["prefix"],
            EVENT_ITEM_PREFIX
        );
    }
}
