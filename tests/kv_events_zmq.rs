//! `augur::events::zmq::Publisher` against vLLM's transport protocol, with zmq.rs's SUB and
//! DEALER sockets as the subscriber (libzmq's are in `tests/kv_events.rs`, behind python):
//! live frames are `[topic, 8-byte big-endian seq, payload]` with gap-free sequence numbers;
//! a replay request `["", start]` gets `["", seq, payload]` for every buffered batch from
//! `start` on and then `["", -1, ""]`; malformed requests are ignored without stopping the
//! stream; bad settings and endpoints are refused with the endpoint named.
#![cfg(feature = "zmq")]

use std::time::Duration;

use augur::events::zmq::{END_SEQ, PublishError, Publisher, PublisherConfig};
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn frames(m: ZmqMessage) -> Vec<Vec<u8>> {
    m.into_vec().into_iter().map(|b| b.to_vec()).collect()
}

fn payload(i: u64) -> Vec<u8> {
    format!("batch {i}").into_bytes()
}

/// Sends a replay request and collects the replies up to the end marker.
async fn replay(dealer: &mut zeromq::DealerSocket, request: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
    let request: Vec<bytes::Bytes> = request.into_iter().map(Into::into).collect();
    dealer
        .send(ZmqMessage::try_from(request).unwrap())
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), dealer.recv())
            .await
            .expect("a reply within 10 s")
            .unwrap();
        let f = frames(m);
        assert_eq!(f.len(), 3, "replay replies have three frames: {f:?}");
        assert!(f[0].is_empty(), "the delimiter frame comes first");
        if f[1] == END_SEQ {
            assert!(f[2].is_empty(), "the end marker has an empty payload");
            return got;
        }
        let seq = u64::from_be_bytes(f[1].as_slice().try_into().expect("8-byte sequence"));
        got.push((seq, f[2].clone()));
    }
}

#[test]
fn live_frames_and_replay_follow_vllms_protocol() {
    let mut publisher = Publisher::bind(PublisherConfig {
        endpoint: "tcp://*:0".into(),
        replay_endpoint: Some("tcp://*:0".into()),
        topic: "kv@r0".into(),
        buffer_steps: 5,
        ..PublisherConfig::default()
    })
    .unwrap();
    // Eight batches before anyone listens: only the last five stay replayable.
    for i in 0..8 {
        assert_eq!(publisher.publish(payload(i)).unwrap(), i);
    }
    let rt = runtime();
    rt.block_on(async {
        let mut dealer = zeromq::DealerSocket::new();
        dealer
            .connect(publisher.replay_endpoint().unwrap())
            .await
            .unwrap();
        let all = replay(&mut dealer, vec![vec![], 0u64.to_be_bytes().to_vec()]).await;
        let want: Vec<_> = (3..8).map(|i| (i, payload(i))).collect();
        assert_eq!(
            all, want,
            "a replay from 0 resends what the buffer still holds"
        );
        let tail = replay(&mut dealer, vec![vec![], 6u64.to_be_bytes().to_vec()]).await;
        assert_eq!(tail, want[3..].to_vec(), "a replay from 6 resends 6 and 7");
        // Malformed requests (a 3-byte sequence; a missing delimiter) are ignored, and the
        // socket still answers a good one afterwards.
        let bad: Vec<bytes::Bytes> = vec![vec![].into(), b"abc".to_vec().into()];
        dealer
            .send(ZmqMessage::try_from(bad).unwrap())
            .await
            .unwrap();
        dealer
            .send(ZmqMessage::from(8u64.to_be_bytes().to_vec()))
            .await
            .unwrap();
        let none = replay(&mut dealer, vec![vec![], 8u64.to_be_bytes().to_vec()]).await;
        assert!(none.is_empty(), "nothing from 8 on yet");

        let mut sub = zeromq::SubSocket::new();
        sub.connect(publisher.endpoint()).await.unwrap();
        sub.subscribe("kv@").await.unwrap();
        // A PUB socket drops what it sends before the subscription arrives (ZeroMQ's slow
        // joiner): publish until one batch comes through, then the rest must follow in order.
        let first = loop {
            let seq = publisher.publish(payload(publisher.next_seq())).unwrap();
            match tokio::time::timeout(Duration::from_millis(50), sub.recv()).await {
                Ok(m) => break (seq, frames(m.unwrap())),
                Err(_) => assert!(seq < 400, "no live batch arrived in 20 s"),
            }
        };
        let (mut expect, f) = first;
        assert_eq!(f.len(), 3);
        assert_eq!(f[0], b"kv@r0");
        let seq = u64::from_be_bytes(f[1].as_slice().try_into().unwrap());
        assert!(seq <= expect, "live seq {seq} was published");
        assert_eq!(f[2], payload(seq));
        expect = seq + 1;
        // Anything published between `seq` and the loop's last publish is still in flight.
        let last = publisher.next_seq();
        for i in last..last + 20 {
            assert_eq!(publisher.publish(payload(i)).unwrap(), i);
        }
        while expect < last + 20 {
            let m = tokio::time::timeout(Duration::from_secs(10), sub.recv())
                .await
                .expect("live batches keep coming")
                .unwrap();
            let f = frames(m);
            let seq = u64::from_be_bytes(f[1].as_slice().try_into().unwrap());
            assert_eq!(seq, expect, "live sequence numbers have no gaps");
            assert_eq!(
                (f[0].as_slice(), f[2].clone()),
                (&b"kv@r0"[..], payload(seq))
            );
            expect += 1;
        }
    });
    let published = publisher.next_seq();
    let stats = publisher.close().unwrap();
    assert_eq!(stats.published, published);
    assert_eq!(stats.replays, 3);
    assert_eq!(stats.replayed, 7);
    assert_eq!(stats.bad_replay_requests, 2);
}

#[test]
fn a_subscriber_to_another_topic_hears_nothing() {
    let mut publisher = Publisher::bind(PublisherConfig {
        endpoint: "tcp://*:0".into(),
        topic: "kv@r1".into(),
        ..PublisherConfig::default()
    })
    .unwrap();
    runtime().block_on(async {
        let mut mine = zeromq::SubSocket::new();
        mine.connect(publisher.endpoint()).await.unwrap();
        mine.subscribe("kv@r1").await.unwrap();
        let mut other = zeromq::SubSocket::new();
        other.connect(publisher.endpoint()).await.unwrap();
        other.subscribe("kv@r2").await.unwrap();
        loop {
            publisher.publish(payload(0)).unwrap();
            if let Ok(m) = tokio::time::timeout(Duration::from_millis(50), mine.recv()).await {
                assert_eq!(frames(m.unwrap())[0], b"kv@r1");
                break;
            }
            assert!(
                publisher.next_seq() < 400,
                "the matching subscriber heard nothing"
            );
        }
        for _ in 0..10 {
            publisher.publish(payload(1)).unwrap();
        }
        let heard = tokio::time::timeout(Duration::from_millis(300), other.recv()).await;
        assert!(heard.is_err(), "kv@r2 must not receive kv@r1's batches");
    });
}

#[test]
fn bad_settings_and_endpoints_are_refused_by_name() {
    let err = |cfg: PublisherConfig| Publisher::bind(cfg).unwrap_err();
    let base = || PublisherConfig {
        endpoint: "tcp://*:0".into(),
        ..PublisherConfig::default()
    };
    let e = err(PublisherConfig {
        buffer_steps: 0,
        ..base()
    });
    assert!(
        matches!(e, PublishError::Config(ref m) if m.contains("buffer_steps")),
        "{e}"
    );
    let e = err(PublisherConfig {
        max_queue_size: 0,
        ..base()
    });
    assert!(
        matches!(e, PublishError::Config(ref m) if m.contains("max_queue_size")),
        "{e}"
    );
    for bad in ["bogus://*:1", "tcp://*:notaport", "tcp://*:70000"] {
        let e = err(PublisherConfig {
            endpoint: bad.into(),
            ..base()
        });
        assert!(matches!(e, PublishError::Endpoint { .. }), "{bad}: {e}");
        assert!(e.to_string().contains(bad), "the message names {bad}: {e}");
    }
    // A port already bound, as the replay endpoint.
    let first = Publisher::bind(base()).unwrap();
    let taken = first.endpoint().replace("0.0.0.0", "*");
    let e = err(PublisherConfig {
        replay_endpoint: Some(taken.clone()),
        ..base()
    });
    assert!(e.to_string().contains(&taken), "{e}");
}

#[test]
fn a_full_queue_hands_the_batch_back_without_using_a_sequence_number() {
    let mut publisher = Publisher::bind(PublisherConfig {
        endpoint: "tcp://*:0".into(),
        max_queue_size: 1,
        ..PublisherConfig::default()
    })
    .unwrap();
    let mut refused = 0;
    for i in 0..20_000u64 {
        let before = publisher.next_seq();
        match publisher.publish(payload(i)) {
            Ok(seq) => assert_eq!(seq, before),
            Err(PublishError::QueueFull(back)) => {
                assert_eq!(back, payload(i), "the refused payload comes back intact");
                assert_eq!(publisher.next_seq(), before, "no sequence number used");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let taken = publisher.next_seq();
    assert_eq!(taken + refused, 20_000);
    assert!(
        refused > 0,
        "a one-batch queue must refuse some of 20,000 batches sent at once"
    );
    assert_eq!(
        publisher.close().unwrap().published,
        taken,
        "everything taken was sent"
    );
}
