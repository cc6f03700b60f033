use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// The seed for randomized tests: `SYNCBASE_TEST_SEED` to replay, else fresh.
pub(crate) fn seed() -> u64 {
    std::env::var("SYNCBASE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}

fn gen_string(rng: &mut StdRng, max: usize) -> String {
    const PIECES: &[&str] = &[
        "a", "Z", "0", "_", " ", "\"", "\\", "\n", "\u{0}", "é", "日本", "🦀", "{", "}",
    ];
    let n = rng.random_range(0..=max);
    (0..n)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

fn gen_value(rng: &mut StdRng, depth: u32) -> Value {
    let pick = if depth >= 3 {
        rng.random_range(0..6)
    } else {
        rng.random_range(0..8)
    };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<u64>()),
        4 => {
            let f: f64 = rng.random_range(-1e12..1e12);
            json!(f)
        }
        5 => Value::String(gen_string(rng, 12)),
        6 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| gen_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(gen_map(rng, depth + 1)),
    }
}

fn gen_map(rng: &mut StdRng, depth: u32) -> Map<String, Value> {
    (0..rng.random_range(0..6))
        .map(|_| (gen_string(rng, 8), gen_value(rng, depth)))
        .collect()
}

pub(crate) fn gen_event(rng: &mut StdRng) -> Event {
    let kind = EventKind::ALL[rng.random_range(0..EventKind::ALL.len())];
    let record_id = if kind.is_record() || rng.random_bool(0.2) {
        Some(format!("r{}", gen_string(rng, 14)))
    } else {
        None
    };
    Event {
        id: EventId::random(),
        origin: format!("node-{}", rng.random_range(0..5)),
        hlc: Hlc(rng.random()),
        kind,
        collection: CollectionRef {
            id: gen_string(rng, 15),
            name: gen_string(rng, 10),
        },
        record_id,
        data: rng.random_bool(0.8).then(|| gen_map(rng, 0)),
        before: rng.random_bool(0.4).then(|| gen_map(rng, 0)),
        base: rng.random_bool(0.5).then(EventId::random),
        schema_version: if rng.random() {
            rng.random()
        } else {
            rng.random_range(0..300)
        },
        plugin_version: rng.random_range(0..1 << 20),
        files: (0..rng.random_range(0..3))
            .map(|_| FileRef {
                name: gen_string(rng, 20),
                sha256: super::super::objects::sha256_hex(gen_string(rng, 8).as_bytes()),
                size: rng.random(),
                mime: gen_string(rng, 12),
            })
            .collect(),
    }
}

/// A realistic auth record: every stored field travels, including the hash and tokenKey.
fn auth_record_event() -> Event {
    let data = json!({
        "id": "u1a2b3c4d5e6f7g",
        "collectionId": "_pb_users_auth_",
        "email": "ann@example.com",
        "emailVisibility": false,
        "verified": true,
        "password": "$2a$10$abcdefghijklmnopqrstuu5yV1mH2cQwQyJ5kqQ8gXnJm1Qd2rZ6",
        "tokenKey": "k8QwL3n0PzR5tY7uI9oA1sD3fG5hJ7kL9zX1cV3bN5mQ7wE9rT",
        "tags": ["a", "b"],
        "friends": [],
        "score": 1.5,
        "created": "2026-01-02 03:04:05.678Z",
        "updated": "2026-01-02 03:04:05.678Z"
    });
    Event {
        id: EventId::random(),
        origin: "n1".into(),
        hlc: Hlc::new(1_767_000_000_000, 3),
        kind: EventKind::RecordUpdate,
        collection: CollectionRef {
            id: "_pb_users_auth_".into(),
            name: "users".into(),
        },
        record_id: Some("u1a2b3c4d5e6f7g".into()),
        data: data.as_object().cloned(),
        before: json!({"verified": false}).as_object().cloned(),
        base: Some(EventId::random()),
        schema_version: 7,
        plugin_version: 2,
        files: Vec::new(),
    }
}

#[test]
fn file_references_round_trip_as_version_2() {
    let mut event = auth_record_event();
    event.files = vec![FileRef {
        name: "avatar_abcdefghij.png".into(),
        sha256: super::super::objects::sha256_hex(b"png bytes"),
        size: 9,
        mime: "image/png".into(),
    }];
    let bytes = event.encode();
    assert_eq!(bytes[0], FILES_FORMAT_VERSION);
    assert_eq!(Event::decode(&bytes).expect("decode"), event);
    // A damaged count or digest is an error, not a panic or a huge allocation.
    let mut bad = bytes.clone();
    let at =
        bad.len() - event.files[0].mime.len() - 1 - 1 - 64 - 1 - event.files[0].name.len() - 1 - 1;
    bad[at] = 0x7f;
    assert!(Event::decode(&bad).is_err());
    let mut wrong_sha = event.clone();
    wrong_sha.files[0].sha256 = "X".repeat(64);
    assert!(Event::decode(&wrong_sha.encode()).is_err());
}

#[test]
fn stored_values_round_trip_exactly() {
    let event = auth_record_event();
    let bytes = event.encode();
    assert_eq!(bytes[0], FORMAT_VERSION);
    let back = Event::decode(&bytes).expect("decode");
    assert_eq!(back, event);
    // Field order is kept too (the store writes columns in schema order).
    let keys: Vec<_> = back
        .data
        .as_ref()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    let want: Vec<_> = event
        .data
        .as_ref()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(keys, want);
    assert_eq!(back.encode(), bytes, "re-encoding is byte-identical");
}

#[test]
fn random_events_round_trip() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..2_000 {
        let event = gen_event(&mut rng);
        let bytes = event.encode();
        let back = Event::decode(&bytes)
            .unwrap_or_else(|e| panic!("seed {seed}, event {i}: {e}\n{event:?}"));
        assert_eq!(back, event, "seed {seed}, event {i}");
        assert_eq!(back.encode(), bytes, "seed {seed}, event {i}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..200 {
        let bytes = gen_event(&mut rng).encode();
        for cut in 0..bytes.len() {
            assert!(
                Event::decode(&bytes[..cut]).is_err(),
                "seed {seed}, event {i}: prefix of {cut}/{} bytes decoded",
                bytes.len()
            );
        }
    }
}

#[test]
fn garbage_and_bit_flips_never_panic() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..5_000 {
        let n = rng.random_range(0..200);
        let mut junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        if rng.random_bool(0.5) && !junk.is_empty() {
            junk[0] = FORMAT_VERSION; // get past the version check
        }
        let _ = Event::decode(&junk);
    }
    for _ in 0..500 {
        let mut bytes = gen_event(&mut rng).encode();
        let at = rng.random_range(0..bytes.len());
        bytes[at] ^= 1 << rng.random_range(0..8);
        // Either a clean error or a (different) valid event; never a panic.
        if let Ok(event) = Event::decode(&bytes) {
            let _ = event.encode();
        }
    }
}

#[test]
fn errors_name_what_is_wrong() {
    assert_eq!(Event::decode(&[]), Err(DecodeError::Empty));
    for v in [0u8, 3, 255] {
        let err = Event::decode(&[v, 1, 2, 3]).expect_err("version");
        assert_eq!(err, DecodeError::UnknownVersion(v));
        assert!(err.to_string().contains("version"), "{err}");
    }
    let good = auth_record_event().encode();

    let mut bad_kind = good.clone();
    bad_kind[1] = 99;
    assert_eq!(Event::decode(&bad_kind), Err(DecodeError::UnknownKind(99)));

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(Event::decode(&trailing), Err(DecodeError::TrailingBytes(1)));

    let mut no_record = auth_record_event();
    no_record.record_id = None;
    assert_eq!(
        Event::decode(&no_record.encode()),
        Err(DecodeError::MissingRecordId)
    );

    let mut bad_json = auth_record_event();
    bad_json.before = None;
    bad_json.data = None;
    let mut bytes = bad_json.encode();
    // Replace the absent `data` and `before` with a JSON array, which is not an object.
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(&[1, 2, b'[', b']', 0]);
    assert!(matches!(
        Event::decode(&bytes),
        Err(DecodeError::Json { field: "data", .. })
    ));
}

#[test]
fn decode_errors_do_not_quote_record_values() {
    let mut event = auth_record_event();
    event.before = None;
    event.data = None;
    let mut bytes = event.encode();
    // `data` as a JSON string holding a password hash instead of an object.
    let hash = "\"$2a$10$abcdefghijklmnopqrstuv\"";
    bytes.truncate(bytes.len() - 2);
    bytes.push(1);
    bytes.push(hash.len() as u8);
    bytes.extend_from_slice(hash.as_bytes());
    bytes.push(0);
    let err = Event::decode(&bytes)
        .expect_err("not an object")
        .to_string();
    assert!(err.contains("data"), "{err}");
    assert!(
        !err.contains("$2a$10$"),
        "the hash leaked into the error: {err}"
    );
}

#[test]
fn ids_are_valid_msg_ids() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let id = EventId::random();
        assert_eq!(id.as_str().len(), 20);
        assert!(EventId::parse(id.as_str()).is_ok());
        assert!(seen.insert(id));
    }
    assert!(EventId::parse("").is_err());
    assert!(EventId::parse("has space").is_err());
    assert!(EventId::parse("line\nbreak").is_err());
    assert!(EventId::parse(&"x".repeat(65)).is_err());
    assert!(EventId::parse("n1-00000042").is_ok());
}

#[test]
fn ids_follow_the_clock() {
    let now = 1_795_000_000_000; // 2026-11
    let ids: Vec<EventId> = [0, 1, 35, 36, 1_000, now, now + 1, now + 86_400_000]
        .into_iter()
        .map(EventId::at)
        .collect();
    for pair in ids.windows(2) {
        assert!(pair[0].as_str() < pair[1].as_str(), "{pair:?}");
    }
    assert!(ids.iter().all(|id| id.as_str().len() == 20));
    // Two ids of one millisecond share the time prefix and differ in the random part.
    let (a, b) = (EventId::at(now), EventId::at(now));
    assert_eq!(a.as_str()[..9], b.as_str()[..9]);
    assert_ne!(a, b);
}

#[test]
fn varints_cover_the_whole_range() {
    for v in [
        0,
        1,
        127,
        128,
        300,
        u64::from(u32::MAX),
        u64::MAX - 1,
        u64::MAX,
    ] {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        let mut r = Reader { bytes: &out };
        assert_eq!(r.varint("v"), Ok(v));
        assert!(r.bytes.is_empty());
    }
    let overlong = [0xffu8; 11];
    assert_eq!(
        Reader { bytes: &overlong }.varint("v"),
        Err(DecodeError::BadVarint("v"))
    );
}
