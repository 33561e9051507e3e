//! TLS (rustls, optional client certificates) and bearer-token auth on a real server.

mod common;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use samstream::proto::{self, segmenter_client::SegmenterClient};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki { ca_pem: ca.pem(), server: leaf(vec!["localhost".into()]), client: leaf(vec!["samstream-client".into()]) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut config = common::config();
    config.tls.tls_cert = Some(write("server.pem", &pki.server.0));
    config.tls.tls_key = Some(write("server.key", &pki.server.1));
    config.tls.tls_client_ca = Some(write("ca.pem", &pki.ca_pem));
    let server = common::start_server(config).await;
    let url = format!("https://localhost:{}", server.addr.port());
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).domain_name("localhost");

    let with_cert = tls.clone().identity(Identity::from_pem(&pki.client.0, &pki.client.1));
    let channel = Endpoint::from_shared(url.clone()).unwrap().tls_config(with_cert).unwrap().connect().await.unwrap();
    let info = SegmenterClient::new(channel).get_model_info(proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.input_size, 1024);

    // No client certificate: the handshake (or the first call) fails.
    let refused = async {
        let channel = Endpoint::from_shared(url.clone()).unwrap().tls_config(tls).unwrap().connect().await?;
        SegmenterClient::new(channel).get_model_info(proto::GetModelInfoRequest {}).await.map_err(|e| e.into())
    };
    let refused: Result<_, Box<dyn std::error::Error>> = refused.await;
    assert!(refused.is_err(), "a client without a certificate must be refused");
    // Plain text to a TLS port fails too.
    let plain = SegmenterClient::connect(format!("http://{}", server.addr)).await;
    let plain_failed = match plain {
        Err(_) => true,
        Ok(mut c) => c.get_model_info(proto::GetModelInfoRequest {}).await.is_err(),
    };
    assert!(plain_failed);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_guard_every_rpc_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# samstream clients\ncorrect-horse-battery\n").unwrap();
    let mut config = common::config();
    config.auth_token_file = Some(tokens);
    let server = common::start_server(config).await;
    let channel = Endpoint::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();

    let mut health = HealthClient::new(channel.clone());
    health.check(HealthCheckRequest { service: String::new() }).await.expect("health needs no token");

    let with = |token: Option<&'static str>| {
        move |mut request: tonic::Request<()>| {
            if let Some(token) = token {
                request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            Ok(request)
        }
    };
    for token in [None, Some("wrong"), Some("correct-horse")] {
        let mut client = SegmenterClient::with_interceptor(channel.clone(), with(token));
        let status = client.get_model_info(proto::GetModelInfoRequest {}).await.expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}: {status:?}");
        let status = client.list_sources(proto::ListSourcesRequest {}).await.expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated);
        let request = proto::SegmentRequest::default();
        assert_eq!(client.segment(request).await.expect_err("refused").code(), Code::Unauthenticated);
        let stream = tokio_stream::iter(Vec::<proto::StreamRequest>::new());
        assert_eq!(client.stream_segment(stream).await.expect_err("refused").code(), Code::Unauthenticated);
    }
    let mut client = SegmenterClient::with_interceptor(channel, with(Some("correct-horse-battery")));
    client.get_model_info(proto::GetModelInfoRequest {}).await.expect("the right token passes");

    // Reflection is guarded too: grpcurl cannot even list services without the token.
    let addr = server.addr.to_string();
    let listing = tokio::task::spawn_blocking(move || {
        let grpcurl = common::python().parent().unwrap().join("grpcurl");
        let run = |extra: &[&str]| {
            std::process::Command::new(&grpcurl).args(["-plaintext"]).args(extra).args([addr.as_str(), "list"]).output().unwrap()
        };
        (run(&[]), run(&["-H", "authorization: Bearer correct-horse-battery"]))
    })
    .await
    .unwrap();
    let (without, with_token) = listing;
    assert!(!without.status.success() && String::from_utf8_lossy(&without.stderr).contains("Unauthenticated"), "{without:?}");
    assert!(
        with_token.status.success() && String::from_utf8_lossy(&with_token.stdout).contains("samstream.v1.Segmenter"),
        "{with_token:?}"
    );
    server.shutdown().await.unwrap();
}
