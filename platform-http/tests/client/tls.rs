//! HTTPS (the `rustls` feature): the client speaks TLS and trusts only what
//! the system trusts. The server here has a self-signed certificate for
//! 127.0.0.1 (made once with openssl, valid for a hundred years), which no
//! system trusts: the call must fail at the handshake, never fall back to
//! plain HTTP and never send the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use platform_http::{Client, ClientError};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt as _;

use super::{listener, settings, target};

const CERT: &[u8] = include_bytes!("tls/untrusted-cert.pem");
const KEY: &[u8] = include_bytes!("tls/untrusted-key.pem");

/// A TLS server that answers 200 to whoever completes a handshake; returns
/// its `https://` URL and how many handshakes completed.
async fn untrusted_tls_server() -> (String, Arc<AtomicUsize>) {
    let cert = CertificateDer::from_pem_slice(CERT).unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (listener, addr) = listener().await;
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    (format!("https://{addr}"), handshakes)
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_call_at_the_handshake() {
    let (url, handshakes) = untrusted_tls_server().await;
    let client = Client::from_settings(&target("tls"), &settings(&url)).unwrap();
    match client.get("/").send().await.unwrap_err() {
        ClientError::Connect { source, .. } => {
            let mut chain = Vec::new();
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*source);
            while let Some(error) = cause {
                chain.push(error.to_string());
                cause = error.source();
            }
            let chain = chain.join(": ");
            assert!(
                chain.to_lowercase().contains("certificate"),
                "the cause names the certificate: {chain}"
            );
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no handshake completed"
    );
}
