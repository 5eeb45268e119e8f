//! Event ids (the Kafka event's id, which an idempotent consumer deduplicates
//! on) held as 128 bits, so the per-op state stays small and fixed-size.

use std::hash::{BuildHasher, Hasher};

/// An event id as 128 bits: a lowercase hyphenated UUID exactly, anything
/// else by a 128-bit fingerprint (the text is kept aside for examples).
pub(crate) type EventId = [u64; 2];

/// Fingerprints use fixed seeds so a history always checks the same way.
pub(crate) fn fingerprint(text: &str) -> EventId {
    let a = rustc_hash::FxBuildHasher;
    let mut h1 = a.build_hasher();
    h1.write(text.as_bytes());
    h1.write_u64(0x9e37_79b9_7f4a_7c15);
    let mut h2 = a.build_hasher();
    h2.write_u64(0xc2b2_ae3d_27d4_eb4f);
    h2.write(text.as_bytes());
    h2.write_usize(text.len());
    [h1.finish(), h2.finish() | 1] // a UUID fingerprint may be even; collisions with UUIDs are still possible but negligible
}

/// The id of a canonical (lowercase, hyphenated) UUID; `None` for any other text.
pub(crate) fn parse_uuid(text: &str) -> Option<EventId> {
    // Only the canonical lowercase form: another spelling is another string to a consumer.
    if text.len() != 36 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let u = uuid::Uuid::try_parse(text).ok()?;
    let v = u.as_u128();
    Some([(v >> 64) as u64, v as u64])
}

/// The text of an id that [`parse_uuid`] read (ids from other strings are kept as text aside).
pub(crate) fn uuid_text(id: &EventId) -> String {
    uuid::Uuid::from_u128(((id[0] as u128) << 64) | id[1] as u128)
        .hyphenated()
        .to_string()
}
