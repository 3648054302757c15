//! What a snapshot holds and its bytes: the key-value state with revisions, sessions, locks,
//! ephemeral keys and idempotency records, and the members. Parts added later are read with
//! defaults, so every older layout still loads.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::ephemeral::Ephemeral;
use super::idempotency::{Idempotency, Recorded};
use super::locks::{LockRow, Locks};
use super::sessions::Sessions;
use super::{KeyRecord, KvStore};

/// What a snapshot holds: the key-value state and, when the application keeps a state
/// machine of its own for raw commands, that state machine's bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotData {
    pub kv: KvStore,
    pub app: Option<Vec<u8>>,
    /// Members' names and URLs, so that a node restored from the snapshot can reach them.
    pub members: Vec<(String, String)>,
    /// Index of the last membership change that took effect (see `MemberInfo::epoch`).
    pub conf_epoch: u64,
}

impl SnapshotData {
    /// MessagePack bytes: `[[key, value, create_index, mod_index, version]...], app bytes or
    /// nil, [[name, url]...], epoch, [[id, ttl_ms, renewed_at]...], [lock row...],
    /// [[key, session]...], [[idempotency key, result]...]` (see [`super::locks::LockRow`] and
    /// [`super::idempotency::Recorded`]; the third last are the ephemeral keys).
    /// Snapshots written before revisions existed have pairs of two (see [`KeyRecord`]), and
    /// those before sessions existed end after the epoch: both still decode.
    pub fn encode(&self) -> Vec<u8> {
        Self::encode_parts(
            &self.kv,
            self.app.as_deref(),
            &self.members,
            self.conf_epoch,
        )
    }

    /// The same bytes, from borrowed parts (no copy of the state).
    pub fn encode_parts(
        kv: &KvStore,
        app: Option<&[u8]>,
        members: &[(String, String)],
        conf_epoch: u64,
    ) -> Vec<u8> {
        /// The keys as a sequence, straight from the map (no list of them first).
        struct Pairs<'a>(&'a KvStore);
        impl Serialize for Pairs<'_> {
            fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
                s.collect_seq(self.0.map.iter().map(|(k, r)| {
                    let value = serde_bytes::Bytes::new(r.value.as_ref());
                    (k.as_str(), value, r.create_index, r.mod_index, r.version)
                }))
            }
        }
        // Sized once (keys, values and their few bytes of framing) instead of doubling.
        let payload: usize = kv
            .map
            .iter()
            .map(|(k, r)| k.len() + r.value.len() + 24)
            .sum();
        let mut bytes = Vec::with_capacity(payload + app.map_or(0, <[u8]>::len) + 64);
        let app = app.map(serde_bytes::Bytes::new);
        let parts = (
            Pairs(kv),
            app,
            members,
            conf_epoch,
            kv.sessions.to_rows(),
            kv.locks.to_rows(),
            kv.ephemeral.to_rows(),
            kv.idempotency.to_rows(),
        );
        rmp_serde::encode::write(&mut bytes, &parts).expect("the state always encodes");
        bytes
    }

    /// Parses what [`SnapshotData::encode`] wrote; empty bytes are the empty state.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotData, String> {
        if bytes.is_empty() {
            return Ok(SnapshotData::default());
        }
        /// The parts in order; those added later default when an older snapshot ends first.
        #[derive(Deserialize)]
        struct Parts {
            pairs: Vec<Pair>,
            app: Option<ByteBuf>,
            members: Vec<(String, String)>,
            conf_epoch: u64,
            #[serde(default)]
            sessions: Vec<(u64, u64, u64)>,
            #[serde(default)]
            locks: Vec<LockRow>,
            #[serde(default)]
            ephemeral: Vec<(String, u64)>,
            #[serde(default)]
            idempotency: Vec<(String, Recorded)>,
        }
        let Parts {
            pairs,
            app,
            members,
            conf_epoch,
            sessions,
            locks,
            ephemeral,
            idempotency,
        } = rmp_serde::from_slice(bytes).map_err(|e| format!("undecodable snapshot: {e}"))?;
        /// One key; an older snapshot's pairs have no revisions.
        #[derive(Deserialize)]
        struct Pair {
            key: String,
            value: ByteBuf,
            #[serde(default)]
            create_index: u64,
            #[serde(default)]
            mod_index: u64,
            #[serde(default = "first_version")]
            version: u64,
        }
        fn first_version() -> u64 {
            1
        }
        let map = pairs
            .into_iter()
            .map(|p| {
                let record = KeyRecord {
                    value: Bytes::from(p.value.into_vec()),
                    create_index: p.create_index,
                    mod_index: p.mod_index,
                    version: p.version,
                };
                (p.key, record)
            })
            .collect();
        Ok(SnapshotData {
            kv: KvStore {
                map,
                sessions: Sessions::from_rows(sessions),
                locks: Locks::from_rows(locks),
                ephemeral: Ephemeral::from_rows(ephemeral),
                idempotency: Idempotency::from_rows(idempotency),
            },
            app: app.map(ByteBuf::into_vec),
            members,
            conf_epoch,
        })
    }
}
