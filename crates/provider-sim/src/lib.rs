//! Fakes of upstream providers for tests and dev mode, each in its own module,
//! each started on 127.0.0.1 with an ephemeral port and scripted through its
//! handle.

pub mod github;
