//! API tests: the real server on an ephemeral port, called over HTTP.

mod access;
mod auth;
mod channels;
mod cluster;
mod crash;
mod helpers;
mod limits;
mod messages;
mod metrics;
mod operations;
mod pages;
mod postgres;
mod presence;
mod process;
mod proxy;
mod realtime;
mod receipts;
mod validation;
