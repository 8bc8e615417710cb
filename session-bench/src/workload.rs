//! The workload every target runs: the session payload, the change a read-modify-write
//! makes, the phases, and a small per-worker random number generator.

use serde_json::{Map, Value, json};

/// Session data as every target receives it: a JSON object.
pub type Data = Map<String, Value>;

/// The 16 filler keys of the payload, `k00` to `k15`.
pub const KEYS: [&str; 16] = [
    "k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "k10", "k11", "k12",
    "k13", "k14", "k15",
];

/// Length of every filler string (and of a change's new value).
pub const FILLER_LEN: usize = 40;

/// One phase of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Phase {
    /// Store N new sessions (expiry 1 hour).
    Create,
    /// Read, change one field, write back (last writer wins).
    Rmw,
    /// Read, change one field, compare-and-swap, retried on conflict (ours only).
    RmwCas,
    /// Read only.
    Get,
    /// Read with a lazy-touch policy, touching only when it says so (ours only).
    Touch,
}

impl Phase {
    /// The phase's name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Rmw => "rmw",
            Self::RmwCas => "rmw-cas",
            Self::Get => "get",
            Self::Touch => "touch",
        }
    }
}

/// A fast, seedable generator (SplitMix64): each worker owns one, so workers never contend.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`; different seeds give independent-looking streams.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random alphanumeric characters.
    pub fn text(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }
}

/// The payload of session number `n`: `user` = {id, email, name, roles (3 strings)} and
/// `k00`..`k15` holding 40-character strings; about 1 KiB of JSON.
pub fn payload(n: u64, rng: &mut Rng) -> Data {
    let mut data = Data::new();
    data.insert(
        "user".into(),
        json!({
            "id": n,
            "email": format!("user{n}@bench.example.com"),
            "name": format!("Bench User Number {n}"),
            "roles": ["reader", "writer", "session-admin"],
        }),
    );
    for key in KEYS {
        data.insert(key.into(), Value::String(rng.text(FILLER_LEN)));
    }
    data
}

/// The JSON size of `data` in bytes.
pub fn json_len(data: &Data) -> usize {
    serde_json::to_string(data).map_or(0, |json| json.len())
}

/// The one-field change a read-modify-write applies: a filler key gets a new value.
#[derive(Debug, Clone)]
pub struct Change {
    /// Which key changes.
    pub key: &'static str,
    /// Its new value.
    pub value: String,
}

impl Change {
    /// A random change.
    pub fn random(rng: &mut Rng) -> Self {
        Self {
            key: KEYS[rng.below(KEYS.len())],
            value: rng.text(FILLER_LEN),
        }
    }

    /// Applies the change to JSON session data.
    pub fn apply<S: std::hash::BuildHasher>(
        &self,
        data: &mut std::collections::HashMap<String, Value, S>,
    ) {
        data.insert(self.key.to_owned(), Value::String(self.value.clone()));
    }

    /// Applies the change to a JSON object.
    pub fn apply_map(&self, data: &mut Data) {
        data.insert(self.key.to_owned(), Value::String(self.value.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_about_one_kib() {
        let data = payload(123_456, &mut Rng::new(1));
        let len = json_len(&data);
        assert!((900..1200).contains(&len), "{len}");
        assert_eq!(data.len(), 17);
    }

    #[test]
    fn rng_stays_in_range() {
        let mut rng = Rng::new(7);
        assert!((0..1000).all(|_| rng.below(10) < 10));
        assert_eq!(rng.text(40).len(), 40);
    }
}
