//! `serve --dev`: the directory it keeps its state in ([`DevHome`]), and the
//! simulators it starts on 127.0.0.1, each with the connectors that sign in
//! through it ([`Fakes`]). One file per simulator; adding one to dev mode is a
//! file here and a line in [`Fakes::start`].

mod apple;
mod dingtalk;
mod feishu;
mod github;
mod google;
mod home;
mod microsoft;
mod openid;
mod spa;
mod wechat;
mod wecom;

pub use home::DevHome;
pub use openid::{connector as dev_openid_connector, CONNECTOR_ID as DEV_OIDC_CONNECTOR};
pub use spa::{client as dev_spa_client, CLIENT_ID as DEV_SPA_CLIENT_ID};

use idbridge_server::config::Settings;
use idbridge_server::Clock;
use std::net::TcpListener;
use std::sync::Arc;

/// Ports for the simulators: `--sim-port` and the ones after it, in the order
/// [`Fakes::start`] starts them, or any free port with `--sim-port 0`.
pub struct Ports {
    first: u16,
    handed_out: u16,
}

impl Ports {
    pub fn new(first: u16) -> Self {
        Self {
            first,
            handed_out: 0,
        }
    }

    /// A listener on the next port, or on any free port when that one is taken
    /// (said in the log; the banner shows where each simulator is).
    pub fn listen(&mut self, what: &str) -> std::io::Result<TcpListener> {
        let port = if self.first == 0 {
            0
        } else {
            self.first.wrapping_add(self.handed_out)
        };
        self.handed_out += 1;
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => Ok(listener),
            Err(e) if port != 0 => {
                tracing::warn!(port, error = %e, "the {what} cannot listen on its port; using any free one");
                TcpListener::bind(("127.0.0.1", 0))
            }
            Err(e) => Err(e),
        }
    }
}

/// One running simulator: the connectors that sign in through it, the banner's
/// lines about it, and the server itself (stopped when dropped).
pub struct Running {
    pub connectors: Vec<serde_json::Value>,
    pub banner: Vec<String>,
    _server: Box<dyn std::any::Any + Send>,
}

impl Running {
    pub fn new(
        server: impl std::any::Any + Send,
        connectors: Vec<serde_json::Value>,
        banner: Vec<String>,
    ) -> Self {
        Self {
            connectors,
            banner,
            _server: Box::new(server),
        }
    }
}

/// The simulators of one `serve --dev`.
pub struct Fakes {
    running: Vec<Running>,
}

impl Fakes {
    /// Start them all for the broker at `issuer`, on `ports`. WeChat's simulator
    /// and the OpenID provider must start (an error otherwise); without one of
    /// the others dev mode goes on without its sign-in (said on stderr).
    ///
    /// A simulator that checks times the broker makes (Apple's client secrets)
    /// reads the broker's `clock`, which `/dev/clock` moves.
    pub async fn start(
        ports: &mut Ports,
        issuer: &str,
        clock: &Arc<Clock>,
    ) -> Result<Fakes, String> {
        let mut running = vec![wechat::start(ports).await?, openid::start(ports).await?];
        // Each optional simulator takes the next port, in this order.
        for optional in [
            github::start(ports, issuer).await,
            wecom::start(ports).await,
            dingtalk::start(ports, issuer).await,
            feishu::start(ports, issuer).await,
            google::start(ports).await,
            microsoft::start(ports).await,
            apple::start(ports, issuer, clock).await,
        ] {
            match optional {
                Ok(r) => running.push(r),
                Err(e) => eprintln!("idbridge: {e}"),
            }
        }
        Ok(Fakes { running })
    }

    /// Add their connectors to `settings`, before the development login.
    pub fn add_connectors(&self, settings: &mut Settings) {
        let at = settings
            .connectors
            .iter()
            .position(|c| c["id"] == "dev")
            .unwrap_or(settings.connectors.len());
        let all = self
            .running
            .iter()
            .flat_map(|r| r.connectors.iter().cloned());
        settings.connectors.splice(at..at, all);
    }

    /// What the banner says about them, a line each.
    pub fn banner(&self) -> impl Iterator<Item = &str> {
        self.running
            .iter()
            .flat_map(|r| r.banner.iter().map(String::as_str))
    }
}
