//! Three in-process nodes over mutual TLS (certificates made with rcgen): a client
//! with a certificate of the cluster's CA appends and reads through every node; one
//! whose certificate another CA signed, or one without TLS, is refused.

use dynadax_service::{Client, Node, NodeConfig, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A CA, and a certificate it signs for 127.0.0.1 (server and client use), written
/// as `{name}-ca.pem`, `{name}.pem`, `{name}.key` in `dir`.
fn pki(dir: &Path, name: &str) -> TlsFiles {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    p.distinguished_name.push(DnType::CommonName, format!("{name} node"));
    let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let files = TlsFiles {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.ca, ca_cert.pem()).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_clients_of_its_ca_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let good = pki(dir.path(), "cluster");
    let rogue = pki(dir.path(), "rogue");
    let mut members = BTreeMap::new();
    let mut stops = Vec::new();
    for id in 1..=3u64 {
        let mut cfg = NodeConfig::new(id, dir.path().join(format!("n{id}")), "127.0.0.1:0".parse().unwrap());
        cfg.tls = Some(good.clone());
        cfg.log.segment_size = 8 << 20;
        let node = Node::start(cfg).await.unwrap();
        members.insert(id, node.local_addr.to_string());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        tokio::spawn(node.serve(async move {
            let _ = rx.await;
        }));
    }
    let addrs: Vec<String> = members.values().cloned().collect();
    let client = Client::connect(addrs.clone()).unwrap().with_tls(&good).unwrap();
    client.init(members.clone()).await.unwrap();
    let recs: Vec<Vec<u8>> = (0..200).map(|i| format!("secret-{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    let idx = client.append_batch(&refs).await.unwrap();
    assert_eq!(idx, (0..200).collect::<Vec<u64>>());
    for a in &addrs {
        let c = Client::connect([a.clone()]).unwrap().with_tls(&good).unwrap();
        let got = c.read(0..200, false).await.unwrap();
        assert_eq!(got.len(), 200, "through {a}");
        assert_eq!(got[199], (199, b"secret-199".to_vec()));
        assert!(c.status(a).await.unwrap().tls, "status of {a} says TLS");
    }
    // A certificate another CA signed: the handshake fails both ways.
    let other = Client::connect(addrs.clone()).unwrap().with_tls(&rogue).unwrap().with_deadline(Duration::from_secs(2));
    let e = other.append(b"intruder").await.unwrap_err().to_string();
    assert!(e.contains("cluster unreachable"), "{e}");
    // One that trusts the cluster's CA but presents a certificate it did not sign:
    // the nodes refuse it.
    let forged = TlsFiles { ca: good.ca.clone(), cert: rogue.cert.clone(), key: rogue.key.clone() };
    let forger =
        Client::connect(addrs.clone()).unwrap().with_tls(&forged).unwrap().with_deadline(Duration::from_secs(2));
    let e = forger.append(b"forged").await.unwrap_err().to_string();
    assert!(e.contains("cluster unreachable"), "{e}");
    // Plain HTTP to a TLS node gets no answer.
    let plain = Client::connect(addrs.clone()).unwrap().with_deadline(Duration::from_secs(2));
    assert!(plain.read(0..1, true).await.is_err());
    // Nothing of theirs landed.
    let all = client.read(0..u64::MAX, false).await.unwrap();
    assert_eq!(all.len(), 200);
    for s in stops {
        let _ = s.send(());
    }
}
