//! A lossy network between the clients and the server: a UDP relay in the test drops 5 % of
//! the datagrams in each direction, duplicates 2 % and delays 5 % by 30 ms (so they arrive
//! out of order). QUIC recovers; the run completes with all its rounds.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::net::UdpSocket;

#[derive(Default)]
struct Tally {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
}

/// Sends `buf` through the impairments.
fn impaired_send(sock: Arc<UdpSocket>, to: Option<SocketAddr>, buf: Vec<u8>, t: &Arc<Tally>) {
    let r: f64 = rand::thread_rng().gen();
    if r < 0.05 {
        t.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let copies = if r < 0.07 {
        t.duplicated.fetch_add(1, Ordering::Relaxed);
        2
    } else {
        1
    };
    let delay = (0.07..0.12).contains(&r);
    if delay {
        t.delayed.fetch_add(1, Ordering::Relaxed);
    }
    t.forwarded.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        if delay {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        for _ in 0..copies {
            let _ = match to {
                Some(a) => sock.send_to(&buf, a).await,
                None => sock.send(&buf).await,
            };
        }
    });
}

/// Relays datagrams between clients (on the returned address) and `server`.
async fn relay(server: SocketAddr, tally: Arc<Tally>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let upstreams: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Default::default();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            let existing = upstreams.lock().unwrap().get(&client).cloned();
            let up = match existing {
                Some(u) => u,
                None => {
                    let u = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    u.connect(server).await.unwrap();
                    upstreams.lock().unwrap().insert(client, u.clone());
                    // Server → this client.
                    let (u2, f2, t2) = (u.clone(), front.clone(), tally.clone());
                    tokio::spawn(async move {
                        let mut b = vec![0u8; 65_536];
                        while let Ok(n) = u2.recv(&mut b).await {
                            impaired_send(f2.clone(), Some(client), b[..n].to_vec(), &t2);
                        }
                    });
                    u
                }
            };
            impaired_send(up, None, buf[..n].to_vec(), &tally);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_completes_all_its_rounds_through_a_lossy_reordering_relay() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a", "b", "c"];
    let certs_dir = common::make_certs(dir.path(), &names);
    let mut cfg = common::server_config(dir.path(), &certs_dir, 3, 3);
    cfg.round_deadline_secs = 300.0;
    let (server_addr, server) = common::start_server(cfg).await;
    let tally = Arc::new(Tally::default());
    let via = relay(server_addr, tally.clone()).await;
    let mut clients = vec![];
    for (i, n) in names.iter().enumerate() {
        let c = common::client_config(dir.path(), &certs_dir, n, via);
        clients.push(tokio::spawn(fedssl_client::run_client(
            c,
            common::tiny_data(i as u64 + 1),
            None,
        )));
    }
    let report = tokio::time::timeout(Duration::from_secs(600), server)
        .await
        .expect("the run finishes")
        .unwrap()
        .unwrap();
    assert_eq!(report.rounds_completed, 3);
    for r in &report.rounds {
        assert_eq!(r.clients_accepted, 3, "round {}", r.round);
    }
    for c in clients {
        let r = c.await.unwrap().unwrap();
        assert_eq!(r.rounds_trained, vec![1, 2, 3]);
        assert_eq!(
            r.final_model_hash.as_deref(),
            Some(report.final_hash.as_str())
        );
    }
    let (f, d, u, l) = (
        tally.forwarded.load(Ordering::Relaxed),
        tally.dropped.load(Ordering::Relaxed),
        tally.duplicated.load(Ordering::Relaxed),
        tally.delayed.load(Ordering::Relaxed),
    );
    eprintln!("lossy relay: {f} datagrams forwarded, {d} dropped, {u} duplicated, {l} delayed");
    assert!(d > 0 && u > 0 && l > 0, "the relay impaired the traffic");
}
