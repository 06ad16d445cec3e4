//! What the fakes of this crate share: their state behind one lock, and an
//! actix server on a listener of 127.0.0.1 (one worker, no signal handling)
//! that stops when dropped.

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// A fake's state, as its handlers get it (`web::Data<Shared<State>>`).
pub(crate) struct Shared<S>(Mutex<S>);

impl<S> Shared<S> {
    /// The state; a handler that panicked while holding it leaves it usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake: its state and its server.
pub(crate) struct Server<S> {
    shared: Arc<Shared<S>>,
    addr: SocketAddr,
    handle: Option<ServerHandle>,
}

impl<S: Send + 'static> Server<S> {
    /// Serve `mount`'s routes over `state` on `listener`; `name` is for the log.
    pub(crate) async fn start_on(
        state: S,
        listener: std::net::TcpListener,
        name: &'static str,
        mount: fn(&mut web::ServiceConfig),
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared(Mutex::new(state)));
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(mount))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)?
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        tracing::info!(%addr, "{name} simulator listening");
        Ok(Self {
            shared,
            addr,
            handle: Some(handle),
        })
    }
}

impl<S> Server<S> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        self.shared.lock()
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop, waiting for requests in flight.
    pub(crate) async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.stop(true).await;
        }
    }
}

impl<S> Drop for Server<S> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            drop(h.stop(false));
        }
    }
}

/// A random alphanumeric token of `len` characters after `prefix`
/// (`gho_…`, a code).
pub(crate) fn random(prefix: &str, len: usize) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), len)
    )
}

/// Text for HTML (element content and quoted attributes).
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A one-paragraph page titled `title` (the provider's name) saying `text`.
pub(crate) fn page(
    status: actix_web::http::StatusCode,
    title: &str,
    text: &str,
) -> actix_web::HttpResponse {
    actix_web::HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>{}</title><p>{}</p>",
            escape(title),
            escape(text)
        ))
}

/// `base` with `pairs` added to its query (`base` as it is when it is not a URL).
pub(crate) fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            u.query_pairs_mut().extend_pairs(pairs);
            u.to_string()
        }
        Err(_) => base.to_owned(),
    }
}
