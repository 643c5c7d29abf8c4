//! One module per scenario.

pub mod fanout;
pub mod history;
pub mod idle;
pub mod ingest;
pub mod presence;
pub mod ramp;
pub mod receipts;
