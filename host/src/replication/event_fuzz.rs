//! Fuzzing the event decoder: whatever bytes arrive from the stream (random, truncated,
//! bit-flipped, spliced events) decode to an event or a `DecodeError`, never a panic, and
//! every event decodes back to itself. `PROPTEST_CASES` sets the number of cases
//! (`scripts/fuzz` runs many).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::tests::gen_event;
use super::{Event, FORMAT_VERSION};

/// An encoded random event (from a seed, with `gen_event`'s awkward strings and values).
fn encoded() -> impl Strategy<Value = (Event, Vec<u8>)> {
    any::<u64>().prop_map(|seed| {
        let event = gen_event(&mut StdRng::seed_from_u64(seed));
        let bytes = event.encode();
        (event, bytes)
    })
}

/// What can happen to bytes on the way: flips, overwrites, cuts, insertions, splices.
#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Splice(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Damage::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Set(i, b)),
        any::<usize>().prop_map(Damage::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(i, b)| Damage::Insert(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(i, b)| Damage::Splice(i, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match d {
        Damage::Flip(i, b) => {
            let i = at(*i, bytes.len());
            if let Some(x) = bytes.get_mut(i) {
                *x ^= b;
            }
        }
        Damage::Set(i, b) => {
            let i = at(*i, bytes.len());
            if let Some(x) = bytes.get_mut(i) {
                *x = *b;
            }
        }
        Damage::Truncate(i) => bytes.truncate(at(*i, bytes.len() + 1)),
        Damage::Insert(i, b) => {
            let i = at(*i, bytes.len() + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        Damage::Splice(i, b) => {
            let i = at(*i, bytes.len() + 1);
            bytes.truncate(i);
            bytes.extend_from_slice(b);
        }
    }
}

#[test]
fn fuzz_events_round_trip_and_damaged_bytes_never_panic() {
    let mut runner = TestRunner::new(Config::default());
    let case = (encoded(), proptest::collection::vec(damage(), 0..4));
    runner
        .run(&case, |((event, bytes), damages)| {
            let decoded = Event::decode(&bytes);
            prop_assert_eq!(decoded.as_ref(), Ok(&event));
            let mut damaged = bytes.clone();
            for d in &damages {
                apply(&mut damaged, d);
            }
            // Damaged bytes may still be a valid event (a flipped byte inside a string), but
            // decoding must answer, and an event it accepts must round-trip (its JSON may be
            // written differently: `\u1000` comes back as the character).
            if let Ok(e) = Event::decode(&damaged) {
                let again = Event::decode(&e.encode());
                prop_assert_eq!(again.as_ref(), Ok(&e));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn fuzz_random_bytes_never_panic() {
    let mut runner = TestRunner::new(Config::default());
    let bytes = proptest::collection::vec(any::<u8>(), 0..400);
    runner
        .run(&bytes, |mut b| {
            let _ = Event::decode(&b);
            // And again as the current format, so the decoder gets past the version byte.
            b.insert(0, FORMAT_VERSION);
            let _ = Event::decode(&b);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
