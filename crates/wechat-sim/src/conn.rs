//! Per-connection access to the socket, so the `Drop` fault can close a
//! connection without sending any response.

use std::any::Any;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;

/// A second handle on the connection's socket.
#[derive(Debug)]
struct ConnSocket(std::net::TcpStream);

/// `HttpServer::on_connect` hook: keep a duplicate of the socket handle.
pub(crate) fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    #[cfg(unix)]
    if let Some(sock) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::fd::AsFd;
        if let Ok(fd) = sock.as_fd().try_clone_to_owned() {
            data.insert(ConnSocket(std::net::TcpStream::from(fd)));
        }
    }
    #[cfg(windows)]
    if let Some(sock) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::windows::io::AsSocket;
        if let Ok(s) = sock.as_socket().try_clone_to_owned() {
            data.insert(ConnSocket(std::net::TcpStream::from(s)));
        }
    }
    let _ = (connection, data);
}

/// Shuts the request's connection down both ways; the client sees it close
/// with no response. False if that was not possible.
pub(crate) fn drop_connection(req: &HttpRequest) -> bool {
    req.conn_data::<ConnSocket>()
        .is_some_and(|s| s.0.shutdown(std::net::Shutdown::Both).is_ok())
}
