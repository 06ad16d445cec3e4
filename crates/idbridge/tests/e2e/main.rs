//! End-to-end tests: real brokers on 127.0.0.1, real SQLite files and real
//! Postgres databases, driven over HTTP like apps and browsers drive them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod admin;
mod balanced;
mod claims;
mod cli;
mod client_auth;
mod consent;
mod consent_apps;
mod containers;
mod cors;
mod db_proxy;
mod deploy_checks;
mod form_post;
mod github_upstream;
mod harness;
mod health;
mod id_token_hint;
mod idbridge_upstream;
mod input;
mod instances;
mod limits;
mod linking;
mod metrics;
mod offline_access;
mod oidc_client;
mod oidc_upstream;
mod packaging;
mod packaging_support;
mod par;
mod presets_upstream;
mod provider;
mod recheck;
mod reliability;
mod rp_libraries;
mod runtime_clients;
mod select_account;
mod setup;
mod wechat_app;
mod wechat_codes;
mod wechat_miniprogram;
mod wechat_mp;
mod wechat_web;
