//! Payments: a double-entry ledger, payment intents with their state
//! machine, the gateways that collect the money, and the outbox that tells
//! plugins about settlements exactly once.

pub mod ledger;
