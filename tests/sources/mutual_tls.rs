//! Mutual-TLS client authentication (RFC 8705) against a real TLS endpoint on 127.0.0.1 that
//! requires a client certificate signed by its CA.

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokenwarden::sources::{ClientCredentials, Credential, HttpOptions};
use tokenwarden::{FetchContext, FetchReason, TokenSource};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made for this test.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    /// The client's certificate and key in one PEM, as `reqwest::Identity::from_pem` takes.
    client_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &ca).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(vec!["svc-client".to_string()]).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &ca).unwrap();

    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server: (
            server_cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        ),
        client_pem: format!("{}{}", client_cert.pem(), client_key.serialize_pem()),
    }
}

/// What the endpoint saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    client_certificate: bool,
    authorization: bool,
    body: String,
}

/// Starts the endpoint; returns its token URL and what it saw.
async fn endpoint(pki: &Pki) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/token", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                // A client without a certificate fails the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_certificate = tls.get_ref().1.peer_certificates().is_some();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let authorization = request.headers().contains_key("authorization");
                        let body = request.into_body().collect().await?.to_bytes();
                        record.lock().unwrap().push(Seen {
                            client_certificate,
                            authorization,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        let answer = r#"{"access_token":"bound-token","token_type":"Bearer","expires_in":3600}"#;
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer)))
                                .unwrap(),
                        )
                    }
                });
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (url, seen)
}

fn ctx() -> FetchContext {
    FetchContext::new(FetchReason::Initial)
}

#[tokio::test]
async fn a_client_certificate_authenticates_the_client() {
    let pki = pki();
    let (url, seen) = endpoint(&pki).await;
    let http = HttpOptions::new()
        .identity(reqwest::Identity::from_pem(pki.client_pem.as_bytes()).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap());
    let source = ClientCredentials::builder(&url, "svc-client", Credential::MutualTls)
        .http(http)
        .build()
        .unwrap();
    let token = source.fetch(ctx()).await.unwrap();
    assert_eq!(token.expose_secret(), "bound-token");

    let seen = seen.lock().unwrap()[0].clone();
    assert!(
        seen.client_certificate,
        "the client presented its certificate"
    );
    assert!(!seen.authorization, "no secret in a header");
    let form: Vec<(String, String)> = form_urlencoded::parse(seen.body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        form,
        [
            ("grant_type", "client_credentials"),
            ("client_id", "svc-client")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

#[tokio::test]
async fn without_a_certificate_the_handshake_fails_with_a_named_error() {
    let pki = pki();
    let (url, seen) = endpoint(&pki).await;
    let trusting = HttpOptions::new()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap());

    // Mutual TLS without a certificate is refused when built...
    let err = ClientCredentials::builder(&url, "svc-client", Credential::MutualTls)
        .http(trusting.clone())
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("mutual TLS needs a client certificate"),
        "{err}"
    );

    // ...and an endpoint that requires one refuses the handshake of a client without one.
    let source = ClientCredentials::builder(&url, "svc-client", "a-secret")
        .http(trusting)
        .build()
        .unwrap();
    let err = source.fetch(ctx()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().starts_with(&url), "{err}");
    assert!(!err.to_string().contains("a-secret"));
    assert!(seen.lock().unwrap().is_empty(), "no request got through");
}
