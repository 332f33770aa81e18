//! The names the runner gives its consumers, queues and files, shared by
//! the embedded and AWS backends (`app`, `aws`).

pub const NOTIFY_BAKER: &str = "notify-baker";
pub const DISPATCH: &str = "dispatch";
pub const DELIVERY_QUEUE: &str = "delivery";
pub const FEEDBACK_QUEUE: &str = "feedback";
/// In the data directory: how far the runner has fed the stream from
/// the table (AWS backend on an emulator).
pub const TABLE_FEED_POSITION: &str = "table-feed-position.json";
